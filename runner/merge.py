"""--merge: fold a rerun's outcome into the run it repairs, and tell the whole truth after.

Charts that now succeeded replace the failed ones, their PNG and data files placed where the
original run would have put them; the touched merchants' decks are rebuilt from every chart on
disk. Then every figure derived from the rows is counted again by runner.run_report.Tally, the
run's own counting, as a clean run over the same charts would count it: run status and exit code,
run.charts_*, metrics.errors_by_type, metrics.decks, metrics.retrieval's batch counts, merchants,
and the status of each batch the rerun touched (from its charts' data, as a run decides it). The
work metrics (times, tool calls, renders) stay those of the original run; the rerun's own work is
in its chart rows. The repair is recorded in run.merged ({at, rerun_run_id, charts, charts_ok});
report.json, charts.csv (if the run wrote one) and the JUnit file are rewritten; the report
replaced is kept beside as report.before-<rerun id>.json.

The JUnit file is the run's (run.junit_xml, or for an older report config.junit_xml from the
current folder), rewritten only while it still holds that run's results: a regular file, never
a link, whose suite names the run. One that is gone is not created again and one holding another
run's results is left alone (a WARNING says so); a --junit-xml given to the rerun gets the merged
state too, never the rerun's own handful of cases.

Once merged, the rerun's folder is removed when it sits beside the run (it is this process's own,
and everything in it is now in the run's folder): the output folder holds one folder per night.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.clock import iso_time
from runner.decks.book import DECK_NAME, DeckBook
from runner.errors import ChartError, ErrorType
from runner.files import safe_part, write_atomically
from runner.junit import write_junit
from runner.read_back import read_data, read_png
from runner.records import ChartData, ChartJob
from runner.report import (
    ReportWriteError,
    merchant_rows,
    names_of,
    with_merchant_names,
    write_report,
)
from runner.rerun import MergeTarget, Rerun, recorded_setting
from runner.run import WrittenReport
from runner.run_folders import point_latest, prune_runs
from runner.run_report import Tally, junit_failed
from runner.status import BatchStatus, ChartStatus, ExitCode, PartialDecks

JUNIT_HEAD_BYTES = 4096  # where a JUnit file the runner wrote names its run


def _failed(row: dict[str, Any], error: ChartError) -> dict[str, Any]:
    logger.warning("{} {} fails in the merge ({}): {}", row["merchant"], row["chart_id"], error.error_type,
                   error.message)
    return {**row, "status": ChartStatus.FAILED, "error_type": error.error_type, "error": error.message,
            "output": None, "data_output": None, "bytes": None, "sha256": None}


def _write(path: Path, content: bytes, run_dir: Path) -> None:
    try:
        write_atomically(path, content)
    except OSError as exc:
        raise ReportWriteError(f"cannot merge into {run_dir}: {path}: {exc.strerror or exc}") from None


# -- the merge ----------------------------------------------------------------------------------------


def _base(run_dir: Path, merchant: str, chart_id: str) -> Path:
    """Where a run keeps a chart's files, less their suffix (.png, .json)."""
    return run_dir / safe_part(merchant) / safe_part(chart_id)


@dataclass(frozen=True)
class _Chart:
    """A chart's merged row, and its data when its deck will show it."""

    row: dict[str, Any]
    data: ChartData | None = None


def _place(rerun: Rerun, row: dict[str, Any], rerun_dir: Path) -> _Chart:
    """The rerun's outcome of one chart, its files copied from the rerun's folder to where the
    original run would have put them."""
    spec = rerun.specs[row["chart_id"]]
    source, target = _base(rerun_dir, row["merchant"], spec.id), _base(rerun.run_dir, row["merchant"], spec.id)
    ok = row["status"] == ChartStatus.OK
    try:
        data = read_data(source.with_suffix(".json"), spec, row["merchant"]) if ok or row["data_output"] else None
        png = read_png(source.with_suffix(".png"), row["sha256"]) if ok else None
    except ChartError as exc:
        # A failed chart's data file is a courtesy: without it, it is still failed.
        return _Chart(_failed(row, exc) if ok else {**row, "output": None, "data_output": None})
    row = {**row, "output": None, "data_output": None}
    if data is not None:
        _write(target.with_suffix(".json"), data[0], rerun.run_dir)
        row["data_output"] = str(target.with_suffix(".json"))
    if png is not None:
        _write(target.with_suffix(".png"), png, rerun.run_dir)
        row["output"] = str(target.with_suffix(".png"))
    return _Chart(row, data[1] if data and png else None)


def _in_place(rerun: Rerun, row: dict[str, Any], read: bool) -> _Chart:
    """An original chart, its paths recomputed from the run folder; when its deck is rebuilt
    (`read`), its files read back and checked."""
    target = _base(rerun.run_dir, row["merchant"], row["chart_id"])
    row = {**row, "output": str(target.with_suffix(".png")) if row["output"] else None,
           "data_output": str(target.with_suffix(".json")) if row["data_output"] else None}
    if not read or row["status"] != ChartStatus.OK:
        return _Chart(row)
    try:
        read_png(target.with_suffix(".png"), row["sha256"])
        _, data = read_data(target.with_suffix(".json"), rerun.specs[row["chart_id"]], row["merchant"])
    except ChartError as exc:
        return _Chart(_failed(row, exc))
    return _Chart(row, data)


def _recorded_partial_decks(report: dict[str, Any]) -> PartialDecks:
    """The run's own partial_decks setting, as its report recorded it (read back: only a known value counts)."""
    value = recorded_setting(report, "partial_decks")
    return PartialDecks(value) if value in tuple(PartialDecks) else PartialDecks.PLACEHOLDER


def _rebuilt_decks(target: MergeTarget, charts: list[_Chart], touched: set[str]) -> list[dict[str, Any]]:
    """The original run's deck rows (paths recomputed), those of the touched merchants rebuilt by
    the run's own deck ledger from the charts checked on disk."""
    from runner.decks.build import build_deck

    rerun = target.rerun
    decks = [{**d, "output": str(rerun.run_dir / safe_part(d["merchant"]) / f"{DECK_NAME}.{d['format']}")
              if d["output"] else None} for d in rerun.report["decks"]]
    formats = tuple(dict.fromkeys(d["format"] for d in decks))
    if not formats or not touched:
        return decks
    run = rerun.report["run"]
    mine = [chart for chart in charts if chart.row["merchant"] in touched]
    jobs = [ChartJob(c.row["merchant"], rerun.specs[c.row["chart_id"]], run["start_date"], run["end_date"],
                     str(_base(rerun.run_dir, c.row["merchant"], c.row["chart_id"]).with_suffix(".png"))) for c in mine]
    book = DeckBook(jobs, formats, target.template, run["started_at"][:10], rerun.figures,
                    partial=_recorded_partial_decks(rerun.report), names=names_of([c.row for c in mine]))
    for merchant in sorted(touched):
        charts_of = [c for c in mine if c.row["merchant"] == merchant]
        data: dict[str, ChartData | None] = {c.row["chart_id"]: c.data for c in charts_of}
        errors: dict[str, str | None] = {c.row["chart_id"]: f"{c.row['error_type']}: {c.row['error']}"
                                         for c in charts_of if c.row["error"]}
        task = book.task(merchant, data, errors)
        if task is None:
            continue
        try:
            book.built(merchant, build_deck(task))
        except ChartError as exc:
            logger.warning("deck for {} failed ({}): {}", merchant, exc.error_type, exc.message)
            book.failed(merchant, ErrorType.DECK_ERROR, exc.message)
    rebuilt = {(d.merchant, d.format): asdict(d) for d in book.results()}
    return [rebuilt.get((d["merchant"], d["format"]), d) for d in decks]


def _batches(batches: list[dict[str, Any]], charts: list[dict[str, Any]],
             redone: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """Batch rows, those holding a rerun chart with their status counted again from their charts'
    data, as a run decides it: all have their data ok, some partial, none failed (or still
    cancelled, when the rerun was stopped too)."""
    by_key = {(c["merchant"], c["chart_id"]): c for c in charts}
    out = []
    for batch in batches:
        keys = [(batch["merchant"], chart_id) for chart_id in batch["chart_ids"].split(",")]
        rows = [by_key[key] for key in keys if key in by_key]
        if not rows or not any(key in redone for key in keys):
            out.append(batch)
            continue
        with_data = sum(1 for row in rows if row["data_output"])
        if with_data == len(rows):
            out.append({**batch, "status": BatchStatus.OK, "error_type": None, "error": None})
        elif with_data:
            out.append({**batch, "status": BatchStatus.PARTIAL})
        else:
            out.append({**batch, "status": BatchStatus.CANCELLED if all(
                row["status"] == ChartStatus.CANCELLED for row in rows) else BatchStatus.FAILED})
    return out


def _section(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A nested object of the report read back, or an empty one where it is not an object."""
    value: Any = report
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def recounted(original: dict[str, Any], charts: list[dict[str, Any]], decks: list[dict[str, Any]],
              batches: list[dict[str, Any]]) -> dict[str, Any]:
    """The report with new rows and every figure derived from them counted again."""
    metrics = _section(original, "metrics")
    formats = tuple(dict.fromkeys(d["format"] for d in decks))
    tally = Tally()  # the run's own counting (runner.run_report), over the merged rows
    tally.add(charts, decks, batches)
    counted = tally.metrics()
    return {**original, "charts": charts, "decks": decks, "batches": batches,
            "run": {**original["run"], **tally.run_counts(interrupted=False, unreachable=False), "error": None},
            "merchants": merchant_rows(charts, decks, formats),
            "metrics": {**metrics, "errors_by_type": counted["errors_by_type"],
                        "retrieval": {**_section(metrics, "retrieval"), **counted["retrieval"]},
                        "decks": {**_section(metrics, "decks"), **counted["decks"]}}}


def _recorded_junit(rerun: Rerun) -> Path | None:
    """Where the run wrote its JUnit file: run.junit_xml, or (a report from before it) the
    config's junit_xml from the current folder."""
    recorded = rerun.report["run"].get("junit_xml")
    if recorded is None:
        recorded = recorded_setting(rerun.report, "junit_xml")
    if not isinstance(recorded, str) or not recorded or "\x00" in recorded:
        return None
    return Path(recorded).expanduser().absolute()


def _still_the_runs(path: Path, run_id: str) -> bool:
    """The file at `path` is a regular file (not a link) holding this run's JUnit results."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = "a link" if path.is_symlink() else "gone" if not path.exists() else exc.strerror
        logger.warning("the run's JUnit file {} is {}: not rewritten", path, reason)
        return False
    with os.fdopen(handle, "rb") as file:
        head = file.read(JUNIT_HEAD_BYTES) if stat.S_ISREG(os.fstat(file.fileno()).st_mode) else b""
    if f'<testsuite name="runner {run_id}"'.encode() not in head:
        logger.warning("the JUnit file {} no longer holds run {}'s results: not rewritten", path, run_id)
        return False
    return True


def _write_junit(target: MergeTarget, report: dict[str, Any]) -> None:
    """The merged state into the run's JUnit file (while it is still the run's) and into one
    named now; a failure is the run's exit 3, as for any run."""
    run_id = report["run"]["run_id"]
    paths = []
    recorded = _recorded_junit(target.rerun)
    if recorded is not None and _still_the_runs(recorded, run_id):
        paths.append(recorded)
    if target.junit_xml is not None and target.junit_xml not in paths:
        paths.append(target.junit_xml)
    for path in paths:
        try:
            write_junit(path, report)
            logger.info("JUnit file {} rewritten to the merged state", path)
        except ReportWriteError as exc:
            junit_failed(report, str(exc))


def merge(target: MergeTarget, outcome: WrittenReport) -> tuple[Path, dict[str, Any]]:
    """The original run with the rerun's outcome folded in; returns (report path, report)."""
    rerun = target.rerun
    rerun_report, rerun_dir = json.loads(outcome.report_path.read_bytes()), outcome.report_path.parent
    rerun_id = rerun_report["run"]["run_id"]
    redone = {(c["merchant"], c["chart_id"]): c for c in rerun_report["charts"]}
    touched = {merchant for merchant, _ in redone}
    # A rerun chart keeps the run and batch it had here, so batches and charts still join (the
    # rerun's folder is gone once merged; run.merged says which charts it redid).
    charts = [_place(rerun, {**redone[key], "run_id": c["run_id"], "batch_id": c["batch_id"]}, rerun_dir)
              if (key := (c["merchant"], c["chart_id"])) in redone
              else _in_place(rerun, c, c["merchant"] in touched) for c in rerun.report["charts"]]
    decks = _rebuilt_decks(target, charts, touched)
    rows = [chart.row for chart in charts]
    report = recounted(rerun.report, rows, decks, _batches(rerun.report["batches"], rows, set(redone)))
    report = with_merchant_names(report, names_of(rows))  # rows of reports from before names get the token
    repaired = [f"{m}/{c}" for m, c in redone]
    ok = sum(1 for row in rows if (row["merchant"], row["chart_id"]) in redone and row["status"] == ChartStatus.OK)
    report["run"].update(output_dir=str(rerun.run_dir), merged=[
        *rerun.report["run"]["merged"],
        {"at": iso_time(datetime.now(UTC)), "rerun_run_id": rerun_id, "charts": repaired, "charts_ok": ok,
         "server": rerun_report["run"]["server"]}])
    _write_junit(target, report)  # before the report: a report on disk means everything was written
    _write(rerun.run_dir / f"report.before-{rerun_id}.json", rerun.raw, rerun.run_dir)
    path = write_report(rerun.run_dir, report, with_csv=(rerun.run_dir / "charts.csv").exists())
    logger.info("merged into {}: {} of {} rerun chart(s) now ok; {} chart(s) ok of {} (exit {})", path, ok,
                len(redone), report["run"]["charts_ok"], len(rows), ExitCode(report["run"]["exit_code"]).value)
    return path, report


def finish(rerun: Rerun, outcome: WrittenReport, target: MergeTarget | None, keep_runs: int | None) -> WrittenReport:
    """After the rerun: the merge (when asked), then --keep-runs, which spares every run this
    process read, wrote or merged into."""
    rerun_dir = outcome.report_path.parent
    base = rerun_dir.parent
    if target is not None:
        path, merged = merge(target, outcome)
        if rerun.run_dir.parent == base:  # `latest` is ours only in our output folder
            point_latest(rerun.run_dir)  # the merged run is the one to look at now
            shutil.rmtree(rerun_dir, ignore_errors=True)  # ours, and all of it is in the run now
            logger.info("the rerun's folder {} is merged into {}: removed", rerun_dir.name, rerun.run_dir.name)
        outcome = WrittenReport(path, ExitCode(merged["run"]["exit_code"]), merged)
    if keep_runs is not None:
        prune_runs(base, keep_runs, rerun_dir, rerun.run_dir)
    return outcome
