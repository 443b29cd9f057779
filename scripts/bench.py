"""Benchmarks of the runner on this machine, each comparison measured side by side in one run.

    python scripts/bench.py [--quick | --smoke] [--hostile-only | --agent-only | --cache-only | --decks-only
                            | --retrieval-scaling | --memory-slope]
                            [--json FILE]

Uses the real runner, the real demo MCP server (over loopback HTTP) and real worker processes.
Two sides of a comparison alternate within each repetition; figures are medians. The machine
is shared and noisy, so read the ratios, not single times. Scenarios (see README, Performance):

1. render throughput: the render pool vs one-by-one in-process vs joblib/loky, same charts
2. per-chart CPU: the runner's settings vs matplotlib's defaults (pyplot, default PNG)
3. retrieval only, server latency 200 ms: wall vs its ideal and vs sequential
4. end to end through the CLI, latency 200 ms: defaults vs both concurrency toggles off
5. scale: 300 merchants x 7 charts through the CLI, latency 0: throughput, memory, fds
6. light commands: what `--help` and `config` import
7. decks, latency 200 ms: deck-building CPU as a share of render CPU; wall with decks vs without
9. render cache, latency 0: the same job twice, cold cache then warm: wall ratio, hit rate, same files;
   and the README's nightly recipe over two simulated nights (the job's `today`): the second night's
   hit rate on unchanged data, two days of one month, and across a month's end (expected misses)
10. Dask, latency 0: the local pool vs a scheduler and two single-thread workers on this machine, for
   56 and 2,100 charts; Dask's per-task overhead; a projection for 4, 16 and 64 worker cores
8. hostile: a server that never answers (seven charts, and one), one that exits mid-run, junk on
   stdout (before a real server, or alone), a 60 MB result (JSON text, structured, plain text),
   /dev/zero, a 10 MB merchants file and a 54 MB pack: each run's wall and coordinator peak RSS
11. agent mode against a bad Messages API (the project's fake), the default job of 21 charts and
   default settings: persistent 429 (retry-after 5 s), never answers, broken tool input, wrong
   argument names, refused base URL, unknown host, a gateway's HTML page, 429 twice then fine, a
   context budget of 1,200 tokens: each run's exit code, wall, requests the API received, outcome
12. retrieval at cluster concurrency, latency 200 ms (scripts/bench_retrieval.py): 8, 32 and 64 batches at
   once, ten rounds each, wall vs ideal, alone and through a whole run (--retrieval-scaling); the default
   run measures 32 only, alone, for its goal
13. the coordinator's memory against the run's size (scripts/bench_scale.py): no-op render, latency 0, 10,000
   and 200,000 charts: peak RSS at each and the slope in KB a chart (--memory-slope only)

--quick shrinks every scenario (3 merchants, one or two repetitions, 30 merchants at scale) to
finish in under a minute; the full run takes about five.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_retrieval
import bench_scale
import psutil
from loguru import logger

from runner.charts import BUILTIN_PACK
from runner.config import RunnerConfig, load_config
from runner.demo.data import DORMANT_INDEX, build_database
from runner.demo.fake_claude import FakeClaude, QueuedError, ToolFault
from runner.demo.launch import embedded_server
from runner.demo.server import CHART_TOOLS, Warehouse
from runner.files import write_atomically
from runner.planning import plan_batches
from runner.records import ChartJob, RenderTask
from runner.render import pool as render_pool
from runner.render import worker
from runner.request import DEFAULT_END, DEFAULT_START
from runner.retrieval.direct import run_batch
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import ServerTarget, SessionPool

LATENCY_MS = 200
HEAVY_MODULES = ("matplotlib", "mcp", "anthropic")


@dataclass(frozen=True)
class Sizes:
    merchants: int  # scenarios 1, 3 and 4
    reps: int  # repetitions of scenarios 1, 3 and 4
    cpu_reps: int  # repetitions of scenario 2
    scale_merchants: int


FULL = Sizes(merchants=8, reps=3, cpu_reps=7, scale_merchants=300)
QUICK = Sizes(merchants=3, reps=1, cpu_reps=3, scale_merchants=30)
SMOKE = Sizes(merchants=1, reps=1, cpu_reps=1, scale_merchants=3)  # only that every figure still comes out


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else math.nan


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def merchant_tokens(count: int) -> list[str]:
    """The demo data's first merchants that trade in the default window."""
    warehouse = Warehouse(build_database(merchants=max(count + 1, 24)))
    tokens = [m["token"] for i, m in enumerate(warehouse.merchants()) if i != DORMANT_INDEX]
    return tokens[:count]


def render_tasks(count: int, folder: Path, config: RunnerConfig) -> list[RenderTask]:
    """Render tasks with their data already retrieved (straight from the demo warehouse)."""
    warehouse = Warehouse(build_database())
    tasks = []
    for token in merchant_tokens(count):
        for spec in BUILTIN_PACK:
            method = getattr(warehouse, CHART_TOOLS[spec.tool][0])
            data = chart_data_from_json(spec, token, method(token, DEFAULT_START, DEFAULT_END))
            job = ChartJob(token, spec, DEFAULT_START, DEFAULT_END, str(folder / token / f"{spec.id}.png"))
            tasks.append(RenderTask(job, data, config.png_compress_level))
    return tasks


def alternate(reps: int, sides: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each side once per repetition, rotating which goes first."""
    names = list(sides)
    results: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            results[name].append(sides[name]())
            log(f"  {name}: {results[name][-1]:.3f}")
    return results


# -- 1. render throughput ---------------------------------------------------------------------


def _wall(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def write_png(task: RenderTask, rendered: Any) -> None:
    """What the coordinator does with each chart a worker sends back."""
    write_atomically(Path(task.job.output), rendered.png)


def render_in_pool(tasks: list[RenderTask], workers: int) -> float:
    """The runner's pool, started and warm as in a run, with fresh workers each time; the PNGs
    come back to this process, which writes them, as the coordinator does."""
    executor = render_pool.start_process_pool(workers)
    try:
        for future in [executor.submit(worker.ready) for _ in range(workers)]:
            future.result()

        def run() -> None:
            futures = {executor.submit(worker.render, t): t for t in tasks}
            for future in as_completed(futures):
                write_png(futures[future], future.result())

        return _wall(run)
    finally:
        executor.shutdown()


def render_in_process(tasks: list[RenderTask]) -> float:
    worker.init_worker()
    worker._canvases.clear()  # as cold as a new worker
    return _wall(lambda: [write_png(t, worker.render(t)) for t in tasks])


def _styled_render(task: RenderTask) -> Any:
    worker.init_worker()  # the same look as in the runner's workers
    return worker.render(task)


def _warm() -> int:
    worker.init_worker()
    return os.getpid()


def render_with_joblib(tasks: list[RenderTask], workers: int) -> float:
    from joblib import Parallel, delayed
    from joblib.externals.loky import get_reusable_executor

    parallel = Parallel(n_jobs=workers, backend="loky")
    parallel(delayed(_warm)() for _ in range(workers * 2))  # workers up, matplotlib imported
    try:
        return _wall(lambda: [write_png(t, out) for t, out in zip(tasks, parallel(delayed(_styled_render)(t)
                                                                                    for t in tasks), strict=True)])
    finally:
        get_reusable_executor().shutdown(wait=True)  # fresh workers next time, like the pool


def scenario_render(sizes: Sizes, config: RunnerConfig, folder: Path) -> dict[str, Any]:
    workers = render_pool.worker_count(config.max_concurrent_charts, config.oversubscribe_workers)
    tasks = render_tasks(sizes.merchants, folder / "render", config)
    log(f"1. render throughput: {len(tasks)} charts, {workers} workers")
    walls = alternate(sizes.reps, {
        "pool": lambda: render_in_pool(tasks, workers),
        "in_process": lambda: render_in_process(tasks),
        "joblib_loky": lambda: render_with_joblib(tasks, workers),
    })
    wall = {name: median(values) for name, values in walls.items()}
    rate = {name: round(len(tasks) / value, 2) for name, value in wall.items()}
    return {
        "charts": len(tasks),
        "workers": workers,
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "charts_per_s": rate,
        "pool_vs_in_process": ratio(rate["pool"], rate["in_process"]),
        "pool_vs_joblib": ratio(rate["pool"], rate["joblib_loky"]),
    }


# -- 2. per-chart CPU --------------------------------------------------------------------------


def _cpu_ms(run: Callable[[], Any]) -> float:
    started = time.process_time()
    run()
    return (time.process_time() - started) * 1000


def render_with_pyplot(task: RenderTask, path: Path) -> None:
    """What a matplotlib user writes: pyplot, savefig with its default PNG settings."""
    import matplotlib.pyplot as plt

    from runner.render.draw import draw_chart

    fig = plt.figure(figsize=(worker.WIDTH_IN, worker.HEIGHT_IN), dpi=worker.DPI)
    draw_chart(fig, task.job, task.data)
    fig.savefig(path)
    plt.close(fig)


def scenario_cpu(sizes: Sizes, config: RunnerConfig, folder: Path) -> dict[str, Any]:
    log("2. per-chart CPU: runner settings vs matplotlib defaults")
    worker.init_worker()
    tasks = render_tasks(1, folder / "cpu-runner", config)
    defaults_dir = folder / "cpu-defaults"
    defaults_dir.mkdir(parents=True)
    for task in tasks:  # warm both: a worker's steady state, and pyplot imported
        write_png(task, worker.render(task))
        render_with_pyplot(task, defaults_dir / f"{task.job.spec.id}.png")
    runner_ms: dict[str, list[float]] = {t.job.spec.id: [] for t in tasks}
    default_ms: dict[str, list[float]] = {t.job.spec.id: [] for t in tasks}
    for rep in range(sizes.cpu_reps):
        for task in tasks:
            chart = task.job.spec.id
            sides = [("runner", lambda t=task: write_png(t, worker.render(t))),
                     ("default", lambda t=task, c=chart: render_with_pyplot(t, defaults_dir / f"{c}.png"))]
            for name, run in sides if rep % 2 == 0 else reversed(sides):
                (runner_ms if name == "runner" else default_ms)[chart].append(_cpu_ms(run))
    charts = {}
    for task in tasks:
        chart = task.job.spec.id
        runner_bytes = Path(task.job.output).stat().st_size
        default_bytes = (defaults_dir / f"{chart}.png").stat().st_size
        charts[chart] = {
            "runner_cpu_ms": round(median(runner_ms[chart]), 1),
            "default_cpu_ms": round(median(default_ms[chart]), 1),
            "cpu_ratio": ratio(median(runner_ms[chart]), median(default_ms[chart])),
            "runner_png_kb": round(runner_bytes / 1024, 1),
            "default_png_kb": round(default_bytes / 1024, 1),
            "png_size_ratio": ratio(runner_bytes, default_bytes),
        }
    total = {key: sum(c[key] for c in charts.values())
             for key in ("runner_cpu_ms", "default_cpu_ms", "runner_png_kb", "default_png_kb")}
    return {
        "charts": charts,
        "cpu_ratio": ratio(total["runner_cpu_ms"], total["default_cpu_ms"]),
        "png_size_ratio": ratio(total["runner_png_kb"], total["default_png_kb"]),
        "worst_cpu_ratio": max(c["cpu_ratio"] for c in charts.values()),
        "worst_png_size_ratio": max(c["png_size_ratio"] for c in charts.values()),
    }


# -- 3. retrieval --------------------------------------------------------------------------------


def retrieve_only(url: str, tokens: list[str], config: RunnerConfig, folder: Path, concurrent: bool) -> float:
    """The runner's retrieval (pooled sessions, batches, run_batch) without any rendering."""
    batches = plan_batches(tokens, BUILTIN_PACK, DEFAULT_START, DEFAULT_END, folder, config.batch_size)
    sessions = SessionPool(ServerTarget(url=url), config.max_concurrent_batches if concurrent else 1,
                           open_timeout=config.tool_timeout_seconds)

    def one(batch: Any) -> Any:
        with sessions.acquire() as slot:
            result = run_batch(batch, slot, config, RetryPolicy.from_config(config), lambda r: None, concurrent)
        if result.status != "ok":
            raise RuntimeError(f"bench retrieval failed: {result.error}")
        return result

    started = time.perf_counter()
    try:
        if concurrent:
            with ThreadPoolExecutor(config.max_concurrent_batches) as threads:
                list(threads.map(one, batches))
        else:
            for batch in batches:
                one(batch)
        return time.perf_counter() - started
    finally:
        sessions.close()


def scenario_retrieval(sizes: Sizes, config: RunnerConfig, url: str, folder: Path) -> dict[str, Any]:
    tokens = merchant_tokens(sizes.merchants)
    batches = plan_batches(tokens, BUILTIN_PACK, DEFAULT_START, DEFAULT_END, folder, config.batch_size)
    calls = sum(len(b.jobs) for b in batches)
    log(f"3. retrieval: {len(tokens)} merchants, {len(batches)} batches, latency {LATENCY_MS} ms")
    walls = alternate(sizes.reps, {
        "concurrent": lambda: retrieve_only(url, tokens, config, folder, True),
        "sequential": lambda: retrieve_only(url, tokens, config, folder, False),
    })
    wall = {name: median(values) for name, values in walls.items()}
    # Calls within a batch run at once, so each wave of max_concurrent_batches batches costs one latency.
    ideal = math.ceil(len(batches) / config.max_concurrent_batches) * LATENCY_MS / 1000
    return {
        "merchants": len(tokens),
        "batches": len(batches),
        "tool_calls": calls,
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "ideal_s": round(ideal, 3),
        "vs_ideal": ratio(wall["concurrent"], ideal),
        "sequential_vs_concurrent": ratio(wall["sequential"], wall["concurrent"]),
    }


# -- 4 and 5: the CLI ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CliRun:
    report: dict[str, Any]
    process_wall_s: float
    peak_rss_mb: dict[str, float]  # "coordinator" and one entry per worker pid, in start order


def run_cli(args: list[str], folder: Path, cache: bool = False, env: dict[str, str] | None = None) -> CliRun:
    """`python -m runner` in a subprocess, sampling the memory of it and its workers. The render
    cache is off unless asked for: a scenario's repetitions must each render. `env` is added to
    this process's environment."""
    command = [sys.executable, "-m", "runner", *args, "--output-dir", str(folder), "--quiet",
               *([] if cache else ["--no-cache"])]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env} if env else None)
    peaks: dict[str, float] = {}
    done = threading.Event()

    def sample() -> None:
        main = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peaks["coordinator"] = max(peaks.get("coordinator", 0), main.memory_info().rss / 2**20)
                for child in main.children():
                    if "forkserver" not in " ".join(child.cmdline()):
                        continue
                    for pool_worker in child.children():
                        key = f"worker-{pool_worker.pid}"
                        peaks[key] = max(peaks.get(key, 0), pool_worker.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=1200)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"runner exited {proc.returncode}: {stderr[-2000:]}")
    report = json.loads(Path(stdout.strip().splitlines()[-1]).read_text())
    return CliRun(report, wall, {k: round(v, 1) for k, v in peaks.items()})


def _merchant_args(tokens: list[str]) -> list[str]:
    return [arg for token in tokens for arg in ("--merchant", token)]


def alternate_cli_runs(reps: int, url: str, tokens: list[str], folder: Path,
                       sides: dict[str, list[str]]) -> tuple[dict[str, list[float]], dict[str, list[CliRun]]]:
    """Full CLI runs of every side (name -> extra flags), alternating; each must draw every chart.
    Returns each side's walls in seconds, and its runs."""
    runs: dict[str, list[CliRun]] = {name: [] for name in sides}

    def side(name: str, extra: list[str]) -> Callable[[], float]:
        def run() -> float:
            result = run_cli(["--server-url", url, *_merchant_args(tokens), *extra], folder / name)
            assert result.report["run"]["charts_ok"] == len(tokens) * len(BUILTIN_PACK)
            runs[name].append(result)
            return result.report["run"]["wall_ms"] / 1000
        return run

    return alternate(reps, {name: side(name, extra) for name, extra in sides.items()}), runs


TOGGLES_OFF = ["--no-enable-concurrent-data-retrieval", "--no-enable-concurrent-chart-generation"]


def scenario_end_to_end(sizes: Sizes, url: str, folder: Path, render_wall: float,
                        retrieval_wall: float) -> dict[str, Any]:
    tokens = merchant_tokens(sizes.merchants)
    log(f"4. end to end: {len(tokens)} merchants x {len(BUILTIN_PACK)} charts, latency {LATENCY_MS} ms")
    walls, runs = alternate_cli_runs(sizes.reps, url, tokens, folder, {"default": [], "toggles_off": TOGGLES_OFF})
    wall = {name: median(values) for name, values in walls.items()}
    process_wall = {name: median([r.process_wall_s for r in results]) for name, results in runs.items()}
    stages = max(render_wall, retrieval_wall)
    phases = [_phases(r.report) for r in runs["default"]]
    return {
        "charts": len(tokens) * len(BUILTIN_PACK),
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "process_wall_s": {k: round(v, 3) for k, v in process_wall.items()},
        "reduction": round(1 - wall["default"] / wall["toggles_off"], 3),
        "slowest_stage_alone_s": round(stages, 3),
        "default_vs_slowest_stage": ratio(wall["default"], stages),
        "render_utilization": runs["default"][-1].report["metrics"]["render"]["utilization"],
        # Where the default run's wall goes: before the first batch, retrieving, after the last batch.
        "default_phases_s": {key: round(median([p[key] for p in phases]), 3) for key in phases[0]},
    }


def scenario_decks(sizes: Sizes, url: str, folder: Path) -> dict[str, Any]:
    tokens = merchant_tokens(sizes.merchants)
    log(f"7. decks: {len(tokens)} merchants x {len(BUILTIN_PACK)} charts, a PDF and a PPTX each, vs no decks")
    walls, runs = alternate_cli_runs(sizes.reps, url, tokens, folder, {"decks": [], "no_decks": ["--deck", "none"]})
    wall = {name: median(values) for name, values in walls.items()}
    with_decks = [r.report["metrics"] for r in runs["decks"]]
    deck_cpu = median([m["decks"]["cpu_ms"] for m in with_decks])
    render_cpu = median([m["render"]["cpu_ms"] for m in with_decks])
    documents = [d for r in runs["decks"] for d in r.report["decks"]]
    assert all(d["status"] == "ok" for d in documents)
    return {
        "charts": len(tokens) * len(BUILTIN_PACK),
        "decks": len(tokens),
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "wall_ratio": ratio(wall["decks"], wall["no_decks"]),
        "deck_cpu_ms": round(deck_cpu, 1),
        "render_cpu_ms": round(render_cpu, 1),
        "deck_cpu_share": round(deck_cpu / render_cpu, 3) if render_cpu else 0.0,
        "p50_build_ms": median([m["decks"]["p50_build_ms"] for m in with_decks]),
        "kb_per_deck": {fmt: round(median([d["bytes"] for d in documents if d["format"] == fmt]) / 1024, 1)
                        for fmt in ("pdf", "pptx")},
    }


def dask_overhead(address: str, tasks: int) -> dict[str, float]:
    """Dask's own cost per task, with tasks that do next to nothing (abs): one at a time (a round trip through
    the scheduler to a worker and back), and many at once (the scheduler's throughput)."""
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.submit(abs, -1, pure=False).result()  # the function reaches the workers once
        trips = []
        for i in range(min(tasks, 100)):
            started = time.perf_counter()
            client.submit(abs, i, pure=False).result()
            trips.append(time.perf_counter() - started)
        started = time.perf_counter()
        client.gather(client.map(abs, range(tasks), pure=False))
        batch = time.perf_counter() - started
    return {"round_trip_ms": round(median(trips) * 1000, 2), "throughput_ms_per_task": round(batch / tasks * 1000, 3)}


def _dask_vs_local(address: str, count: int, reps: int, folder: Path) -> dict[str, Any]:
    tokens = merchant_tokens(count)
    folder.mkdir()
    with embedded_server(folder / "server.log", ["--merchants", str(max(24, count + 1))]) as (url, _):
        walls, runs = alternate_cli_runs(reps, url, tokens, folder, {
            "local": [], "dask": ["--executor", "dask", "--dask-scheduler", address]})
    charts = len(tokens) * len(BUILTIN_PACK)
    wall = {name: median(values) for name, values in walls.items()}
    return {"charts": charts, "wall_s": {k: round(v, 3) for k, v in wall.items()},
            "charts_per_s": {k: round(charts / v, 2) for k, v in wall.items()},
            "dask_vs_local": ratio(wall["local"], wall["dask"]),
            "p50_render_ms_dask": median([r.report["metrics"]["render"]["p50_render_ms"] for r in runs["dask"]])}


def scenario_dask(sizes: Sizes, folder: Path) -> dict[str, Any]:
    """The local pool vs a Dask cluster on this machine (a scheduler and two single-thread
    workers, separate processes): the same charts, latency 0, alternating."""
    from runner.demo.cluster import local_dask_cluster

    out: dict[str, Any] = {}
    log("10. Dask: local pool vs a scheduler and two single-thread workers on this machine, latency 0")
    with local_dask_cluster(folder, 2) as cluster:
        out["overhead"] = dask_overhead(cluster.address, 2000 if sizes is FULL else 20 if sizes is SMOKE else 200)
        log(f"  per task: {out['overhead']}")
        for label, count, reps in (("small", sizes.merchants, sizes.reps), ("large", sizes.scale_merchants, 1)):
            if sizes is SMOKE and label == "large":  # the same code again, at a size that means nothing either
                out[label] = out["small"]
                continue
            out[label] = _dask_vs_local(cluster.address, count, reps, folder / f"dask-{label}")
    # A projection, not a measurement: rendering spread over N single-thread workers, each chart
    # costing its render time on a worker plus Dask's round trip, capped by the scheduler's
    # measured throughput. Assumes retrieval, the coordinator and the network keep up.
    per_chart_s = (out["large"]["p50_render_ms_dask"] + out["overhead"]["round_trip_ms"]) / 1000
    scheduler_cap = 1000 / out["overhead"]["throughput_ms_per_task"]
    out["projected_charts_per_s"] = {str(cores): round(min(cores / per_chart_s, scheduler_cap), 1)
                                     for cores in (4, 16, 64)}
    out["projection_assumes"] = ("each worker core renders one chart per (p50 render on a Dask worker + one round "
                                 "trip); the scheduler's no-op throughput caps it; retrieval, the coordinator and "
                                 "the network keep up")
    return out


def scenario_cache(sizes: Sizes, folder: Path) -> dict[str, Any]:
    """The same job twice on unchanged data (latency 0, so rendering is most of a cold run):
    the second run renders nothing and must give byte-identical files."""
    tokens = merchant_tokens(sizes.merchants)
    log(f"9. render cache: {len(tokens)} merchants x {len(BUILTIN_PACK)} charts, cold cache then warm, latency 0")
    cold: list[CliRun] = []
    warm: list[CliRun] = []
    with embedded_server(folder / "cache-server.log", ["--merchants", str(max(24, len(tokens) + 1))]) as (url, _):
        for rep in range(sizes.reps):
            args = ["--server-url", url, *_merchant_args(tokens), "--cache-dir", str(folder / f"cache-{rep}")]
            cold.append(run_cli(args, folder / f"cold-{rep}", cache=True))
            warm.append(run_cli(args, folder / f"warm-{rep}", cache=True))
            walls = [run.report["run"]["wall_ms"] / 1000 for run in (cold[-1], warm[-1])]
            log(f"  cold {walls[0]:.3f}, warm {walls[1]:.3f}")
        # --smoke: only the case the goals read (the other runs the same code on other dates).
        cases = list(NIGHTS.items())[:1] if sizes is SMOKE else NIGHTS.items()
        nightly = {case: nightly_recipe(url, tokens, days, folder / f"nightly-{case.replace(' ', '-')}")
                   for case, days in cases}

    def files(run: CliRun) -> dict[str, bytes]:
        run_dir = Path(run.report["run"]["output_dir"])
        return {str(f.relative_to(run_dir)): f.read_bytes() for f in sorted(run_dir.rglob("*"))
                if f.suffix in (".png", ".pdf", ".pptx")}

    charts = len(tokens) * len(BUILTIN_PACK)
    cold_s = median([r.report["run"]["wall_ms"] / 1000 for r in cold])
    warm_s = median([r.report["run"]["wall_ms"] / 1000 for r in warm])
    cached = [r.report["metrics"]["render"]["charts_cached"] for r in warm]
    return {
        "charts": charts,
        "wall_s": {"cold": round(cold_s, 3), "warm": round(warm_s, 3)},
        "warm_vs_cold": ratio(warm_s, cold_s),
        "saved_s": round(cold_s - warm_s, 3),
        "hit_rate": round(median(cached) / charts, 3),
        "rendered_when_warm": max(r.report["metrics"]["render"]["charts_rendered"] for r in warm),
        "identical_files": all(files(c) == files(w) for c, w in zip(cold, warm, strict=True)),
        "nightly": nightly,
    }


# Two nights of the README recipe each: consecutive days of one month (its window is the same:
# every chart should hit), and the last day of a month then the first of the next (the window
# moves a month: every chart is new, expected misses). The demo's data end in December 2025.
NIGHTS = {"same month": ("2026-01-14", "2026-01-15"), "month boundary": ("2026-01-31", "2026-02-01")}

NIGHTLY_JOB = """merchants_file = "merchants.txt"
start_date = "-24 months"
end_date = "last month end"
pack = "business-review"
csv = true
deck = "pdf"
server_url = "{url}"
keep_runs = 14
today = "{today}"
"""


def nightly_recipe(url: str, tokens: list[str], days: tuple[str, str], folder: Path) -> dict[str, Any]:
    """The README's nightly recipe (`SCALAPAY_CONFIG=job.toml python -m runner --junit-xml
    results.xml`, the render cache at its default place in the output folder) on two nights,
    each night's date faked through the job's `today`: the second night's chart hit rate."""
    folder.mkdir(parents=True)
    (folder / "merchants.txt").write_text("\n".join(tokens) + "\n")
    job = folder / "job.toml"
    nights = []
    for today in days:
        job.write_text(NIGHTLY_JOB.format(url=url, today=today))
        nights.append(run_cli(["--junit-xml", str(folder / "results.xml")], folder / "runner-output", cache=True,
                              env={"SCALAPAY_CONFIG": str(job)}).report)
    second = nights[1]
    log(f"  nightly {days[0]} then {days[1]}: windows "
        + ", ".join(f"{n['run']['start_date']}..{n['run']['end_date']}" for n in nights)
        + f", night 2 cached {second['metrics']['render']['charts_cached']} of {second['run']['charts_total']}")
    return {
        "nights": list(days),
        "windows": [f"{n['run']['start_date']}..{n['run']['end_date']}" for n in nights],
        "charts": second["run"]["charts_total"],
        "exit_codes": [n["run"]["exit_code"] for n in nights],
        "wall_s": [round(n["run"]["wall_ms"] / 1000, 3) for n in nights],
        "night_2_hit_rate": round(second["metrics"]["render"]["charts_cached"] / second["run"]["charts_total"], 3),
    }


def _phases(report: dict[str, Any]) -> dict[str, float]:
    from datetime import datetime

    def at(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    # One clock for all three: the run's start and end, and its batches' starts and ends.
    started = at(report["run"]["started_at"])
    first = min(at(b["started_at"]) for b in report["batches"])
    last = max(at(b["started_at"]) + b["wall_ms"] / 1000 for b in report["batches"])
    finished = max(at(report["run"]["finished_at"]), last)
    return {"before_retrieval": first - started, "retrieval": last - first, "after_retrieval": finished - last}


def scenario_scale(sizes: Sizes, folder: Path, pool_rate: float) -> dict[str, Any]:
    count = sizes.scale_merchants
    log(f"5. scale: {count} merchants x {len(BUILTIN_PACK)} charts, latency 0")
    tokens = merchant_tokens(count)
    merchants_file = folder / "scale-merchants.txt"
    merchants_file.write_text("\n".join(tokens) + "\n")
    with embedded_server(folder / "scale-server.log", ["--merchants", str(max(24, count + 1))]) as (url, _pid):
        result = run_cli(["--server-url", url, "--merchants-file", str(merchants_file)], folder / "scale")
    run, metrics = result.report["run"], result.report["metrics"]
    charts = run["charts_total"]
    rate = charts / (run["wall_ms"] / 1000)
    workers = [v for k, v in result.peak_rss_mb.items() if k.startswith("worker-")]
    half = max(1, len(workers) // 2)
    return {
        "charts": charts,
        "charts_ok": run["charts_ok"],
        "wall_s": round(run["wall_ms"] / 1000, 2),
        "charts_per_s": round(rate, 2),
        "vs_render_pool_rate": ratio(rate, pool_rate),
        "coordinator_peak_rss_mb": metrics["process"]["coordinator_peak_rss_mb"],
        "workers_seen": len(workers),
        "pool_recycles": metrics["render"]["pool_recycles"],
        "worker_peak_rss_mb": {
            "min": min(workers, default=0),
            "median": median(workers) if workers else 0,
            "max": max(workers, default=0),
            "first_half_max": max(workers[:half], default=0),
            "second_half_max": max(workers[half:], default=0),
        },
        "open_fds_start": metrics["process"]["open_fds_start"],
        "open_fds_end": metrics["process"]["open_fds_end"],
    }


# -- 6. light commands --------------------------------------------------------------------------


def heavy_imports(args: list[str]) -> dict[str, Any]:
    """Which of the heavy packages `python -m runner ARGS` imports, and how long the command takes."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", *args], capture_output=True,
                          text=True, timeout=60)
    wall = time.perf_counter() - started
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    return {"heavy_modules": sorted(imported & set(HEAVY_MODULES)), "modules": len(imported),
            "process_wall_s": round(wall, 3)}


# Each case: (name, extra CLI args, wall goal in s, RSS goal in MB). A tool timeout of 30 s (the
# default) makes "never answers" take one timeout; --smoke shortens it to keep the test quick.
# "{folder}" in an argument is the scenario's folder, where the big input files are written.
_DEMO_STDIO = f"{sys.executable} -m runner demo-server"
_AOV = "--fault-tool get_aov_by_month"
HOSTILE_CASES = (
    ("never_answers", ["--demo-server-arg=--hang"], 45.0, 300.0),
    ("never_answers_one_chart", ["--demo-server-arg=--hang", "--charts", "aov_by_month"], 45.0, 300.0),
    ("exits_mid_run", ["--demo-server-arg=--crash-after=4"], 15.0, 300.0),
    ("junk_then_a_server", ["--server-command", f"sh -c 'echo junk; exec {_DEMO_STDIO}'"], 15.0, 300.0),
    ("junk_only", ["--server-command", "sh -c 'echo junk; exec sleep 600'"], 15.0, 300.0),
    ("result_60_mb_json_text_http", ["--demo-server-arg=--malformed=huge", "--demo-server-arg=--fault-tool="
                                     "get_aov_by_month"], 10.0, 300.0),
    ("result_60_mb_structured_stdio", ["--server-command", f"{_DEMO_STDIO} --malformed huge_structured {_AOV}"],
     10.0, 300.0),
    ("result_60_mb_plain_text_stdio", ["--server-command", f"{_DEMO_STDIO} --malformed huge_plain {_AOV}"],
     10.0, 300.0),
    ("merchants_file_dev_zero", ["--merchants-file", "/dev/zero"], 5.0, 500.0),
    ("merchants_file_10_mb_line", ["--merchants-file", "{folder}/merchants.txt"], 5.0, 500.0),
    ("pack_54_mb", ["--pack", "{folder}/pack.toml"], 5.0, 500.0),
)


# --smoke runs one case of each kind: the embedded server with a fault (and the shortened timeout),
# a server command, and input files refused before any work (no report: the RSS is polled).
SMOKE_HOSTILE = ("never_answers_one_chart", "junk_then_a_server", "merchants_file_dev_zero",
                 "merchants_file_10_mb_line")


def _hostile_files(folder: Path, args: list[str]) -> None:
    """The input files the cases' `args` name: a merchants file whose second merchant is a 10 MB line
    (a run has no size limit, a line has); a 54 MB pack of 700,000 charts."""
    if "{folder}/merchants.txt" in args:
        (folder / "merchants.txt").write_text("M1\n" + "M" * 10_000_000 + "\n")
    if "{folder}/pack.toml" in args:
        chart = '[[chart]]\nid = "c{}"\ntitle = "C"\nkind = "bars"\ntool = "get_aov_by_month"\n'
        with open(folder / "pack.toml", "w") as pack:
            pack.writelines(chart.format(i) for i in range(700_000))


def _measured_run(command: list[str], folder: Path) -> tuple[int, float, str, str, float]:
    """(exit code, wall, stdout, stderr, peak RSS in MB). The peak is the process's VmHWM, read
    every 10 ms until it exits (ru_maxrss would count this big benchmark process, from before exec)."""
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    peak = 0.0
    with open(out, "w") as stdout, open(err, "w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=folder)
        while proc.poll() is None:
            peak = max(peak, bench_scale.high_water_mb(proc.pid) or 0.0)
            time.sleep(0.01)
        wall = time.perf_counter() - started
    return proc.returncode, wall, out.read_text(), err.read_text(), peak


def scenario_hostile(sizes: Sizes, folder: Path) -> dict[str, Any]:
    log("8. hostile servers and inputs")
    cases = [case for case in HOSTILE_CASES if sizes is not SMOKE or case[0] in SMOKE_HOSTILE]
    _hostile_files(folder, [arg for case in cases for arg in case[1]])
    token = merchant_tokens(1)[0]
    out = {}
    for name, extra, wall_goal, rss_goal in cases:
        args = [a.replace("{folder}", str(folder)) for a in extra]
        if "--merchants-file" not in args:
            args += ["--merchant", token]
        if sizes is SMOKE and name.startswith("never_answers"):
            args += ["--tool-timeout-seconds", "2"]
        (folder / name).mkdir()
        command = [sys.executable, "-m", "runner", *args, "--output-dir", str(folder / name / "out"), "--quiet"]
        code, wall, stdout, stderr, polled_rss = _measured_run(command, folder / name)
        lines = stdout.strip().splitlines()
        report = json.loads(Path(lines[-1]).read_text()) if lines and lines[-1].endswith("report.json") else None
        # The report's own figure where there is one; else the high-water mark read from outside.
        rss = report["metrics"]["process"]["coordinator_peak_rss_mb"] if report else round(polled_rss, 1)
        out[name] = {"exit_code": code, "wall_s": round(wall, 2), "wall_goal_s": wall_goal,
                     "peak_rss_mb": rss, "rss_goal_mb": rss_goal, "traceback": "Traceback" in stderr,
                     "last_line": stderr.strip().splitlines()[-1][:200] if stderr.strip() else ""}
        log(f"  {name}: exit {code}, {wall:.1f} s, coordinator {rss} MB")
    return out


AGENT_RETRY_AFTER_S = 5.0
AGENT_KEY = "sk-ant-api03-bench" + "x" * 32


def _agent_cases(sizes: Sizes) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(name, the fake's faults or an ANTHROPIC_BASE_URL, extra CLI args); --smoke shortens the waits."""
    retry_after = "0.2" if sizes is SMOKE else f"{AGENT_RETRY_AFTER_S:g}"
    rate_limited = QueuedError(429, "rate_limit_error", "rate limited", (("retry-after", retry_after),))
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    cases = [
        ("persistent_429", {"always": rate_limited}, []),
        ("never_answers", {"hang": True}, ["--llm-timeout-seconds", "1"] if sizes is SMOKE else []),
        ("broken_tool_input", {"tool_faults": {"*": ToolFault.BROKEN_INPUT}}, []),
        ("wrong_argument_names", {"tool_faults": {"*": ToolFault.WRONG_ARGUMENTS}}, []),
        ("refused_base_url", {"base_url": f"http://127.0.0.1:{closed}"}, []),
        ("unknown_host", {"base_url": "http://no-such-host.invalid"}, []),
        ("gateway_html_page", {"always": QueuedError(502, "api_error", "Bad Gateway", html=True)}, []),
        ("429_twice_then_fine", {"errors": [rate_limited] * 2}, []),
        ("context_budget_1200", {}, ["--context-token-budget", "1200"]),
    ]
    # Each run costs a runner start: the smoke size keeps only the two rows the goals read.
    return cases[:2] if sizes is SMOKE else cases


def scenario_agent(sizes: Sizes, folder: Path) -> dict[str, Any]:
    log("11. agent mode against a bad Messages API")
    folder.mkdir(parents=True, exist_ok=True)
    merchants = _merchant_args(merchant_tokens(1)) if sizes is SMOKE else []  # else the default job: 21 charts
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCALAPAY_", "ANTHROPIC_"))}
    out = {}
    for name, faults, extra in _agent_cases(sizes):
        with FakeClaude() as fake:
            base_url = faults.pop("base_url", fake.url)
            for attribute, value in faults.items():
                setattr(fake, attribute, value)
            command = [sys.executable, "-m", "runner", "--retrieval", "agent", *merchants, *extra, "--output-dir",
                       str(folder / name), "--quiet"]
            started = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=folder, env={
                **env, "ANTHROPIC_API_KEY": AGENT_KEY, "ANTHROPIC_BASE_URL": base_url})
            wall = time.perf_counter() - started
            requests = len(fake.requests) if base_url == fake.url else 0
        lines = proc.stdout.strip().splitlines()
        report = json.loads(Path(lines[-1]).read_text()) if lines and lines[-1].endswith("report.json") else {}
        outcomes: dict[str, int] = {}
        for chart in report.get("charts", []):
            key = chart["error_type"] or "ok"
            outcomes[key] = outcomes.get(key, 0) + 1
        errors = [c["error"] for c in report.get("charts", []) if c["error"]]
        out[name] = {"exit_code": proc.returncode, "wall_s": round(wall, 2), "requests": requests,
                     "charts": outcomes, "traceback": "Traceback" in proc.stderr,
                     "llm_retries": report.get("metrics", {}).get("retrieval", {}).get("llm_retries", 0),
                     "max_batch_context_tokens": report.get("metrics", {}).get("tokens", {}).get(
                         "max_batch_context_tokens", 0),
                     "first_error": errors[0][:300] if errors else ""}
        log(f"  {name}: exit {proc.returncode}, {wall:.1f} s, {requests} requests, {outcomes}")
    return out


def agent_goals(agent: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """The issue's goals, with default settings: a never-answering API ends a 21-chart run within
    90 s; a persistent 429 within 30 s past its first retry-after."""
    hang, limited = agent["never_answers"], agent["persistent_429"]
    return [
        ("agent: API never answers", f"{hang['wall_s']:.1f} s, {hang['requests']} requests", "<= 90 s, exit 4",
         hang["wall_s"] <= 90 and hang["exit_code"] == 4 and not hang["traceback"]),
        ("agent: persistent 429", f"{limited['wall_s']:.1f} s, {limited['requests']} requests",
         f"<= {AGENT_RETRY_AFTER_S + 30:g} s, exit 4", limited["wall_s"] <= AGENT_RETRY_AFTER_S + 30
         and limited["exit_code"] == 4 and not limited["traceback"]),
    ]


def print_agent_table(agent: dict[str, Any]) -> None:
    print("\n11. agent mode against a bad Messages API: exit, wall, requests to the API, charts by outcome")
    for name, row in agent.items():
        outcome = ", ".join(f"{k} {v}" for k, v in row["charts"].items())
        print(f"   {name:<22} exit {row['exit_code']}, {row['wall_s']:>6.1f} s, {row['requests']:>3} requests, "
              f"model API retries {row['llm_retries']}, peak context {row['max_batch_context_tokens']}, {outcome}"
              f"{', TRACEBACK' if row['traceback'] else ''}")
        if row["first_error"]:
            print(f"   {'':<22} {row['first_error'][:160]}")


# -- the table -----------------------------------------------------------------------------------


def cache_goals(k: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    same_month = k["nightly"]["same month"]["night_2_hit_rate"]
    return [
        ("cache: warm run wall / cold run wall", f"{k['warm_vs_cold']:.2f}x", "<= 0.35x", k["warm_vs_cold"] <= 0.35),
        ("cache: warm run hit rate, charts rendered, same files",
         f"{k['hit_rate']:.0%}, {k['rendered_when_warm']}, {'yes' if k['identical_files'] else 'NO'}", "100%, 0, yes",
         k["hit_rate"] == 1 and k["rendered_when_warm"] == 0 and k["identical_files"]),
        ("cache: README nightly recipe, night 2 hit rate", f"{same_month:.0%}", "100% (same month)",
         same_month == 1),
    ]


def goals(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(figure, value, goal, met) rows."""
    r, c, q, e, s, d, k = (results[name] for name in ("render", "cpu", "retrieval", "end_to_end", "scale", "decks",
                                                      "cache"))
    light = results["light_commands"]
    worker_rss = s["worker_peak_rss_mb"]
    return [
        ("render pool vs in-process", f"{r['pool_vs_in_process']:.2f}x", ">= 1.8x", r["pool_vs_in_process"] >= 1.8),
        ("render pool vs joblib/loky", f"{r['pool_vs_joblib']:.2f}x", ">= 1.0x", r["pool_vs_joblib"] >= 1.0),
        ("per-chart CPU, runner / defaults", f"{c['cpu_ratio']:.2f}x", "<= 0.6x", c["cpu_ratio"] <= 0.6),
        ("PNG size, runner / defaults", f"{c['png_size_ratio']:.2f}x", "<= 1.5x", c["png_size_ratio"] <= 1.5),
        ("retrieval wall / ideal", f"{q['vs_ideal']:.2f}x", "<= 1.15x", q["vs_ideal"] <= 1.15),
        bench_retrieval.goal_row(results["retrieval_scaling"]),
        ("end to end, less wall than toggles off", f"{e['reduction']:.0%}", ">= 72%", e["reduction"] >= 0.72),
        ("end to end / slowest stage alone", f"{e['default_vs_slowest_stage']:.2f}x", "<= 1.15x",
         e["default_vs_slowest_stage"] <= 1.15),
        ("scale: coordinator peak RSS", f"{s['coordinator_peak_rss_mb']:.0f} MB", "<= 250 MB",
         s["coordinator_peak_rss_mb"] <= 250),
        ("scale: worker peak RSS, later / earlier workers",
         f"{worker_rss['second_half_max']:.0f} / {worker_rss['first_half_max']:.0f} MB", "flat",
         worker_rss["second_half_max"] <= worker_rss["first_half_max"] * 1.1),
        ("scale: open fds start -> end", f"{s['open_fds_start']} -> {s['open_fds_end']}",
         "no growth (+2: forkserver, tracker)", s["open_fds_end"] <= s["open_fds_start"] + 2),
        ("scale: charts/s vs render pool", f"{s['vs_render_pool_rate']:.2f}x", ">= 0.9x",
         s["vs_render_pool_rate"] >= 0.9),
        deck_goals(d)[0],
        ("dask: charts/s vs local pool, 56 / 2,100 charts (2 workers)",
         f"{results['dask']['small']['dask_vs_local']:.2f}x / {results['dask']['large']['dask_vs_local']:.2f}x",
         ">= 0.85x", min(results["dask"]["small"]["dask_vs_local"], results["dask"]["large"]["dask_vs_local"]) >= 0.85),
        *cache_goals(k),
        deck_goals(d)[1],
        *[(f"hostile: {name}", f"{case['wall_s']:.1f} s, {case['peak_rss_mb'] or '-'} MB",
           f"<= {case['wall_goal_s']:g} s, <= {case['rss_goal_mb']:g} MB, no traceback",
           case["wall_s"] <= case["wall_goal_s"] and (case["peak_rss_mb"] or 0) <= case["rss_goal_mb"]
           and not case["traceback"]) for name, case in results["hostile"].items()],
        *agent_goals(results["agent"]),
        ("--help / config import heavy packages",
         f"{light['help']['heavy_modules'] or 'none'} / {light['config']['heavy_modules'] or 'none'}", "none",
         not light["help"]["heavy_modules"] and not light["config"]["heavy_modules"]),
    ]


def deck_goals(d: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """Scenario 7's goals: deck CPU against render CPU, and wall with decks against without."""
    return [("decks: deck-building CPU / render CPU", f"{d['deck_cpu_share']:.0%}", "<= 20%",
             d["deck_cpu_share"] <= 0.2),
            ("decks: end-to-end wall, with / without", f"{d['wall_ratio']:.2f}x", "<= 1.10x", d["wall_ratio"] <= 1.10)]


def print_decks(d: dict[str, Any]) -> None:
    print(f"7. decks, {d['charts']} charts, {d['decks']} merchants: with decks {d['wall_s']['decks']} s, without "
          f"{d['wall_s']['no_decks']} s; deck CPU {d['deck_cpu_ms']} ms vs render CPU {d['render_cpu_ms']} ms; "
          f"p50 build {d['p50_build_ms']} ms; KB per deck "
          + ", ".join(f"{k} {v}" for k, v in d["kb_per_deck"].items()))


def print_cache(cache: dict[str, Any]) -> None:
    print(f"\n9. render cache, {cache['charts']} charts: cold {cache['wall_s']['cold']} s, warm "
          f"{cache['wall_s']['warm']} s ({cache['warm_vs_cold']:.2f}x), warm hit rate {cache['hit_rate']:.0%}, "
          f"rendered when warm {cache['rendered_when_warm']}, same files {'yes' if cache['identical_files'] else 'NO'}")
    for case, night in cache["nightly"].items():
        print(f"   README nightly recipe, {case} ({' then '.join(night['nights'])}; windows "
              f"{', '.join(night['windows'])}; exit {'/'.join(map(str, night['exit_codes']))}): "
              f"night 2 hit rate {night['night_2_hit_rate']:.0%} of {night['charts']} charts, walls "
              f"{night['wall_s'][0]} / {night['wall_s'][1]} s")


def print_table(results: dict[str, Any]) -> None:
    r, c, q, e, s = (results[k] for k in ("render", "cpu", "retrieval", "end_to_end", "scale"))
    print(f"\nrunner benchmark ({'quick' if results['quick'] else 'full'}), {results['machine']}")
    print(f"\n1. render, {r['charts']} charts, {r['workers']} workers: charts/s "
          + ", ".join(f"{k} {v}" for k, v in r["charts_per_s"].items()))
    print(f"2. per-chart CPU ms (runner / defaults) and PNG KB (runner / defaults), median of {results['cpu_reps']}:")
    for chart, row in c["charts"].items():
        print(f"   {chart:<24} {row['runner_cpu_ms']:>6.1f} / {row['default_cpu_ms']:>6.1f} ms"
              f"  {row['runner_png_kb']:>6.1f} / {row['default_png_kb']:>6.1f} KB")
    print(f"3. retrieval, {q['batches']} batches, {q['tool_calls']} calls at {LATENCY_MS} ms: concurrent "
          f"{q['wall_s']['concurrent']} s, ideal {q['ideal_s']} s, sequential {q['wall_s']['sequential']} s")
    g = results["retrieval_scaling"]
    print(f"12. retrieval at {bench_retrieval.GOAL_AT} batches at once, {g['batches']} batches: {g['wall_s']} s, "
          f"ideal {g['ideal_s']} s; CPU a call: runner {g['client_cpu_ms_per_call']} ms, server "
          f"{g['server_cpu_ms_per_call']} ms")
    print(f"4. end to end, {e['charts']} charts: default {e['wall_s']['default']} s, toggles off "
          f"{e['wall_s']['toggles_off']} s (process walls {e['process_wall_s']['default']} / "
          f"{e['process_wall_s']['toggles_off']} s), slowest stage alone {e['slowest_stage_alone_s']} s;\n"
          "   default run phases: " + ", ".join(f"{k} {v} s" for k, v in e["default_phases_s"].items()))
    print(f"5. scale, {s['charts']} charts ({s['charts_ok']} ok): {s['wall_s']} s, {s['charts_per_s']} charts/s, "
          f"{s['workers_seen']} workers over {s['pool_recycles']} pool recycles, worker peak RSS "
          f"{s['worker_peak_rss_mb']['min']}-{s['worker_peak_rss_mb']['max']} MB")
    print_decks(results["decks"])
    print_agent_table(results["agent"])
    print_cache(results["cache"])
    print(f"\n{'figure':<48} {'measured':>18}  {'goal':<36} met")
    print_goals(goals(results))


def print_goals(rows: list[tuple[str, str, str, bool]]) -> None:
    for figure, value, goal, met in rows:
        print(f"{figure:<48} {value:>18}  {goal:<36} {'yes' if met else 'NO'}")


def core_scenarios(sizes: Sizes, config: RunnerConfig, folder: Path) -> dict[str, Any]:
    """Scenarios 1 to 5 and 7: the render and retrieval stages alone, then the CLI's runs that
    compare with them."""
    out = {"render": scenario_render(sizes, config, folder), "cpu": scenario_cpu(sizes, config, folder)}
    with embedded_server(folder / "server.log", ["--latency-ms", str(LATENCY_MS)]) as (url, pid):
        out["retrieval"] = scenario_retrieval(sizes, config, url, folder / "retrieval")
        out["retrieval_scaling"] = bench_retrieval.at_goal_concurrency(
            url, pid, merchant_tokens(23), config, folder / "retrieval_scaling", scaling_rounds(sizes), sizes.reps)
        out["end_to_end"] = scenario_end_to_end(sizes, url, folder / "e2e", out["render"]["wall_s"]["pool"],
                                                out["retrieval"]["wall_s"]["concurrent"])
        out["decks"] = scenario_decks(sizes, url, folder / "decks")
    out["scale"] = scenario_scale(sizes, folder, out["render"]["charts_per_s"]["pool"])
    return out


def cache_and_dask(sizes: Sizes, config: RunnerConfig, folder: Path) -> dict[str, Any]:
    return {"cache": scenario_cache(sizes, folder), "dask": scenario_dask(sizes, folder)}


def hostile_and_agent(sizes: Sizes, config: RunnerConfig, folder: Path) -> dict[str, Any]:
    return {"hostile": scenario_hostile(sizes, folder), "agent": scenario_agent(sizes, folder / "agent")}


GROUPS = (core_scenarios, cache_and_dask, hostile_and_agent)  # independent of each other


def run_groups(sizes: Sizes, config: RunnerConfig, folder: Path, at_once: bool) -> dict[str, Any]:
    """Every group's figures, each group in a folder of its own: one after the other, so that none
    disturbs another's figures; or `at_once` (--smoke, whose figures mean nothing), so that the
    test waiting for it waits less."""
    def run(group: Callable[[Sizes, RunnerConfig, Path], dict[str, Any]]) -> dict[str, Any]:
        (folder / group.__name__).mkdir()
        return group(sizes, config, folder / group.__name__)

    if not at_once:
        return {key: value for group in GROUPS for key, value in run(group).items()}
    with ThreadPoolExecutor(len(GROUPS)) as threads:
        futures = [threads.submit(run, group) for group in GROUPS]
        return {key: value for future in futures for key, value in future.result().items()}


def scaling_rounds(sizes: Sizes) -> int:
    return 2 if sizes is SMOKE else bench_retrieval.ROUNDS


def scenario_retrieval_scaling(sizes: Sizes, folder: Path) -> dict[str, Any]:
    return bench_retrieval.scenario(merchant_tokens, load_config(env={}), folder, scaling_rounds(sizes), sizes.reps)


def scenario_decks_alone(sizes: Sizes, folder: Path) -> dict[str, Any]:
    with embedded_server(folder / "server.log", ["--latency-ms", str(LATENCY_MS)]) as (url, _):
        return scenario_decks(sizes, url, folder / "decks")


def scenario_memory_slope(sizes: Sizes, folder: Path) -> dict[str, Any]:
    return bench_scale.scenario(bench_scale.SMOKE if sizes is SMOKE else bench_scale.QUICK if sizes is QUICK
                                else bench_scale.FULL, folder)


# The scenarios that run alone (--agent-only, --cache-only, --decks-only, --retrieval-scaling, --memory-slope): how
# to run, show and judge each.
ALONE: dict[str, tuple[Callable[[Sizes, Path], dict[str, Any]], Callable[[dict[str, Any]], None],
                       Callable[[dict[str, Any]], list[tuple[str, str, str, bool]]]]] = {
    "agent": (scenario_agent, print_agent_table, agent_goals),
    "decks": (scenario_decks_alone, print_decks, deck_goals),
    "cache": (scenario_cache, print_cache, cache_goals),
    "retrieval_scaling": (scenario_retrieval_scaling, bench_retrieval.print_figures, bench_retrieval.goals),
    "memory_slope": (scenario_memory_slope, bench_scale.print_figures, bench_scale.goals),
}


def run_alone(name: str, sizes: Sizes, json_path: Path | None) -> None:
    scenario, show, judge = ALONE[name]
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        figures = scenario(sizes, Path(tmp))
    show(figures)
    print_goals(judge(figures))
    if json_path:
        json_path.write_text(json.dumps({name: figures}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller scenarios, under a minute.")
    parser.add_argument("--smoke", action="store_true", help="The smallest run of every scenario (one case of "
                        "each kind where a scenario has several; independent scenarios at once): its figures mean "
                        "nothing, it only shows the bench still works (the tests use it).")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument("--hostile-only", action="store_true", help="Only scenario 8 (hostile servers and inputs).")
    parser.add_argument("--agent-only", action="store_true", help="Only scenario 11 (agent mode, a bad API).")
    parser.add_argument("--cache-only", action="store_true", help="Only scenario 9 (the render cache, and the "
                        "README's nightly recipe over two simulated nights).")
    parser.add_argument("--decks-only", action="store_true", help="Only scenario 7 (deck-building CPU against "
                        "render CPU; wall with decks and without).")
    parser.add_argument("--retrieval-scaling", action="store_true", help="Only scenario 12 (retrieval at 8, 32 "
                        "and 64 batches at once, alone and through a whole run).")
    parser.add_argument("--memory-slope", action="store_true", help="Only scenario 13 (the coordinator's peak RSS "
                        "at 10,000 and 200,000 charts, no-op render, and its slope in KB a chart).")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    logger.remove()  # the runner's own progress lines would bury the bench's
    logger.add(sys.stderr, level="WARNING")
    config = load_config(env={})  # the defaults, whatever this shell exports
    started = time.perf_counter()
    if args.hostile_only:
        with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
            hostile = scenario_hostile(sizes, Path(tmp))
        for name, case in hostile.items():
            print(f"hostile: {name:<32} exit {case['exit_code']}, {case['wall_s']:.1f} s (goal <= "
                  f"{case['wall_goal_s']:g} s), {case['peak_rss_mb']} MB, traceback {case['traceback']}")
        if args.json:
            args.json.write_text(json.dumps({"hostile": hostile}, indent=2) + "\n")
        return
    if args.agent_only or args.cache_only or args.decks_only or args.retrieval_scaling or args.memory_slope:
        run_alone("agent" if args.agent_only else "cache" if args.cache_only else "decks" if args.decks_only
                  else "memory_slope" if args.memory_slope else "retrieval_scaling", sizes, args.json)
        return
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        folder = Path(tmp)
        results: dict[str, Any] = {
            "quick": args.quick,
            "smoke": args.smoke,
            "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
            "cpu_reps": sizes.cpu_reps,
            "reps": sizes.reps,
        }
        results.update(run_groups(sizes, config, folder, at_once=args.smoke))
        log("6. light commands")
        results["light_commands"] = {"help": heavy_imports(["--help"]), "config": heavy_imports(["config"])}
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    results["goals"] = [{"figure": f, "measured": v, "goal": g, "met": m} for f, v, g, m in goals(results)]
    print_table(results)
    print(f"\nbench wall {results['bench_wall_s']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
