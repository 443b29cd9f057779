"""A new output format and a new render backend are each made in one place, and these tests say
where the rest must follow: a deck format (runner.status.DeckFormat) needs its builder
(runner.decks.build.FORMATS) and its name in the hand-written report schema; a render backend
(runner.render.backends.BACKENDS) needs its name among the executor setting's choices. The report
schema's vocabularies and columns are the code's (runner.status, runner.errors, runner.report), and
it declares every key of `run` a run writes."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from runner.config import load_config, settings
from runner.decks.build import FORMATS
from runner.errors import ErrorType, UsageError
from runner.kinds.base import SHAPE_COLUMNS, Shape
from runner.render.backends import BACKENDS, render_backend
from runner.render.inline_backend import InlineSupervisor
from runner.render.process_backend import ProcessSupervisor
from runner.report import BATCH_COLUMNS, CHART_COLUMNS, SCHEMA_FILE, merchant_rows
from runner.retrieval.pivot import POSITIONAL
from runner.settings import Setting
from runner.status import BatchStatus, ChartStatus, DeckFormat, DeckStatus, ExitCode, RunStatus
from tests.helpers import run_cli, validate_report

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


def schema_at(path: str) -> Any:
    """The schema's node at a dotted path of property names ("run.exit_code"; "charts" is a row)."""
    node = SCHEMA
    for name in path.split("."):
        node = node["properties"][name]
        node = node.get("items", node)  # an array of rows: its row
    return node


# Each vocabulary the report schema lists, and the code's enum it must equal (in order).
VOCABULARIES: dict[str, type[Enum]] = {
    "run.exit_code": ExitCode,
    "run.status": RunStatus,
    "charts.status": ChartStatus,
    "batches.status": BatchStatus,
    "decks.status": DeckStatus,
}


@pytest.mark.parametrize("path", VOCABULARIES)
def test_the_report_schemas_vocabulary_is_the_codes_enum(path: str) -> None:
    enum = VOCABULARIES[path]
    listed, members = schema_at(path)["enum"], [member.value for member in enum]
    assert listed == members, (
        f"runner/report.schema.json: {path}'s enum must list {enum.__module__}.{enum.__name__} in its order: "
        f"it lists {listed}, the code has {members}: update the schema")


def test_the_report_schemas_error_types_are_the_codes() -> None:
    counted = SCHEMA["properties"]["metrics"]["properties"]["errors_by_type"]["propertyNames"]["enum"]
    assert counted == [t.value for t in ErrorType], "metrics.errors_by_type must name every runner.errors.ErrorType"
    for rows in ("charts", "batches", "decks"):  # each row lists the error types it can carry, and null
        listed = schema_at(f"{rows}.error_type")["enum"]
        assert None in listed and set(listed) - {None} <= set(ErrorType), f"{rows}.error_type lists {listed}"
    # A chart fails with any error type but a deck's (a chart whose PNG cannot be written: write_error).
    assert set(schema_at("charts.error_type")["enum"]) == set(ErrorType) - {ErrorType.DECK_ERROR} | {None}


def test_the_report_schemas_rows_are_the_codes_columns() -> None:
    charts, batches = schema_at("charts"), schema_at("batches")
    assert set(charts["properties"]) == set(charts["required"]) == set(CHART_COLUMNS), (
        "runner/report.schema.json: the chart rows' properties and required must be runner.report.CHART_COLUMNS")
    # The report adds each row's merchant_name (runner.report.with_merchant_names) to a batch's columns.
    assert set(batches["properties"]) == set(batches["required"]) == {*BATCH_COLUMNS, "merchant_name"}, (
        "runner/report.schema.json: the batch rows' properties and required must be runner.report.BATCH_COLUMNS"
        " and merchant_name")


def test_the_report_schemas_executors_are_the_settings_choices() -> None:
    executors = SCHEMA["properties"]["metrics"]["properties"]["render"]["properties"]["executor"]["enum"]
    assert executors == list(setting("executor").choices)


def test_the_report_schema_declares_every_key_of_run_a_run_writes(demo_url: str, demo_tokens: list[str],
                                                                  tmp_path: Path) -> None:
    """`run` allows keys it does not list (so validating a report does not catch one written but not
    declared): a real run's are each declared."""
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", "aov_by_month",
                      "--deck", "none", "--no-cache", "--no-enable-concurrent-chart-generation",
                      "--junit-xml", str(tmp_path / "junit.xml")], tmp_path, in_process=True)
    assert result.report is not None, result.stderr[-3000:]
    validate_report(result.report)
    undeclared = set(result.report["run"]) - set(schema_at("run")["properties"])
    assert not undeclared, f"runner/report.schema.json does not declare run.{sorted(undeclared)}: add them"
    assert result.report["run"]["junit_xml"] and "merged" in schema_at("run")["properties"]  # merge's own key


def test_a_bare_rows_cells_are_the_roles_of_its_shape() -> None:
    """runner.retrieval.pivot.POSITIONAL orders the roles kinds.base.SHAPE_COLUMNS names for each shape."""
    assert list(POSITIONAL) == list(Shape)
    for shape, (required, optional) in SHAPE_COLUMNS.items():
        assert sorted(POSITIONAL[shape]) == sorted(required + optional), shape
