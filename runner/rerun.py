"""Rerun only what failed (the merge back into the original run is runner.merge).

`--rerun-failed PATH/report.json` runs exactly the (merchant, chart) pairs that were failed or
cancelled there, with that run's dates and pack; the rerun's own folder holds no decks (a
merchant's deck needs all its charts). `--merge` then writes the combined outcome into the
original run's folder: charts that now succeeded replace the failed ones, their PNG and data
files placed where the original run would have put them, the touched merchants' decks rebuilt
from every chart on disk, and report.json rewritten (the one it replaces kept beside it).

The report is input like a flag, read a row at a time (runner.report_reader: never the whole
chart list in memory): its structure, tokens and chart ids are checked as on the command line, and
no path is taken from it. Every file is found from the folder the report is
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

import os
import tempfile
from collections.abc import Iterator
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
from runner.merchants import merchant_name
from runner.report import BATCH_COLUMNS, CHART_COLUMNS, names_of
from runner.report_reader import (
    BadReport,
    Checked,
    MerchantRows,
    ReportFile,
    RowKind,
    check_row,
    merchant_groups,
    shown,
    typed,
)
from runner.request import JobInputs, check_dates
from runner.run import MAX_TEMPLATE_BYTES
from runner.run_folders import is_run_id
from runner.server_record import ServerKind, ServerRecord, recorded_server, server_record
from runner.status import BatchStatus, ChartStatus, DeckFormat, DeckStatus, ExitCode

RERUN = (ChartStatus.FAILED, ChartStatus.CANCELLED)
DECK_COLUMNS = tuple(f.name for f in fields(DeckResult))
# The report's rows as a rerun and a merge read them: a merchant's charts and decks each listed once.
KINDS = {"charts": RowKind(CHART_COLUMNS, enums={"status": ChartStatus, "error_type": ErrorType}, key="chart_id"),
         "decks": RowKind(DECK_COLUMNS, enums={"format": DeckFormat, "status": DeckStatus}, key="format"),
         "batches": RowKind(BATCH_COLUMNS, cells={"batch_id": str, "chart_ids": str}, enums={"status": BatchStatus})}


@dataclass(frozen=True)
class Rerun:
    """A finished run's report, read and checked a row at a time; what the rerun and a merge need
    of it beside its rows, which `groups` walks again (from the file opened at the start)."""

    report_path: Path  # the original report, its symlinks resolved
    file: ReportFile  # open: the merge reads the report that was checked, and keeps it beside the merged one
    head: dict[str, Any]  # the report but its rows, checked: run, config, environment, metrics
    specs: dict[str, ChartSpec]  # the run's pack, by chart id
    pairs: tuple[tuple[str, str], ...]  # (merchant, chart id) to run again, in the report's order
    server: ServerRecord | None  # the server the run read; None in a report from before the record
    figures: tuple[KeyFigure, ...] = ()  # the pack's key figures, for the decks a merge builds again
    names: tuple[tuple[str, str], ...] = ()  # the display names of the merchants run again
    chart_ids: tuple[str, ...] = ()  # the charts the report lists
    deck_formats: tuple[str, ...] = ()  # the deck formats it lists, in its order

    @property
    def run_dir(self) -> Path:
        return self.report_path.parent

    @property
    def where(self) -> str:
        return f"--rerun-failed {self.report_path}"

    def groups(self) -> Iterator[MerchantRows]:
        """The report's rows a merchant at a time, checked as when it was first read."""
        return report_groups(self.file, self.specs, self.where)


@dataclass(frozen=True)
class MergeTarget:
    """The original run, checked as a place to merge into before the rerun starts."""

    rerun: Rerun
    template: bytes | None  # the PPTX template its decks are rebuilt with
    junit_xml: Path | None  # a JUnit file named now (flag, environment, job file): the merged state goes there too


def _checked_row(specs: dict[str, ChartSpec], where: str) -> Checked:
    """The rerun's checks of a row: the reader's, and a chart's id one of the pack's, its text cleaned."""
    def checked(section: str, here: str, raw: dict[str, Any]) -> dict[str, Any]:
        row = check_row(raw, here, KINDS[section])
        if section != "charts":
            return row
        if row["chart_id"] not in specs:
            raise UsageError(f"{where}: {here}: the pack has no chart {one_line(repr(row['chart_id']), 80)}")
        if row["error"] is not None:
            row["error"] = one_line(str(row["error"]))
        # Text from outside like the rest: cleaned and bounded; the token in a report from before names.
        row["merchant_name"] = merchant_name(row["merchant_name"], row["merchant"])
        return row
    return checked


def report_groups(file: ReportFile, specs: dict[str, ChartSpec], where: str) -> Iterator[MerchantRows]:
    """A report's rows a merchant at a time, checked as a rerun checks them; UsageError naming `where`."""
    try:
        yield from merchant_groups(file, KINDS, _checked_row(specs, where))
    except BadReport as exc:
        raise UsageError(f"{where}: not a runner report ({one_line(str(exc), 200)})") from None


def _checked_head(head: dict[str, Any]) -> tuple[dict[str, Any], dict[str, ChartSpec], tuple[KeyFigure, ...]]:
    """The report's run, checked as the command line checks what it gives."""
    run = typed(head, "run", dict, "report")
    if not is_run_id(typed(run, "run_id", str, "run")):
        raise BadReport(f"run.run_id {shown(run['run_id'])} is not a run id")
    try:
        check_dates(typed(run, "start_date", str, "run"), typed(run, "end_date", str, "run"))
        date.fromisoformat(typed(run, "started_at", str, "run")[:10])
    except (UsageError, ValueError) as exc:
        raise BadReport(f"its dates: {exc}") from None
    if typed(run, "exit_code", int, "run") not in tuple(ExitCode):
        raise BadReport(f"run.exit_code is {shown(run['exit_code'])}")
    merged = run.get("merged", [])
    if not isinstance(merged, list):
        raise BadReport("run.merged is not a list")
    pack = _pack(run)
    if not isinstance(pack, str) or one_line(pack) != pack:
        raise BadReport(f"run.pack is {shown(pack)}")
    loaded = load_pack(pack)
    checked = {**head, "run": {**run, "merged": [_merge_entry(entry) for entry in merged]}}
    return checked, {spec.id: spec for spec in loaded.charts}, loaded.figures


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
        raise BadReport(f"run.merged holds {shown(entry)}")
    return {"at": one_line(entry["at"], 40), "rerun_run_id": entry["rerun_run_id"],
            "charts": [typed({"chart": chart}, "chart", str, "run.merged[].charts") for chart in entry["charts"]],
            "charts_ok": typed(entry, "charts_ok", int, "run.merged[]"),
            "server": _entry_server(entry)}


def _as_report(server: ServerRecord | None) -> dict[str, str] | None:
    return server.as_report() if server else None


def _entry_server(entry: dict[str, Any]) -> dict[str, str] | None:
    try:
        return _as_report(recorded_server({"server": entry.get("server")}))
    except UsageError as exc:
        raise BadReport(f"run.merged[].server: {exc}") from None


def read_rerun(path: str) -> Rerun:
    """The failed and cancelled pairs of a finished run's report, read a row at a time."""
    given = Path(path).expanduser()
    where = f"--rerun-failed {path}"
    if given.is_symlink():  # the run folder is the report's own: a link would make another folder the run
        raise UsageError(f"{where} is a link: give the report.json inside the run's folder")
    report_path = given.parent.resolve() / given.name  # the folder may be reached by a link, as `latest` is
    file = ReportFile(report_path, where)
    try:
        try:
            head, specs, figures = _checked_head(file.head())
            server = recorded_server(head["run"])
        except (BadReport, UsageError) as exc:
            raise UsageError(f"{where}: not a runner report ({one_line(str(exc), 200)})") from None
        pairs: list[tuple[str, str]] = []
        names: dict[str, str] = {}
        chart_ids: dict[str, None] = {}
        formats: dict[str, None] = {}
        for group in report_groups(file, specs, where):
            chart_ids.update(dict.fromkeys(row["chart_id"] for row in group.charts))
            formats.update(dict.fromkeys(row["format"] for row in group.decks))
            failed = [(row["merchant"], row["chart_id"]) for row in group.charts if row["status"] in RERUN]
            if failed:
                pairs += failed
                names.update(names_of(group.charts))
    except BaseException:
        file.close()
        raise
    return Rerun(report_path, file, head, specs, tuple(pairs), server, figures, tuple(names.items()),
                 tuple(chart_ids), tuple(formats))


def check_server(rerun: Rerun, url: str | None, command: str | None, anyway: bool) -> None:
    """Before any work: the rerun's server (as its flags, environment and job file give it) is
    the one the run read, with the same pack. One line (exit 2) naming both if not, unless
    `anyway`; never the embedded demo server for a run that read another."""
    run_id = rerun.head["run"]["run_id"]
    recorded, pack = rerun.server, _pack(rerun.head["run"])
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
    run = rerun.head["run"]
    charts = tuple(rerun.specs[chart] for chart in dict.fromkeys(chart for _, chart in rerun.pairs))
    merchants = tuple(dict.fromkeys(merchant for merchant, _ in rerun.pairs))
    return JobInputs(merchants=merchants, charts=charts, start_date=run["start_date"], end_date=run["end_date"],
                     demo_server_args=demo_server_args, pack=_pack(run), only=rerun.pairs,
                     reruns=str(rerun.report_path), figures=rerun.figures,
                     merchant_names=rerun.names)


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
    path = deck_template or recorded_setting(rerun.head, "deck_template")
    if path is not None and DeckFormat.PPTX in rerun.deck_formats:
        hint = "" if deck_template else " (the run's own; give --deck-template to use another)"
        if not isinstance(path, str) or one_line(path) != path:
            raise UsageError(f"--rerun-failed {rerun.report_path}: its deck_template {one_line(repr(path), 80)} "
                             "is not a path")
        charts = tuple(rerun.specs[c] for c in rerun.chart_ids)
        try:
            template = read_input(Path(path).expanduser(), "deck template", MAX_TEMPLATE_BYTES)
            check_template(template, charts, path, rerun.figures)
        except UsageError as exc:
            raise UsageError(f"--merge: {exc}{hint}") from None
    return MergeTarget(rerun, template, Path(junit_xml).expanduser().absolute() if junit_xml else None)
