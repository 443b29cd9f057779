"""The run's JSON report (and optional CSV): the contract dashboards and scripts read."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from runner import __version__
from runner.errors import ErrorType, ReportWriteError
from runner.files import write_atomically, written_atomically
from runner.merchants import merchant_name
from runner.redaction import scrubbed
from runner.status import ChartStatus, DeckFormat, DeckStatus, ExitCode, RunStatus

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


def names_of(charts: list[dict[str, Any]]) -> dict[str, str]:
    """Each merchant's display name, as the report's chart rows give it (the token where none)."""
    return {chart["merchant"]: merchant_name(chart.get("merchant_name"), chart["merchant"]) for chart in charts}


@dataclass(frozen=True)
class ChartResult:
    """One row of `charts`: flat scalars, the same keys for every chart."""

    run_id: str
    merchant: str
    chart_id: str
    title: str
    status: ChartStatus
    error_type: ErrorType | None
    error: str | None
    batch_id: str | None
    attempts: int
    retrieve_ms: float | None
    queue_ms: float | None
    render_ms: float | None
    total_ms: float | None
    output: str | None
    bytes: int | None
    sha256: str | None
    worker_pid: int | None
    paragraph: str | None
    data_output: str | None  # the chart's data as JSON, beside its PNG (written once its data is valid)
    started_at: str | None = None  # ISO-8601 UTC: its retrieval began
    finished_at: str | None = None  # ISO-8601 UTC: it reached its final status
    cached: bool = False  # its PNG came from the render cache
    worker: str | None = None  # who rendered it: host:pid, or a Dask worker's address
    merchant_name: str = ""  # the merchant's display name (the token where none is known): the report fills it



CHART_COLUMNS = tuple(f.name for f in fields(ChartResult))
# pandas dtypes of the `charts` columns. JSON has no integer null, so pandas reads a column of
# ints with a null (bytes, worker_pid of a failed chart) as floats; these keep them integers:
#     pandas.DataFrame(report["charts"]).astype(runner.report.CHART_DTYPES)
CHART_DTYPES = {
    f.name: {"int": "Int64", "int | None": "Int64", "float | None": "Float64"}.get(str(f.type), "string")
    for f in fields(ChartResult)
}
BATCH_COLUMNS = ("batch_id", "merchant", "chart_ids", "status", "attempts", "started_at", "wall_ms", "steps",
                 "input_tokens", "output_tokens", "context_tokens", "error_type", "error")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "runner": __version__,
        "matplotlib": _version("matplotlib"),
        "mcp": _version("mcp"),
        "anthropic": _version("anthropic"),
    }


def flat_row(record: Any) -> dict[str, Any]:
    """A row record (ChartResult, DeckResult, BatchResult: flat scalars) as a dict; what
    dataclasses.asdict gives, without its deep copy (a report walks a million rows)."""
    return dict(vars(record))


def batch_row(batch: Any) -> dict[str, Any]:
    row = flat_row(batch)
    return {key: row[key] for key in BATCH_COLUMNS}


def exit_code_for(total: int, ok: int, interrupted: bool, unreachable: bool,
                  decks_failed: int = 0) -> tuple[RunStatus, ExitCode]:
    """A deck that could not be built counts like a failed chart."""
    if interrupted:
        return RunStatus.INTERRUPTED, ExitCode.INTERRUPTED
    if unreachable or ok == 0:
        return RunStatus.FAILED, ExitCode.NOTHING
    if ok == total and not decks_failed:
        return RunStatus.OK, ExitCode.OK
    return RunStatus.PARTIAL, ExitCode.FAILED


def run_status_counts(counts: Mapping[str, int], decks_failed: int, interrupted: bool,
                      unreachable: bool) -> dict[str, Any]:
    """The run's status, exit code and chart counts, from its charts' statuses counted (a run's rows
    are never in memory at once) and its failed decks: what a run reports, and a merge again."""
    total = sum(counts.values())
    status, code = exit_code_for(total, counts.get(ChartStatus.OK, 0), interrupted, unreachable, decks_failed)
    return {"status": status, "exit_code": code, "charts_total": total, **chart_status_counts(counts)}


def chart_status_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """charts_<status> for each chart status. No chart is ever skipped (a deck can be): charts_skipped
    stays in the report for the scripts that read it, always 0."""
    return {**{f"charts_{status.value}": counts.get(status, 0) for status in ChartStatus}, "charts_skipped": 0}


def deck_status_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """metrics.decks' counts from the decks' statuses counted."""
    return {"decks_total": sum(counts.values()), **{f"decks_{s.value}": counts.get(s, 0) for s in DeckStatus}}


def errors_by_type(charts: list[dict[str, Any]], decks: list[dict[str, Any]]) -> dict[str, int]:
    """metrics.errors_by_type from the rows, as runner.metrics counts them while a run goes:
    each failed chart by its error type; a merchant's deck that could not be built once
    (deck_error, for all its formats), each document that could not be written once; a deck
    with no chart to show adds nothing (its charts' failures are counted); cancelled is no error."""
    counts = Counter(str(c["error_type"]) for c in charts if c["status"] == ChartStatus.FAILED and c["error_type"])
    shown = {c["merchant"] for c in charts if c["status"] == ChartStatus.OK}
    built_failed = set()
    for deck in decks:
        if deck["status"] != DeckStatus.FAILED or not deck["error_type"] or deck["merchant"] not in shown:
            continue
        if deck["error_type"] == ErrorType.DECK_ERROR:
            built_failed.add(deck["merchant"])
        else:
            counts[str(deck["error_type"])] += 1
    counts.update({str(ErrorType.DECK_ERROR): len(built_failed)} if built_failed else {})
    return dict(sorted(counts.items()))


def merchant_rows(charts: list[dict[str, Any]], decks: list[dict[str, Any]],
                  formats: tuple[str, ...]) -> list[dict[str, Any]]:
    """One flat row per merchant, the same keys in each: its charts by status, each deck's status."""
    rows: dict[str, dict[str, Any]] = {}
    for chart in charts:
        row = rows.setdefault(chart["merchant"], {"merchant": chart["merchant"],
                                                  "merchant_name": merchant_name(chart.get("merchant_name"),
                                                                                 chart["merchant"]),
                                                  "charts_total": 0, **chart_status_counts({}),
                                                  **{f"deck_{fmt}": None for fmt in DeckFormat}})
        row["charts_total"] += 1
        row[f"charts_{chart['status']}"] += 1
    for deck in decks:
        if deck["merchant"] in rows and deck["format"] in formats:
            rows[deck["merchant"]][f"deck_{deck['format']}"] = deck["status"]
    return list(rows.values())


SECTIONS = ("batches", "charts", "decks", "merchants")  # the report's lists of rows, in its order


class Sections(Protocol):
    """The report's rows, each section walked afresh when asked (a million rows are never in memory)."""

    def rows(self, section: str) -> Iterable[dict[str, Any]]: ...


@dataclass(frozen=True)
class ListedSections:
    """The rows of a report held in memory (a JUnit file made from a report read whole)."""

    report: Mapping[str, Any]

    def rows(self, section: str) -> Iterable[dict[str, Any]]:
        return iter(self.report[section])


def write_report_sections(run_dir: Path, head: dict[str, Any], sections: Sections, with_csv: bool) -> Path:
    """Write the schema, charts.csv and, last, report.json, each atomically and row by row: a
    report on disk is a run that ended as it says. The text is json.dumps(report, indent=2)'s.
    NaN or infinity is a bug, so refuse it."""
    path = run_dir / "report.json"
    try:
        write_atomically(run_dir / "report.schema.json", SCHEMA_FILE.read_bytes(), sync=True)
        if with_csv:
            with written_atomically(run_dir / "charts.csv", sync=True) as out:
                text = io.TextIOWrapper(out, encoding="utf-8", newline="")
                writer = csv.DictWriter(text, fieldnames=CHART_COLUMNS)
                writer.writeheader()
                for row in sections.rows("charts"):
                    writer.writerow(scrubbed(row))
                text.flush()
                text.detach()
        with written_atomically(path, sync=True) as out:
            _write_json(out, scrubbed(head), sections)
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report in {run_dir}: {exc.strerror or exc}") from None
    return path


def _dumped(value: Any, indent: str) -> str:
    """json.dumps(value, indent=2) as it reads inside the report, `indent` deep."""
    return json.dumps(value, indent=2, allow_nan=False, ensure_ascii=False).replace("\n", "\n" + indent)


def _write_json(out: BinaryIO, head: dict[str, Any], sections: Sections) -> None:
    parts = [f'  {json.dumps(key)}: {_dumped(value, "  ")}' for key, value in head.items()]
    out.write(("{\n" + ",\n".join(parts)).encode())
    for section in SECTIONS:
        out.write(f',\n  "{section}": ['.encode())
        first = True
        for row in sections.rows(section):
            out.write((("\n" if first else ",\n") + "    " + _dumped(scrubbed(row), "    ")).encode())
            first = False
        out.write(b"]" if first else b"\n  ]")
    out.write(b"\n}\n")
