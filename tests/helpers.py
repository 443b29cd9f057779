"""Helpers shared by the test modules: running the real CLI, reading and checking its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
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
            output_dir: bool = True, render_faults: str | None = None) -> CliRun:
    command = cli_command(args, render_faults)
    if output_dir:
        command += ["--output-dir", str(tmp_path / "out")]
    extra = {**(env or {}), "PYTHONPATH": str(REPO)} if render_faults else env
    proc = subprocess.run(command, capture_output=True, text=True, env=clean_env(extra), timeout=timeout,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    return cli_result(proc.returncode, proc.stdout, proc.stderr)


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
