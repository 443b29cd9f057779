"""A new output format and a new render backend are each made in one place, and these tests say
where the rest must follow: a deck format (runner.status.DeckFormat) needs its builder
(runner.decks.build.FORMATS) and its name in the hand-written report schema; a render backend
(runner.render.backends.BACKENDS) needs its name among the executor setting's choices."""

from __future__ import annotations

import json

import pytest

from runner.config import load_config, settings
from runner.decks.build import FORMATS
from runner.errors import UsageError
from runner.render.backends import BACKENDS, render_backend
from runner.render.inline_backend import InlineSupervisor
from runner.render.process_backend import ProcessSupervisor
from runner.report import SCHEMA_FILE, merchant_rows
from runner.settings import Setting
from runner.status import DeckFormat

SCHEMA = json.loads(SCHEMA_FILE.read_text())
DECK_COLUMNS = [f"deck_{fmt}" for fmt in DeckFormat]


def setting(name: str) -> Setting:
    return next(s for s in settings() if s.name == name)


def test_every_deck_format_has_a_builder_and_every_builder_a_format():
    assert list(FORMATS) == list(DeckFormat), (
        "runner.decks.build.FORMATS must map each runner.status.DeckFormat, in its order, to the function "
        f"that builds it: formats {[str(f) for f in DeckFormat]}, builders {[str(f) for f in FORMATS]}")


def test_the_report_schema_names_every_deck_format():
    decks = SCHEMA["properties"]["decks"]["items"]["properties"]["format"]["enum"]
    assert decks == list(DeckFormat), (
        "runner/report.schema.json: properties.decks.items.properties.format.enum must list runner.status."
        f"DeckFormat in its order ({[str(f) for f in DeckFormat]}); it lists {decks}: update the schema")


def test_the_report_schema_has_a_merchant_column_for_every_deck_format():
    merchants = SCHEMA["properties"]["merchants"]["items"]
    required = [name for name in merchants["required"] if name.startswith("deck_")]
    properties = [name for name in merchants["properties"] if name.startswith("deck_")]
    assert required == properties == DECK_COLUMNS, (
        "runner/report.schema.json: the merchant rows' required and properties must have a column "
        f"{DECK_COLUMNS} per runner.status.DeckFormat; they have {required} and {properties}: update the schema")


def test_a_merchant_row_has_a_column_for_every_deck_format_in_order():
    chart = {"merchant": "m1", "status": "ok"}
    deck = {"merchant": "m1", "format": DeckFormat.PDF.value, "status": "ok"}
    row = merchant_rows([chart], [deck], (DeckFormat.PDF.value,))[0]
    assert [key for key in row if key.startswith("deck_")] == DECK_COLUMNS
    assert row["deck_pdf"] == "ok" and all(row[column] is None for column in DECK_COLUMNS[1:])


def test_the_deck_setting_offers_every_format_and_its_help_names_them():
    deck = setting("deck")
    assert deck.choices == tuple(DeckFormat) and deck.default == ",".join(DeckFormat)
    missing = [str(fmt) for fmt in DeckFormat if fmt not in deck.help]
    assert not missing, f"the deck setting's help (runner/config.py) does not name {missing}: {deck.help!r}"


def test_every_executor_names_a_render_backend():
    # `local` is two backends: worker processes, or in-process when concurrent chart generation is off.
    executors = set(setting("executor").choices) - {"local"} | {"processes", "inline"}
    assert executors == set(BACKENDS), (
        "runner/config.py's executor choices must name the backends of runner.render.backends.BACKENDS "
        f"(local: processes and inline): choices give {sorted(executors)}, BACKENDS has {sorted(BACKENDS)}")


def test_the_settings_pick_the_render_backend():
    processes = render_backend(load_config(env={}))
    assert processes.name == "processes" and isinstance(processes.supervisor(), ProcessSupervisor)
    processes.close()
    processes.close()  # as the run does: the coordinator closed it first
    off = render_backend(load_config(env={"SCALAPAY_ENABLE_CONCURRENT_CHART_GENERATION": "false"}))
    assert off.name == "inline" and isinstance(off.supervisor(), InlineSupervisor)
    assert off.figures() == {"executor": "local", "scheduler": None, "dask_workers_seen": None}


def test_dask_without_a_scheduler_is_a_usage_error_before_any_work():
    with pytest.raises(UsageError, match="--executor dask needs --dask-scheduler"):
        render_backend(load_config(env={"SCALAPAY_EXECUTOR": "dask"}))
