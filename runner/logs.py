"""Logging setup (loguru): human lines or JSON, with the batch id on every batch line.

In JSON every stderr line is one flat object for log pipelines: time (ISO-8601 UTC), level,
message, run_id, and where they apply batch, merchant, chart and error_type.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC
from typing import TYPE_CHECKING, Any

from loguru import logger

from runner.errors import one_line
from runner.report import iso_time

if TYPE_CHECKING:
    from loguru import Record


def _human_format(record: Record) -> str:
    batch = record["extra"].get("batch")
    prefix = f"[{batch}] " if batch else ""
    return "{time:HH:mm:ss} {level: <7} " + prefix.replace("{", "{{").replace("}", "}}") + "{message}\n{exception}"


CONTEXT_KEYS = ("run_id", "batch", "merchant", "chart", "error_type")


def json_line(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, default=str)


def _json_format(record: Record) -> str:
    extra = record["extra"]
    fields = {"time": iso_time(record["time"].astimezone(UTC)),
              "level": record["level"].name, "message": one_line(record["message"], 10_000),
              "run_id": extra.get("run_id")}
    fields.update({key: str(extra[key]) for key in CONTEXT_KEYS[1:] if extra.get(key) is not None})
    if record["exception"] is not None and record["exception"].type is not None:
        fields["exception"] = record["exception"].type.__name__
    extra["_line"] = json_line(fields)
    return "{extra[_line]}\n"


def set_run_id(run_id: str | None) -> None:
    """Every line from here on carries the run id, whichever thread logs it."""
    logger.configure(extra={"run_id": run_id})


def setup_logging(log_format: str, verbose: bool, quiet: bool,
                  sink: Callable[[str], None] | None = None) -> None:
    """One sink on stderr (or `sink`, which a live progress display provides)."""
    logger.remove()
    level = "DEBUG" if verbose else ("WARNING" if quiet else "INFO")
    target: Any = sink or sys.stderr
    if log_format == "json":
        logger.add(target, level=level, format=_json_format, colorize=False, backtrace=False, diagnose=False)
    else:
        logger.add(target, level=level, format=_human_format, colorize=False, backtrace=False, diagnose=False)
    _quiet_libraries()


class _LibraryLines(logging.Handler):
    """What libraries (mcp, httpx2, anthropic) log through the standard logging module: one clean
    debug line each, never their tracebacks (a server printing junk makes mcp log one per line)."""

    def emit(self, record: logging.LogRecord) -> None:
        reason = f" ({record.exc_info[0].__name__})" if record.exc_info and record.exc_info[0] else ""
        # Python warnings (captured below) stay warnings; everything else a library says is detail.
        level = "WARNING" if record.name == "py.warnings" else "DEBUG"
        logger.log(level, "{}: {}{}", record.name, one_line(record.getMessage(), 300), reason)


def _quiet_libraries() -> None:
    root = logging.getLogger()
    root.handlers = [_LibraryLines()]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
