"""--merge: fold a rerun's outcome into the run it repairs, and tell the whole truth after.

Charts that now succeeded replace the failed ones, their PNG and data files placed where the
original run would have put them; the touched merchants' decks are rebuilt from every chart on
disk. The run's report and the rerun's are read a row at a time (runner.report_reader), a merchant
at a time, and the merged rows are written as a run writes its own (runner.outcomes: spooled once,
then the CSV, the JUnit file and report.json), never the whole chart list in memory. Every figure
derived from the rows is counted again by runner.outcomes.Tally, the run's own counting, as a clean
run over the same charts would count it: run status and exit code,
run.charts_*, metrics.errors_by_type, metrics.decks, metrics.retrieval's batch counts, merchants,
and the status of each batch the rerun touched (from its charts' data, as a run decides it). The
work metrics (times, tool calls, renders) stay those of the original run; the rerun's own work is
in its chart rows. The repair is recorded in run.merged ({at, rerun_run_id, charts, charts_ok});
report.json, charts.csv (if the run wrote one) and the JUnit file are rewritten; the report
replaced is kept beside as report.before-<rerun id>.json (copied from the file read at the start).

The JUnit file is the run's (run.junit_xml, or for an older report config.junit_xml from the
current folder), rewritten only while it still holds that run's results: a regular file, never
a link, whose suite names the run. One that is gone is not created again and one holding another
run's results is left alone (a WARNING says so); a --junit-xml given to the rerun gets the merged
state too, never the rerun's own handful of cases.

Once merged, the rerun's folder is removed when it sits beside the run (it is this process's own,
and everything in it is now in the run's folder): the output folder holds one folder per night.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.clock import documents_moment, iso_time
from runner.config import is_author, setting
from runner.decks.book import DECK_NAME, DeckBook
from runner.errors import ChartError, ErrorType, UsageError
from runner.files import safe_part, write_atomically, written_atomically
from runner.junit import write_junit
from runner.outcomes import MerchantOutcome, Tally, spooled
from runner.read_back import read_data, read_png
from runner.records import ChartData, ChartJob, PdfConversion
from runner.report import ReportWriteError, Sections, names_of, write_report_sections
from runner.report_reader import MerchantRows, ReportFile
from runner.rerun import MergeTarget, Rerun, recorded_setting, report_groups
from runner.run import WrittenReport
from runner.run_folders import point_latest, prune_runs
from runner.run_report import junit_failed
from runner.status import BatchStatus, ChartStatus, ExitCode, PartialDecks, PdfEngine

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


def _recorded_author(report: dict[str, Any]) -> str:
    """The run's own deck_author, as its report recorded it (read back: only a printable name counts)."""
    value = recorded_setting(report, "deck_author")
    return value if is_author(value) else setting("deck_author").default


def _recorded_pdf(report: dict[str, Any]) -> PdfConversion:
    """How the run made its PDFs, as its report recorded it (read back: only a known engine and a
    positive timeout count), so a merged deck's PDF is made as the others were."""
    engine, timeout = recorded_setting(report, "pdf_engine"), recorded_setting(report, "pdf_timeout_seconds")
    return PdfConversion(PdfEngine(engine if engine in tuple(PdfEngine) else setting("pdf_engine").default),
                         float(timeout) if type(timeout) in (int, float) and 0 < timeout <= 3600
                         else setting("pdf_timeout_seconds").default)


def _decks(target: MergeTarget, group: MerchantRows, charts: list[_Chart], touched: bool) -> list[dict[str, Any]]:
    """The merchant's deck rows (paths recomputed); when the rerun touched it, rebuilt by the run's
    own deck ledger from its charts checked on disk."""
    from runner.decks.build import build_deck

    rerun, merchant = target.rerun, group.merchant
    decks = [{**d, "output": str(rerun.run_dir / safe_part(d["merchant"]) / f"{DECK_NAME}.{d['format']}")
              if d["output"] else None} for d in group.decks]
    if not rerun.deck_formats or not touched:
        return decks
    run = rerun.head["run"]
    jobs = [ChartJob(merchant, rerun.specs[c.row["chart_id"]], run["start_date"], run["end_date"],
                     str(_base(rerun.run_dir, merchant, c.row["chart_id"]).with_suffix(".png"))) for c in charts]
    book = DeckBook(jobs, rerun.deck_formats, target.template, run["started_at"][:10], rerun.figures,
                    partial=_recorded_partial_decks(rerun.head), names=names_of([c.row for c in charts]),
                    author=_recorded_author(rerun.head), pdf=_recorded_pdf(rerun.head),
                    made_at=documents_moment(datetime.now(UTC), os.environ).isoformat())
    data: dict[str, ChartData | None] = {c.row["chart_id"]: c.data for c in charts}
    errors: dict[str, str | None] = {c.row["chart_id"]: f"{c.row['error_type']}: {c.row['error']}"
                                     for c in charts if c.row["error"]}
    task = book.task(merchant, data, errors)
    if task is not None:
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


def recounted(original: dict[str, Any], tally: Tally) -> dict[str, Any]:
    """The report's head with every figure derived from the rows counted again (`tally`, over the merged rows)."""
    metrics = _section(original, "metrics")
    counted = tally.metrics()
    return {**original, "run": {**original["run"], **tally.run_counts(interrupted=False, unreachable=False),
                                "error": None},
            "metrics": {**metrics, "errors_by_type": counted["errors_by_type"],
                        "retrieval": {**_section(metrics, "retrieval"), **counted["retrieval"]},
                        "decks": {**_section(metrics, "decks"), **counted["decks"]}}}


def _recorded_junit(rerun: Rerun) -> Path | None:
    """Where the run wrote its JUnit file: run.junit_xml, or (a report from before it) the
    config's junit_xml from the current folder."""
    recorded = rerun.head["run"].get("junit_xml")
    if recorded is None:
        recorded = recorded_setting(rerun.head, "junit_xml")
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


def _write_junit(target: MergeTarget, report: dict[str, Any], sections: Sections) -> None:
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
            write_junit(path, report, sections)
            logger.info("JUnit file {} rewritten to the merged state", path)
        except ReportWriteError as exc:
            junit_failed(report, str(exc))


@dataclass
class _Redone:
    """What the rerun redid, as the merge walks it: run.merged's record."""

    charts: list[str] = field(default_factory=list)
    ok: int = 0


def _merged(target: MergeTarget, group: MerchantRows, mine: MerchantRows | None, rerun_dir: Path,
            redone: _Redone) -> MerchantOutcome:
    """One merchant of the run with the rerun's outcome of its charts folded in."""
    rerun = target.rerun
    again = {row["chart_id"]: row for row in mine.charts} if mine else {}
    # A rerun chart keeps the run and batch it had here, so batches and charts still join (the
    # rerun's folder is gone once merged; run.merged says which charts it redid).
    charts = [_place(rerun, {**again[c["chart_id"]], "run_id": c["run_id"], "batch_id": c["batch_id"]}, rerun_dir)
              if c["chart_id"] in again else _in_place(rerun, c, bool(again)) for c in group.charts]
    rows = [chart.row for chart in charts]
    redone.charts += [f"{group.merchant}/{chart_id}" for chart_id in again]
    redone.ok += sum(1 for row in rows if row["chart_id"] in again and row["status"] == ChartStatus.OK)
    batches = _batches(group.batches, rows, {(group.merchant, chart_id) for chart_id in again})
    return MerchantOutcome.of(batches, rows, _decks(target, group, charts, bool(again)), rerun.deck_formats)


def _outcomes(target: MergeTarget, rerun_file: ReportFile, rerun_dir: Path, redone: _Redone
              ) -> Iterator[MerchantOutcome]:
    """The run's merchants, in its order, each with the rerun's rows of it (the rerun ran the
    run's failed charts in the run's order of merchants)."""
    rerun = target.rerun
    reruns = report_groups(rerun_file, rerun.specs, f"the rerun's report {rerun_file.path}")
    mine = next(reruns, None)
    for group in rerun.groups():
        if mine is not None and mine.merchant == group.merchant:
            yield _merged(target, group, mine, rerun_dir, redone)
            mine = next(reruns, None)
        else:
            yield _merged(target, group, None, rerun_dir, redone)
    if mine is not None:  # the rerun ran what the run listed, in its order: anything else is a bug
        raise RuntimeError(f"the rerun's charts of merchant {mine.merchant} are not in the run's order")


def _keep_before(rerun: Rerun, rerun_id: str) -> None:
    """The report the merge replaces, kept beside it as it was read."""
    path = rerun.run_dir / f"report.before-{rerun_id}.json"
    try:
        with written_atomically(path) as out:
            rerun.file.copy_to(out)
    except OSError as exc:
        raise ReportWriteError(f"cannot merge into {rerun.run_dir}: {path}: {exc.strerror or exc}") from None


def merge(target: MergeTarget, outcome: WrittenReport) -> tuple[Path, dict[str, Any]]:
    """The original run with the rerun's outcome folded in, a merchant at a time, written as a run
    writes its report (runner.outcomes, runner.report); returns (report path, report but its rows)."""
    rerun = target.rerun
    rerun_dir = outcome.report_path.parent
    with ReportFile(outcome.report_path, f"--merge: the rerun's report {outcome.report_path}") as rerun_file:
        try:
            rerun_run = rerun_file.head()["run"]
        except (ValueError, KeyError, TypeError) as exc:  # our own report, just written: a bug
            raise UsageError(f"--merge: the rerun's report {outcome.report_path} cannot be read ({exc})") from None
        redone = _Redone()
        with spooled(_outcomes(target, rerun_file, rerun_dir, redone), rerun.run_dir) as sections:
            report = recounted(rerun.head, Tally.of(sections))
            report["run"].update(output_dir=str(rerun.run_dir), merged=[
                *rerun.head["run"]["merged"],
                {"at": iso_time(datetime.now(UTC)), "rerun_run_id": rerun_run["run_id"], "charts": redone.charts,
                 "charts_ok": redone.ok, "server": rerun_run["server"]}])
            _write_junit(target, report, sections)  # before the report: a report on disk means everything was written
            _keep_before(rerun, rerun_run["run_id"])
            path = write_report_sections(rerun.run_dir, report, sections,
                                         with_csv=(rerun.run_dir / "charts.csv").exists())
    run = report["run"]
    logger.info("merged into {}: {} of {} rerun chart(s) now ok; {} chart(s) ok of {} (exit {})", path, redone.ok,
                len(redone.charts), run["charts_ok"], run["charts_total"], ExitCode(run["exit_code"]).value)
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
