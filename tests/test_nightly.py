"""Nightly runs as CI and cron use them: the job in a file, relative dates, where results are found."""

from __future__ import annotations

from datetime import date

import pytest

from runner.errors import UsageError
from runner.job import resolve_date
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
    ("-24 months", "2024-03-31"),
    ("-1 month", "2026-02-28"),  # the same day, or the month's last
    ("-2 years", "2024-03-31"),
    ("-7 days", "2026-03-24"),
    ("  Last   Month  End ", "2026-02-28"),
])
def test_relative_dates(text, expected):
    assert resolve_date(text, date(2026, 3, 31), "start_date") == expected


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
    result = run_cli([], tmp_path, env={"SCALAPAY_CONFIG": str(job)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:2], chart_ids=["aov_by_month"])
    today = date.today()
    assert report["run"]["start_date"] == resolve_date("-24 months", today, "start_date")
    assert report["run"]["end_date"] == resolve_date("last month end", today, "end_date")
    assert report["run"]["dates_given"] == {"start_date": "-24 months", "end_date": "last month end"}
    assert {d["format"] for d in report["decks"]} == {"pdf"}
    assert (result.report_path.parent / "charts.csv").exists()
    # A flag wins over the file: merchants named on the command line replace the file's.
    result = run_cli(["--merchant", demo_tokens[2], "--start-date", "2024-01-01", "--end-date", "2024-12-31"],
                     tmp_path, env={"SCALAPAY_CONFIG": str(job)})
    report = check_report(result, demo_tokens[2:3], chart_ids=["aov_by_month"])
    assert (report["run"]["start_date"], report["run"]["dates_given"]) == ("2024-01-01", {})


@pytest.mark.parametrize(("line", "expected"), [
    ("merchant = ['X']", "unknown key 'merchant'; did you mean 'merchants'?"),
    ("start_date = 'next tuesday'", "start_date 'next tuesday' is not a date"),
    ("merchants = 'AAAA'", "invalid merchants in"),
    ("charts = ['nope']", "nope"),
])
def test_a_bad_job_file_gets_one_line(tmp_path, line, expected):
    job = tmp_path / "job.toml"
    job.write_text(line + "\n")
    result = run_cli(["--config", str(job)], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "out").exists()
