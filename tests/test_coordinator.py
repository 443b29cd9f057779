"""The coordinator driven in-process: its real retrieval stage against the demo server, the
in-process render backend (runner.render.inline_backend) and the real deck ledger; no CLI, no
worker processes. Faults come in through the render function the backend takes. And its chart
states: every move it makes is a named one in the one table, and a move the table does not
allow raises."""

from __future__ import annotations

import ast
import functools
import hashlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.chart_states import FINAL, TRANSITIONS, ChartBook, ChartState, IllegalMove, Move, moved
from runner.charts import BUILTIN_PACK
from runner.config import load_config
from runner.coordinator import Coordinator, RunPlan
from runner.decks.book import DeckBook
from runner.errors import ErrorType
from runner.journal import Journal, read_journal
from runner.planning import Plan, plan_batches
from runner.progress import Progress
from runner.records import RenderedChart, RenderTask
from runner.render.inline_backend import InlineSupervisor
from runner.render.supervisor import RenderFunction
from runner.render.worker import render
from runner.request import DEFAULT_END, DEFAULT_START
from runner.retrieval.sessions import ServerTarget, SessionPool
from runner.run_report import JournalSections, Missing, RunRecords
from runner.status import BatchStatus, ChartStatus, DeckStatus, PartialDecks
from tests.render_faults import faulty_render

pytestmark = pytest.mark.timeout(120)

COORDINATOR = Path(__file__).resolve().parents[1] / "runner" / "coordinator.py"
CHART_STATES = COORDINATOR.with_name("chart_states.py")


@dataclass(frozen=True)
class Outcome:
    """The coordinator's records and the report's rows, walked from its journal as the report is."""

    records: RunRecords
    charts: list[SimpleNamespace]
    batches: list[SimpleNamespace]
    decks: list[SimpleNamespace]

    @property
    def interrupted(self) -> bool:
        return self.records.interrupted

    @property
    def server_unreachable(self) -> bool:
        return self.records.unreachable is not None


def _row(row: dict[str, Any], status: type) -> SimpleNamespace:
    return SimpleNamespace(**{**row, "status": status(row["status"]),
                              "error_type": None if row["error_type"] is None else ErrorType(row["error_type"])})


class Drive:
    """One coordinator over `merchants`, with every Progress it showed."""

    def __init__(self, url: str, merchants: list[str], run_dir: Path, render_fn: RenderFunction = render,
                 batch_size: int | None = None, formats: tuple[str, ...] = ("pdf",)) -> None:
        self.config = load_config(env={"SCALAPAY_RETRY_DELAY_SECONDS": "0.01"})
        self.run_dir, self.formats = run_dir, formats
        self.plan = Plan(run_dir, BUILTIN_PACK, DEFAULT_START, DEFAULT_END, batch_size or self.config.batch_size,
                         merchants_given=tuple((m, "") for m in merchants))
        self.batches = tuple(b for m in self.plan.merchants() for b in self.plan.batches_of(m))
        self.jobs = [job for batch in self.batches for job in batch.jobs]
        self.sessions = SessionPool(ServerTarget(url=url), self.config.max_concurrent_batches,
                                    self.config.tool_timeout_seconds)
        self.shown: list[Progress] = []
        self.journal = Journal(run_dir, "run-1", "job")
        decks = DeckBook([], formats, None, "2026-01-01", partial=PartialDecks.PLACEHOLDER)
        self.coordinator = Coordinator(self.config, RunPlan("run-1", self.plan, self.journal), self.sessions,
                                       InlineSupervisor(render_fn), self.shown.append, decks=decks)

    def run(self) -> Outcome:
        try:
            records = self.coordinator.run()
        finally:
            self.sessions.close()
            self.journal.close()
        index = read_journal(self.run_dir, *self.plan.counts)
        sections = JournalSections(self.plan, index, Missing.of(records.interrupted, records.unreachable), "run-1",
                                   self.formats)
        return Outcome(records, [_row(r, ChartStatus) for r in sections.rows("charts")],
                       [_row(r, BatchStatus) for r in sections.rows("batches")],
                       [_row(r, DeckStatus) for r in sections.rows("decks")])


def statuses(records: Outcome) -> dict[tuple[str, str], ChartStatus]:
    return {(row.merchant, row.chart_id): row.status for row in records.charts}


def assert_one_row_per_chart(drive: Drive, records: Outcome) -> None:
    keys = [(row.merchant, row.chart_id) for row in records.charts]
    assert sorted(keys) == sorted(job.key for job in drive.jobs)
    assert all(row.status in set(FINAL.values()) for row in records.charts)


def test_every_chart_ends_in_exactly_one_final_status(demo_url, demo_tokens, tmp_path):
    drive = Drive(demo_url, demo_tokens[:2], tmp_path)
    records = drive.run()
    assert_one_row_per_chart(drive, records)
    assert set(statuses(records).values()) == {ChartStatus.OK}
    for row in records.charts:
        assert row.output is not None and hashlib.sha256(Path(row.output).read_bytes()).hexdigest() == row.sha256
    # Every Progress accounts for every chart once, and a chart that reached a final state stays there.
    finished = [p.done + p.failed + p.cancelled for p in drive.shown]
    assert all(p.retrieving + p.queued + p.rendering + p.done + p.failed + p.cancelled == len(drive.jobs)
               for p in drive.shown)
    assert finished == sorted(finished) and finished[-1] == len(drive.jobs)
    assert [(d.merchant, d.status) for d in records.decks] == [(m, DeckStatus.OK) for m in demo_tokens[:2]]
    assert not records.interrupted and not records.server_unreachable
    assert {b.status for b in records.batches} == {BatchStatus.OK}


def test_a_render_failure_fails_that_chart_and_no_other(demo_url, demo_tokens, tmp_path):
    drive = Drive(demo_url, demo_tokens[:2], tmp_path, functools.partial(faulty_render, {"aov_by_month": "raise"}))
    records = drive.run()
    assert_one_row_per_chart(drive, records)
    failed = {(row.merchant, row.chart_id): (row.error_type, row.error) for row in records.charts
              if row.status is not ChartStatus.OK}
    assert failed == {(m, "aov_by_month"): (ErrorType.RENDER_ERROR, "RuntimeError: injected render failure")
                      for m in demo_tokens[:2]}
    # Each merchant's deck is still built, without that chart.
    assert [(d.status, d.charts_missing) for d in records.decks] == [(DeckStatus.PARTIAL, 1)] * 2


def test_a_stop_mid_run_cancels_the_charts_waiting_to_render(demo_url, demo_tokens, tmp_path):
    stopped_at: list[Progress] = []
    drive: Drive

    def render_then_stop(task: RenderTask) -> RenderedChart:
        coordinator = drive.coordinator
        if not stopped_at and coordinator.progress().done == 0:
            # The first render waits until the batch is over: every chart's data is then on the
            # loop's queue, and each becomes a chart waiting for this one's place.
            deadline = time.monotonic() + 60
            while coordinator.retrieval.running() and time.monotonic() < deadline:
                time.sleep(0.01)
        elif not stopped_at:
            stopped_at.append(coordinator.progress())  # the second render: stop now
            coordinator.stop.set()
        return render(task)

    drive = Drive(demo_url, demo_tokens[:1], tmp_path, render_then_stop, batch_size=len(BUILTIN_PACK))
    records = drive.run()
    assert_one_row_per_chart(drive, records)
    (progress,) = stopped_at
    assert (progress.retrieving, progress.done, progress.queued) == (0, 1, len(BUILTIN_PACK) - 1)
    ok = [row for row in records.charts if row.status is ChartStatus.OK]
    cancelled = [row for row in records.charts if row.status is ChartStatus.CANCELLED]
    assert (len(ok), len(cancelled)) == (2, len(BUILTIN_PACK) - 2)  # the first, and the one rendering at the stop
    # The cancelled ones had their data: they were waiting for a place, not retrieving.
    assert all(row.data_output and row.error_type is ErrorType.CANCELLED and row.output is None for row in cancelled)
    assert records.interrupted
    assert [b.status for b in records.batches] == [BatchStatus.OK]
    assert [d.status for d in records.decks] == [DeckStatus.CANCELLED]


def test_an_unreachable_server_fails_every_chart_once(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/mcp"
    drive = Drive(url, ["M1", "M2"], tmp_path)
    records = drive.run()
    assert_one_row_per_chart(drive, records)
    assert records.server_unreachable
    assert {(row.status, row.error_type) for row in records.charts} == {(ChartStatus.FAILED,
                                                                          ErrorType.SERVER_UNAVAILABLE)}
    assert {(b.status, b.error_type) for b in records.batches} == {(BatchStatus.FAILED, ErrorType.SERVER_UNAVAILABLE)}
    assert {(d.status, d.error_type) for d in records.decks} == {(DeckStatus.FAILED, ErrorType.DECK_ERROR)}


# -- the chart states -------------------------------------------------------------------------------
def moves_in(path: Path) -> set[Move]:
    """Every Move the module names."""
    tree = ast.parse(path.read_text())
    return {Move[node.attr] for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Move"}


def state_assignments(path: Path) -> list[int]:
    """Lines that assign some object's `state`."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Attribute) and target.attr == "state"]


def test_every_move_the_coordinator_makes_is_in_the_table_and_the_table_has_no_other():
    assert set(TRANSITIONS) == set(Move)
    assert moves_in(COORDINATOR) == set(Move)
    # The coordinator never sets a state itself: ChartBook.move does, once, through the table.
    assert state_assignments(COORDINATOR) == []
    (line,) = state_assignments(CHART_STATES)
    book = next(n for n in ast.parse(CHART_STATES.read_text()).body if isinstance(n, ast.ClassDef)
                and n.name == "ChartBook")
    move = next(n for n in book.body if isinstance(n, ast.FunctionDef) and n.name == "move")
    assert move.lineno <= line <= (move.end_lineno or 0)


@pytest.mark.parametrize("state", list(ChartState))
@pytest.mark.parametrize("move", list(Move))
def test_a_move_goes_where_the_table_says_or_raises(state: ChartState, move: Move) -> None:
    sources, target = TRANSITIONS[move]
    if state in sources:
        assert moved(state, move) is target
    else:
        with pytest.raises(IllegalMove, match=f"{move.value} from {state.value}"):
            moved(state, move)


def test_no_move_leaves_a_final_state_and_every_chart_can_reach_each():
    assert all(not (sources & set(FINAL)) for sources, _ in TRANSITIONS.values())
    reachable = {ChartState.RETRIEVING}
    for _ in ChartState:
        reachable |= {target for sources, target in TRANSITIONS.values() if sources & reachable}
    assert reachable == set(ChartState)


def test_an_illegal_move_raises_and_changes_nothing(tmp_path):
    batches = plan_batches(["M1"], BUILTIN_PACK[:2], DEFAULT_START, DEFAULT_END, tmp_path, 2)
    book = ChartBook(batches)
    first, second = book
    book.move(first, Move.DATA_ARRIVED)
    book.move(first, Move.HANDED_OVER)
    book.move(first, Move.WRITTEN)
    with pytest.raises(IllegalMove):
        book.move(first, Move.FAILED)  # a chart that is ok stays ok
    with pytest.raises(IllegalMove):
        book.move(second, Move.WRITTEN)  # no PNG before its data
    assert (first.state, second.state) == (ChartState.OK, ChartState.RETRIEVING)
    assert (book.count(ChartState.OK), book.count(ChartState.RETRIEVING)) == (1, 1)
    assert first.ended_wall is not None and second.ended_wall is None

