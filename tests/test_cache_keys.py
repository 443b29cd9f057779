"""What the render cache's keys hold: exactly what decides the output, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from runner.cache.entries import NOT_IN_CHART_KEY, chart_key, deck_key
from runner.charts import BUILTIN_FIGURES, BUILTIN_PACK
from runner.demo.server import Warehouse
from runner.records import ChartData, ChartJob, DeckChart, DeckTask, RenderTask
from runner.status import PartialDecks
from tests.helpers import render_task


def test_an_agents_paragraph_is_in_the_decks_key_not_the_charts(warehouse: Warehouse, tmp_path: Path) -> None:
    spec = BUILTIN_PACK[3]
    task = render_task(warehouse, spec, warehouse.merchants()[0]["token"], tmp_path)
    reworded = replace(task, data=replace(task.data, paragraph="The same numbers, said another way."))
    assert chart_key(reworded) == chart_key(task)  # the paragraph is not drawn on the chart

    def deck(data):  # type: ignore[no-untyped-def]
        return DeckTask(task.job.merchant, task.job.start_date, task.job.end_date, "2026-11-29",
                        (DeckChart(spec, data, b"png"),), ("pdf",), None)

    assert deck_key(deck(reworded.data)) != deck_key(deck(task.data))  # the deck's key holds all of its data


def test_every_field_of_a_deck_task_is_in_its_key(warehouse: Warehouse, tmp_path: Path) -> None:
    """The merchant's name, the key figures and the partial-deck setting change what a deck says."""
    spec = BUILTIN_PACK[0]
    task = render_task(warehouse, spec, warehouse.merchants()[0]["token"], tmp_path)
    base = DeckTask(task.job.merchant, task.job.start_date, task.job.end_date, "2026-11-29",
                    (DeckChart(spec, task.data, b"png"),), ("pdf",), None)
    changed = [replace(base, merchant_name="Bottega Verde"), replace(base, figures=BUILTIN_FIGURES[:1]),
               replace(base, partial=PartialDecks.OMIT), replace(base, template=b"another template")]
    keys = {deck_key(other) for other in changed}
    assert len(keys) == len(changed) and deck_key(base) not in keys


def test_a_drawn_value_changes_the_charts_key(warehouse: Warehouse, tmp_path: Path) -> None:
    spec = BUILTIN_PACK[3]
    task = render_task(warehouse, spec, warehouse.merchants()[0]["token"], tmp_path)
    panel = task.data.panels[0]
    series = panel.series[0]
    changed = replace(series, values=(12345.0, *series.values[1:]))
    other = replace(task, data=replace(task.data, panels=(replace(panel, series=(changed, *panel.series[1:])),
                                                          *task.data.panels[1:])))
    assert chart_key(other) != chart_key(task)


def _other(value: Any) -> Any:
    """A value of the same kind that differs from `value`."""
    if isinstance(value, Enum):
        return next(member for member in type(value) if member != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "~"
    if isinstance(value, tuple):
        return value[:-1] if value else (("another", "value"),)
    assert value is None, value
    return "another value"


def _changed(record: Any, prefix: str = "") -> dict[str, Any]:
    """Each field of `record` ("job.spec.title"), recursing into records, mapped to `record` with that field
    changed."""
    changed = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if is_dataclass(value):
            for name, inner in _changed(value, f"{prefix}{field.name}.").items():
                changed[name] = replace(record, **{field.name: inner})
        else:
            changed[prefix + field.name] = replace(record, **{field.name: _other(value)})
    return changed


def test_every_field_of_a_chart_task_but_the_named_ones_is_in_its_key(warehouse: Warehouse, tmp_path: Path) -> None:
    """Every field of the task, its job, its spec and its data changes the key, except the ones
    runner.cache.entries.NOT_IN_CHART_KEY names (a field added later is in the key without a word)."""
    task = render_task(warehouse, BUILTIN_PACK[3], warehouse.merchants()[0]["token"], tmp_path)
    changed = _changed(task)
    assert len(changed) > 20 and "job.spec.title" in changed and "compress_level" in changed
    same = {name for name, other in changed.items() if chart_key(other) == chart_key(task)}
    assert same == NOT_IN_CHART_KEY  # left out of the key: only the named ones
    assert NOT_IN_CHART_KEY <= set(changed)  # and each named one is a field


def test_a_field_added_later_is_in_the_charts_key(warehouse: Warehouse, tmp_path: Path) -> None:
    """A drawing setting added to the task, its job or its data (as a subclass stands in for here)."""
    task = render_task(warehouse, BUILTIN_PACK[3], warehouse.merchants()[0]["token"], tmp_path)

    @dataclass(frozen=True)
    class LaterTask(RenderTask):
        dpi: int = 100

    @dataclass(frozen=True)
    class LaterJob(ChartJob):
        style: str = "light"

    @dataclass(frozen=True)
    class LaterData(ChartData):
        palette: str = "warm"

    def fields_of(record: Any) -> dict[str, Any]:
        return {field.name: getattr(record, field.name) for field in fields(record)}

    later = [(LaterTask(**fields_of(task)), LaterTask(**fields_of(task), dpi=200)),
             (replace(task, job=LaterJob(**fields_of(task.job))),
              replace(task, job=LaterJob(**fields_of(task.job), style="dark"))),
             (replace(task, data=LaterData(**fields_of(task.data))),
              replace(task, data=LaterData(**fields_of(task.data), palette="cold")))]
    for one, other in later:
        assert chart_key(one) != chart_key(other)
