"""What a chart, a batch and a run ended as, and the process's exit codes."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ChartStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    OK = "ok"  # every chart of the batch has its data
    PARTIAL = "partial"  # some have
    FAILED = "failed"  # none has
    CANCELLED = "cancelled"  # the run stopped before the batch ran


class DeckStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # built, with some charts' slides saying why they have no chart
    FAILED = "failed"  # not built, or not written
    CANCELLED = "cancelled"  # the run stopped before it was built


class RunStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # some charts failed; the report is written
    USAGE = 2  # bad flag, config or input: nothing was done
    INTERNAL = 3
    NOTHING = 4  # nothing succeeded, or the server was unreachable
    INTERRUPTED = 130
