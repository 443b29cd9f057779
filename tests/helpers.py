"""Helpers shared by the test modules: running the real CLI, reading and checking its report."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from runner.charts import BUILTIN_PACK
from runner.demo.server import CHART_TOOLS, Warehouse
from runner.records import ChartJob, RenderTask
from runner.request import DEFAULT_END, DEFAULT_START
from runner.retrieval.parse import chart_data_from_json

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "runner" / "report.schema.json").read_text())
CHART_IDS = [spec.id for spec in BUILTIN_PACK]

# Fast retries keep failure paths quick; every other setting is the product default.
FAST_ENV = {"SCALAPAY_RETRY_DELAY_SECONDS": "0.01"}


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    report_path: Path | None


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALAPAY_") and k != "ANTHROPIC_API_KEY"}
    env.update(FAST_ENV)
    env.update(extra or {})
    return env


def cli_command(args: list[str], render_faults: str | None = None) -> list[str]:
    """`python -m runner ARGS`; with `render_faults` ("crash:chart_id,hang:other"), the same CLI
    with those faults injected into its render workers (see tests/faulty_runner.py)."""
    if render_faults is None:
        return [sys.executable, "-m", "runner", *args]
    return [sys.executable, "-m", "tests.faulty_runner", render_faults, *args]


def run_cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 180,
            output_dir: bool = True, render_faults: str | None = None, in_process: bool = False) -> CliRun:
    """`python -m runner ARGS` in `tmp_path`, in a subprocess; with `in_process`, through
    `runner.cli.main` in this process (see run_in_process: no process start, no imports to pay)."""
    args = [*args, "--output-dir", str(tmp_path / "out")] if output_dir else args
    if in_process:
        assert render_faults is None, "render faults are injected into a CLI process of their own"
        return run_in_process(args, tmp_path, env)
    extra = {**(env or {}), "PYTHONPATH": str(REPO)} if render_faults else env
    proc = subprocess.run(cli_command(args, render_faults), capture_output=True, text=True, env=clean_env(extra),
                          timeout=timeout, cwd=tmp_path, stdin=subprocess.DEVNULL)
    return cli_result(proc.returncode, proc.stdout, proc.stderr)


def run_in_process(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> CliRun:
    """The CLI run as `python -m runner ARGS` runs it, but in this process: `runner.cli.main`
    with these argv, environment (clean_env), working folder and an empty stdin, its stdout and
    stderr captured, the exit code taken from its SystemExit. Whatever a run changes in its
    process (signal handlers, installed secrets, log sinks) is put back, and no process it
    started may be left running but multiprocessing's forkserver and resource tracker: one of
    each per process, as in a CLI process, kept for the next run here (each new forkserver
    imports matplotlib again) and ended with this process.

    For runs whose evidence is the report and the CLI's own lines. Signals, kills, render faults,
    a fresh process's memory or file descriptors, and what helper processes print need a real
    process (run_cli)."""
    from runner.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    threads = set(threading.enumerate())
    with _process_state(["python -m runner", *args], clean_env(env), cwd, stdout, stderr):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except Exception:  # what Python would print before exiting 1
            traceback.print_exc(file=sys.stderr)
            code = 1
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before - _multiprocessing_helpers()
    assert_all_ended(left)
    for thread in set(threading.enumerate()) - threads:
        if not thread.daemon:  # it would keep a CLI process from exiting
            thread.join(timeout=10)
            assert not thread.is_alive(), f"thread left running: {thread}"
    return cli_result(code, stdout.getvalue(), stderr.getvalue())


@contextmanager
def _process_state(argv: list[str], env: dict[str, str], cwd: Path, stdout: io.StringIO,
                   stderr: io.StringIO) -> Iterator[None]:
    """argv, environment, working folder and standard streams set for a CLI run; they and what
    the run sets for its whole process (signal handlers, secrets, loguru's and logging's
    handlers, warnings capture) are put back afterwards."""
    from loguru import logger

    from runner import redaction

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved_secrets = redaction._installed  # what install() replaced (there is no public getter)
    root = logging.getLogger()
    saved_root = root.handlers[:], root.level
    warnings_captured = logging._warnings_showwarning is not None
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    sys.stdin, sys.stdout, sys.stderr = open(os.devnull), stdout, stderr
    try:
        yield
    finally:
        sys.stdin.close()
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        redaction.install(saved_secrets)
        logger.remove()
        logger.configure(extra={}, patcher=lambda record: None)
        logger.add(lambda message: sys.stderr.write(message))  # loguru's default: stderr, as it is now
        root.handlers, root.level = saved_root
        if not warnings_captured:
            logging.captureWarnings(False)


def _multiprocessing_helpers() -> set[int]:
    """The pids of this process's forkserver and resource tracker, where they run."""
    from multiprocessing import forkserver, resource_tracker

    pids = {forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid}
    return {pid for pid in pids if pid is not None}


def cli_result(returncode: int, stdout: str, stderr: str) -> CliRun:
    """A finished run, with its report read from the path on stdout's last line."""
    lines = stdout.strip().splitlines()
    report = path = None
    if lines and lines[-1].endswith("report.json"):
        path = Path(lines[-1])
        report = json.loads(path.read_text())
    return CliRun(returncode, stdout, stderr, report, path)


def validate_report(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(report, SCHEMA, cls=jsonschema.Draft202012Validator)


def assert_every_chart_once(result: CliRun, merchants: list[str], chart_ids: list[str] = CHART_IDS) -> None:
    assert result.report is not None, result.stderr[-2000:]
    validate_report(result.report)
    listed = Counter((c["merchant"], c["chart_id"]) for c in result.report["charts"])
    assert listed == Counter((m, c) for m in merchants for c in chart_ids)


def assert_every_deck_once(report: dict[str, Any], merchants: list[str], formats: tuple[str, ...] = ("pdf", "pptx"),
                           ) -> None:
    """One record per merchant and format; a deck said to be written is on disk whole, as recorded."""
    import hashlib

    listed = Counter((d["merchant"], d["format"]) for d in report["decks"])
    assert listed == Counter((m, f) for m in merchants for f in formats), listed
    for deck in report["decks"]:
        if deck["status"] in ("ok", "partial"):
            content = Path(deck["output"]).read_bytes()
            assert (len(content), hashlib.sha256(content).hexdigest()) == (deck["bytes"], deck["sha256"])
        else:
            assert deck["output"] is None and deck["error"], deck


def assert_no_processes_left(report: dict[str, Any]) -> None:
    dask = report["metrics"]["render"].get("executor") == "dask"  # a cluster's workers outlive runs by design
    pids = {c["worker_pid"] for c in report["charts"] if c["worker_pid"] and not dask}
    if report["run"]["server_pid"]:
        pids.add(report["run"]["server_pid"])
    assert_all_ended(pids)


def assert_all_ended(pids: set[int]) -> None:
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"


def by_chart(report: dict[str, Any]) -> dict[str, set[tuple[str, str | None]]]:
    """chart id -> the set of (status, error_type) it ended with across merchants."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for chart in report["charts"]:
        out.setdefault(chart["chart_id"], set()).add((chart["status"], chart["error_type"]))
    return out


def render_task(warehouse: Warehouse, spec: Any, token: str, folder: Path, compress_level: int = 1) -> RenderTask:
    """A render task with its data straight from the demo warehouse."""
    method = getattr(warehouse, CHART_TOOLS[spec.tool][0])
    data = chart_data_from_json(spec, token, method(token, DEFAULT_START, DEFAULT_END))
    job = ChartJob(token, spec, DEFAULT_START, DEFAULT_END, str(folder / token / f"{spec.id}.png"))
    return RenderTask(job, data, compress_level)


def server_args(*args: str) -> list[str]:
    return [f"--demo-server-arg={a}" for a in args]


def check_report(result, merchants: list[str] | None = None, chart_ids: list[str] = CHART_IDS) -> dict:
    """Every requested chart exactly once, schema-valid, no partial files, no process left."""
    assert result.report is not None, result.stderr[-3000:]
    report = result.report
    validate_report(report)
    listed = Counter((c["merchant"], c["chart_id"]) for c in report["charts"])
    merchants = merchants or sorted({m for m, _ in listed})
    assert listed == Counter((m, c) for m in merchants for c in chart_ids)
    run_dir = result.report_path.parent
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers, leftovers
    deck = report["config"]["deck"]["value"]
    assert_every_deck_once(report, merchants, () if deck == "none" else tuple(deck.split(",")))
    assert_no_processes_left(report)
    return report
