"""`python -m runner merge-reports DIR...`: the reports of a CI matrix's shards (`--shard K/N`, one
job each) folded into one run, so the matrix is one nightly result.

Each DIR is a shard's run folder (or the report.json in it), read a row at a time as untrusted
input (runner.report_reader: bounded rows, never the whole chart list in memory): it must parse as
JSON (no NaN), be a report of schema_version 1 with run, charts, decks, batches and merchants, and
hold rows of the report's columns with the types the merge and the JUnit file compute with, a
merchant's rows together; a merchant is a token as on the command line. No path is taken from a report:
a chart's PNG and data and a deck's documents are found in DIR where a run puts them, and linked
(copied across file systems) into the merged run's folder, where its rows point; an ok chart or
built deck whose file is not there (a regular file, not through a link) is refused.

The shards must be one job: the same start_date, end_date and pack, the same charts, the same
shard count N, no shard twice, no merchant in two shards, every merchant in the shard its token
hashes to (runner.shards). A report without a shard (a run without --shard) merges only alone.
Anything else is one line, exit 2, and no folder written.

The merged run: its rows are all shards' rows; status, exit code and every count taken from the
rows are taken again from all of them (runner.outcomes' Tally and MerchantOutcome, as a run counts
and writes its own), as one run of all the merchants would count them.
A shard not given (1/3 and 3/3 without 2/3) is named in run.error and the run is partial at best
(exit 1, or worse as the rows say): a matrix that lost a job must not look green. Each shard's own
run.error is kept there too. run.merged_from lists the shard folders; run.shard is null.
started_at is the earliest shard's, finished_at the latest's, wall_ms the longest shard's (the
jobs of a matrix run side by side), merchants the shards' sum.

Metrics: what counts work is summed (tool calls, sessions, retries, batches, charts rendered and
cached, tokens, CPU time); peaks, maxima and times are the largest shard's (peak_*, max_*,
wall_ms, workers, memory, descriptors). Not merged: percentiles (p50_*, p95_*) and utilization
are null, since the shards' own cannot be combined (the rows keep each chart's times); config,
environment, retrieval_mode and dates_given are the first shard's; run.server is the shards'
when they all read the same server, else left out (a rerun then needs --rerun-server-anyway);
each chart keeps its shard's run_id and batch_id (join charts to batches on merchant and
batch_id: batch ids repeat across shards); a shard's run.merged entries are listed together.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runner.decks.book import DECK_NAME, DeckResult
from runner.errors import ErrorType, ReportWriteError, UsageError, one_line
from runner.files import safe_part
from runner.junit import check_junit_path, write_junit
from runner.outcomes import MerchantOutcome, Tally, spooled
from runner.report import BATCH_COLUMNS, CHART_COLUMNS, SCHEMA_VERSION, write_report_sections
from runner.report_reader import BadReport, MerchantRows, ReportFile, RowKind, check_row, merchant_groups, shown, typed
from runner.run_folders import is_run_id, new_run_dir, point_latest
from runner.run_report import junit_failed
from runner.shards import Shard
from runner.status import BatchStatus, ChartStatus, DeckFormat, DeckStatus, ExitCode, RunStatus

DECK_COLUMNS = tuple(f.name for f in fields(DeckResult))
_TEXT = (str, type(None))
_NUMBER = (int, float, type(None))
# The rows as the merge reads them: the cells it and the JUnit file compute with, and their types.
KINDS = {"charts": RowKind(CHART_COLUMNS, {"run_id": str, "chart_id": str, "title": str, "error": _TEXT,
                                           "batch_id": _TEXT, "retrieve_ms": _NUMBER, "render_ms": _NUMBER,
                                           "output": _TEXT, "data_output": _TEXT},
                           {"status": ChartStatus, "error_type": ErrorType}, key="chart_id"),
         "decks": RowKind(DECK_COLUMNS, {"error": _TEXT, "build_ms": _NUMBER, "output": _TEXT},
                          {"format": DeckFormat, "status": DeckStatus, "error_type": ErrorType}, key="format"),
         "batches": RowKind(BATCH_COLUMNS, {"batch_id": str, "chart_ids": str, "error": _TEXT},
                            {"status": BatchStatus, "error_type": ErrorType})}
_MAXED = frozenset({"wall_ms", "workers", "open_fds_start", "open_fds_end", "dask_workers_seen"})


@dataclass(frozen=True)
class ShardReport:
    """One shard's report, its head checked and its rows checked once; they are read again, a
    merchant at a time, from the file opened at the start."""

    folder: Path  # the shard's run folder, its links resolved
    file: ReportFile
    report: dict[str, Any]  # the report but its rows
    shard: Shard | None  # None: a run without --shard
    chart_ids: list[str]  # sorted
    formats: frozenset[str]  # of its decks
    stray: str | None  # a merchant not in the shard its token hashes to (refused once the job is known)
    missing: str | None  # why a file its rows say is there is not (refused once the job is known)

    @property
    def run(self) -> dict[str, Any]:
        return self.report["run"]

    @property
    def path(self) -> Path:
        return self.folder / "report.json"

    def groups(self) -> Iterator[MerchantRows]:
        try:
            yield from merchant_groups(self.file, KINDS, _checked_row)
        except BadReport as exc:
            raise UsageError(f"merge-reports: {self.path}: not a runner report ({one_line(str(exc), 200)})") from None


@dataclass(frozen=True)
class MergedReport:
    report_path: Path
    report: dict[str, Any]  # but its rows

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode(self.report["run"]["exit_code"])


# -- reading a shard's report ---------------------------------------------------------------------------


def _checked_row(section: str, here: str, raw: dict[str, Any]) -> dict[str, Any]:
    return check_row(raw, here, KINDS[section])


def _checked(document: dict[str, Any], found: frozenset[str]) -> dict[str, Any]:
    """The parts of a report's head the merge reads, checked."""
    if document.get("schema_version") != SCHEMA_VERSION:
        raise BadReport(f"schema_version is {shown(document.get('schema_version'))}, not {SCHEMA_VERSION}")
    for section in ("run", "metrics", "config", "environment"):
        typed(document, section, dict, "report")
    for section in ("batches", "charts", "decks", "merchants"):
        if section not in found:
            raise BadReport(f"report.{section} is None")
    for section in ("retrieval", "render", "tokens", "process", "decks", "errors_by_type"):
        typed(document["metrics"], section, (dict, type(None)), "metrics")
    run = document["run"]
    if not is_run_id(typed(run, "run_id", str, "run")):
        raise BadReport(f"run.run_id {shown(run['run_id'])} is not a run id")
    for key, kinds in (("started_at", str), ("finished_at", str), ("start_date", str), ("end_date", str),
                       ("pack", str), ("wall_ms", (int, float)), ("merchants", int), ("error", _TEXT),
                       ("shard", _TEXT), ("reruns", _TEXT), ("server", (dict, type(None)))):
        typed(run, key, kinds, "run")
    return document


def read_shard(given: Path) -> ShardReport:
    """A shard's run folder (or its report.json), read and checked a row at a time; UsageError naming the file."""
    folder = (given.parent if given.name == "report.json" and not given.is_dir() else given).expanduser().resolve()
    path = folder / "report.json"
    file = ReportFile(path, f"merge-reports: report {path}")
    try:
        try:
            report = _checked(file.head(), file.found)
        except BadReport as exc:
            raise UsageError(f"merge-reports: {path}: not a runner report ({one_line(str(exc), 200)})") from None
        if report["run"]["reruns"]:
            raise UsageError(f"merge-reports: {path} is a rerun's report (--rerun-failed): give the run it reruns")
        shard = report["run"].get("shard")
        one = ShardReport(folder, file, report, None if shard is None else
                          Shard.parse(shard, f"merge-reports: {path}: run.shard"), [], frozenset(), None, None)
        chart_ids: set[str] = set()
        formats: set[str] = set()
        stray = missing = None
        for group in one.groups():
            chart_ids.update(row["chart_id"] for row in group.charts)
            formats.update(row["format"] for row in group.decks)
            if stray is None and one.shard is not None and not one.shard.holds(group.merchant):
                stray = group.merchant
            if missing is None:
                try:
                    _placed(one, group)
                except UsageError as exc:
                    missing = str(exc)
    except BaseException:
        file.close()
        raise
    return ShardReport(folder, file, report, one.shard, sorted(chart_ids), frozenset(formats), stray, missing)


# -- one job? -----------------------------------------------------------------------------------------


def check_one_job(shards: list[ShardReport]) -> list[int]:
    """The shards are one job's, each once, each merchant in the shard its token hashes to (so in
    one shard only); returns the indexes of the shards missing (1..N)."""
    first = shards[0]
    for other in shards[1:]:
        for key in ("start_date", "end_date", "pack"):
            if other.run[key] != first.run[key]:
                raise UsageError(f"merge-reports: {other.path} is another job's: its {key} is "
                                 f"{shown(other.run[key])}, {first.path}'s {shown(first.run[key])}")
        if other.chart_ids != first.chart_ids:
            raise UsageError(f"merge-reports: {other.path} is another job's: its charts are "
                             f"{','.join(other.chart_ids)}, {first.path}'s {','.join(first.chart_ids)}")
    sharded = [(one, one.shard) for one in shards if one.shard is not None]
    if len(sharded) < len(shards):
        if len(shards) > 1:
            unsharded = next(one for one in shards if one.shard is None)
            raise UsageError(f"merge-reports: {unsharded.path} is a run without --shard: it merges only alone")
        return []
    count = sharded[0][1].count
    by_index: dict[int, ShardReport] = {}
    for one, shard in sharded:
        if shard.count != count:
            raise UsageError(f"merge-reports: {one.path} is shard {shard}, {first.path} shard {first.shard}: "
                             "one job's shards share their count N")
        if shard.index in by_index:
            raise UsageError(f"merge-reports: shard {shard} is given twice: {by_index[shard.index].path} and "
                             f"{one.path}")
        by_index[shard.index] = one
        if one.stray is not None:
            raise UsageError(f"merge-reports: {one.path}: merchant {one.stray} is not in shard {shard} (was "
                             "the run's merchant list cut to its shard?)")
    return [index for index in range(1, count + 1) if index not in by_index]


# -- the merged run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    source: Path  # in a shard's run folder
    relative: Path  # where it goes under the merged run's folder (the same place)


def _found(one: ShardReport, relative: Path, required_because: str | None) -> _File | None:
    """A file of the shard's run where a run puts it: a regular file, not through a link."""
    source = one.folder / relative
    try:
        regular = not source.parent.is_symlink() and stat.S_ISREG(source.lstat().st_mode)
    except OSError:
        regular = False
    if regular:
        return _File(source, relative)
    if required_because:
        raise UsageError(f"merge-reports: {one.path}: {required_because}, but {source} is missing or not a "
                         "regular file")
    return None


def _placed(one: ShardReport, group: MerchantRows) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[_File]]:
    """A merchant's chart and deck rows, their paths relative to the run folder (None where the
    file is not there), and the files to bring over; a file an ok row needs that is missing is refused."""
    charts, decks, files = [], [], []
    for row in group.charts:
        base, ok = Path(safe_part(row["merchant"])) / safe_part(row["chart_id"]), row["status"] == ChartStatus.OK
        why = f"chart {row['chart_id']} of merchant {row['merchant']} is ok" if ok else None
        row = dict(row)
        for column, suffix in (("output", ".png"), ("data_output", ".json")):
            found = _found(one, base.with_suffix(suffix), why) if row[column] or ok else None
            row[column] = str(found.relative) if found else None
            files += [found] if found else []
        charts.append(row)
    for row in group.decks:
        built = row["status"] in (DeckStatus.OK, DeckStatus.PARTIAL)
        why = f"the {row['format']} deck of merchant {row['merchant']} is built" if built else None
        relative = Path(safe_part(row["merchant"])) / f"{DECK_NAME}.{row['format']}"
        found = _found(one, relative, why) if row["output"] or built else None
        decks.append({**row, "output": str(found.relative) if found else None})
        files += [found] if found else []
    return charts, decks, files


def _bring(files: list[_File], run_dir: Path) -> None:
    """Each file linked into the run folder (a hard link: no second copy), or copied where it cannot be."""
    for file in files:
        target = run_dir / file.relative
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(file.source, target, follow_symlinks=False)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(file.source, target, follow_symlinks=False)


def _merged_value(key: str, values: list[Any]) -> Any:
    """One metric over the shards: a count summed, a peak, maximum or time the largest; a
    percentile or utilization null; anything else (a name, an address) the first shard's."""
    if key.startswith(("p50_", "p95_")) or key == "utilization":
        return None
    numbers = [value for value in values if value is not None]
    if not numbers or not all(isinstance(value, int | float) and not isinstance(value, bool) for value in numbers):
        return values[0]
    if "peak" in key or key.startswith("max_") or key in _MAXED:
        return max(numbers)
    total = sum(numbers)
    return round(total, 1) if isinstance(total, float) else total


def merged_metrics(shards: list[ShardReport], tally: Tally) -> dict[str, Any]:
    """The shards' metrics, section by section; the counts of rows taken again from all the rows."""
    sections = [one.report["metrics"] for one in shards]
    merged: dict[str, Any] = {}
    for name in dict.fromkeys(key for metrics in sections for key in metrics):
        present = [metrics[name] for metrics in sections if metrics.get(name) is not None]
        if not present:
            continue
        if not all(isinstance(section, dict) for section in present):
            merged[name] = present[0]
            continue
        merged[name] = {key: _merged_value(key, [section[key] for section in present if key in section])
                        for key in dict.fromkeys(key for section in present for key in section)}
    counted = tally.metrics()
    merged["errors_by_type"] = counted["errors_by_type"]
    merged["retrieval"] = {**merged.get("retrieval", {}), **counted["retrieval"]}
    if tally.decks or "decks" in merged:
        merged["decks"] = {**merged.get("decks", {}), **counted["decks"]}
    return merged


def merged_run(shards: list[ShardReport], missing: list[int], tally: Tally) -> dict[str, Any]:
    """The merged report's `run` (its run_id, output_dir and junit_xml are filled in once written)."""
    runs = [one.run for one in shards]
    first = runs[0]
    errors = [f"shard {one.shard} (run {one.run['run_id']}): {one.run['error']}" if one.shard else one.run["error"]
              for one in shards if one.run["error"]]
    if missing:
        count = shards[0].shard.count if shards[0].shard else 0
        errors.insert(0, f"shard(s) {', '.join(f'{index}/{count}' for index in missing)} missing: this report "
                         f"holds {len(shards)} of the job's {count} shards")
    servers = [run.get("server") for run in runs]
    run = {"run_id": None, "started_at": min(run["started_at"] for run in runs),
           "finished_at": max(run["finished_at"] for run in runs), **tally.run_counts(False, False),
           "retrieval_mode": first.get("retrieval_mode"), "merchants": sum(run["merchants"] for run in runs),
           "wall_ms": max(run["wall_ms"] for run in runs), "output_dir": None, "start_date": first["start_date"],
           "end_date": first["end_date"], "dates_given": first.get("dates_given") or {}, "pack": first["pack"],
           "reruns": None, "error": "; ".join(errors) or None, "merged": [], "server_pid": None,
           **({"server": servers[0]} if isinstance(servers[0], dict) and servers.count(servers[0]) == len(servers)
              else {}),
           "junit_xml": None, "shard": None, "merged_from": [str(one.folder) for one in shards]}
    if missing and run["exit_code"] == ExitCode.OK:  # a matrix that lost a job is not green
        run.update(status=RunStatus.PARTIAL, exit_code=ExitCode.FAILED)
    return run


def _outcomes(shards: list[ShardReport], run_dir: Path, formats: tuple[str, ...]) -> Iterator[MerchantOutcome]:
    """Every shard's merchants, shard by shard, their files brought into the run folder, where their rows point."""
    for one in shards:
        for group in one.groups():
            charts, decks, files = _placed(one, group)
            _bring(files, run_dir)
            for row, columns in [*((c, ("output", "data_output")) for c in charts), *((d, ("output",)) for d in decks)]:
                row.update({column: str(run_dir / row[column]) for column in columns if row[column]})
            yield MerchantOutcome.of(group.batches, charts, decks, formats)


def merge_reports(given: list[Path], output_dir: Path | None = None, junit_xml: Path | None = None,
                  write_csv: bool = False) -> MergedReport:
    """The shards' reports read, checked and merged into a new run folder in `output_dir` (default:
    the first folder's parent), with its JUnit file and CSV when asked; `latest` there points at it.
    The rows are read a merchant at a time and written as a run writes its report (runner.outcomes)."""
    read: list[ShardReport] = []
    try:
        for path in given:
            read.append(read_shard(path))
        return _merged(read, output_dir, junit_xml, write_csv)
    finally:
        for one in read:
            one.file.close()


def _merged(read: list[ShardReport], output_dir: Path | None, junit_xml: Path | None,
            write_csv: bool) -> MergedReport:
    shards = sorted(read, key=lambda one: one.shard.index if one.shard else 0)
    missing = check_one_job(shards)
    if junit_xml is not None:
        junit_xml = junit_xml.expanduser().absolute()
        check_junit_path(junit_xml)
    for one in shards:  # before any write
        if one.missing is not None:
            raise UsageError(one.missing)
    formats = tuple(fmt for fmt in DeckFormat if any(fmt in one.formats for one in shards))
    run_id, run_dir = new_run_dir(str(output_dir or read[0].folder.parent))
    try:
        with spooled(_outcomes(shards, run_dir, formats), run_dir) as sections:
            tally = Tally.of(sections)
            run = merged_run(shards, missing, tally)
            run.update(run_id=run_id, output_dir=str(run_dir), junit_xml=str(junit_xml) if junit_xml else None)
            report = {"schema_version": SCHEMA_VERSION, "run": run, "config": shards[0].report["config"],
                      "environment": shards[0].report["environment"], "metrics": merged_metrics(shards, tally)}
            if junit_xml is not None:
                try:
                    write_junit(junit_xml, report, sections)
                except ReportWriteError as exc:
                    junit_failed(report, str(exc))
            path = write_report_sections(run_dir, report, sections, write_csv)
    except OSError as exc:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise ReportWriteError(f"merge-reports: cannot write the merged run in {run_dir}: {exc.strerror or exc}"
                               ) from None
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a folder without its report would look like a run that died
        raise
    point_latest(run_dir)
    return MergedReport(path, report)
