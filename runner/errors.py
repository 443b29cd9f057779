"""The few named exceptions that cross module boundaries, and the report's error types.

Every error that ends a run derives from RunEndingError and is declared here, with its exit code:
the command line catches that one base at one place (cli.DefaultToRun.invoke)."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from runner.redaction import scrub
from runner.status import ExitCode


class ErrorType(StrEnum):
    """The report's error_type vocabulary, a contract scripts and dashboards read (report.schema.json
    lists which of them each row may carry); nothing else may appear there."""

    SERVER_UNAVAILABLE = "server_unavailable"
    TOOL_ERROR = "tool_error"
    TIMEOUT = "timeout"
    BAD_DATA = "bad_data"
    EMPTY_DATA = "empty_data"
    RENDER_ERROR = "render_error"
    WORKER_CRASHED = "worker_crashed"
    BUDGET_EXCEEDED = "budget_exceeded"
    LLM_ERROR = "llm_error"
    DECK_ERROR = "deck_error"
    WRITE_ERROR = "write_error"
    CANCELLED = "cancelled"
    INTERNAL = "internal"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str, limit: int = 500) -> str:
    """Text from elsewhere (a server, a tool, a model) made safe for a log line or a report
    cell: control characters and escape sequences shown as escapes (so they cannot clear a
    terminal or forge a log line), newlines folded, long text cut with a marker, and the run's
    secrets scrubbed: before the escapes (a secret may hold a character they change) and after."""
    safe = "".join(_ESCAPES.get(ch) or (ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256
                                        else f"\\u{ord(ch):04x}") for ch in scrub(text))
    if len(safe) > limit:
        marker = f"…[cut from {len(safe):,} characters]"
        safe = safe[:max(0, limit - len(marker))] + marker  # no longer than `limit`: cleaning it again changes nothing
    return scrub(safe)


DETAIL_CHARS = 300  # an error's detail in a report row: enough to act on, short enough for a spreadsheet cell


def detail(text: str) -> str:
    """Words from elsewhere (a server, a tool, an exception) as one report cell: one line, cut short."""
    return one_line(text, DETAIL_CHARS)


def described(exc: BaseException) -> str:
    """An unexpected exception as a report cell: its type and its message."""
    return detail(f"{type(exc).__name__}: {exc}")


class RunnerError(Exception):
    """Base of the runner's own errors."""


class RunEndingError(RunnerError):
    """An error that ends the run: the command line catches it once, prints its one line and
    exits with its code (no traceback)."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL


class UsageError(RunEndingError):
    """A user mistake (bad flag, config, pack, merchant list): exit code 2, one line, no traceback."""

    exit_code = ExitCode.USAGE


class ReportWriteError(RunEndingError):
    """The report (or the JUnit file, or a merge) could not be written (a full disk, a vanished
    folder): exit 3, one line."""

    exit_code = ExitCode.INTERNAL


class ExecutorUnavailable(RunEndingError):
    """The Dask scheduler cannot be reached at the start: one line, exit 4, no work done."""

    exit_code = ExitCode.NOTHING


class ServerStartError(RunEndingError):
    """The embedded demo server did not come up: no server, nothing can succeed (exit 4). The run
    folder stays, for the server's log that the message names."""

    exit_code = ExitCode.NOTHING


class ChartError(RunnerError):
    """One chart (or one batch of charts) failed for a reason the report names."""

    def __init__(self, error_type: ErrorType | str, message: str, final: bool = False) -> None:
        message = one_line(message)  # it carries servers' and tools' words into logs and the report
        super().__init__(message)
        self.error_type = ErrorType(error_type)  # an unknown name is a bug: ValueError
        self.message = message
        self.final = final  # trying again cannot help (the server refused our credentials)

    def __reduce__(self) -> tuple[type[ChartError], tuple[str, str, bool]]:  # picklable across the process pool
        return (type(self), (str(self.error_type), self.message, self.final))
