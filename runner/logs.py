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
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from runner.clock import iso_time
from runner.errors import detail, one_line
from runner.redaction import redact, scrub

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
    target = _scrubbing(sink or sys.stderr)
    logger.configure(patcher=_scrub_message)
    if log_format == "json":
        logger.add(target, level=level, format=_json_format, colorize=False, backtrace=False, diagnose=False)
    else:
        logger.add(target, level=level, format=_human_format, colorize=False, backtrace=False, diagnose=False)
    _quiet_libraries()


def _scrub_message(record: Record) -> None:
    record["message"] = scrub(record["message"])


def _scrubbing(target: Callable[[str], None] | TextIO) -> Callable[[str], None]:
    """The sink, scrubbing each whole line last: a traceback, too, may quote a secret."""
    if callable(target):
        write = target
        return lambda message: write(scrub(message))

    def to_stream(message: str) -> None:
        target.write(scrub(message))
        target.flush()

    return to_stream


class _LibraryLines(logging.Handler):
    """What libraries (mcp, httpx2, anthropic) log through the standard logging module: one clean
    debug line each, never their tracebacks (a server printing junk makes mcp log one per line)."""

    def emit(self, record: logging.LogRecord) -> None:
        reason = f" ({record.exc_info[0].__name__})" if record.exc_info and record.exc_info[0] else ""
        # Python warnings (captured below) stay warnings; everything else a library says is detail.
        # So are Dask's warnings and errors, which it printed itself before routed here.
        warns = record.name == "py.warnings" or (record.name.startswith("distributed") and
                                                 record.levelno >= logging.WARNING)
        # A library's line may carry credentials nobody gave as a secret (a URL's user info).
        message = redact(detail(record.getMessage()))
        logger.log("WARNING" if warns else "DEBUG", "{}: {}{}", record.name, message, reason)


def _quiet_libraries() -> None:
    root = logging.getLogger()
    root.handlers = [_LibraryLines()]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def route_library_logs(name: str) -> None:
    """A library that prints its own log lines (Dask's `distributed` does, on import) sends
    them through ours instead, so they are scrubbed and formatted like every other line."""
    for logger_name in [name, *(key for key in logging.root.manager.loggerDict if key.startswith(name + "."))]:
        library = logging.getLogger(logger_name)
        library.handlers = []
        library.propagate = True
