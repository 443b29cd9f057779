"""The few named exceptions that cross module boundaries."""

from __future__ import annotations

# The report's error_type vocabulary (DESIGN.md); nothing else may appear there.
ERROR_TYPES = (
    "server_unavailable",
    "tool_error",
    "timeout",
    "bad_data",
    "empty_data",
    "render_error",
    "worker_crashed",
    "budget_exceeded",
    "llm_error",
    "cancelled",
    "internal",
)

# Failures worth another try: the same request may succeed a moment later.
TRANSIENT_ERROR_TYPES = frozenset({"server_unavailable", "tool_error", "timeout"})


class RunnerError(Exception):
    """Base of the runner's own errors."""


class UsageError(RunnerError):
    """A user mistake (bad flag, config, pack, merchant list): exit code 2, one line, no traceback."""


class ChartError(RunnerError):
    """One chart (or one batch of charts) failed for a reason the report names."""

    def __init__(self, error_type: str, message: str) -> None:
        if error_type not in ERROR_TYPES:
            raise ValueError(f"unknown error_type {error_type!r}")
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def __reduce__(self):  # keep it picklable across the process pool
        return (type(self), (self.error_type, self.message))

    @property
    def transient(self) -> bool:
        return self.error_type in TRANSIENT_ERROR_TYPES
