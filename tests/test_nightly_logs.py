"""What a nightly CI job reads after the run: JUnit times that add up, a closing summary that
adds up after a stop, and a live display that fits a terminal of 80 columns."""

from __future__ import annotations

import os
import re
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.progress import Progress, ProgressReporter
from tests.helpers import check_report, run_cli, server_args
from tests.processes import finish, start_cli, wait_for

pytestmark = pytest.mark.timeout(180)


# -- JUnit ---------------------------------------------------------------------------------------

def test_junit_case_times_are_each_charts_own_work_and_add_up_to_the_run(tmp_path, demo_url, demo_tokens):
    """One render worker and data that all arrive at once: most charts wait in the queue, which
    is no chart's own work. A case's time is its retrieval plus its render; a deck's, its build."""
    from junitparser import JUnitXml

    junit = tmp_path / "results.xml"
    merchants = demo_tokens[:3]
    result = run_cli(["--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)],
                      "--batch-size", "1", "--max-concurrent-charts", "1", "--no-cache", "--junit-xml", str(junit)],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, merchants)
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    times = {(case.classname, case.name): case.time for case in suite}
    assert any(chart["queue_ms"] > 100 for chart in report["charts"])  # queued work was there to leave out
    for chart in report["charts"]:
        own = (chart["retrieve_ms"] + chart["render_ms"]) / 1000
        assert times[(chart["merchant"], chart["chart_id"])] == pytest.approx(own, abs=0.0011), chart
    for merchant in merchants:  # one build makes both documents: their times share it
        (build_ms,) = {d["build_ms"] for d in report["decks"] if d["merchant"] == merchant}
        decks = times[(merchant, "deck.pdf")] + times[(merchant, "deck.pptx")]
        assert decks == pytest.approx(build_ms / 1000, abs=0.0011)
    # Retrieval runs in at most --max-concurrent-batches batches of one chart each, rendering and
    # decks in the workers: no more own work than that many lanes over the whole run.
    lanes = report["metrics"]["render"]["workers"] + report["config"]["max_concurrent_batches"]["value"]
    assert sum(times.values()) <= report["run"]["wall_ms"] / 1000 * lanes
    assert suite.time == pytest.approx(report["run"]["wall_ms"] / 1000, abs=0.0011)


# -- the closing summary after a stop ------------------------------------------------------------

_BATCHES = re.compile(r"batches: (\d+) \((\d+) ok, (\d+) failed, (\d+) cancelled\).*retrieval wall (\d+) ms")
_CHARTS = re.compile(r"charts: (\d+) ok, (\d+) failed, (\d+) cancelled of (\d+)")
_ERRORS = re.compile(r"errors by type: (.*)$")


def _summary(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if "=== Concurrency Metrics ===" in line)
    return lines[start:]


def _one(pattern: re.Pattern[str], lines: list[str]) -> tuple[str, ...]:
    (match,) = [m for line in lines if (m := pattern.search(line))]
    return match.groups()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_runs_summary_counts_what_was_cancelled_and_no_batch_starts_after_the_stop(signum, tmp_path):
    # 21 batches of one chart, four at a time, each call held 5 s: the stop comes while the first
    # four run. As each of them ends cancelled, its thread would take the next batch.
    proc, stderr_path = start_cli([*server_args("--latency-ms=5000"), "--batch-size", "1",
                                   "--max-concurrent-batches", "4"], tmp_path)
    seen: set[int] = set()
    for batch in range(1, 5):
        seen |= wait_for(proc, stderr_path, f"[batch-{batch:03d}] start ")
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
    result = finish(proc, stderr_path, seen)
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result)
    run, retrieval = report["run"], report["metrics"]["retrieval"]
    lines = result.stderr.splitlines()

    started = [m.group(1) for line in lines if (m := re.search(r"\[(batch-\d+)\] start ", line))]
    assert sorted(started) == [f"batch-{n:03d}" for n in range(1, 5)], started  # none after the stop
    stop = next(i for i, line in enumerate(lines) if "stop requested: no new work" in line)
    assert not [line for line in lines[stop:] if re.search(r"\[batch-\d+\] start ", line)]

    statuses = [b["status"] for b in report["batches"]]
    assert statuses == ["cancelled"] * 21  # four stopped while they ran, 17 never started
    total, ok, failed, cancelled, wall = map(int, _one(_BATCHES, _summary(result.stderr)))
    assert (total, ok, failed, cancelled) == (21, 0, 0, 21)
    assert (retrieval["batches_total"], retrieval["batches_ok"], retrieval["batches_failed"],
            retrieval["batches_cancelled"]) == (total, ok, failed, cancelled)
    # The retrieval wall is real: from the first batch until retrieval stopped, within the run.
    assert 0 < retrieval["wall_ms"] <= run["wall_ms"] and wall == round(retrieval["wall_ms"])

    charts = tuple(map(int, _one(_CHARTS, _summary(result.stderr))))
    assert charts == (run["charts_ok"], run["charts_failed"], run["charts_cancelled"], run["charts_total"])
    assert run["charts_cancelled"] == 21 and run["charts_total"] == 21

    # Cancellations are no errors, in the report as in the summary.
    errors = report["metrics"]["errors_by_type"]
    assert "cancelled" not in errors, errors
    shown = _one(_ERRORS, _summary(result.stderr))[0]
    assert shown == (", ".join(f"{k}={v}" for k, v in errors.items()) or "none")


def test_cancelled_charts_are_not_counted_as_errors_beside_real_failures(tmp_path):
    """A failure is counted by its type; after a stop the same run's cancelled charts are not."""
    # One batch of one chart at a time, each call held 2 s: the 4th chart kills its worker
    # (twice, so it fails) while 17 are still to come, and the stop catches them.
    proc, stderr_path = start_cli([*server_args("--latency-ms=2000"), "--batch-size", "1",
                                   "--max-concurrent-batches", "1"], tmp_path, render_faults="crash:aov_by_month")
    seen = wait_for(proc, stderr_path, "failed (worker_crashed)")
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, stderr_path, seen)
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result)
    failed = [c["error_type"] for c in report["charts"] if c["status"] == "failed"]
    assert "worker_crashed" in failed and report["run"]["charts_cancelled"] > 0
    assert report["metrics"]["errors_by_type"] == {t: failed.count(t) for t in set(failed)}
    assert _one(_ERRORS, _summary(result.stderr))[0] == ", ".join(
        f"{k}={v}" for k, v in report["metrics"]["errors_by_type"].items())


# -- the live display ----------------------------------------------------------------------------

_tokens = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=128)
_chart_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
_count = st.integers(0, 1_000_000)


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(_tokens, max_size=6), charts=st.lists(_chart_ids, min_size=1, max_size=5),
       counts=st.tuples(_count, _count, _count, _count, _count, _count, _count, _count, _count))
def test_the_live_display_fits_80_columns(tokens, charts, counts):
    from rich.console import Console

    batches_total, batches_done, total, retrieving, queued, rendering, done, failed, cancelled = counts
    running = tuple(f"batch-{i:03d} {token}: {', '.join(charts)}" for i, token in enumerate(tokens, 1))
    progress = Progress(batches_total, batches_done, total, retrieving, queued, rendering, done, failed, cancelled,
                        running)
    console = Console(width=80, record=True, color_system=None)
    console.print(ProgressReporter.display(progress))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    # One line per row, none wrapped: the charts and batches bars, what is in flight, and now.
    assert [line.split()[0] for line in lines] == ["charts", "batches", "in", "now"], lines
    assert f"retrieving {retrieving}" in lines[2] and f"{total}" in lines[0]
