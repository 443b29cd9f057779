"""The run's JSON report (and optional CSV): the contract dashboards and scripts read."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from runner import __version__
from runner.errors import ErrorType, RunEndingError
from runner.files import write_atomically
from runner.redaction import scrubbed
from runner.status import ChartStatus, ExitCode

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


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


def iso_time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def batch_row(batch: Any) -> dict[str, Any]:
    row = asdict(batch)
    return {key: row[key] for key in BATCH_COLUMNS}


def merchant_rows(charts: list[dict[str, Any]], decks: list[dict[str, Any]],
                  formats: tuple[str, ...]) -> list[dict[str, Any]]:
    """One flat row per merchant, the same keys in each: its charts by status, each deck's status."""
    rows: dict[str, dict[str, Any]] = {}
    for chart in charts:
        row = rows.setdefault(chart["merchant"], {"merchant": chart["merchant"], "charts_total": 0,
                                                  **{f"charts_{s.value}": 0 for s in ChartStatus},
                                                  **{f"deck_{fmt}": None for fmt in ("pdf", "pptx")}})
        row["charts_total"] += 1
        row[f"charts_{chart['status']}"] += 1
    for deck in decks:
        if deck["merchant"] in rows and deck["format"] in formats:
            rows[deck["merchant"]][f"deck_{deck['format']}"] = deck["status"]
    return list(rows.values())


class ReportWriteError(RunEndingError):
    """The report could not be written (a full disk, a vanished folder): exit 3, one line."""

    exit_code = ExitCode.INTERNAL


def write_report(run_dir: Path, report: dict[str, Any], with_csv: bool) -> Path:
    """Write the schema, charts.csv and, last, report.json, each atomically: a report on disk is
    a run that ended as it says. NaN or infinity is a bug, so refuse it."""
    report = scrubbed(report)  # the last line of defence: text from outside was scrubbed where it came in
    path = run_dir / "report.json"
    try:
        write_atomically(run_dir / "report.schema.json", SCHEMA_FILE.read_bytes(), sync=True)
        if with_csv:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=CHART_COLUMNS)
            writer.writeheader()
            writer.writerows(report["charts"])
            write_atomically(run_dir / "charts.csv", buffer.getvalue().encode(), sync=True)
        write_atomically(path, (json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode(),
                         sync=True)
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report in {run_dir}: {exc.strerror or exc}") from None
    return path
