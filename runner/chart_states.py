"""A chart's states in the coordinator, and the named moves between them.

One table, TRANSITIONS, says which move may start from which state and where it leads; a move
the table does not allow raises IllegalMove (a bug in the coordinator, never a chart's fault):

    RETRIEVING --data_arrived--> WAITING --handed_over--> RENDERING --written--> OK
                                    ^------handed_back-------'
    RETRIEVING, WAITING or RENDERING --failed--> FAILED, --cancelled--> CANCELLED

No move leaves a final state, so every chart ends in exactly one. Only the coordinator's main
thread moves a chart, and only through ChartBook.move: a chart's state has one writer.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.errors import ErrorType
from runner.records import Batch, ChartData, ChartJob, RenderedChart
from runner.status import ChartStatus


class ChartState(enum.Enum):
    RETRIEVING = "retrieving"  # no data yet
    WAITING = "waiting"  # data in hand, waiting for a place in the render stage
    RENDERING = "rendering"  # handed to the render stage: in its queue or on a worker
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = {ChartState.OK: ChartStatus.OK, ChartState.FAILED: ChartStatus.FAILED,
         ChartState.CANCELLED: ChartStatus.CANCELLED}


class Move(enum.Enum):
    DATA_ARRIVED = "data_arrived"  # its data is valid and written beside its PNG-to-be
    HANDED_OVER = "handed_over"  # submitted to the render stage
    HANDED_BACK = "handed_back"  # the render stage lost its place (its pool broke): render it again
    WRITTEN = "written"  # its PNG is written
    FAILED = "failed"
    CANCELLED = "cancelled"  # the run stopped first, or its retrieval was cancelled


_NOT_FINAL = frozenset({ChartState.RETRIEVING, ChartState.WAITING, ChartState.RENDERING})

# move -> (the states it may start from, the state it leads to)
TRANSITIONS: dict[Move, tuple[frozenset[ChartState], ChartState]] = {
    Move.DATA_ARRIVED: (frozenset({ChartState.RETRIEVING}), ChartState.WAITING),
    Move.HANDED_OVER: (frozenset({ChartState.WAITING}), ChartState.RENDERING),
    Move.HANDED_BACK: (frozenset({ChartState.RENDERING}), ChartState.WAITING),
    Move.WRITTEN: (frozenset({ChartState.RENDERING}), ChartState.OK),
    Move.FAILED: (_NOT_FINAL, ChartState.FAILED),
    Move.CANCELLED: (_NOT_FINAL, ChartState.CANCELLED),
}


class IllegalMove(RuntimeError):
    """A move the table does not allow from the chart's state."""


def moved(state: ChartState, move: Move) -> ChartState:
    """The state `move` leads to from `state`; IllegalMove if the table does not allow it."""
    sources, target = TRANSITIONS[move]
    if state not in sources:
        allowed = ", ".join(sorted(s.value for s in sources))
        raise IllegalMove(f"a chart cannot make the move {move.value} from {state.value} (only from {allowed})")
    return target


@dataclass
class TrackedChart:
    """The coordinator's working record of one chart (main thread only). Its `state` is changed
    by ChartBook.move alone."""

    job: ChartJob
    batch_id: str
    state: ChartState = ChartState.RETRIEVING
    position: int = -1  # its place in the plan (runner.planning); the journal names it so
    error_type: ErrorType | None = None
    error: str | None = None
    attempts: int = 0
    retrieve_ms: float | None = None
    data: ChartData | None = None
    queued_at: float | None = None  # when its data was ready to render (perf_counter)
    finished_at: float | None = None  # when its PNG was written (perf_counter)
    rendered: RenderedChart | None = None  # without its PNG, once written: a long run holds thousands
    size: int | None = None  # bytes of the PNG written
    data_written: bool = False
    started_wall: datetime | None = None
    ended_wall: datetime | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL


class ChartBook:
    """The charts the coordinator is working on, by key and by merchant, and how many of the run's
    charts are in each state. A merchant's charts are added when it is taken into the run and
    forgotten once its outcomes are in the journal: a run of any size holds only what is in flight."""

    def __init__(self, batches: tuple[Batch, ...] = ()) -> None:
        self._by_key: dict[tuple[str, str], TrackedChart] = {}
        self._by_merchant: dict[str, list[TrackedChart]] = {}
        self._counts: Counter[ChartState] = Counter()
        for batch in batches:
            self.add(batch)

    def add(self, batch: Batch) -> None:
        positions = batch.positions or (-1,) * len(batch.jobs)
        for job, position in zip(batch.jobs, positions, strict=True):
            self._keep(TrackedChart(job, batch.batch_id, position=position))

    def add_final(self, chart: TrackedChart) -> None:
        """A chart final before this process began (a resumed run's), kept for its merchant's deck."""
        self._keep(chart)

    def count_only(self, charts: list[TrackedChart]) -> None:
        """Final charts counted, not held: a resumed run's merchant with nothing left to do."""
        self._counts.update(chart.state for chart in charts)

    def _keep(self, chart: TrackedChart) -> None:
        self._by_key[chart.job.key] = chart
        self._by_merchant.setdefault(chart.job.merchant, []).append(chart)
        self._counts[chart.state] += 1

    def forget(self, merchant: str) -> None:
        """The merchant's charts are final and recorded: no longer held (still counted)."""
        for chart in self._by_merchant.pop(merchant, []):
            del self._by_key[chart.job.key]

    def get(self, key: tuple[str, str]) -> TrackedChart | None:
        """The chart, while it is held: an event may come for one already final and forgotten."""
        return self._by_key.get(key)

    def holds_all_final(self, merchant: str) -> bool:
        return all(chart.final for chart in self._by_merchant.get(merchant, ()))

    def __iter__(self) -> Iterator[TrackedChart]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def of(self, merchant: str) -> list[TrackedChart]:
        return self._by_merchant[merchant]

    def count(self, *states: ChartState) -> int:
        return sum(self._counts[state] for state in states)

    def move(self, chart: TrackedChart, move: Move) -> ChartState:
        """Make a named move (IllegalMove if the table does not allow it); returns the new state."""
        state = moved(chart.state, move)
        self._counts[chart.state] -= 1
        self._counts[state] += 1
        chart.state = state
        if state in FINAL:
            chart.ended_wall = datetime.now(UTC)
        return state
