"""Scenario 12 of scripts/bench.py: retrieval at cluster concurrency (issue 26).

    python scripts/bench.py --retrieval-scaling [--quick | --smoke] [--json FILE]

Can retrieval keep up with many render workers? The runner's own retrieval (SessionPool,
batch threads and run_batch, as scenario 3) against the demo MCP server at 200 ms a call, at
8, 32 and 64 concurrent batches (`max_concurrent_batches`) of the built-in pack at batch size 3
(3, 3 and 1 charts a merchant), with enough batches for ten rounds at each. Ideal wall =
ceil(batches / concurrency) x latency: a batch's calls run at once, so each round of batches
costs one latency. Goal: wall / ideal <= 1 / 0.85 at 32 batches at once.

Then the same through a whole run in this process (runner.run.execute with a no-op render in
the coordinator's thread, no decks, no cache): its retrieval wall (first batch's start to last
batch's end, from its report) against the same ideal says whether the coordinator keeps up too.
The CPU each side spends per tool call (this process, the server process) says who is short.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from runner.charts import BUILTIN_PACK
from runner.config import RunnerConfig
from runner.demo.launch import embedded_server
from runner.planning import plan_batches
from runner.records import Batch, RenderedChart, RenderTask
from runner.request import DEFAULT_END, DEFAULT_START, JobInputs
from runner.retrieval.direct import run_batch
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import ServerTarget, SessionPool

LATENCY_MS = 200
CONCURRENCIES = (8, 32, 64)
GOAL_AT = 32  # the concurrency the goal is judged at
GOAL = 0.85  # of the ideal throughput: wall / ideal <= 1 / GOAL
ROUNDS = 10

Tokens = Callable[[int], list[str]]  # the demo warehouse's first n trading merchants (bench.merchant_tokens)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def merchants_for(batches: int, batch_size: int) -> int:
    return math.ceil(batches / math.ceil(len(BUILTIN_PACK) / batch_size))


def batches_for(tokens: list[str], count: int, folder: Path, batch_size: int) -> tuple[Batch, ...]:
    """`count` batches of the built-in pack, the merchants repeated if there are too few (the
    server answers a merchant as often as it is asked)."""
    needed = merchants_for(count, batch_size)
    merchants = (tokens * math.ceil(needed / len(tokens)))[:needed]
    return plan_batches(merchants, BUILTIN_PACK, DEFAULT_START, DEFAULT_END, folder, batch_size)[:count]


def ideal_s(batches: int, concurrency: int) -> float:
    return math.ceil(batches / concurrency) * LATENCY_MS / 1000


def retrieve(url: str, batches: tuple[Batch, ...], config: RunnerConfig) -> float:
    """The wall of the runner's retrieval of `batches`: pooled sessions (opened as a run opens
    them, by the first batches), as many batch threads as batches at once, run_batch."""
    concurrency = config.max_concurrent_batches
    sessions = SessionPool(ServerTarget(url=url), concurrency, open_timeout=config.tool_timeout_seconds)
    policy = RetryPolicy.from_config(config, sessions.health)

    def one(batch: Batch) -> None:
        with sessions.acquire() as slot:
            result = run_batch(batch, slot, config, policy, lambda r: None, True)
        if result.status != "ok":
            raise RuntimeError(f"bench retrieval failed: {result.error}")

    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="batch") as threads:
            started = time.perf_counter()
            list(threads.map(one, batches))
            return time.perf_counter() - started
    finally:
        sessions.close()


def no_render(task: RenderTask) -> RenderedChart:
    """A render that draws nothing (module level, as the render seam wants)."""
    return RenderedChart(b"", "0" * 64, 0.0, 0.0, os.getpid(), 0.0)


def whole_run(url: str, tokens: list[str], config: RunnerConfig, folder: Path) -> float:
    """A whole run's retrieval wall: runner.run.execute in this process, no-op render inline."""
    from runner.run import execute

    config = replace(config, server_url=url, output_dir=str(folder), cache=False, deck="none",
                     enable_concurrent_chart_generation=False)
    report = execute(config, JobInputs(tuple(tokens), BUILTIN_PACK, DEFAULT_START, DEFAULT_END),
                     render=no_render).report
    if report["run"]["charts_ok"] != len(tokens) * len(BUILTIN_PACK):
        raise RuntimeError(f"bench whole run: {report['run']['charts_ok']} of {len(tokens) * len(BUILTIN_PACK)} "
                           "charts ok")
    return float(report["metrics"]["retrieval"]["wall_ms"]) / 1000


class CpuMeter:
    """CPU seconds of this process and of the server's, between start() and stop()."""

    def __init__(self, server_pid: int) -> None:
        self._server = psutil.Process(server_pid)
        self._marks: tuple[float, float] = (0.0, 0.0)

    def _now(self) -> tuple[float, float]:
        mine, theirs = psutil.Process().cpu_times(), self._server.cpu_times()
        return mine.user + mine.system, theirs.user + theirs.system

    def start(self) -> None:
        self._marks = self._now()

    def stop(self) -> tuple[float, float]:
        now = self._now()
        return now[0] - self._marks[0], now[1] - self._marks[1]


def measure(name: str, concurrency: int, batches: int, calls: int, reps: int, meter: CpuMeter,
            run: Callable[[], float]) -> dict[str, Any]:
    """Median figures of `reps` runs of one side at one concurrency."""
    ideal = ideal_s(batches, concurrency)
    walls, client_ms, server_ms = [], [], []
    for _ in range(reps):
        meter.start()
        walls.append(run())
        client, server = meter.stop()
        client_ms.append(client / calls * 1000)
        server_ms.append(server / calls * 1000)
        log(f"  {name}, {concurrency} batches at once: {walls[-1]:.3f} s, ideal {ideal:.3f} s, load "
            f"{os.getloadavg()[0]:.1f}")
    wall = statistics.median(walls)
    return {
        "batches": batches,
        "tool_calls": calls,
        "wall_s": round(wall, 3),
        "ideal_s": round(ideal, 3),
        "vs_ideal": round(wall / ideal, 3),
        "of_ideal_throughput": round(ideal / wall, 3),
        "calls_per_s": round(calls / wall, 1),
        "client_cpu_ms_per_call": round(statistics.median(client_ms), 2),
        "server_cpu_ms_per_call": round(statistics.median(server_ms), 2),
    }


def retrieval_alone(url: str, server_pid: int, tokens: list[str], config: RunnerConfig, folder: Path, rounds: int,
                    reps: int, concurrencies: tuple[int, ...] = CONCURRENCIES) -> dict[str, Any]:
    meter = CpuMeter(server_pid)
    out = {}
    for concurrency in concurrencies:
        batches = batches_for(tokens, rounds * concurrency, folder, config.batch_size)
        at = replace(config, max_concurrent_batches=concurrency)
        out[str(concurrency)] = measure("retrieval alone", concurrency, len(batches),
                                        sum(len(b.jobs) for b in batches), reps, meter,
                                        lambda: retrieve(url, batches, at))  # noqa: B023 - called at once
    return out


def whole_runs(url: str, server_pid: int, tokens: list[str], config: RunnerConfig, folder: Path, rounds: int,
               reps: int, concurrencies: tuple[int, ...] = CONCURRENCIES) -> dict[str, Any]:
    meter = CpuMeter(server_pid)
    out = {}
    for concurrency in concurrencies:
        merchants = tokens[:merchants_for(rounds * concurrency, config.batch_size)]
        batches = plan_batches(merchants, BUILTIN_PACK, DEFAULT_START, DEFAULT_END, folder, config.batch_size)
        at = replace(config, max_concurrent_batches=concurrency)
        out[str(concurrency)] = measure("whole run", concurrency, len(batches), len(merchants) * len(BUILTIN_PACK),
                                        reps, meter, lambda: whole_run(url, merchants, at, folder))  # noqa: B023
    return out


def scenario(merchant_tokens: Tokens, config: RunnerConfig, folder: Path, rounds: int, reps: int) -> dict[str, Any]:
    """Retrieval alone, then whole runs, at each concurrency, against one demo server with
    enough merchants that no merchant is asked for twice."""
    merchants = merchants_for(rounds * max(CONCURRENCIES), config.batch_size)
    log(f"12. retrieval at {', '.join(map(str, CONCURRENCIES))} batches at once, {rounds} rounds, latency "
        f"{LATENCY_MS} ms, {merchants} merchants")
    tokens = merchant_tokens(merchants)
    args = ["--latency-ms", str(LATENCY_MS), "--merchants", str(max(24, merchants + 1))]
    with embedded_server(folder / "server.log", args) as (url, pid):
        return {
            "latency_ms": LATENCY_MS,
            "rounds": rounds,
            "batch_size": config.batch_size,
            "machine": f"{os.cpu_count()} CPUs",
            "alone": retrieval_alone(url, pid, tokens, config, folder / "alone", rounds, reps),
            "whole_run": whole_runs(url, pid, tokens, config, folder / "runs", rounds, reps),
        }


def print_figures(figures: dict[str, Any]) -> None:
    print(f"\n12. retrieval at {figures['latency_ms']} ms a call, batch size {figures['batch_size']}, "
          f"{figures['rounds']} rounds (medians; {figures['machine']}):")
    print(f"   {'':<16} {'batches':>8} {'calls':>6} {'wall s':>7} {'ideal s':>8} {'wall/ideal':>10} "
          f"{'calls/s':>8} {'client ms/call':>15} {'server ms/call':>15}")
    for side in ("alone", "whole_run"):
        for concurrency, row in figures.get(side, {}).items():
            print(f"   {side.replace('_', ' ') + ' at ' + concurrency:<16} {row['batches']:>8} {row['tool_calls']:>6} "
                  f"{row['wall_s']:>7.2f} {row['ideal_s']:>8.2f} {row['vs_ideal']:>10.2f} {row['calls_per_s']:>8.0f} "
                  f"{row['client_cpu_ms_per_call']:>15.2f} {row['server_cpu_ms_per_call']:>15.2f}")


Goal = tuple[str, str, str, bool]  # a row of the goals table: figure, measured, goal, met


def goal_row(row: dict[str, Any], figure: str = f"retrieval at {GOAL_AT} batches / ideal") -> Goal:
    """(figure, measured, goal, met) for the goals table: wall / ideal at GOAL_AT batches at once."""
    limit = 1 / GOAL
    return figure, f"{row['vs_ideal']:.2f}x", f"<= {limit:.2f}x (>= {GOAL:.0%} of ideal)", row["vs_ideal"] <= limit


def goals(figures: dict[str, Any]) -> list[Goal]:
    rows = [goal_row(figures["alone"][str(GOAL_AT)])]
    if str(GOAL_AT) in figures.get("whole_run", {}):
        rows.append(goal_row(figures["whole_run"][str(GOAL_AT)], f"whole run's retrieval at {GOAL_AT} batches / ideal"))
    return rows


def at_goal_concurrency(url: str, server_pid: int, tokens: list[str], config: RunnerConfig, folder: Path, rounds: int,
                        reps: int) -> dict[str, Any]:
    """Retrieval alone at GOAL_AT batches at once only: the default bench's goal row (about 10 s)."""
    log(f"12. retrieval at {GOAL_AT} batches at once, {rounds} rounds, latency {LATENCY_MS} ms")
    return retrieval_alone(url, server_pid, tokens, config, folder, rounds, reps, (GOAL_AT,))[str(GOAL_AT)]
