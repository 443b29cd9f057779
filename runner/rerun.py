"""Rerun only what failed, and merge the outcome back into the original run.

`--rerun-failed PATH/report.json` runs exactly the (merchant, chart) pairs that were failed or
cancelled there, with that run's dates and pack; the rerun's own folder holds no decks (a
merchant's deck needs all its charts). `--merge` then writes the combined outcome into the
original run's folder: charts that now succeeded replace the failed ones, their PNG and data
files placed where the original run would have put them, the touched merchants' decks rebuilt
from every chart on disk, and report.json rewritten (the one it replaces kept beside it).

The report is input like a flag: its structure, tokens and chart ids are checked as on the
command line, and no path is taken from it. Every file is found from the folder the report is
in (so a moved or copied run reads its own files), and every file read back is bounded, never
read through a link, and checked (a PNG against its recorded hash, data against its chart's
shape): one that fails fails its chart, not the merge. A folder of the run that is a link is
refused before any work, as is a run folder that cannot be written.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import ChartSpec, load_pack
from runner.decks.book import DECK_NAME, DeckBook, DeckResult
from runner.errors import ChartError, ErrorType, UsageError, one_line
from runner.files import read_input, write_atomically
from runner.job import JobInputs, check_dates
from runner.jobs import ChartData, ChartJob, check_merchant_token, safe_part
from runner.report import CHART_COLUMNS, ReportWriteError, merchant_rows, write_report
from runner.run import MAX_TEMPLATE_BYTES, RunOutcome, exit_code_for
from runner.runs import is_run_id, point_latest, prune_runs
from runner.status import ChartStatus, DeckStatus, ExitCode

MAX_REPORT_BYTES = 200_000_000
MAX_PNG_BYTES = 50_000_000
MAX_DATA_BYTES = 10_000_000  # a chart's data is at most 50 series of 1,000 values
RERUN = (ChartStatus.FAILED, ChartStatus.CANCELLED)
DECK_FORMATS = ("pdf", "pptx")
DECK_COLUMNS = tuple(f.name for f in fields(DeckResult))
_SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Rerun:
    report_path: Path  # the original report, its symlinks resolved
    raw: bytes  # the report as read: kept beside the merged one
    report: dict[str, Any]  # checked: its charts and decks rows hold exactly the report's columns
    specs: dict[str, ChartSpec]  # the run's pack, by chart id
    pairs: tuple[tuple[str, str], ...]  # (merchant, chart id) to run again, in the report's order

    @property
    def run_dir(self) -> Path:
        return self.report_path.parent


@dataclass(frozen=True)
class MergeTarget:
    """The original run, checked as a place to merge into before the rerun starts."""

    rerun: Rerun
    template: bytes | None  # the PPTX template its decks are rebuilt with


class _Bad(ValueError):
    """A report that is not one the runner wrote; becomes one UsageError line."""


def _field(record: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    value = record.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool):  # JSON true is no count
        raise _Bad(f"{where}.{key} is {one_line(repr(value), 60)}")
    return value


def _member(kind: Any, value: Any, where: str) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        raise _Bad(f"{where} is {one_line(repr(value), 60)}") from None


def _rows(report: dict[str, Any], section: str, columns: tuple[str, ...], where: str,
          checked: Callable[[dict[str, Any], str], tuple[str, str]]) -> list[dict[str, Any]]:
    """A charts or decks list: each row flat, with exactly the report's columns, its merchant a
    token as on the command line, and listed once (`checked` checks the rest and names the row)."""
    rows, seen = [], set()
    for i, raw in enumerate(_field(report, section, list, "report") if section in report else []):
        here = f"{section}[{i}]"
        if not isinstance(raw, dict) or not all(isinstance(raw.get(column), _SCALAR) for column in columns):
            raise _Bad(f"{here} is not a flat object")
        row = {column: raw.get(column) for column in columns}
        if not isinstance(row["merchant"], str) or check_merchant_token(row["merchant"], f"{where}: {here}") != \
                row["merchant"]:
            raise UsageError(f"{where}: {here}: merchant token {one_line(repr(row['merchant']), 60)} is not one")
        key = checked(row, here)
        if key in seen:
            raise UsageError(f"{where}: {key[1]} of merchant {key[0]} is listed twice")
        seen.add(key)
        rows.append(row)
    return rows


def _chart_row(specs: dict[str, ChartSpec], where: str) -> Callable[[dict[str, Any], str], tuple[str, str]]:
    def checked(row: dict[str, Any], here: str) -> tuple[str, str]:
        if row["chart_id"] not in specs:
            raise UsageError(f"{where}: {here}: the pack has no chart {one_line(repr(row['chart_id']), 80)}")
        row["status"] = _member(ChartStatus, row["status"], f"{here}.status")
        if row["error_type"] is not None:
            row["error_type"] = _member(ErrorType, row["error_type"], f"{here}.error_type")
        if row["error"] is not None:
            row["error"] = one_line(str(row["error"]))
        return row["merchant"], f"chart {row['chart_id']}"
    return checked


def _deck_row(row: dict[str, Any], here: str) -> tuple[str, str]:
    if row["format"] not in DECK_FORMATS:
        raise _Bad(f"{here}.format is {one_line(repr(row['format']), 60)}")
    row["status"] = _member(DeckStatus, row["status"], f"{here}.status")
    return row["merchant"], f"the {row['format']} deck"


def _checked(report: Any, where: str) -> tuple[dict[str, Any], dict[str, ChartSpec]]:
    """The report's parts the rerun uses, checked as the command line checks them."""
    if not isinstance(report, dict):
        raise _Bad("it is not a JSON object")
    run = _field(report, "run", dict, "report")
    if not is_run_id(_field(run, "run_id", str, "run")):
        raise _Bad(f"run.run_id {one_line(repr(run['run_id']), 60)} is not a run id")
    try:
        check_dates(_field(run, "start_date", str, "run"), _field(run, "end_date", str, "run"))
        date.fromisoformat(_field(run, "started_at", str, "run")[:10])
    except (UsageError, ValueError) as exc:
        raise _Bad(f"its dates: {exc}") from None
    _member(ExitCode, _field(run, "exit_code", int, "run"), "run.exit_code")
    merged = run.get("merged", [])
    if not isinstance(merged, list) or not all(isinstance(m, str) and is_run_id(m) for m in merged):
        raise _Bad("run.merged is not a list of run ids")
    pack = run.get("pack") or "business-review"
    if not isinstance(pack, str) or one_line(pack) != pack:
        raise _Bad(f"run.pack is {one_line(repr(pack), 60)}")
    specs = {spec.id: spec for spec in load_pack(pack)}
    checked = {**report, "charts": _rows(report, "charts", CHART_COLUMNS, where, _chart_row(specs, where)),
               "decks": _rows(report, "decks", DECK_COLUMNS, where, _deck_row)}
    return checked, specs


def read_rerun(path: str) -> Rerun:
    """The failed and cancelled pairs of a finished run's report."""
    report_path = Path(path).expanduser().resolve()
    where = f"--rerun-failed {path}"
    raw = read_input(report_path, "report", MAX_REPORT_BYTES)
    try:
        report, specs = _checked(json.loads(raw.decode("utf-8-sig")), where)
    except (_Bad, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"{where}: not a runner report ({one_line(str(exc), 200)})") from None
    pairs = tuple((c["merchant"], c["chart_id"]) for c in report["charts"] if c["status"] in RERUN)
    return Rerun(report_path, raw, report, specs, pairs)


def rerun_inputs(rerun: Rerun, demo_server_args: tuple[str, ...] = ()) -> JobInputs:
    run = rerun.report["run"]
    charts = tuple(rerun.specs[chart] for chart in dict.fromkeys(chart for _, chart in rerun.pairs))
    merchants = tuple(dict.fromkeys(merchant for merchant, _ in rerun.pairs))
    return JobInputs(merchants=merchants, charts=charts, start_date=run["start_date"], end_date=run["end_date"],
                     demo_server_args=demo_server_args, pack=run.get("pack") or "business-review", only=rerun.pairs,
                     reruns=str(rerun.report_path))


# -- before the rerun: is the original run a place we may write? ------------------------------------


def _check_writable(folder: Path) -> None:
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(f"--merge: cannot write into {folder}: {exc.strerror or exc}") from None


def merge_target(rerun: Rerun, deck_template: str | None) -> MergeTarget:
    """The original run as a place to merge into, checked before any work: its folder and the
    folders of the merchants it will touch are real, writable folders (a link there could send
    files outside the run), and the deck template can build its decks. The template is the one
    given now (flag, environment, config file), else the one the run recorded; either is read
    with the checks of the command line."""
    from runner.decks.powerpoint import check_template

    _check_writable(rerun.run_dir)
    for merchant in dict.fromkeys(m for m, _ in rerun.pairs):
        folder = rerun.run_dir / safe_part(merchant)
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UsageError(f"--merge: {folder} is not a folder of the run (a link or a file): refusing to "
                             "write through it")
        if folder.exists():
            _check_writable(folder)
    template = None
    config = rerun.report.get("config")
    recorded = config.get("deck_template") if isinstance(config, dict) else None
    path = deck_template or (recorded.get("value") if isinstance(recorded, dict) else None)
    if path is not None and any(d["format"] == "pptx" for d in rerun.report["decks"]):
        hint = "" if deck_template else " (the run's own; give --deck-template to use another)"
        if not isinstance(path, str) or one_line(path) != path:
            raise UsageError(f"--rerun-failed {rerun.report_path}: its deck_template {one_line(repr(path), 80)} "
                             "is not a path")
        charts = tuple(rerun.specs[c] for c in dict.fromkeys(row["chart_id"] for row in rerun.report["charts"]))
        try:
            template = read_input(Path(path).expanduser(), "deck template", MAX_TEMPLATE_BYTES)
            check_template(template, charts, path)
        except UsageError as exc:
            raise UsageError(f"--merge: {exc}{hint}") from None
    return MergeTarget(rerun, template)


# -- reading back what was written --------------------------------------------------------------------


def _read_back(path: Path, limit: int, error_type: ErrorType) -> bytes:
    """A file the runner wrote, read again: a regular file, never through a link, at most `limit`
    bytes. One that is not fails its chart (the report's schema has no write_error for charts,
    so a PNG is a render_error, a data file bad_data)."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        reason = "a symbolic link" if path.is_symlink() else exc.strerror or str(exc)
        raise ChartError(error_type, f"{path}: {reason}") from None
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ChartError(error_type, f"{path}: not a regular file")
        content = file.read(limit + 1)
    if len(content) > limit:
        raise ChartError(error_type, f"{path}: larger than {limit:,} bytes")
    return content


def _png(path: Path, sha256: Any) -> bytes:
    png = _read_back(path, MAX_PNG_BYTES, ErrorType.RENDER_ERROR)
    if hashlib.sha256(png).hexdigest() != sha256:
        raise ChartError(ErrorType.RENDER_ERROR, f"{path}: not the PNG the report records (its sha256 differs)")
    return png


def _data(path: Path, spec: ChartSpec, merchant: str) -> tuple[bytes, ChartData]:
    """A chart's data file, read back and validated as a tool's result is."""
    from runner.retrieval.parse import chart_data_from_json

    content = _read_back(path, MAX_DATA_BYTES, ErrorType.BAD_DATA)
    try:
        document = json.loads(content)
        if not isinstance(document, dict) or (document.get("merchant"), document.get("chart_id")) != (merchant,
                                                                                                      spec.id):
            raise ValueError(f"not the data of chart {spec.id} of merchant {merchant}")
        paragraph = document.get("paragraph")
        if not isinstance(paragraph, str | None):
            raise ValueError("its paragraph is not text")
        return content, chart_data_from_json(spec, merchant, document, paragraph)
    except ChartError as exc:
        raise ChartError(ErrorType.BAD_DATA, f"{path}: {exc.message}") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise ChartError(ErrorType.BAD_DATA, f"{path}: {type(exc).__name__}: {exc}") from None


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
        data = _data(source.with_suffix(".json"), spec, row["merchant"]) if ok or row["data_output"] else None
        png = _png(source.with_suffix(".png"), row["sha256"]) if ok else None
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
        _png(target.with_suffix(".png"), row["sha256"])
        _, data = _data(target.with_suffix(".json"), rerun.specs[row["chart_id"]], row["merchant"])
    except ChartError as exc:
        return _Chart(_failed(row, exc))
    return _Chart(row, data)


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
    book = DeckBook(jobs, formats, target.template, run["started_at"][:10])
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


def merge(target: MergeTarget, outcome: RunOutcome) -> tuple[Path, dict[str, Any]]:
    """The original run with the rerun's outcome folded in; returns (report path, report)."""
    rerun = target.rerun
    rerun_report, rerun_dir = outcome.report, outcome.report_path.parent
    redone = {(c["merchant"], c["chart_id"]): c for c in rerun_report["charts"]}
    touched = {merchant for merchant, _ in redone}
    charts = [_place(rerun, redone[key], rerun_dir) if (key := (c["merchant"], c["chart_id"])) in redone
              else _in_place(rerun, c, c["merchant"] in touched) for c in rerun.report["charts"]]
    decks = _rebuilt_decks(target, charts, touched)
    rows = [chart.row for chart in charts]
    counts = Counter(c["status"] for c in rows)
    decks_failed = sum(1 for d in decks if d["status"] == DeckStatus.FAILED)
    run_status, code = exit_code_for(len(rows), counts[ChartStatus.OK], False, False, decks_failed)
    run = {**rerun.report["run"], "status": run_status, "exit_code": int(code), "charts_ok": counts[ChartStatus.OK],
           "charts_failed": counts[ChartStatus.FAILED], "charts_cancelled": counts[ChartStatus.CANCELLED],
           "charts_skipped": counts[ChartStatus.SKIPPED], "error": None, "output_dir": str(rerun.run_dir),
           "merged": [*rerun.report["run"].get("merged", []), rerun_report["run"]["run_id"]]}
    formats = tuple(dict.fromkeys(d["format"] for d in decks))
    report = {**rerun.report, "run": run, "charts": rows, "decks": decks,
              "merchants": merchant_rows(rows, decks, formats)}
    _write(rerun.run_dir / f"report.before-{rerun_report['run']['run_id']}.json", rerun.raw, rerun.run_dir)
    path = write_report(rerun.run_dir, report, with_csv=(rerun.run_dir / "charts.csv").exists())
    logger.info("merged into {}: {} chart(s) ok of {} (exit {})", path, counts[ChartStatus.OK], len(rows),
                ExitCode(code).value)
    return path, report


def finish(rerun: Rerun, outcome: RunOutcome, target: MergeTarget | None, keep_runs: int | None) -> RunOutcome:
    """After the rerun: the merge (when asked), then --keep-runs, which spares every run this
    process read, wrote or merged into."""
    rerun_dir = outcome.report_path.parent
    if target is not None:
        path, merged = merge(target, outcome)
        if rerun.run_dir.parent == rerun_dir.parent:  # `latest` is ours only in our output folder
            point_latest(rerun.run_dir)  # the merged run is the one to look at now
        outcome = RunOutcome(path, ExitCode(merged["run"]["exit_code"]), merged)
    if keep_runs is not None:
        prune_runs(rerun_dir.parent, keep_runs, rerun_dir, rerun.run_dir)
    return outcome
