"""A report read back is read a row at a time: --rerun-failed and merge-reports given a report of
21,000 chart rows (written by tests/big_reports.py, not by a real run) stay far below what reading it
whole costs, and a hostile report (a row too large, a file cut short, a value nested too deep) is one
line and exit 2.

Peak memory is the CLI process's own (ru_maxrss of the only child of a small wrapper process).
Measured on the development machine, before (the report read whole) and after (a row at a time):
a 24 MB report of 21,000 chart rows, --rerun-failed 123 MB -> 33 MB and merge-reports of its two
halves 106 MB -> 32 MB; a 55 MB report of 49,000 rows, 240 MB -> 34 MB and 209 MB -> 33 MB. The CLI
alone starts at about 31 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.shards import Shard
from tests.big_reports import CHART_IDS, RUN_ID, write_big_report
from tests.helpers import clean_env, cli_command

pytestmark = [pytest.mark.xdist_group("big_reports"), pytest.mark.timeout(600)]

MERCHANTS = 3000  # x 7 charts: 21,000 chart rows, a 24 MB report
MAX_PEAK_RSS_MB = 70  # reading it whole costs 106-123 MB; a row at a time about 33 MB
# The CLI as the only child of this, which prints that child's peak resident memory in KB, then its exit code.
_PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode; "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)")


def _cli_peak(args: list[str], cwd: Path) -> tuple[int, float, str]:
    """(exit code, peak RSS in MB, stderr) of `python -m runner ARGS`."""
    proc = subprocess.run([sys.executable, "-c", _PEAK, *cli_command(args)], capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=540)
    peak_kb, code = proc.stdout.split()[-2:]
    return int(code), int(peak_kb) / 1024, proc.stderr


def _tokens(count: int) -> list[str]:
    return [f"M{index:06d}" for index in range(count)]


def _one_line(code: int, stderr: str, *expected: str) -> str:
    assert code == 2, (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_a_big_report_is_read_for_a_rerun_a_row_at_a_time(tmp_path: Path) -> None:
    report = write_big_report(tmp_path / "run", _tokens(MERCHANTS))
    assert report.stat().st_size > 20_000_000
    code, peak_mb, stderr = _cli_peak(["--rerun-failed", str(report), "--output-dir", str(tmp_path / "out")], tmp_path)
    assert code == 0, stderr[-2000:]
    assert f"nothing to rerun: no chart of {report} failed" in stderr
    assert peak_mb < MAX_PEAK_RSS_MB, f"--rerun-failed peaked at {peak_mb:.0f} MB"


def test_big_shards_are_merged_a_row_at_a_time(tmp_path: Path) -> None:
    tokens = _tokens(MERCHANTS)
    folders = []
    for index in (1, 2):
        shard = Shard(index, 2)
        folders.append(write_big_report(tmp_path / f"shard{index}", [t for t in tokens if shard.holds(t)], "failed",
                                        shard, RUN_ID[:-1] + str(index)).parent)
    code, peak_mb, stderr = _cli_peak(["merge-reports", *map(str, folders), "--csv", "--output-dir",
                                       str(tmp_path / "merged")], tmp_path)
    assert code == 4, stderr[-2000:]  # nothing succeeded
    assert f"0 of {MERCHANTS * len(CHART_IDS)} charts ok" in stderr
    assert peak_mb < MAX_PEAK_RSS_MB, f"merge-reports peaked at {peak_mb:.0f} MB"
    merged = json.loads((tmp_path / "merged" / "latest" / "report.json").read_text())
    assert len(merged["charts"]) == MERCHANTS * len(CHART_IDS) and len(merged["merchants"]) == MERCHANTS
    assert merged["run"]["charts_failed"] == merged["metrics"]["errors_by_type"]["server_unavailable"] == \
        MERCHANTS * len(CHART_IDS)
    assert merged["metrics"]["retrieval"]["batches_failed"] == MERCHANTS
    assert len((tmp_path / "merged" / "latest" / "charts.csv").read_text().splitlines()) == len(merged["charts"]) + 1


MAX_MERGE_PEAK_RSS_MB = 190  # a rerun of 7 charts and its merge: about 140 MB at any size; whole, 241 MB here


def test_a_big_report_is_merged_a_row_at_a_time(tmp_path: Path, demo_tokens: list[str]) -> None:
    """One merchant's charts failed (a merchant of the embedded demo server, which the rerun reads);
    the merge walks all 21,000 rows, reading the files of none but that merchant's."""
    tokens = [demo_tokens[0], *_tokens(MERCHANTS - 1)]
    report = write_big_report(tmp_path / "out" / RUN_ID, tokens, failing=frozenset({demo_tokens[0]}))
    code, peak_mb, stderr = _cli_peak(["--rerun-failed", str(report), "--merge", "--output-dir",
                                       str(tmp_path / "out")], tmp_path)
    assert code == 0, stderr[-2000:]
    assert peak_mb < MAX_MERGE_PEAK_RSS_MB, f"--rerun-failed --merge peaked at {peak_mb:.0f} MB"
    merged = json.loads(report.read_text())
    assert (merged["run"]["status"], merged["run"]["charts_ok"]) == ("ok", MERCHANTS * len(CHART_IDS))
    assert merged["run"]["merged"][0]["charts_ok"] == len(CHART_IDS)
    assert merged["metrics"]["retrieval"]["batches_ok"] == MERCHANTS and merged["metrics"]["errors_by_type"] == {}
    assert [row["merchant"] for row in merged["merchants"]] == tokens
    assert (report.parent / f"report.before-{merged['run']['merged'][0]['rerun_run_id']}.json").stat().st_size > \
        20_000_000


# -- hostile reports ------------------------------------------------------------------------------------------


def _small_report(folder: Path) -> Path:
    return write_big_report(folder, _tokens(3))


def _row_too_large(path: Path) -> None:
    report = json.loads(path.read_text())
    report["charts"][1]["paragraph"] = "x" * 3_000_000
    path.write_text(json.dumps(report))


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5000])


def _nested_deep(path: Path) -> None:
    report = json.loads(path.read_text())
    path.write_text(json.dumps(report).replace('"config": {}', '"config": ' + "[" * 50_000 + "]" * 50_000))


def _trailing(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b'{"schema_version": 1}')


def _a_nested_cell(path: Path) -> None:
    report = json.loads(path.read_text())
    report["batches"][0]["steps"] = {"a": [1]}
    path.write_text(json.dumps(report))


def _charts_split(path: Path) -> None:  # a merchant's charts in two places
    report = json.loads(path.read_text())
    report["charts"].append(report["charts"].pop(0))
    path.write_text(json.dumps(report))


HOSTILE = [(_row_too_large, "charts[1] is larger than 1,000,000 bytes"), (_cut_short, "not JSON"),
           (_nested_deep, "nested more than 32 deep"), (_trailing, "not JSON"), (_a_nested_cell, "batches[0]"),
           (_charts_split, "listed twice")]


@pytest.mark.parametrize(("damage", "expected"), HOSTILE)
def test_a_hostile_report_given_to_a_rerun_is_one_line(tmp_path: Path, damage, expected: str) -> None:
    path = _small_report(tmp_path / "run")
    damage(path)
    code, _, stderr = _cli_peak(["--rerun-failed", str(path), "--merge", "--output-dir", str(tmp_path / "out")],
                                tmp_path)
    _one_line(code, stderr, f"--rerun-failed {path}: not a runner report", expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("damage", "expected"), HOSTILE)
def test_a_hostile_shard_report_is_one_line(tmp_path: Path, damage, expected: str) -> None:
    path = _small_report(tmp_path / "run")
    damage(path)
    code, _, stderr = _cli_peak(["merge-reports", str(path.parent), "--output-dir", str(tmp_path / "out")], tmp_path)
    _one_line(code, stderr, f"merge-reports: {path}: not a runner report", expected)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_rows_order_of_merchants_must_be_its_charts(tmp_path: Path) -> None:
    """Each merchant's rows are taken together (a merge folds a merchant at a time): batches in
    another order of merchants than the charts' are refused, naming the section."""
    path = _small_report(tmp_path / "run")
    report = json.loads(path.read_text())
    report["batches"].reverse()
    path.write_text(json.dumps(report))
    code, _, stderr = _cli_peak(["--rerun-failed", str(path), "--output-dir", str(tmp_path / "out")], tmp_path)
    _one_line(code, stderr, "the batches of merchant", "not in the order of the charts' merchants")
