"""The few named exceptions that cross module boundaries, and the report's error types."""

from __future__ import annotations

from enum import StrEnum


class ErrorType(StrEnum):
    """The report's error_type vocabulary (DESIGN.md); nothing else may appear there."""

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


class RunnerError(Exception):
    """Base of the runner's own errors."""


class UsageError(RunnerError):
    """A user mistake (bad flag, config, pack, merchant list): exit code 2, one line, no traceback."""


class ChartError(RunnerError):
    """One chart (or one batch of charts) failed for a reason the report names."""

    def __init__(self, error_type: ErrorType | str, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.error_type = ErrorType(error_type)  # an unknown name is a bug: ValueError
        self.message = message
        self.final = final  # trying again cannot help (the server refused our credentials)

    def __reduce__(self) -> tuple[type[ChartError], tuple[str, str, bool]]:  # picklable across the process pool
        return (type(self), (str(self.error_type), self.message, self.final))
