"""Nightly runs as CI and cron use them: the job in a file, relative dates, where results are found."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.request import resolve_date
from tests.helpers import check_report, run_cli

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-02-03", "2025-02-03"),
    ("today", "2026-03-31"),
    ("yesterday", "2026-03-30"),
    ("last month end", "2026-02-28"),
    ("last month start", "2026-02-01"),
    ("this month start", "2026-03-01"),
    ("last year end", "2025-12-31"),
    ("-24 months", "2024-03-01"),  # a month offset lands on the month's first day as a start
    ("-1 month", "2026-02-01"),
    ("-2 years", "2024-03-01"),
    ("+1 month", "2026-04-01"),
    ("-7 days", "2026-03-24"),
    ("  Last   Month  End ", "2026-02-28"),
])
def test_relative_dates(text, expected):
    assert resolve_date(text, date(2026, 3, 31), "start_date") == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("-1 month", "2026-02-28"),  # and on its last day as an end
    ("-13 months", "2025-02-28"),
    ("-1 year", "2025-03-31"),
    ("last month end", "2026-02-28"),
    ("-3 days", "2026-03-28"),
])
def test_relative_end_dates(text, expected):
    assert resolve_date(text, date(2026, 3, 31), "end_date", end=True) == expected


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2900, 12, 31)), st.integers(min_value=0, max_value=27))
def test_a_month_aligned_window_is_the_same_every_day_of_a_month(day, later):
    """The README's nightly window: every night of a month asks for the same dates, so an
    unchanged month hits the render cache night after night."""
    first = day.replace(day=1)
    other = first + timedelta(days=later)
    for text, end in (("-24 months", False), ("last month end", True), ("-1 month", True)):
        assert resolve_date(text, first, "x", end=end) == resolve_date(text, other, "x", end=end)
    start = date.fromisoformat(resolve_date("-24 months", other, "start_date"))
    end_day = date.fromisoformat(resolve_date("last month end", other, "end_date", end=True))
    assert start.day == 1 and (end_day + timedelta(days=1)).day == 1
    assert (end_day.year * 12 + end_day.month) - (start.year * 12 + start.month) == 23  # 24 whole months


@pytest.mark.parametrize("text", ["next tuesday", "2025-02-30", "-24", "months -3", ""])
def test_a_date_that_is_not_one_is_named(text):
    with pytest.raises(UsageError, match="start_date"):
        resolve_date(text, date(2026, 3, 31), "start_date")


def test_the_job_in_a_file_named_by_the_environment_runs_with_no_flags(tmp_path, demo_url, demo_tokens):
    (tmp_path / "merchants.txt").write_text(f"{demo_tokens[1]}\n")
    job = tmp_path / "job.toml"
    job.write_text(f'server_url = "{demo_url}"\nmerchants = ["{demo_tokens[0]}"]\nmerchants_file = "merchants.txt"\n'
                   'start_date = "-24 months"\nend_date = "last month end"\ncharts = ["aov_by_month"]\n'
                   'deck = "pdf"\ncsv = true\n')
    result = run_cli([], tmp_path, env={"SCALAPAY_CONFIG": str(job)}, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:2], chart_ids=["aov_by_month"])
    today = date.today()
    assert report["run"]["start_date"] == resolve_date("-24 months", today, "start_date")
    assert report["run"]["end_date"] == resolve_date("last month end", today, "end_date", end=True)
    assert report["run"]["dates_given"] == {"start_date": "-24 months", "end_date": "last month end"}
    assert {d["format"] for d in report["decks"]} == {"pdf"}
    assert (result.report_path.parent / "charts.csv").exists()
    # A flag wins over the file: merchants named on the command line replace the file's.
    result = run_cli(["--merchant", demo_tokens[2], "--start-date", "2024-01-01", "--end-date", "2024-12-31"],
                     tmp_path, env={"SCALAPAY_CONFIG": str(job)}, in_process=True)
    report = check_report(result, demo_tokens[2:3], chart_ids=["aov_by_month"])
    assert (report["run"]["start_date"], report["run"]["dates_given"]) == ("2024-01-01", {})


@pytest.mark.parametrize(("line", "expected"), [
    ("merchant = ['X']", "unknown key 'merchant'; did you mean 'merchants'?"),
    ("start_date = 'next tuesday'", "start_date 'next tuesday' is not a date"),
    ("merchants = 'AAAA'", "invalid merchants in"),
    ("charts = ['nope']", "nope"),
    ("today = 'soon'", "invalid today in"),
    ("today = 2026-02-30", "is not valid TOML"),
])
def test_a_bad_job_file_gets_one_line(tmp_path, line, expected):
    job = tmp_path / "job.toml"
    job.write_text(line + "\n")
    result = run_cli(["--config", str(job)], tmp_path, in_process=True)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_latest_names_the_newest_finished_run_and_keep_runs_prunes_the_oldest(tmp_path, demo_url, demo_tokens):
    out = tmp_path / "out"
    out.mkdir()
    in_progress = out / "20000101T000000Z-aaaaaa"  # no report.json: a run still going, never removed
    in_progress.mkdir()
    args = ["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", "aov_by_month", "--deck", "none",
            "--keep-runs", "2"]
    runs = []
    for _ in range(3):
        result = run_cli(args, tmp_path, in_process=True)
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(result.report_path.parent)
        assert (out / "latest").resolve() == runs[-1]
        assert (out / "latest" / "report.json").read_text() == result.report_path.read_text()
    assert sorted(p.name for p in out.iterdir() if p.name != ".cache") == sorted([in_progress.name, runs[1].name,
                                                                                  runs[2].name, "latest"])
    # A failed run is a finished run too: `latest` is where the rerun recipe looks.
    result = run_cli([*args, "--start-date", "2024-01-01", "--end-date", "2024-12-31",
                      "--demo-server-arg=--malformed=nan"], tmp_path, in_process=True)
    assert (out / "latest").resolve() == result.report_path.parent
    assert not runs[1].exists() and runs[2].exists() and in_progress.exists()


def test_junit_xml_parses_and_counts_every_chart_and_deck(tmp_path, demo_url, demo_tokens):
    from junitparser import Failure, JUnitXml, Skipped

    junit = tmp_path / "results.xml"
    result = run_cli(["--demo-server-arg=--malformed=nan", "--demo-server-arg=--fault-tool=get_user_demographics",
                      "--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--junit-xml", str(junit)], tmp_path,
                     in_process=True)
    assert result.returncode == 1, result.stderr[-2000:]
    report = check_report(result, demo_tokens[:2])
    (suite,) = list(JUnitXml.fromfile(str(junit)))
    cases = list(suite)
    assert suite.tests == len(cases) == 2 * 7 + 2 * 2
    assert {(c.classname, c.name) for c in cases} == {(m, n) for m in demo_tokens[:2] for n in [
        "aov_by_month", "aov_by_product_type", "monthly_sales_yoy", "orders_by_product_type", "orders_by_user_type",
        "sales_by_product_type", "user_demographics", "deck.pdf", "deck.pptx"]}
    failed = {(c.classname, c.name): c.result[0] for c in cases if c.result and isinstance(c.result[0], Failure)}
    assert set(failed) == {(m, "user_demographics") for m in demo_tokens[:2]} and suite.failures == 2
    assert {f.type for f in failed.values()} == {"bad_data"} and all("NaN" in f.message for f in failed.values())
    assert not any(isinstance(r, Skipped) for c in cases for r in c.result) and suite.skipped == 0
    by_case = {(c.classname, c.name): c.time for c in cases}
    for chart in report["charts"]:
        assert by_case[(chart["merchant"], chart["chart_id"])] == pytest.approx(
            ((chart["retrieve_ms"] or 0) + (chart["render_ms"] or 0)) / 1000, abs=0.001)  # its own work, no queue
        assert chart["started_at"] <= chart["finished_at"]
    assert report["merchants"] == [
        {"merchant": m, "merchant_name": m, "charts_total": 7, "charts_ok": 6, "charts_failed": 1, "charts_skipped": 0,
         "charts_cancelled": 0, "deck_pdf": "partial", "deck_pptx": "partial"} for m in demo_tokens[:2]]


def test_json_logs_are_one_flat_object_a_line_with_the_run_id(tmp_path, demo_tokens):
    import json

    result = run_cli(["--log-format", "json", "--verbose", "--merchant", demo_tokens[0],
                      "--demo-server-arg=--malformed=nan", "--demo-server-arg=--fault-tool=get_user_demographics"],
                     tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    run_id = result.report["run"]["run_id"]
    assert lines and all(line["run_id"] == run_id for line in lines)
    assert all(not isinstance(v, dict | list) for line in lines for v in line.values())  # flat
    assert all(line["time"].endswith("Z") and line["level"] and line["message"] for line in lines)
    (failed,) = [line for line in lines if line["level"] == "WARNING"]
    assert (failed["merchant"], failed["chart"], failed["error_type"]) == (demo_tokens[0], "user_demographics",
                                                                            "bad_data")
    assert failed["batch"].startswith("batch-")
    usage = run_cli(["--log-format", "json", "--batch-size", "0"], tmp_path, in_process=True)
    (line,) = [json.loads(line) for line in usage.stderr.splitlines()]
    assert usage.returncode == 2 and line["level"] == "ERROR" and "--batch-size" in line["message"]


# -- the render cache -----------------------------------------------------------------------------


def _files(run_dir) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.suffix in (".png", ".pdf", ".pptx")}


def test_a_second_run_on_unchanged_data_renders_nothing_and_a_changed_datum_misses_only_its_chart(
        tmp_path, demo_url, demo_tokens):
    args = ["--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--cache-dir", str(tmp_path / "cache")]
    first = run_cli([*args, "--server-url", demo_url], tmp_path, in_process=True)
    second = run_cli([*args, "--server-url", demo_url], tmp_path, in_process=True)
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-2000:]
        check_report(result, demo_tokens[:2])
    assert {c["cached"] for c in first.report["charts"]} == {False}
    assert {c["cached"] for c in second.report["charts"]} == {True}
    assert (second.report["metrics"]["render"]["charts_cached"], second.report["metrics"]["render"]["charts_rendered"]
            ) == (14, 0)
    assert {d["cached"] for d in second.report["decks"]} == {True}
    assert _files(first.report_path.parent) == _files(second.report_path.parent)  # byte-identical
    # One tool now answers differently for every merchant (negative averages are still valid data).
    changed = run_cli([*args, "--demo-server-arg=--malformed=negative",
                       "--demo-server-arg=--fault-tool=get_aov_by_month"], tmp_path, in_process=True)
    assert changed.returncode == 0, changed.stderr[-2000:]
    missed = {(c["merchant"], c["chart_id"]) for c in changed.report["charts"] if not c["cached"]}
    assert missed == {(m, "aov_by_month") for m in demo_tokens[:2]}
    assert {d["cached"] for d in changed.report["decks"]} == {False}  # a deck shows that chart


def test_runs_sharing_a_cache_at_once_stay_correct_and_it_keeps_to_its_size(tmp_path, demo_url, demo_tokens):
    import hashlib
    import json
    import subprocess

    from tests.helpers import clean_env, cli_command

    cache = tmp_path / "cache"
    args = ["--server-url", demo_url, "--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--cache-dir",
            str(cache), "--deck", "none"]
    procs = [subprocess.Popen([*cli_command(args), "--output-dir", str(tmp_path / f"out{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=tmp_path) for i in range(3)]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=170)
        assert proc.returncode == 0, stderr[-2000:]
        report = json.loads(open(stdout.strip().splitlines()[-1]).read())
        for chart in report["charts"]:  # every PNG whole and as recorded, hit or not
            assert hashlib.sha256(open(chart["output"], "rb").read()).hexdigest() == chart["sha256"]
    entries = [p for p in cache.rglob("*") if p.is_file() and p.name != ".runner-cache"]
    assert len([p for p in entries if p.suffix == ".png"]) == 14 and len(list(cache.glob("index/*.json"))) == 14
    assert not [p for p in entries if p.name.startswith(".")]  # no half-written entry
    small = run_cli([*args, "--cache-max-mb", "1"], tmp_path, in_process=True)
    assert small.returncode == 0
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) <= 1_000_000
    off = run_cli([*args, "--no-cache", "--output-dir", str(tmp_path / "off")], tmp_path, output_dir=False,
                  in_process=True)
    assert off.report["metrics"]["render"]["charts_cached"] == 0 and off.report["metrics"]["render"][
        "charts_rendered"] == 14


# -- rerun only what failed -----------------------------------------------------------------------


def test_a_rerun_runs_only_the_failed_pairs_and_merge_makes_them_ok(tmp_path, demo_url, demo_tokens):
    import hashlib
    import json

    faults = ["--demo-server-arg=--malformed=nan", "--demo-server-arg=--fault-tool=get_user_demographics"]
    first = run_cli([*faults, "--merchant", demo_tokens[0], "--merchant", demo_tokens[1],
                     "--start-date", "2024-03-01", "--end-date", "2025-06-30"], tmp_path, in_process=True)
    assert first.returncode == 1, first.stderr[-2000:]
    failed = {(c["merchant"], c["chart_id"]) for c in first.report["charts"] if c["status"] == "failed"}
    assert failed == {(m, "user_demographics") for m in demo_tokens[:2]}
    latest = tmp_path / "out" / "latest" / "report.json"
    # The run read the embedded demo server: another server is refused, before any work.
    other = run_cli(["--server-url", demo_url, "--rerun-failed", str(latest)], tmp_path, in_process=True)
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr[-2000:]
    assert "read the embedded demo server; this rerun would read the MCP server at " + demo_url in other.stderr
    rerun = run_cli(["--rerun-failed", str(latest)], tmp_path, in_process=True)  # the same server, without its faults
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report = rerun.report
    assert {(c["merchant"], c["chart_id"]) for c in report["charts"]} == failed  # exactly those pairs
    assert {c["status"] for c in report["charts"]} == {"ok"} and report["decks"] == []
    assert (report["run"]["start_date"], report["run"]["end_date"]) == ("2024-03-01", "2025-06-30")
    assert report["run"]["reruns"] == str(first.report_path)
    assert latest.resolve() == first.report_path  # a rerun is part of its night: `latest` still names the night
    merged = run_cli(["--rerun-failed", str(first.report_path), "--merge"], tmp_path, in_process=True)
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert merged.report_path == first.report_path  # the original run's folder
    report = check_report(merged, demo_tokens[:2])
    assert report["run"]["status"] == "ok" and report["run"]["exit_code"] == 0 and len(report["run"]["merged"]) == 1
    for chart in report["charts"]:
        assert chart["status"] == "ok"
        assert chart["output"] == str(first.report_path.parent / chart["merchant"] / f"{chart['chart_id']}.png")
        assert hashlib.sha256(open(chart["output"], "rb").read()).hexdigest() == chart["sha256"]
    assert {(d["status"], d["charts_missing"]) for d in report["decks"]} == {("ok", 0)}  # rebuilt whole
    before = json.loads(next(first.report_path.parent.glob("report.before-*.json")).read_text())
    assert before["run"]["exit_code"] == 1  # the report it replaced is kept
    assert (tmp_path / "out" / "latest").resolve() == first.report_path.parent
    nothing = run_cli(["--rerun-failed", str(first.report_path)], tmp_path, in_process=True)
    assert nothing.returncode == 0 and "nothing to rerun" in nothing.stderr
    mixed = run_cli(["--rerun-failed", str(first.report_path), "--merchant", "X"], tmp_path)
    assert mixed.returncode == 2 and mixed.stderr.strip().endswith("drop --merchant")  # the flag as it is spelt
