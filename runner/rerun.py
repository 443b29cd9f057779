"""Rerun only what failed (the merge back into the original run is runner.merge).

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

A rerun reads the server the run read (`run.server`, runner.server_record): the server comes
from the flags, environment and job file as for any run (the report holds no credential) and
must be the one recorded; another, or none for a run that read a real server, is refused before
any work. A report from before the record is refused unless --rerun-server-anyway, with which
the rerun reads whatever server it is given (the embedded demo server when given none).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import DEFAULT_PACK, ChartSpec, load_pack
from runner.decks.book import DeckResult
from runner.errors import ErrorType, UsageError, one_line
from runner.figures import KeyFigure
from runner.files import read_input, safe_part
from runner.merchants import check_merchant_token, merchant_name
from runner.report import BATCH_COLUMNS, CHART_COLUMNS, names_of
from runner.request import JobInputs, check_dates
from runner.run import MAX_TEMPLATE_BYTES
from runner.run_folders import is_run_id
from runner.server_record import ServerKind, ServerRecord, recorded_server, server_record
from runner.status import BatchStatus, ChartStatus, DeckFormat, DeckStatus, ExitCode

MAX_REPORT_BYTES = 200_000_000
RERUN = (ChartStatus.FAILED, ChartStatus.CANCELLED)
DECK_FORMATS = tuple(fmt.value for fmt in DeckFormat)
DECK_COLUMNS = tuple(f.name for f in fields(DeckResult))
_SCALAR = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Rerun:
    report_path: Path  # the original report, its symlinks resolved
    raw: bytes  # the report as read: kept beside the merged one
    report: dict[str, Any]  # checked: its charts and decks rows hold exactly the report's columns
    specs: dict[str, ChartSpec]  # the run's pack, by chart id
    pairs: tuple[tuple[str, str], ...]  # (merchant, chart id) to run again, in the report's order
    server: ServerRecord | None  # the server the run read; None in a report from before the record
    figures: tuple[KeyFigure, ...] = ()  # the pack's key figures, for the decks a merge builds again

    @property
    def run_dir(self) -> Path:
        return self.report_path.parent


@dataclass(frozen=True)
class MergeTarget:
    """The original run, checked as a place to merge into before the rerun starts."""

    rerun: Rerun
    template: bytes | None  # the PPTX template its decks are rebuilt with
    junit_xml: Path | None  # a JUnit file named now (flag, environment, job file): the merged state goes there too


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
        # Text from outside like the rest: cleaned and bounded; the token in a report from before names.
        row["merchant_name"] = merchant_name(row["merchant_name"], row["merchant"])
        return row["merchant"], f"chart {row['chart_id']}"
    return checked


def _deck_row(row: dict[str, Any], here: str) -> tuple[str, str]:
    if row["format"] not in DECK_FORMATS:
        raise _Bad(f"{here}.format is {one_line(repr(row['format']), 60)}")
    row["status"] = _member(DeckStatus, row["status"], f"{here}.status")
    return row["merchant"], f"the {row['format']} deck"


def _checked(report: Any, where: str) -> tuple[dict[str, Any], dict[str, ChartSpec], tuple[KeyFigure, ...]]:
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
    if not isinstance(merged, list):
        raise _Bad("run.merged is not a list")
    pack = _pack(run)
    if not isinstance(pack, str) or one_line(pack) != pack:
        raise _Bad(f"run.pack is {one_line(repr(pack), 60)}")
    loaded = load_pack(pack)
    specs = {spec.id: spec for spec in loaded.charts}
    checked = {**report, "run": {**run, "merged": [_merge_entry(entry) for entry in merged]},
               "charts": _rows(report, "charts", CHART_COLUMNS, where, _chart_row(specs, where)),
               "decks": _rows(report, "decks", DECK_COLUMNS, where, _deck_row),
               "batches": [_batch_row(row, f"batches[{i}]") for i, row in enumerate(_field(report, "batches", list,
                                                                                          "report"))]}
    return checked, specs, loaded.figures


def recorded_setting(report: dict[str, Any], name: str) -> Any:
    """A setting's value as the run's report recorded it (config.<name>.value); None where the
    report has none. Read back from a file, so of any type."""
    config = report.get("config")
    recorded = config.get(name) if isinstance(config, dict) else None
    return recorded.get("value") if isinstance(recorded, dict) else None


def _pack(run: dict[str, Any]) -> Any:
    """The run's pack as its report records it (checked by _checked); a report without one ran the default."""
    return run.get("pack") or DEFAULT_PACK


def _merge_entry(entry: Any) -> Any:
    """One entry of run.merged: a rerun's run id (reports before the record), or the record of a merge."""
    if isinstance(entry, str) and is_run_id(entry):
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get("rerun_run_id"), str) or not is_run_id(
            entry["rerun_run_id"]) or not isinstance(entry.get("at"), str) or not isinstance(entry.get("charts"), list):
        raise _Bad(f"run.merged holds {one_line(repr(entry), 60)}")
    return {"at": one_line(entry["at"], 40), "rerun_run_id": entry["rerun_run_id"],
            "charts": [_field({"chart": chart}, "chart", str, "run.merged[].charts") for chart in entry["charts"]],
            "charts_ok": _field(entry, "charts_ok", int, "run.merged[]"),
            "server": _entry_server(entry)}


def _as_report(server: ServerRecord | None) -> dict[str, str] | None:
    return server.as_report() if server else None


def _entry_server(entry: dict[str, Any]) -> dict[str, str] | None:
    try:
        return _as_report(recorded_server({"server": entry.get("server")}))
    except UsageError as exc:
        raise _Bad(f"run.merged[].server: {exc}") from None


def _batch_row(raw: Any, here: str) -> dict[str, Any]:
    """A batches row, cut to the report's columns; a merge recounts its status from its charts."""
    if not isinstance(raw, dict) or not all(isinstance(raw.get(column), _SCALAR) for column in BATCH_COLUMNS):
        raise _Bad(f"{here} is not a flat object")
    row = {column: raw.get(column) for column in BATCH_COLUMNS}
    for key in ("batch_id", "merchant", "chart_ids"):
        _field(row, key, str, here)
    row["status"] = _member(BatchStatus, row["status"], f"{here}.status")
    return row


def read_rerun(path: str) -> Rerun:
    """The failed and cancelled pairs of a finished run's report."""
    given = Path(path).expanduser()
    where = f"--rerun-failed {path}"
    if given.is_symlink():  # the run folder is the report's own: a link would make another folder the run
        raise UsageError(f"{where} is a link: give the report.json inside the run's folder")
    report_path = given.parent.resolve() / given.name  # the folder may be reached by a link, as `latest` is
    raw = read_input(report_path, "report", MAX_REPORT_BYTES)
    try:
        report, specs, figures = _checked(json.loads(raw.decode("utf-8-sig")), where)
    except (_Bad, ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"{where}: not a runner report ({one_line(str(exc), 200)})") from None
    try:
        server = recorded_server(report["run"])
    except UsageError as exc:
        raise UsageError(f"{where}: not a runner report ({exc})") from None
    pairs = tuple((c["merchant"], c["chart_id"]) for c in report["charts"] if c["status"] in RERUN)
    return Rerun(report_path, raw, report, specs, pairs, server, figures)


def check_server(rerun: Rerun, url: str | None, command: str | None, anyway: bool) -> None:
    """Before any work: the rerun's server (as its flags, environment and job file give it) is
    the one the run read, with the same pack. One line (exit 2) naming both if not, unless
    `anyway`; never the embedded demo server for a run that read another."""
    run_id = rerun.report["run"]["run_id"]
    recorded, pack = rerun.server, _pack(rerun.report["run"])
    how = ("give it as the run had it: SCALAPAY_CONFIG=job.toml (or --config job.toml) with the job file, or "
           "--server-url / --server-command with its credentials")
    if recorded is None:
        if not anyway:
            raise UsageError(f"--rerun-failed: the report of run {run_id} does not say which MCP server it read "
                             "(it predates the record); rerun with that server and --rerun-server-anyway")
        logger.warning("the report of run {} does not say which MCP server it read: --rerun-server-anyway", run_id)
        return
    if recorded.kind is not ServerKind.EMBEDDED and not (url or command):
        raise UsageError(f"--rerun-failed: run {run_id} read {recorded.describe()}, and this rerun is given no "
                         f"server (it would start the embedded demo server); {how}")
    now = server_record(url, command, pack)
    if now.fingerprint == recorded.fingerprint:
        return
    if (now.kind, now.target) == (recorded.kind, recorded.target):
        line = (f"run {run_id} read {recorded.describe()} with pack {pack} as it was then, and that pack "
                "has changed since")
    else:
        line = f"run {run_id} read {recorded.describe()}; this rerun would read {now.describe()}"
    if not anyway:
        raise UsageError(f"--rerun-failed: {line}: refusing to merge numbers from another source ({how}; or "
                         "--rerun-server-anyway)")
    logger.warning("{} (--rerun-server-anyway)", line)


def rerun_inputs(rerun: Rerun, demo_server_args: tuple[str, ...] = ()) -> JobInputs:
    run = rerun.report["run"]
    charts = tuple(rerun.specs[chart] for chart in dict.fromkeys(chart for _, chart in rerun.pairs))
    merchants = tuple(dict.fromkeys(merchant for merchant, _ in rerun.pairs))
    return JobInputs(merchants=merchants, charts=charts, start_date=run["start_date"], end_date=run["end_date"],
                     demo_server_args=demo_server_args, pack=_pack(run), only=rerun.pairs,
                     reruns=str(rerun.report_path), figures=rerun.figures,
                     merchant_names=tuple(names_of([c for c in rerun.report["charts"] if c["merchant"] in merchants])
                                          .items()))


# -- before the rerun: is the original run a place we may write? ------------------------------------


def _check_writable(folder: Path) -> None:
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(f"--merge: cannot write into {folder}: {exc.strerror or exc}") from None


def merge_target(rerun: Rerun, deck_template: str | None, junit_xml: str | None) -> MergeTarget:
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
    path = deck_template or recorded_setting(rerun.report, "deck_template")
    if path is not None and any(d["format"] == DeckFormat.PPTX for d in rerun.report["decks"]):
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
    return MergeTarget(rerun, template, Path(junit_xml).expanduser().absolute() if junit_xml else None)
