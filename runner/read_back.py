"""Files the runner wrote, read again (a merge's, a resumed run's): untrusted input like any other.
A file that is not what the report or journal records fails its chart's check, and the caller
says what then (a merge fails the chart; a resume does the chart again)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from runner.charts import ChartSpec
from runner.errors import ChartError, ErrorType
from runner.records import ChartData

MAX_PNG_BYTES = 50_000_000
MAX_DATA_BYTES = 10_000_000  # a chart's data is at most 50 series of 1,000 values


def read_back(path: Path, limit: int, error_type: ErrorType) -> bytes:
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


def read_png(path: Path, sha256: Any) -> bytes:
    png = read_back(path, MAX_PNG_BYTES, ErrorType.RENDER_ERROR)
    if hashlib.sha256(png).hexdigest() != sha256:
        raise ChartError(ErrorType.RENDER_ERROR, f"{path}: not the PNG the report records (its sha256 differs)")
    return png


def read_data(path: Path, spec: ChartSpec, merchant: str) -> tuple[bytes, ChartData]:
    """A chart's data file, read back and validated as a tool's result is."""
    from runner.retrieval.parse import chart_data_from_json

    content = read_back(path, MAX_DATA_BYTES, ErrorType.BAD_DATA)
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
