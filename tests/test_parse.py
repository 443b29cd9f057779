"""Validation of tool results into ChartData: every shape, and every kind of bad data."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from runner.charts import BUILTIN_PACK
from runner.errors import ChartError
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.results import MAX_RESULT_CHARS, decode_json_text, decode_tool_result

SPECS = {spec.id: spec for spec in BUILTIN_PACK}
YOY = SPECS["monthly_sales_yoy"]
BARS = SPECS["orders_by_product_type"]
GROUPS = SPECS["user_demographics"]


def series_payload(values: list, unit: str = "EUR") -> dict:
    return {"unit": unit, "labels": ["Jan", "Feb", "Mar"], "series": [{"name": "2025", "values": values}]}


def groups_payload(shares: list) -> dict:
    return {"unit": "%", "groups": [{"name": "Age", "labels": ["18-24", "25-34", "35+"], "values": shares}]}


def error_type(spec, payload) -> str:
    with pytest.raises(ChartError) as info:
        chart_data_from_json(spec, "m1", payload)
    return info.value.error_type


def test_valid_shapes_become_panels():
    data = chart_data_from_json(YOY, "m1", series_payload([1.5, None, 3]), paragraph="Sales grew.")
    assert data.panels[0].labels == ("Jan", "Feb", "Mar")
    assert data.panels[0].series[0].values == (1.5, None, 3.0)
    assert data.paragraph == "Sales grew." and data.unit == "EUR"

    bars = chart_data_from_json(BARS, "m1", {"labels": ["Pay in 3", "Pay in 4"], "values": [3, 4]})
    assert bars.panels[0].series[0].values == (3.0, 4.0)

    groups = chart_data_from_json(GROUPS, "m1", groups_payload([33.3, 33.3, 33.3]))  # rounding tolerated
    assert groups.panels[0].title == "Age"


@pytest.mark.parametrize(
    ("spec", "payload"),
    [
        (YOY, [1, 2, 3]),  # not an object
        (YOY, {"labels": "Jan", "series": []}),  # labels not a list
        (YOY, series_payload([1, 2])),  # values do not match labels
        (YOY, series_payload([1, "two", 3])),  # not a number
        (YOY, series_payload([1, float("inf"), 3])),  # infinite
        (YOY, series_payload([1, True, 3])),  # booleans are not numbers
        (BARS, {"labels": ["Pay in 3", "Pay in 4"], "values": [3, -4]}),  # negative count
        (GROUPS, groups_payload([50, 30, 5])),  # shares add up to 85%
        (GROUPS, groups_payload([150, -30, -20])),  # shares outside 0-100
        (YOY, {"labels": ["x"] * 1001, "series": []}),  # too many labels
        (YOY, {"labels": ["Jan"], "series": [{"name": str(i), "values": [1]} for i in range(51)]}),
        (BARS, {"labels": ["Pay in 3", "Pay in 4"], "values": [10 ** 400, 4]}),  # no float holds it
        (YOY, series_payload([1, 1e16, 3])),  # beyond ±1e15
        (YOY, {"labels": ["2024-12", "2024-13", "2025-01"], "series": [{"name": "2025", "values": [1, 2, 3]}]}),
        (YOY, {"labels": ["Jan", "Feb", "Jan"], "series": [{"name": "2025", "values": [1, 2, 3]}]}),  # twice
        (BARS, {"labels": ["x" * 80 + "1", "x" * 80 + "2"], "values": [1, 2]}),  # the same once cut
        (YOY, {"labels": ["Jan"], "series": [{"name": "2025", "values": [1]}, {"name": "2025", "values": [2]}]}),
        (GROUPS, {"groups": [groups_payload([50, 50, 0])["groups"][0]] * 2}),  # one group name twice
    ],
)
def test_wrong_shapes_are_bad_data(spec, payload):
    assert error_type(spec, payload) == "bad_data"


@pytest.mark.parametrize(
    ("spec", "payload"),
    [
        (YOY, {"labels": [], "series": []}),
        (YOY, series_payload([0, 0, None])),
        (BARS, {"labels": [], "values": []}),
        (GROUPS, {"groups": []}),
    ],
)
def test_empty_results_are_empty_data(spec, payload):
    assert error_type(spec, payload) == "empty_data"


def test_json_text_limits():
    with pytest.raises(ChartError, match="not valid JSON") as info:
        decode_json_text(YOY.id, "<html>oops</html>")
    assert info.value.error_type == "bad_data"
    with pytest.raises(ChartError, match="not valid JSON"):
        decode_json_text(YOY.id, '{"values": [NaN]}')
    with pytest.raises(ChartError, match="exceeds"):
        decode_json_text(YOY.id, " " * (MAX_RESULT_CHARS + 1))


def test_minus_zero_is_zero():
    data = chart_data_from_json(BARS, "m1", {"labels": ["Pay in 3", "Pay in 4"], "values": [-0.0, 4]})
    assert str(data.panels[0].series[0].values) == "(0.0, 4.0)"


def test_labels_are_cleaned_of_control_characters():
    payload = {"labels": ["Pay in 3\x1b[31m", "Pay in 4"], "values": [1, 2]}
    data = chart_data_from_json(BARS, "m1", payload)
    assert data.panels[0].labels == ("Pay in 3[31m", "Pay in 4")


def _result(text: str | None = None, structured: dict | None = None, is_error: bool = False):
    content = [SimpleNamespace(type="text", text=text)] if text is not None else []
    return SimpleNamespace(is_error=is_error, content=content, structured_content=structured)


def test_decode_tool_result_prefers_structured_content_then_text():
    payload = series_payload([1, 2, 3])
    assert decode_tool_result(YOY.id, YOY.tool, _result(text="ignored", structured=payload)) == payload
    assert decode_tool_result(YOY.id, YOY.tool, _result(text=json.dumps(payload))) == payload
    with pytest.raises(ChartError) as info:
        decode_tool_result(YOY.id, YOY.tool, _result(text="unknown merchant", is_error=True))
    assert info.value.error_type == "tool_error" and "unknown merchant" in info.value.message
    with pytest.raises(ChartError) as info:
        decode_tool_result(YOY.id, YOY.tool, _result())
    assert info.value.error_type == "empty_data"
