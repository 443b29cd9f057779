"""The whole pipeline through the real CLI against real demo MCP servers: the default run in a
subprocess, as a user starts it; the rest in this process (tests/helpers.py, run_in_process)."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import pandas
import pytest
from PIL import Image

from runner.demo.data import DORMANT_INDEX
from runner.report import CHART_DTYPES
from tests.helpers import CHART_IDS, assert_every_chart_once, assert_no_processes_left, run_cli


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_default_run_end_to_end(tmp_path: Path) -> None:
    result = run_cli(["--csv"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = result.report
    merchants = sorted({c["merchant"] for c in report["charts"]})
    assert len(merchants) == 3
    assert_every_chart_once(result, merchants)
    assert all(c["status"] == "ok" for c in report["charts"])
    assert report["run"]["status"] == "ok" and report["run"]["exit_code"] == 0
    assert (report["run"]["start_date"], report["run"]["end_date"]) == ("2024-01-01", "2025-12-31")
    for chart in report["charts"]:
        with Image.open(chart["output"]) as image:
            assert image.size == (1600, 900)
        assert Path(chart["output"]).stat().st_size == chart["bytes"]
    run_dir = result.report_path.parent
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".")], "temporary files left"
    # Sessions are pooled: never more than one per concurrent batch (no reconnects happened).
    metrics = report["metrics"]
    assert 1 <= metrics["retrieval"]["mcp_sessions_opened"] <= report["config"]["max_concurrent_batches"]["value"]
    assert metrics["retrieval"]["tool_calls"] >= 21
    assert metrics["render"]["start_method"] == "forkserver" and metrics["render"]["charts_rendered"] == 21
    assert "=== Concurrency Metrics ===" in result.stderr
    assert "[batch-001]" in result.stderr
    with open(run_dir / "charts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 21 and list(rows[0]) == list(report["charts"][0])
    assert (run_dir / "report.schema.json").is_file()
    assert_no_processes_left(report)


@pytest.mark.parametrize(
    ("variable", "check"),
    [
        ("SCALAPAY_ENABLE_CONCURRENT_DATA_RETRIEVAL",
         lambda m: m["retrieval"]["peak_concurrent_batches"] == 1 and m["retrieval"]["mcp_sessions_opened"] == 1),
        ("SCALAPAY_ENABLE_CONCURRENT_CHART_GENERATION",
         lambda m: m["render"]["start_method"] == "inline" and m["render"]["peak_concurrent_renders"] == 1),
    ],
)
def test_sequential_toggles(variable, check, tmp_path, demo_url, demo_tokens) -> None:
    merchants = demo_tokens[:2]
    args = ["--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)]]
    # Without a render pool the charts are drawn in the CLI's own process: a process of its own then.
    result = run_cli(args, tmp_path, env={variable: "false"}, in_process="CHART_GENERATION" not in variable)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_chart_once(result, merchants)
    assert all(c["status"] == "ok" for c in result.report["charts"])
    assert check(result.report["metrics"]), result.report["metrics"]
    assert result.report["config"][variable.removeprefix("SCALAPAY_").lower()]["value"] is False
    assert_no_processes_left(result.report)


def _process_state() -> tuple:
    import logging
    import os
    import signal

    from loguru import logger

    from runner.redaction import scrub

    return (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), dict(os.environ), os.getcwd(),
            sys.argv, sys.stdin, sys.stdout, sys.stderr, scrub("hunter2-pass"), logging.getLogger().handlers[:],
            len(logger._core.handlers))


def test_a_run_in_this_process_leaves_it_as_it_found_it(tmp_path, demo_url, demo_tokens) -> None:
    """What a run sets for its whole process (signal handlers, its secrets, log sinks, ...) is
    put back after each in-process run of this suite (tests/helpers.py, run_in_process)."""
    before = _process_state()
    url = demo_url.replace("http://", "http://user:hunter2-pass@")  # a secret the run installs
    result = run_cli(["--server-url", url, "--merchant", demo_tokens[0], "--charts", "aov_by_month"], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hunter2-pass" not in result.stderr + result.report_path.read_text()
    assert _process_state() == before


def test_merchant_without_data_fails_only_its_charts(tmp_path, demo_url, demo_tokens) -> None:
    dormant, active = demo_tokens[DORMANT_INDEX], demo_tokens[0]
    result = run_cli(["--server-url", demo_url, "--merchant", active, "--merchant", dormant], tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert_every_chart_once(result, [active, dormant])
    for chart in result.report["charts"]:
        if chart["merchant"] == dormant:
            assert (chart["status"], chart["error_type"]) == ("failed", "empty_data"), chart
            assert chart["output"] is None
        else:
            assert chart["status"] == "ok", chart
    assert result.report["run"]["status"] == "partial"
    assert result.report["metrics"]["errors_by_type"] == {"empty_data": 7}
    # Spreadsheets and notebooks: with the documented dtypes, null-bearing int columns stay ints.
    table = pandas.DataFrame(result.report["charts"]).astype(CHART_DTYPES)
    assert str(table["bytes"].dtype) == str(table["worker_pid"].dtype) == "Int64"
    assert table["bytes"].isna().sum() == 7 and (table["bytes"].dropna() > 0).all()
    # Empty data is an answer, not a fault: no retries, no fallback.
    assert result.report["metrics"]["retrieval"]["batch_retries"] == 0


def test_two_runs_never_share_a_folder(tmp_path, demo_url, demo_tokens) -> None:
    args = ["--server-url", demo_url, "--merchant", demo_tokens[1], "--charts", "aov_by_month"]
    first, second = run_cli(args, tmp_path, in_process=True), run_cli(args, tmp_path, in_process=True)
    assert first.returncode == second.returncode == 0
    assert first.report_path.parent != second.report_path.parent
    assert first.report["charts"][0]["sha256"] == second.report["charts"][0]["sha256"]  # deterministic


def test_merchants_file_charts_subset_and_stdio_server(tmp_path, demo_tokens) -> None:
    merchants_file = tmp_path / "merchants.txt"
    merchants_file.write_text(f"# nightly list\n{demo_tokens[2]}\n\n{demo_tokens[3]}  # big one\n")
    command = f"{sys.executable} -m runner demo-server --transport stdio"
    result = run_cli(["--server-command", command, "--merchants-file", str(merchants_file),
                      "--charts", "aov_by_month,user_demographics", "--batch-size", "1"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_chart_once(result, demo_tokens[2:4], ["aov_by_month", "user_demographics"])
    assert len(result.report["batches"]) == 4
    assert result.report["metrics"]["retrieval"]["mcp_sessions_opened"] <= 2


def test_user_chart_pack(tmp_path, demo_url, demo_tokens) -> None:
    pack = tmp_path / "pack.toml"
    pack.write_text(
        '[[chart]]\nid = "basket"\ntitle = "Basket size"\ntool = "get_aov_by_month"\nkind = "line"\n'
        'y_label = "EUR"\n\n'
        '[[chart]]\nid = "mix"\ntitle = "Product mix"\ntool = "get_orders_by_product_type"\n'
        'kind = "share_bars"\ncounts = true\n'
    )
    listed = run_cli(["charts", "--pack", str(pack)], tmp_path, output_dir=False, in_process=True)
    assert listed.returncode == 0 and "basket" in listed.stdout and "mix" in listed.stdout
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--pack", str(pack)], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_every_chart_once(result, [demo_tokens[0]], ["basket", "mix"])
    assert {c["title"] for c in result.report["charts"]} == {"Basket size", "Product mix"}


def test_charts_command_lists_the_builtin_pack(tmp_path) -> None:
    result = run_cli(["charts"], tmp_path, output_dir=False, in_process=True)
    assert result.returncode == 0
    for chart_id in CHART_IDS:
        assert chart_id in result.stdout


def test_json_logs_carry_the_batch_id(tmp_path, demo_url, demo_tokens) -> None:
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--log-format", "json",
                      "--verbose"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert records, result.stderr[-1000:]
    batch_ids = {r.get("batch") for r in records} - {None}
    assert {"batch-001", "batch-002", "batch-003"} <= batch_ids
    assert any("call" in r["message"] for r in records)  # tool-call details with --verbose


_PROGRESS = re.compile(r"progress: batches (\d+)/(\d+) · charts (\d+): retrieving (\d+), queued (\d+), "
                       r"rendering (\d+), done (\d+), failed (\d+)")


def test_progress_lines_off_a_terminal_tell_the_truth(tmp_path) -> None:
    """Every line adds up, batches count as they end, never more rendering than workers, and a
    last line says where everything ended."""
    result = run_cli(["--demo-server-arg=--latency-ms=150", "--progress-interval-seconds", "0.1",
                      "--max-concurrent-charts", "2"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    progress = [(i, tuple(map(int, m.groups()))) for i, line in enumerate(lines) if (m := _PROGRESS.search(line))]
    assert len(progress) >= 5, result.stderr[-3000:]
    last_batch_done = max(i for i, line in enumerate(lines) if re.search(r"\[batch-\d+\] done in", line))
    assert progress[0][0] < last_batch_done  # the first line came while batches were running
    workers = result.report["metrics"]["render"]["workers"]
    previous = (0, 0)
    for _, (batches_done, batches, total, retrieving, queued, rendering, done, failed) in progress:
        assert (batches, total) == (9, 21)
        assert retrieving + queued + rendering + done + failed == total
        assert 0 <= rendering <= workers and queued >= 0
        assert batches_done >= previous[0] and done >= previous[1]  # counts only grow
        previous = (batches_done, done)
        if batches_done == batches:
            assert retrieving == 0  # nothing is retrieving once every batch has ended
    assert progress[-1][1] == (9, 9, 21, 0, 0, 0, 21, 0)
    assert progress[-1][0] < next(i for i, line in enumerate(lines) if "=== Concurrency Metrics ===" in line)
