"""What the render cache's keys hold: exactly what decides the output, nothing else."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from runner.cache.entries import chart_key, deck_key
from runner.charts import BUILTIN_FIGURES, BUILTIN_PACK
from runner.demo.server import Warehouse
from runner.records import DeckChart, DeckTask
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
