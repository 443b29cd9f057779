"""Scenario 13 of scripts/bench.py: the coordinator's memory against the run's size (issue 26).

    python scripts/bench.py --memory-slope [--quick | --smoke] [--json FILE]

Does the coordinator's memory stay flat as the run grows? The real CLI, with the tests' no-op
render (`python -m tests.faulty_runner 'noop:*'`: every chart a 1x1 PNG, so the pipeline runs at
any size without matplotlib's cost), no decks and no cache, against the demo MCP server over HTTP
at latency 0, at 10,000 and at 200,000 charts. The demo server holds at most 5,000 merchants, so a
pack repeats the built-in charts under new ids, PER_MERCHANT charts a merchant. Figures: the
coordinator's peak RSS at each size (the report's metrics.process.coordinator_peak_rss_mb, read
before the report is written, and the process's VmHWM polled until it exits, which takes the
report's writing in), the slope between the two sizes in KB per chart (goal <= 0.5) and the
peak (goal < 300 MB).

The same with real rendering (`python -m runner`, the built-in pack) at 20,000 charts is a check
run only by `python scripts/bench_scale.py --with-render [--json FILE]`: on a busy 2-CPU machine real
rendering went at 4.4 charts a second (700 charts), so it takes over an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.charts import BUILTIN_PACK
from runner.demo.data import DORMANT_INDEX
from runner.demo.launch import embedded_server

REPO = Path(__file__).resolve().parents[1]
# The demo data's order volume: 5,000 merchants build in about 7 s instead of 3.5 minutes; every
# merchant but the dormant one still has data for every chart in the default window.
SCALE = "0.01"
PER_MERCHANT = 41  # charts a merchant in the repeated pack: 4,879 merchants x 41 = 200,039 charts
SERVER_MERCHANTS_MAX = 5000  # the demo server's cap
SLOPE_GOAL_KB = 0.5
PEAK_GOAL_MB = 300.0
# --server-failure-limit above the calls in flight (8 batches x 7): under load, now and then several MCP
# sessions end at one instant (httpx ReadError), and with the default limit of 3 the run would give up on
# the server and fail every chart left; with it, their calls are retried on new sessions.
RUN_FLAGS = ("--deck", "none", "--no-cache", "--quiet", "--max-concurrent-batches", "8", "--batch-size", "7",
             "--server-failure-limit", "100")

Goal = tuple[str, str, str, bool]  # a row of the goals table: figure, measured, goal, met


@dataclass(frozen=True)
class SlopeSizes:
    small: int  # charts of the first no-op run
    big: int  # charts of the second
    rendered: int  # charts of the real-render check; 0: none


FULL = SlopeSizes(small=10_000, big=200_000, rendered=0)
FULL_WITH_RENDER = SlopeSizes(small=10_000, big=200_000, rendered=20_000)
QUICK = SlopeSizes(small=2_000, big=20_000, rendered=0)
SMOKE = SlopeSizes(small=100, big=500, rendered=0)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def repeated_pack(path: Path, copies: int) -> Path:
    """A pack of `copies` charts a merchant: the built-in charts over and over, each copy under new ids."""
    tables = []
    for number in range(copies):
        spec = BUILTIN_PACK[number % len(BUILTIN_PACK)]
        fields = {"id": f"{spec.id}_{number}", "title": spec.title, "kind": spec.kind, "tool": spec.tool,
                  "request": spec.request, "y_label": spec.y_label}
        lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items()]  # a JSON string is a TOML one
        lines += ["counts = true"] if spec.counts else []
        lines += [f'compare = "{spec.compare.value}"'] if spec.compare.value else []
        tables.append("[[chart]]\n" + "\n".join(lines) + "\n")
    path.write_text("\n".join(tables))
    return path


def server_tokens(url: str) -> list[str]:
    """Every merchant the demo server lists, in its order, but the dormant one (no data in the window)."""
    from mcp import Client

    async def fetch() -> list[str]:
        async with Client(url) as client:
            result = await client.call_tool("list_merchants", {})
            return [m["token"] for m in result.structured_content["merchants"]]

    return [token for index, token in enumerate(asyncio.run(fetch())) if index != DORMANT_INDEX]


def high_water_mb(pid: int) -> float | None:
    """The process's peak RSS so far (VmHWM), while it runs."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:")), None)


def measured_run(command: list[str], folder: Path) -> dict[str, Any]:
    """Run the CLI; its report's figures, its wall, and its VmHWM polled every 10 ms until it exits."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # tests.faulty_runner
    started = time.perf_counter()
    with open(folder / "stdout.txt", "w") as out, open(folder / "stderr.txt", "w") as err:
        proc = subprocess.Popen([*command, "--output-dir", str(folder / "out")], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, cwd=REPO, env=env)
        peak, done = [0.0], threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                peak[0] = max(peak[0], high_water_mb(proc.pid) or 0.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    lines = (folder / "stdout.txt").read_text().strip().splitlines()
    if proc.returncode not in (0, 1) or not lines or not lines[-1].endswith("report.json"):
        raise RuntimeError(f"runner exited {proc.returncode}: {(folder / 'stderr.txt').read_text()[-2000:]}")
    with open(lines[-1]) as report_file:
        report = json.load(report_file)
    run, metrics = report["run"], report["metrics"]
    return {
        "charts": run["charts_total"],
        "charts_ok": run["charts_ok"],
        "merchants": run["merchants"],
        "wall_s": round(wall, 1),
        "charts_per_s": round(run["charts_total"] / wall, 1),
        "coordinator_peak_rss_mb": metrics["process"]["coordinator_peak_rss_mb"],
        "process_peak_rss_mb": round(peak[0], 1),
        "tool_calls": metrics["retrieval"]["tool_calls"],
        "report_mb": round(Path(lines[-1]).stat().st_size / 2**20, 1),
    }


def one_size(url: str, tokens: list[str], charts: int, per_merchant: int, pack: str, folder: Path,
             render: bool) -> dict[str, Any]:
    merchants = math.ceil(charts / per_merchant)
    if merchants > len(tokens):
        raise RuntimeError(f"{charts} charts need {merchants} merchants; the demo server lists {len(tokens)}")
    merchants_file = folder / f"merchants-{merchants}.txt"
    merchants_file.write_text("\n".join(tokens[:merchants]) + "\n")
    log(f"13. memory slope: {merchants} merchants x {per_merchant} charts, {'real' if render else 'no-op'} render")
    runner = ["-m", "runner"] if render else ["-m", "tests.faulty_runner", "noop:*"]
    command = [sys.executable, *runner, "run", "--server-url", url, "--merchants-file", str(merchants_file),
               "--pack", pack, *RUN_FLAGS]
    figures = measured_run(command, folder / f"{'render' if render else 'noop'}-{charts}")
    log(f"   {figures['charts']} charts ({figures['charts_ok']} ok) in {figures['wall_s']} s, coordinator peak "
        f"{figures['coordinator_peak_rss_mb']} MB (process {figures['process_peak_rss_mb']} MB)")
    return figures


def slope_kb(small: dict[str, Any], big: dict[str, Any], key: str) -> float:
    """How much the peak grew a chart, in KB, from the small run to the big one."""
    return round((big[key] - small[key]) * 1024 / (big["charts"] - small["charts"]), 4)


def scenario(sizes: SlopeSizes, folder: Path) -> dict[str, Any]:
    """The no-op runs at both sizes, then the real-render check, against one demo server."""
    needed = max(math.ceil(sizes.big / PER_MERCHANT), math.ceil(sizes.rendered / len(BUILTIN_PACK)))
    server_merchants = min(SERVER_MERCHANTS_MAX, max(24, needed + 1))  # +1: the dormant one is left out
    log(f"13. memory slope: a demo server of {server_merchants} merchants at scale {SCALE}")
    pack = str(repeated_pack(folder / "repeated-pack.toml", PER_MERCHANT))
    with embedded_server(folder / "server.log", ["--merchants", str(server_merchants), "--scale", SCALE]) as (url, _):
        tokens = server_tokens(url)
        small = one_size(url, tokens, sizes.small, PER_MERCHANT, pack, folder, render=False)
        big = one_size(url, tokens, sizes.big, PER_MERCHANT, pack, folder, render=False)
        rendered = one_size(url, tokens, sizes.rendered, len(BUILTIN_PACK), "business-review", folder,
                            render=True) if sizes.rendered else None
    return {
        "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "per_merchant": PER_MERCHANT,
        "small": small,
        "big": big,
        "slope_kb_per_chart": slope_kb(small, big, "coordinator_peak_rss_mb"),
        "process_slope_kb_per_chart": slope_kb(small, big, "process_peak_rss_mb"),
        "rendered": rendered,
    }


def print_figures(figures: dict[str, Any]) -> None:
    print(f"\n13. coordinator memory against run size, no-op render, {figures['per_merchant']} charts a merchant "
          f"({figures['machine']}):")
    print(f"   {'run':<22} {'charts':>8} {'ok':>8} {'wall s':>8} {'charts/s':>9} {'coordinator MB':>15} "
          f"{'process MB':>11} {'report MB':>10}")
    for name in ("small", "big", "rendered"):
        row = figures[name]
        if row is None:
            print("   real render: not run (python scripts/bench_scale.py --with-render runs it)")
            continue
        label = "real render" if name == "rendered" else f"no-op render, {name}"
        print(f"   {label:<22} {row['charts']:>8} {row['charts_ok']:>8} {row['wall_s']:>8.1f} "
              f"{row['charts_per_s']:>9.1f} {row['coordinator_peak_rss_mb']:>15.1f} "
              f"{row['process_peak_rss_mb']:>11.1f} {row['report_mb']:>10.1f}")
    print(f"   slope: {figures['slope_kb_per_chart']} KB a chart (coordinator, before the report), "
          f"{figures['process_slope_kb_per_chart']} KB a chart (the process, the report's writing included)")


def goals(figures: dict[str, Any]) -> list[Goal]:
    small, big = figures["small"], figures["big"]
    slope, process_slope = figures["slope_kb_per_chart"], figures["process_slope_kb_per_chart"]
    peak = max(row["process_peak_rss_mb"] for row in (small, big, figures["rendered"]) if row)
    return [
        (f"memory: coordinator peak RSS growth, {small['charts']:,} -> {big['charts']:,} charts",
         f"{slope:.3f} / {process_slope:.3f} KB/chart", f"<= {SLOPE_GOAL_KB} KB/chart (coordinator / process)",
         max(slope, process_slope) <= SLOPE_GOAL_KB),
        ("memory: coordinator peak RSS at any size", f"{peak:.0f} MB", f"< {PEAK_GOAL_MB:.0f} MB", peak < PEAK_GOAL_MB),
        ("memory: every chart ok at both sizes", f"{small['charts_ok'] + big['charts_ok']:,} of "
         f"{small['charts'] + big['charts']:,}", "all", small["charts_ok"] + big["charts_ok"] ==
         small["charts"] + big["charts"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="Scenario 13 of scripts/bench.py, with the real-render check.")
    parser.add_argument("--with-render", action="store_true", help="Also the same run with real rendering at "
                        "20,000 charts (over an hour on 2 CPUs).")
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        figures = scenario(FULL_WITH_RENDER if args.with_render else FULL, Path(tmp))
    print_figures(figures)
    for figure, value, goal, met in goals(figures):
        print(f"{figure:<48} {value:>18}  {goal:<36} {'yes' if met else 'NO'}")
    if args.json:
        args.json.write_text(json.dumps({"memory_slope": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
