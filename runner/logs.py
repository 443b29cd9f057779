"""Logging setup (loguru): human lines or JSON, with the batch id on every batch line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from runner.errors import one_line

if TYPE_CHECKING:
    from loguru import Record


def _human_format(record: Record) -> str:
    batch = record["extra"].get("batch")
    prefix = f"[{batch}] " if batch else ""
    return "{time:HH:mm:ss} {level: <7} " + prefix.replace("{", "{{").replace("}", "}}") + "{message}\n{exception}"


def setup_logging(log_format: str, verbose: bool, quiet: bool,
                  sink: Callable[[str], None] | None = None) -> None:
    """One sink on stderr (or `sink`, which a live progress display provides)."""
    logger.remove()
    level = "DEBUG" if verbose else ("WARNING" if quiet else "INFO")
    target: Any = sink or sys.stderr
    if log_format == "json":
        logger.add(target, level=level, serialize=True, backtrace=False, diagnose=False)
    else:
        logger.add(target, level=level, format=_human_format, colorize=False, backtrace=False, diagnose=False)
    _quiet_libraries()


class _LibraryLines(logging.Handler):
    """What libraries (mcp, httpx2, anthropic) log through the standard logging module: one clean
    debug line each, never their tracebacks (a server printing junk makes mcp log one per line)."""

    def emit(self, record: logging.LogRecord) -> None:
        reason = f" ({record.exc_info[0].__name__})" if record.exc_info and record.exc_info[0] else ""
        logger.debug("{}: {}{}", record.name, one_line(record.getMessage(), 300), reason)


def _quiet_libraries() -> None:
    root = logging.getLogger()
    root.handlers = [_LibraryLines()]
    root.setLevel(logging.INFO)
