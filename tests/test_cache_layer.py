"""The render cache in front of a render supervisor, driven through the supervisor's interface in
this process: the in-process backend behind the cache layer, real charts and decks, a real cache
folder. The render function is counted, so a hit is seen not to reach the backend."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

from runner.cache.entries import task_key
from runner.cache.folder import INDEX
from runner.cache.layer import claim_cache, with_cache
from runner.charts import BUILTIN_PACK
from runner.config import load_config
from runner.demo.server import Warehouse
from runner.records import BuiltDeck, DeckChart, DeckTask, RenderedChart, RenderTask
from runner.render.inline_backend import InlineSupervisor
from runner.render.supervisor import Output, Rendered, RenderSupervisor, Task
from runner.render.worker import render
from tests.helpers import render_task

SPEC = BUILTIN_PACK[3]
RENDERED: list[str] = []  # the charts that reached the backend, in order


def counted_render(task: RenderTask) -> RenderedChart:
    """The real render function, counting the charts it is given."""
    RENDERED.append(task.job.spec.id)
    return render(task)


@pytest.fixture
def cached(tmp_path: Path) -> Iterator[RenderSupervisor]:
    """The in-process backend behind the cache layer, with a cache folder of its own."""
    RENDERED.clear()
    config = load_config(env={}, cli={"cache_dir": str(tmp_path / "cache")})
    claim_cache(config)
    supervisor = with_cache(InlineSupervisor(counted_render), config)
    supervisor.start(on_ready=lambda: None)
    yield supervisor
    supervisor.close(terminate=False)


def outcome(supervisor: RenderSupervisor, task: Task) -> Output:
    """Submit one task and settle it, as the coordinator does; its output (the in-process backend
    and a cache hit both finish within submit)."""
    finished: list[Future[Output]] = []
    supervisor.submit(task, finished.append)
    (future,) = finished
    settled = supervisor.settle(future)
    assert isinstance(settled, Rendered), settled
    return settled.chart


def chart_task(warehouse: Warehouse, tmp_path: Path, merchant: int = 0) -> RenderTask:
    return render_task(warehouse, SPEC, warehouse.merchants()[merchant]["token"], tmp_path / "out")


def deck_task(chart: RenderTask, png: bytes) -> DeckTask:
    job = chart.job
    return DeckTask(job.merchant, job.start_date, job.end_date, "2026-11-29", (DeckChart(job.spec, chart.data, png),),
                    ("pdf",))


def test_a_second_identical_task_is_served_from_the_cache_without_reaching_the_backend(cached, warehouse, tmp_path):
    task = chart_task(warehouse, tmp_path)
    first, second = outcome(cached, task), outcome(cached, task)
    assert RENDERED == [SPEC.id]
    assert isinstance(first, RenderedChart) and isinstance(second, RenderedChart)
    assert (first.cached, second.cached) == (False, True)
    assert (second.png, second.sha256) == (first.png, first.sha256)

    deck = deck_task(task, first.png)
    built, again = outcome(cached, deck), outcome(cached, deck)
    assert isinstance(built, BuiltDeck) and isinstance(again, BuiltDeck)
    assert (built.cached, again.cached) == (False, True)
    assert again.documents == built.documents and again.slides == built.slides


def test_a_changed_input_misses(cached, warehouse, tmp_path):
    task = chart_task(warehouse, tmp_path)
    panel = task.data.panels[0]
    series = panel.series[0]
    drawn = replace(series, values=(series.values[0] + 12345.0, *series.values[1:]))
    changed = replace(task, data=replace(task.data, panels=(replace(panel, series=(drawn, *panel.series[1:])),
                                                            *task.data.panels[1:])))
    first, other = outcome(cached, task), outcome(cached, changed)
    assert RENDERED == [SPEC.id, SPEC.id]
    assert isinstance(other, RenderedChart) and not other.cached
    assert isinstance(first, RenderedChart) and other.png != first.png


def test_a_tampered_entry_is_refused_and_rendered_again(cached, warehouse, tmp_path):
    task, other = chart_task(warehouse, tmp_path), chart_task(warehouse, tmp_path, merchant=1)
    first, elsewhere = outcome(cached, task), outcome(cached, other)
    assert isinstance(first, RenderedChart) and isinstance(elsewhere, RenderedChart)
    key = task_key(task)
    stored = tmp_path / "cache" / key[:2] / f"{key}.png"
    stored.write_bytes(elsewhere.png)  # a real chart of the runner's, but not this one
    again = outcome(cached, task)
    assert RENDERED == [SPEC.id] * 3
    assert isinstance(again, RenderedChart) and not again.cached and again.png == first.png
    assert stored.read_bytes() == first.png  # the entry was stored again, whole
    hit = outcome(cached, task)
    assert isinstance(hit, RenderedChart) and hit.cached and len(RENDERED) == 3


def test_a_deck_and_a_chart_for_the_same_merchant_never_share_a_key(cached, warehouse, tmp_path):
    chart = chart_task(warehouse, tmp_path)
    rendered = outcome(cached, chart)
    assert isinstance(rendered, RenderedChart)
    deck = deck_task(chart, rendered.png)
    assert task_key(chart) != task_key(deck)
    built = outcome(cached, deck)
    assert isinstance(built, BuiltDeck) and not built.cached  # not served the chart's entry
    assert {p.stem for p in (tmp_path / "cache" / INDEX).iterdir()} == {task_key(chart), task_key(deck)}
    chart_hit, deck_hit = outcome(cached, chart), outcome(cached, deck)
    assert isinstance(chart_hit, RenderedChart) and chart_hit.cached and chart_hit.png == rendered.png
    assert isinstance(deck_hit, BuiltDeck) and deck_hit.cached and deck_hit.documents == built.documents
    assert RENDERED == [SPEC.id]
