"""CI matrices: `--shard K/N` runs a slice of the merchants that depends on each token alone, and
`python -m runner merge-reports DIR...` folds the shards' reports into the report of one run."""

from __future__ import annotations

import json
import shutil
import string
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import UsageError
from runner.request import JobRequest, job_inputs, job_merchants
from runner.shards import Shard, shard_of
from tests.helpers import CliRun, run_cli, run_in_process, validate_report

TOKENS = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=24)
CHARTS = "aov_by_month,user_demographics"


# -- the slice ------------------------------------------------------------------------------------------


@given(token=TOKENS, count=st.integers(1, 1000))
def test_a_token_is_in_exactly_one_of_n_shards(token: str, count: int) -> None:
    holders = [index for index in range(1, count + 1) if Shard(index, count).holds(token)]
    assert holders == [shard_of(token, count)]


def _shard_merchants(tokens: list[str], shard: str) -> tuple[str, ...]:
    """The merchants a run given these tokens with --shard runs (none: the run is refused)."""
    try:
        inputs = job_inputs(JobRequest(merchants=tuple(tokens), shard=shard), date(2026, 3, 5))
        return tuple(token for token, _ in job_merchants(inputs))
    except UsageError:
        return ()


@settings(max_examples=40, deadline=None)
@given(tokens=st.lists(TOKENS, min_size=1, max_size=30, unique=True),
       more=st.lists(TOKENS, max_size=30, unique=True), count=st.integers(1, 7))
def test_the_shards_of_a_merchant_list_split_it_and_an_added_merchant_moves_no_other(
        tokens: list[str], more: list[str], count: int) -> None:
    slices = [_shard_merchants(tokens, f"{index}/{count}") for index in range(1, count + 1)]
    assert sorted(token for part in slices for token in part) == sorted(tokens)  # each in one shard only
    assert all(list(part) == [token for token in tokens if token in part] for part in slices)  # in their order
    grown = [*tokens, *(token for token in more if token not in tokens)]
    for index, part in enumerate(slices, 1):
        assert [token for token in _shard_merchants(grown, f"{index}/{count}") if token in tokens] == list(part)


def test_the_hash_is_pinned() -> None:
    """A merchant's shard is part of CI configurations: a change to the hash moves merchants between jobs."""
    assert [shard_of(token, 7) for token in ("LIICIEWKV6BK", "UVQ455UK5O7B", "a", "Z-9_")] == [5, 1, 5, 5]
    assert [shard_of(token, 1000) for token in ("LIICIEWKV6BK", "a")] == [282, 251]
    assert str(Shard.parse(" 2 / 3 ")) == "2/3"


@pytest.mark.parametrize("value", ["0/3", "4/3", "3", "a/b", "1/1001", "-1/3", "", "1/0", "1/3/3", "1\n/3"])
def test_a_bad_shard_is_one_line_and_exit_2(value: str, tmp_path: Path) -> None:
    result = run_cli(["--shard", value, "--merchant", "LIICIEWKV6BK"], tmp_path, in_process=True)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --shard {value!r} is not a shard: expected K/N"), line


def test_a_bad_shard_in_the_job_file_and_a_shard_without_merchants_are_one_line(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('shard = "2/1"\nmerchants = ["LIICIEWKV6BK"]\n')
    result = run_cli(["--config", str(job)], tmp_path, in_process=True)
    assert result.returncode == 2 and result.stderr.strip() == \
        f"error: shard in {job} '2/1' is not a shard: expected K/N with 1 <= K <= N <= 1000, such as 2/3"
    other = next(index for index in (1, 2) if index != shard_of("LIICIEWKV6BK", 2))
    result = run_cli(["--merchant", "LIICIEWKV6BK", "--shard", f"{other}/2"], tmp_path, in_process=True)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --shard {other}/2 holds none of the 1 merchant(s) given"), line


# -- a matrix of three, and one run --------------------------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    whole: CliRun  # one run of all the merchants
    shards: list[Path]  # the run folders of --shard 1/3, 2/3, 3/3
    merchants: list[str]
    root: Path


def _two_per_shard(tokens: list[str], count: int) -> list[str]:
    picked: dict[int, list[str]] = {}
    for token in tokens:
        if len(picked.setdefault(shard_of(token, count), [])) < 2:
            picked[shard_of(token, count)].append(token)
    merchants = [token for token in tokens if token in sum(picked.values(), [])]
    assert len(merchants) == 2 * count, picked
    return merchants


def _run(args: list[str], folder: Path) -> CliRun:
    folder.mkdir(parents=True, exist_ok=True)
    return run_cli(args, folder, in_process=True)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, demo_url: str, demo_tokens: list[str]) -> Matrix:
    root = tmp_path_factory.mktemp("matrix")
    merchants = _two_per_shard(demo_tokens, 3)
    args = ["--server-url", demo_url, *(arg for m in merchants for arg in ("--merchant", m)), "--charts", CHARTS,
            "--deck", "pdf", "--no-enable-concurrent-chart-generation"]
    whole = _run([*args, "--junit-xml", str(root / "whole.xml")], root / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    shards = []
    for index in (1, 2, 3):
        # Every shard is given all six merchants, as every job of a matrix is: --shard picks its two.
        shard = _run([*args, "--shard", f"{index}/3"], root / "jobs")
        assert shard.returncode == 0 and shard.report is not None, shard.stderr[-3000:]
        assert shard.report["run"]["shard"] == f"{index}/3"
        assert {c["merchant"] for c in shard.report["charts"]} == {m for m in merchants if shard_of(m, 3) == index}
        assert shard.report_path is not None
        shards.append(shard.report_path.parent)
    return Matrix(whole, shards, merchants, root)


def merge(args: list[str], cwd: Path) -> CliRun:
    return run_in_process(["merge-reports", *args], cwd)


def _charts(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(c["merchant"], c["chart_id"], c["status"]) for c in report["charts"]}


def _decks(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(d["merchant"], d["format"], d["status"]) for d in report["decks"]}


def _cases(path: Path) -> set[tuple[str, str, str]]:
    cases = ElementTree.parse(path).getroot().iter("testcase")
    return {(case.get("classname") or "", case.get("name") or "",
             "failed" if case.find("failure") is not None else "skipped" if case.find("skipped") is not None
             else "ok") for case in cases}


@pytest.mark.xdist_group("shards")
def test_three_shards_merged_are_the_report_of_one_run(matrix: Matrix, tmp_path: Path) -> None:
    junit = tmp_path / "merged.xml"
    result = merge([*map(str, reversed(matrix.shards)), "--csv", "--junit-xml", str(junit)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.report is not None and result.report_path is not None
    merged, whole = result.report, matrix.whole.report
    assert whole is not None
    validate_report(merged)
    assert _charts(merged) == _charts(whole) and len(merged["charts"]) == len(whole["charts"]) == 12
    assert _decks(merged) == _decks(whole)
    assert _cases(junit) == _cases(matrix.root / "whole.xml")
    run = merged["run"]
    assert (run["status"], run["exit_code"], run["error"], run["shard"]) == ("ok", 0, None, None)
    assert run["merged_from"] == [str(folder) for folder in matrix.shards]  # shard by shard, whatever the order given
    assert {key: run[key] for key in ("charts_total", "charts_ok", "merchants", "start_date", "end_date", "pack")} == \
        {key: whole["run"][key] for key in ("charts_total", "charts_ok", "merchants", "start_date", "end_date", "pack")}
    assert [m["merchant"] for m in merged["merchants"]] == [m for i in (1, 2, 3) for m in matrix.merchants
                                                            if shard_of(m, 3) == i]
    shard_reports = [json.loads((folder / "report.json").read_text()) for folder in matrix.shards]
    retrieval = merged["metrics"]["retrieval"]
    assert retrieval["tool_calls"] == sum(r["metrics"]["retrieval"]["tool_calls"] for r in shard_reports) >= 12
    assert retrieval["batches_total"] == len(merged["batches"]) == sum(len(r["batches"]) for r in shard_reports)
    assert retrieval["p50_batch_ms"] is None  # percentiles are not merged
    assert merged["metrics"]["render"]["peak_concurrent_renders"] == max(
        r["metrics"]["render"]["peak_concurrent_renders"] for r in shard_reports)
    run_dir = result.report_path.parent
    assert run_dir.parent == matrix.shards[0].parent and (run_dir.parent / "latest").resolve() == run_dir
    assert len((run_dir / "charts.csv").read_text().splitlines()) == 13
    for row in [*merged["charts"], *merged["decks"]]:  # every file is in the merged run, as recorded
        if row["status"] in ("ok", "partial"):
            assert Path(row["output"]).parent.parent == run_dir and Path(row["output"]).is_file(), row
    for chart in merged["charts"]:
        assert Path(chart["data_output"]).is_file()


@pytest.mark.xdist_group("shards")
def test_a_missing_shard_is_not_green(matrix: Matrix, tmp_path: Path) -> None:
    junit = tmp_path / "merged.xml"
    result = merge([str(matrix.shards[0]), str(matrix.shards[2]), "--output-dir", str(tmp_path / "out"),
                    "--junit-xml", str(junit)], tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.report is not None
    validate_report(result.report)
    run = result.report["run"]
    assert (run["status"], run["exit_code"], run["charts_ok"], run["charts_total"]) == ("partial", 1, 8, 8)
    assert run["error"].startswith("shard(s) 2/3 missing: this report holds 2 of the job's 3 shards")
    assert {m for m, _, _ in _charts(result.report)} == {m for m in matrix.merchants if shard_of(m, 3) != 2}
    assert junit.exists()


def _copy(folder: Path, into: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of a shard's run folder, its report changed."""
    copy = into / folder.name
    shutil.copytree(folder, copy, symlinks=True)
    report = json.loads((copy / "report.json").read_text())
    change(report)
    (copy / "report.json").write_text(json.dumps(report))
    return copy


def _refused(result: CliRun, *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: merge-reports: ") and all(word in line for word in words), line
    return line


@pytest.mark.xdist_group("shards")
def test_shards_of_another_job_or_given_twice_are_refused_and_nothing_is_written(matrix: Matrix,
                                                                                tmp_path: Path) -> None:
    one, two, three = map(str, matrix.shards)
    whole = str(matrix.whole.report_path)
    other_dates = _copy(matrix.shards[1], tmp_path, lambda r: r["run"].update(end_date="2025-11-30"))
    relabelled = _copy(matrix.shards[0], tmp_path / "x", lambda r: r["run"].update(shard="2/3"))
    fewer = _copy(matrix.shards[2], tmp_path / "y", lambda r: r["run"].update(shard="3/4"))
    out = ["--output-dir", str(tmp_path / "out")]
    _refused(merge([one, two, one, *out], tmp_path), "shard 1/3 is given twice")
    _refused(merge([one, whole, *out], tmp_path), "is a run without --shard: it merges only alone")
    _refused(merge([one, str(other_dates), three, *out], tmp_path), "is another job's: its end_date is '2025-11-30'")
    _refused(merge([str(relabelled), *out], tmp_path), "is not in shard 2/3")
    _refused(merge([one, str(fewer), *out], tmp_path), "one job's shards share their count N")
    _refused(merge([str(tmp_path / "nowhere"), *out], tmp_path), "does not exist")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    alone = merge([whole, *out], tmp_path)  # an unsharded run alone is its own merge
    assert alone.returncode == 0 and alone.report is not None
    assert _charts(alone.report) == _charts(matrix.whole.report or {})


@pytest.mark.xdist_group("shards")
def test_a_shard_whose_files_are_gone_is_refused(matrix: Matrix, tmp_path: Path) -> None:
    copy = _copy(matrix.shards[0], tmp_path, lambda r: None)
    png = next(copy.rglob("*.png"))
    png.unlink()
    _refused(merge([str(copy), "--output-dir", str(tmp_path / "out")], tmp_path), str(png), "is ok, but")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


CORRUPT = ["", "{", "[]", "null", '{"schema_version": 2}', '{"schema_version": 1, "run": {}}', "\xff\xfe",
           '{"schema_version": 1, "run": {"run_id": NaN}}']


@pytest.mark.parametrize("text", CORRUPT)
def test_a_corrupt_report_is_one_line_and_exit_2(text: str, tmp_path: Path) -> None:
    (tmp_path / "shard").mkdir()
    (tmp_path / "shard" / "report.json").write_bytes(text.encode("latin-1"))
    line = _refused(merge([str(tmp_path / "shard")], tmp_path), str(tmp_path / "shard" / "report.json"))
    assert "not a runner report" in line


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3), max_leaves=6)
PLACES = [("schema_version",), ("run",), ("run", "run_id"), ("run", "shard"), ("run", "wall_ms"), ("run", "error"),
          ("run", "started_at"), ("run", "merchants"), ("run", "server"), ("metrics",), ("metrics", "retrieval"),
          ("metrics", "render", "workers"), ("charts",), ("charts", 0), ("charts", 0, "merchant"),
          ("charts", 0, "status"), ("charts", 0, "error"), ("charts", 0, "retrieve_ms"), ("charts", 0, "cached"),
          ("decks", 0, "format"), ("decks", 0, "build_ms"), ("batches", 0), ("batches", 0, "status"),
          ("merchants",), ("config",), ("environment",)]


@pytest.mark.xdist_group("shards")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), value=JSON)
def test_any_broken_cell_of_a_report_is_merged_or_refused_in_one_line(matrix: Matrix, place: tuple[Any, ...],
                                                                      value: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        def change(report: dict[str, Any]) -> None:
            target = report
            for key in place[:-1]:
                target = target[key]
            target[place[-1]] = value

        copy = _copy(matrix.shards[0], Path(folder), change)
        result = merge([str(copy), str(matrix.shards[1]), str(matrix.shards[2]), "--output-dir",
                        str(Path(folder) / "out"), "--junit-xml", str(Path(folder) / "j.xml"), "--csv"], Path(folder))
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode == 2:
            _refused(result)
        else:
            assert result.report is not None, result.stderr
