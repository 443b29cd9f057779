"""Rendering on a Dask cluster: a real scheduler and two single-thread workers (each under its
nanny), started with the `dask` CLI as separate processes on free local ports, and the real CLI."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from runner.demo.cluster import local_dask_cluster, wait_for_workers
from tests.helpers import REPO, check_report, run_cli
from tests.processes import closed_port, finish, start_cli, wait_for

pytestmark = pytest.mark.timeout(240)
# The tests on the module's cluster run on one xdist worker (one cluster); the others anywhere.
ON_THE_CLUSTER = pytest.mark.xdist_group("dask")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """(scheduler address, nanny processes). Workers import the repository (for the tests' render
    faults); a task may kill one worker before it counts as killing them."""
    env = {"PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}
    with local_dask_cluster(tmp_path_factory.mktemp("dask"), 2, env) as cluster:
        yield cluster.address, cluster.nannies
    left = [p for p in psutil.process_iter(["cmdline"]) if cluster.address in " ".join(p.info["cmdline"] or [])]
    left += [cluster.scheduler] if psutil.pid_exists(cluster.scheduler.pid) and cluster.scheduler.poll() is None else []
    assert not left, left


@ON_THE_CLUSTER
def test_charts_rendered_on_dask_are_the_local_pools_byte_for_byte(tmp_path, demo_url, demo_tokens, dask_cluster):
    address, _ = dask_cluster
    merchants = ["--server-url", demo_url, "--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--no-cache"]
    (tmp_path / "dask").mkdir(), (tmp_path / "local").mkdir()
    on_dask = run_cli([*merchants, "--executor", "dask", "--dask-scheduler", address], tmp_path / "dask")
    local = run_cli(merchants, tmp_path / "local")
    for result in (on_dask, local):
        assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(on_dask, demo_tokens[:2])
    assert {c["status"] for c in report["charts"]} == {"ok"}
    assert {(c["merchant"], c["chart_id"]): c["sha256"] for c in report["charts"]} == {
        (c["merchant"], c["chart_id"]): c["sha256"] for c in local.report["charts"]}
    render = report["metrics"]["render"]
    assert (render["executor"], render["scheduler"], render["start_method"]) == ("dask", address, "dask")
    workers = {c["worker"] for c in report["charts"]}
    assert render["dask_workers_seen"] == len(workers) >= 1 and all(w.startswith("tcp://") for w in workers)
    assert {d["status"] for d in report["decks"]} == {"ok"}  # decks built on the cluster too
    assert local.report["metrics"]["render"]["executor"] == "local"


@ON_THE_CLUSTER
def test_a_chart_that_kills_dask_workers_fails_alone(tmp_path, demo_url, demo_tokens, dask_cluster):
    address, _ = dask_cluster
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--no-cache", "--deck", "none",
                      "--executor", "dask", "--dask-scheduler", address], tmp_path, render_faults="crash:aov_by_month")
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1])
    failed = [(c["chart_id"], c["error_type"]) for c in report["charts"] if c["status"] != "ok"]
    assert failed == [("aov_by_month", "worker_crashed")]
    wait_for_workers(address, 2)  # the nannies bring the killed workers back for the next test


@ON_THE_CLUSTER
def test_a_dask_worker_killed_mid_run_loses_no_chart(tmp_path, demo_tokens, dask_cluster):
    address, nannies = dask_cluster
    proc, stderr_path = start_cli(["--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--merchant",
                                   demo_tokens[2], "--no-cache", "--executor", "dask", "--dask-scheduler", address,
                                   "--demo-server-arg=--latency-ms=300"], tmp_path)
    wait_for(proc, stderr_path, "rendered in")
    victim = psutil.Process(nannies[0].pid).children(recursive=True)[0]  # the worker under the first nanny
    victim.send_signal(signal.SIGKILL)
    result = finish(proc, stderr_path, set())
    # Dask gives the killed worker's task to the other one (a task may kill one worker before it
    # counts as killing them): every chart and deck is made, none failed or missing.
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:3])
    assert {c["status"] for c in report["charts"]} == {"ok"}
    assert {d["status"] for d in report["decks"]} == {"ok"}
    wait_for_workers(address, 2)


def test_an_unreachable_scheduler_is_one_line_and_exit_4_with_no_work_done(tmp_path, demo_tokens):
    started = time.monotonic()
    result = run_cli(["--merchant", demo_tokens[0], "--executor", "dask", "--dask-scheduler",
                      f"tcp://127.0.0.1:{closed_port()}"], tmp_path)
    assert result.returncode == 4, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Dask scheduler at tcp://127.0.0.1:")
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()
    missing = run_cli(["--executor", "dask"], tmp_path)
    assert missing.returncode == 2 and "--dask-scheduler" in missing.stderr


def test_a_dask_worker_with_several_threads_renders_one_chart_at_a_time(tmp_path, warehouse, demo_tokens):
    """matplotlib is not thread-safe and a worker reuses its canvases: the render function guards
    itself, so a worker started with --nthreads 4 still gives the same PNGs as one by one."""
    from concurrent.futures import ThreadPoolExecutor

    from runner.charts import BUILTIN_PACK
    from runner.render.dask_worker import run_on_dask_worker as run_task
    from tests.helpers import render_task

    tasks = [render_task(warehouse, spec, token, tmp_path) for token in demo_tokens[:2] for spec in BUILTIN_PACK] * 2
    alone = [run_task(task).sha256 for task in tasks]
    with ThreadPoolExecutor(4) as threads:
        together = [out.sha256 for out in threads.map(run_task, tasks)]
    assert together == alone


def test_a_scheduler_that_goes_away_mid_run_fails_what_is_unfinished(tmp_path, demo_tokens):
    """Its own cluster, since this one loses its scheduler."""
    with local_dask_cluster(tmp_path, 2) as cluster:
        proc, stderr_path = start_cli(["--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--no-cache",
                                       "--executor", "dask", "--dask-scheduler", cluster.address,
                                       "--demo-server-arg=--latency-ms=400"], tmp_path)
        wait_for(proc, stderr_path, "rendered in")
        cluster.scheduler.kill()
        result = finish(proc, stderr_path, set())
    assert result.returncode in (1, 4), result.stderr[-3000:]
    report = check_report(result, demo_tokens[:2])
    failed = [c for c in report["charts"] if c["status"] == "failed"]
    assert failed and all("went away" in c["error"] or "Dask" in c["error"] for c in failed), failed
    assert "Traceback" not in result.stderr
