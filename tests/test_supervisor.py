"""The render supervisor driven directly, with real worker processes and no run around it:
crash blame, rebuilding, recycling, timeouts, stopping, and the in-process variant."""

from __future__ import annotations

import functools
import queue
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.charts import BUILTIN_PACK
from runner.config import load_config
from runner.errors import ErrorType
from runner.records import DeckChart, DeckTask, RenderedChart, RenderTask
from runner.render.inline_backend import InlineSupervisor
from runner.render.process_backend import ProcessSupervisor
from runner.render.supervisor import GoAgain, Rendered, RenderFailed, RenderSupervisor, Task, key_of
from runner.render.task import run_task
from runner.render.worker import init_worker
from tests.helpers import assert_all_ended, render_task
from tests.render_faults import faulty_render

pytestmark = pytest.mark.timeout(120)


def tasks_for(warehouse: Any, tmp_path: Path, merchants: int = 1) -> list[RenderTask]:
    tokens = [m["token"] for m in warehouse.merchants()[:merchants]]
    return [render_task(warehouse, spec, token, tmp_path) for token in tokens for spec in BUILTIN_PACK]


def supervisor(faults: dict[str, str] | None = None, **settings: str) -> ProcessSupervisor:
    config = load_config(env={"SCALAPAY_MAX_CONCURRENT_CHARTS": "2", **settings})
    return ProcessSupervisor(config, functools.partial(faulty_render, faults or {}))


def drive(sup: RenderSupervisor, tasks: list[Task], deadline_s: float = 90) -> dict[Any, Any]:
    """What the coordinator does, reduced to the supervisor's interface: submit while it has
    room, settle each finished future, tick, and go again when told. Returns key -> outcome."""
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    by_key = {key_of(task): task for task in tasks}
    waiting = deque(tasks)
    outcomes: dict[Any, Any] = {}
    go_again: list[Any] = []
    sup.start(on_ready=lambda: events.put("ready"))
    deadline = time.monotonic() + deadline_s
    try:
        while len(outcomes) < len(tasks):
            assert time.monotonic() < deadline, f"unsettled: {set(by_key) - set(outcomes)}"
            while waiting and sup.capacity() > 0:
                sup.submit(waiting.popleft(), events.put)
            for failed in sup.tick():
                outcomes[failed.key] = failed
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(event, Future):
                settled = sup.settle(event)
                if isinstance(settled, GoAgain):
                    go_again.append(settled.key)
                    waiting.appendleft(by_key[settled.key])
                elif settled is not None:
                    outcomes[settled.key] = settled
        assert sup.in_flight() == 0
    finally:
        sup.close(terminate=False)
    outcomes["go_again"] = go_again
    return outcomes


def worker_pids(outcomes: dict[Any, Any]) -> set[int]:
    return {o.chart.worker_pid for o in outcomes.values() if isinstance(o, Rendered)
            and isinstance(o.chart, RenderedChart)}


def digests(output: Any) -> tuple[str, ...]:
    return (output.sha256,) if isinstance(output, RenderedChart) else tuple(d.sha256 for d in output.documents)


def test_pool_renders_the_same_pngs_and_decks_as_one_process(warehouse, tmp_path):
    charts = tasks_for(warehouse, tmp_path)
    init_worker()  # the workers' style, in this process
    first = charts[0]
    # PDF only: a PPTX holds the time it was made.
    deck = DeckTask(first.job.merchant, first.job.start_date, first.job.end_date, "2026-11-29",
                    (DeckChart(first.job.spec, first.data, run_task(first).png),), ("pdf",))
    tasks: list[Task] = [*charts, deck]  # decks go to the same workers as charts
    sup = supervisor()
    outcomes = drive(sup, tasks)
    expected = {key_of(task): digests(run_task(task)) for task in tasks}
    assert {key: digests(o.chart) for key, o in outcomes.items() if key != "go_again"} == expected
    assert sup.restarts == 0 and sup.recycles == 0 and outcomes["go_again"] == []
    assert len(worker_pids(outcomes)) == 2
    assert_all_ended(worker_pids(outcomes))
    assert not list(tmp_path.iterdir())  # workers write nothing


def test_a_chart_that_kills_its_worker_is_blamed_alone(warehouse, tmp_path):
    tasks = tasks_for(warehouse, tmp_path, merchants=2)
    sup = supervisor({"aov_by_month": "crash"})
    outcomes = drive(sup, tasks)
    failed = {key: o for key, o in outcomes.items() if isinstance(o, RenderFailed)}
    assert set(failed) == {(task.job.merchant, "aov_by_month") for task in tasks if task.job.spec.id == "aov_by_month"}
    assert {o.error_type for o in failed.values()} == {ErrorType.WORKER_CRASHED}
    assert all(isinstance(o, Rendered) for key, o in outcomes.items() if key not in failed and key != "go_again")
    # Two crashes for each merchant's chart; one more when both run at once and one of them is ended
    # by the pool's own shutdown of its broken workers (not its fault, so it is not counted).
    assert 4 <= sup.restarts <= 5
    assert outcomes["go_again"].count((tasks[0].job.merchant, "aov_by_month")) >= 1


def test_a_chart_that_crashed_once_is_rendered_on_its_second_try(warehouse, tmp_path):
    flag = tmp_path / "crashed-once"
    sup = supervisor({"user_demographics": f"crash-once={flag}"})
    outcomes = drive(sup, tasks_for(warehouse, tmp_path / "out"))
    assert flag.exists()
    assert all(isinstance(o, Rendered) for key, o in outcomes.items() if key != "go_again")
    assert sup.restarts == 1


def test_segfaults_are_blamed_like_exits(warehouse, tmp_path):
    outcomes = drive(supervisor({"orders_by_product_type": "segv"}), tasks_for(warehouse, tmp_path))
    failed = [o for o in outcomes.values() if isinstance(o, RenderFailed)]
    assert [(o.key[1], o.error_type) for o in failed] == [("orders_by_product_type", ErrorType.WORKER_CRASHED)]


# A replaced pool's handles closed too early show as an exception in its manager thread.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_workers_are_recycled_and_every_one_ends(warehouse, tmp_path):
    sup = supervisor(SCALAPAY_RENDER_WORKER_MAX_CHARTS="1")
    outcomes = drive(sup, tasks_for(warehouse, tmp_path, merchants=2))
    assert all(isinstance(o, Rendered) for key, o in outcomes.items() if key != "go_again")
    assert sup.recycles >= 5 and sup.restarts == 0  # a new pool every two charts
    assert len(worker_pids(outcomes)) >= 6
    assert_all_ended(worker_pids(outcomes))


def test_a_hung_render_is_ended_after_its_timeout(warehouse, tmp_path):
    # The timeout holds for every render: it is far above a chart's render time (a fraction of a
    # second) even on a busy machine, so only the hung one can pass it.
    sup = supervisor({"user_demographics": "hang"}, SCALAPAY_RENDER_TIMEOUT_SECONDS="5")
    outcomes = drive(sup, tasks_for(warehouse, tmp_path))
    hung = outcomes[(warehouse.merchants()[0]["token"], "user_demographics")]
    assert isinstance(hung, RenderFailed) and hung.error_type is ErrorType.TIMEOUT and "within 5s" in hung.message
    assert sum(isinstance(o, Rendered) for o in outcomes.values()) == len(BUILTIN_PACK) - 1
    assert sup.restarts == 1


def test_stopping_ends_a_hung_worker_at_once(warehouse, tmp_path):
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sup = supervisor({"monthly_sales_yoy": "hang"})
    sup.start(on_ready=lambda: events.put("ready"))
    assert events.get(timeout=60) == "ready"
    sup.submit(tasks_for(warehouse, tmp_path)[0], events.put)
    while sup.rendering() == 0:  # the worker has begun the chart that never ends
        sup.tick()
        time.sleep(0.05)
    workers = pool_workers()
    assert len(workers) == 2
    sup.cancel_pending()
    assert sup.capacity() == 0
    started = time.monotonic()
    sup.close(terminate=True)
    assert time.monotonic() - started < 30
    assert events.get(timeout=10).done()  # its future ended with the worker; nothing hangs
    assert_all_ended({worker.pid for worker in workers})


def pool_workers() -> list[psutil.Process]:
    """This process's render workers: the children of its forkserver."""
    return [child for child in psutil.Process().children(recursive=True)
            if "forkserver" in " ".join(child.parent().cmdline())]


def test_inline_supervisor_has_the_same_interface(warehouse, tmp_path):
    tasks = tasks_for(warehouse, tmp_path)[:3]
    sup = InlineSupervisor(functools.partial(faulty_render, {tasks[1].job.spec.id: "raise"}))
    outcomes = drive(sup, tasks)
    assert isinstance(outcomes[tasks[0].job.key], Rendered)
    failed = outcomes[tasks[1].job.key]
    assert isinstance(failed, RenderFailed) and failed.error_type is ErrorType.RENDER_ERROR
    assert "injected" in failed.message
    assert sup.workers == 1 and sup.start_method == "inline"


def test_a_pool_that_cannot_start_fails_every_chart_instead_of_waiting(warehouse, tmp_path):
    sup = supervisor()
    sup._started_writer.close()  # the workers' channel cannot be handed to them: spawning them fails
    tasks = tasks_for(warehouse, tmp_path)
    outcomes = drive(sup, tasks, deadline_s=60)
    failed = [outcomes[task.job.key] for task in tasks]
    assert all(isinstance(o, RenderFailed) and o.error_type is ErrorType.RENDER_ERROR for o in failed)
    assert "render workers could not start" in failed[0].message
