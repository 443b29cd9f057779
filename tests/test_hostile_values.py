"""One bad value, one chart: whatever numbers, months and labels a tool's answer holds, it
becomes valid chart data (drawn, written and put in a deck without a hitch) or fails its own
chart as bad data, never its batch-mates.

The property runs the whole path in-process (decode, pivot, validate, paragraph, draw, data
file, deck) on generated hostile answers for every chart of both built-in packs; the CLI tests
run the real runner against a hostile stdio server and a SQL warehouse with an impossible date.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from mcp.types import CallToolResult, TextContent

from runner.charts import BUILTIN_PACK, ChartSpec, load_pack
from runner.decks.build import build_deck
from runner.errors import ChartError, ErrorType
from runner.kinds import paragraphs
from runner.records import ChartData, ChartJob, DeckChart, DeckTask, RenderTask
from runner.render import worker
from runner.render.draw import draw_chart
from runner.retrieval.direct import chart_data
from runner.retrieval.parse import MAX_VALUE, chart_data_from_json, data_document
from tests.helpers import REPO, check_report, run_cli, run_in_process
from tests.userfiles import assert_untouched, plant_user_files, tree_digest

# Labels in any alphabet are drawn with whatever glyphs the font has; matplotlib says which it lacks.
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font:UserWarning")

SQL_PACK = load_pack("business-review-sql").charts
START, END = "2024-01-01", "2025-12-31"
MERCHANT = "HOSTILE00001"

# Text that must never come out of a number: inf, nan, and a minus zero ("-0", "€-0.00", "-0.0%").
NOT_A_NUMBER = re.compile(r"inf|nan|-0(?:[.,]0+)?(?![0-9.,])", re.IGNORECASE)
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# -- generated hostile answers --------------------------------------------------------------------

def _fair(text: str) -> bool:
    """Labels are the tool's words and appear in paragraphs as they are: keep out of them the
    words the number check looks for, so that a hit can only come from a number."""
    return not NOT_A_NUMBER.search(text) and "-" not in text[-1:]


MONTHS = [f"{year}-{month:02d}" for year in (2024, 2025) for month in range(1, 13)]
BAD_MONTHS = ["2024-13", "0000-00", "2024-00", "2024-99", "２０２４-１３"]
CUT_PREFIX = "Pay in 3 and more " * 5  # 90 characters: two labels that differ after it clash once cut to 80

ordinary = st.one_of(st.integers(0, 100_000), st.floats(0, 1e6))
extreme = st.sampled_from([10 ** 400, -10 ** 400, int(MAX_VALUE) + 1, int(MAX_VALUE), -int(MAX_VALUE), 2 ** 63,
                           math.nan, math.inf, -math.inf, 1e308, -1e308, 1e16, -0.0, 5e-324, -5e-324, -1e-9, -3.5])
wrong = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
hostile_values = st.one_of(extreme, extreme, st.floats(), st.integers(), wrong)
hostile_texts = st.one_of(
    st.sampled_from(BAD_MONTHS),
    st.text(st.characters(), max_size=12).filter(_fair),  # any character: controls, surrogates, RTL, emoji
    st.builds(lambda tail: CUT_PREFIX + tail, st.text("ab", max_size=2)),
    st.text(st.sampled_from("xy$ "), min_size=60, max_size=120).filter(_fair),  # long; '$' pairs look like math
    st.sampled_from([10 ** 400, math.nan, -0.0, 7, None, True, ["a"]]),
)


@st.composite
def mutated(draw: st.DrawFn, answer: Any, paths: list[tuple[Any, Any, st.SearchStrategy[Any]]]) -> Any:
    """`answer` with a few of its places (container, key, what may go there) made hostile:
    none, one or several, so that some answers pass and the rest fail for one reason or more."""
    count = draw(st.sampled_from([0, 1, 1, 1, 2, 3]))  # one bad thing alone is the sharpest case
    for container, key, strategy in draw(st.lists(st.sampled_from(paths), min_size=count, max_size=count)):
        if key == "append":
            container.append(draw(strategy))
        elif key == "twin" and container:
            container.append(container[draw(st.integers(0, len(container) - 1))])
        elif key not in ("append", "twin"):
            container[key] = draw(strategy)
    return answer


@st.composite
def chart_payloads(draw: st.DrawFn, spec: ChartSpec) -> dict[str, Any]:
    """A chart tool's answer of the spec's shape: valid to begin with, then made hostile."""
    n = draw(st.integers(1, 6))
    labels = MONTHS[:n] if spec.shape == "series" else [f"Type {i}" for i in range(n)]
    paths: list[tuple[Any, Any, st.SearchStrategy[Any]]] = []
    payload: dict[str, Any] = {"unit": draw(st.sampled_from(["EUR", "orders", "%", "", "€$x$"]))}

    def place(container: list[Any], strategy: st.SearchStrategy[Any]) -> list[Any]:
        paths.extend((container, i, strategy) for i in range(len(container)))
        paths.extend([(container, "append", strategy), (container, "twin", strategy)])
        return container

    if spec.shape == "groups":
        groups = []
        for g in range(draw(st.integers(1, 3))):
            shares = draw(st.sampled_from([[100], [50, 50], [33.3, 33.3, 33.4], [-0.0, 100.0], [99.0, 1.0]]))
            groups.append({"name": f"Group {g}", "labels": place([f"Band {i}" for i in range(len(shares))],
                                                                   hostile_texts),
                           "values": place(list(shares), hostile_values)})
            paths.append((groups[-1], "name", hostile_texts))
        payload["groups"] = place(groups, st.just({"name": "Extra", "labels": ["a"], "values": [100]}))
    else:
        payload["labels"] = place(list(labels), hostile_texts)
        if spec.shape == "series":
            payload["series"] = [{"name": f"{2024 + i}", "values": place(draw(st.lists(
                st.one_of(ordinary, st.none()), min_size=n, max_size=n)), hostile_values)}
                for i in range(draw(st.integers(1, 3)))]
            paths.extend((series, "name", hostile_texts) for series in payload["series"])
        else:
            payload["values"] = place(draw(st.lists(ordinary, min_size=n, max_size=n)), hostile_values)
    return draw(mutated(payload, paths))


@st.composite
def sql_rows(draw: st.DrawFn, spec: ChartSpec) -> list[dict[str, Any]]:
    """A query's rows for the spec's columns: valid to begin with, then months that cannot be,
    numbers as text, and worse."""
    months = draw(st.lists(st.sampled_from(MONTHS), min_size=1, max_size=6, unique=True))
    rows = []
    for i, month in enumerate(months):
        cells = {"x": month, "series": "Pay in 3", "label": f"Type {i}", "group": "Age band",
                 "value": 100 / len(months) if spec.kind == "breakdown" else draw(ordinary)}
        rows.append({column: cells[role] for role, column in spec.columns})
    impossible = st.sampled_from(BAD_MONTHS + ["2024-13-01", "2024-02-30", "0000-00-00", "2024-13-01T00:00"])
    dates = st.one_of(impossible, impossible, st.sampled_from([m + "-15" for m in MONTHS]), hostile_texts)
    numeric_text = st.sampled_from(["12.50", "-0", "1e999", "-1e999", "9" * 400, "1e16", "NaN", " 7 ", "lots"])
    cell = {"x": dates, "value": st.one_of(hostile_values, numeric_text)}
    paths = [(row, column, cell.get(role, hostile_texts)) for row in rows for role, column in spec.columns]
    return draw(mutated(rows, [*paths, (rows, "twin", st.nothing())]))


def _deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


@st.composite
def tool_results(draw: st.DrawFn, payload: Any) -> CallToolResult:
    """The answer as a server might send it: structured, JSON text (NaN and Infinity as the bare
    tokens Python writes), FastMCP's {"result": text}, a Python literal, mcp-alchemy's numbered
    rows, or nested past any stack."""
    how = draw(st.sampled_from(["structured", "structured", "json", "json", "wrapped", "python", "numbered",
                                "deep-text", "deep-structured"]))
    if how == "numbered" and isinstance(payload, list):
        blocks = [f"{i}. row\n" + "\n".join(f"{key}: {'NULL' if value is None else value}"
                                             for key, value in row.items()) for i, row in enumerate(payload, 1)]
        text = "\n\n".join([*blocks, f"Result: {len(payload)} rows"]) if payload else "No rows returned"
        return CallToolResult(content=[TextContent(type="text", text=text)])
    if how == "structured":
        structured = payload if isinstance(payload, dict) else {"rows": payload}
        return CallToolResult(content=[], structured_content=structured)
    if how == "deep-structured":
        return CallToolResult(content=[], structured_content={"labels": _deep(100_000), "rows": _deep(100_000)})
    if how == "deep-text":
        return CallToolResult(content=[TextContent(type="text", text="[" * 100_000 + "]" * 100_000)])
    text = repr(payload) if how == "python" else json.dumps(payload)
    if how == "wrapped":
        return CallToolResult(content=[], structured_content={"result": text})
    return CallToolResult(content=[TextContent(type="text", text=text)])


# -- the whole path -------------------------------------------------------------------------------

def assert_drawable(data: ChartData) -> None:
    """What everything after validation relies on."""
    titles = [panel.title for panel in data.panels]
    assert len(set(titles)) == len(titles), titles
    for panel in data.panels:
        assert len(set(panel.labels)) == len(panel.labels), panel.labels
        assert len({s.name for s in panel.series}) == len(panel.series)
        for label in panel.labels:
            month = MONTH.match(label)
            assert month is None or 1 <= int(month[2]) <= 12, label
        for series in panel.series:
            for value in series.values:
                assert value is None or (isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_VALUE
                                         and not (value == 0 and math.copysign(1, value) < 0)), value


def drawn_texts(job: ChartJob, data: ChartData) -> list[str]:
    """Every text on the drawn chart, tick labels included (they are made as it is drawn), on a
    figure too coarse to cost much: the words are the same at any resolution."""
    figure = Figure(figsize=(16, 9), dpi=10)
    FigureCanvasAgg(figure)
    draw_chart(figure, job, data)
    figure.canvas.draw()
    return [text.get_text() for text in figure.findobj(Text) if text.get_visible()]


def _count(outcome: str) -> None:
    if currently_in_test_context():  # shown by --hypothesis-show-statistics
        event(outcome)


def whole_path(job: ChartJob, result: CallToolResult) -> ChartData | None:
    """Decode, pivot and validate as a batch does; if accepted, paragraph, draw, data file and deck
    must all go through. A failure must be this chart's bad (or empty) data, named for it."""
    try:
        data = chart_data(job, result)
    except ChartError as error:
        assert error.error_type in (ErrorType.BAD_DATA, ErrorType.EMPTY_DATA), error
        assert error.message.startswith(f"{job.spec.id}: ") and len(error.message) <= 500, error.message
        _count(f"refused: {error.error_type}")
        return None
    _count("accepted")
    assert_drawable(data)
    for words in (job.spec.title, paragraphs.write(job.spec, data), data.paragraph or ""):
        assert not NOT_A_NUMBER.search(words), words
    document = data_document(job, data)  # the data file: valid JSON, and it reads back the same
    assert chart_data_from_json(job.spec, job.merchant, json.loads(document), data.paragraph) == data
    png = worker.render(RenderTask(job, data, 1)).png
    for words in drawn_texts(job, data):
        assert not NOT_A_NUMBER.search(words), words
    deck = build_deck(DeckTask(job.merchant, job.start_date, job.end_date, "2026-01-05",
                               (DeckChart(job.spec, data, png),), ("pdf", "pptx")))
    assert [d.format for d in deck.documents] == ["pdf", "pptx"] and deck.slides == 2  # title, chart: no figures
    return data


@pytest.fixture(scope="module", autouse=True)
def render_style() -> None:
    worker.init_worker()  # the worker's matplotlib style, in this process


def _job(spec: ChartSpec, tmp: Path) -> ChartJob:
    return ChartJob(MERCHANT, spec, START, END, str(tmp / MERCHANT / f"{spec.id}.png"))


HYPOTHESIS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])


# Each chart of the tool pack gets chart answers; each of the SQL pack, rows to pivot.
ANSWERS = [(spec, chart_payloads) for spec in BUILTIN_PACK] + [(spec, sql_rows) for spec in SQL_PACK]


@pytest.mark.parametrize(("spec", "answers"), ANSWERS,
                         ids=[f"{'sql' if spec.sql else 'tool'}-{spec.id}" for spec, _ in ANSWERS])
@HYPOTHESIS
@given(data=st.data())
def test_any_answer_is_a_chart_or_its_own_bad_data(spec, answers, data, tmp_path_factory):
    result = data.draw(tool_results(data.draw(answers(spec))))
    whole_path(_job(spec, tmp_path_factory.getbasetemp()), result)


# -- the rows of the issue, one by one ------------------------------------------------------------

SPECS = {spec.id: spec for spec in BUILTIN_PACK}


def _text(payload: Any) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(payload))])


def _refusal(spec_id: str, payload: Any, tmp_path: Path) -> str:
    with pytest.raises(ChartError) as info:
        chart_data(_job(SPECS[spec_id], tmp_path), _text(payload))
    assert info.value.error_type == ErrorType.BAD_DATA, info.value
    return info.value.message


@pytest.mark.parametrize(("spec_id", "payload", "named"), [
    ("orders_by_product_type", {"labels": ["Pay in 3", "Pay in 4"], "values": [int("9" * 400), 5]},
     "values[0] (at 'Pay in 3') is 999999999999… (an integer of 400 digits)"),
    ("aov_by_product_type", {"labels": ["Pay in 3", "Pay in 4"], "values": [1e308, 1e308]},
     "values[0] (at 'Pay in 3') is 1e+308, beyond the ±1e15"),
    ("aov_by_month", {"labels": ["2024-12", "2024-13"], "series": [{"name": "AOV", "values": [1, 2]}]},
     "labels[1] is '2024-13', not a month"),
    ("aov_by_month", {"labels": ["0000-00"], "series": [{"name": "AOV", "values": [1]}]},
     "labels[0] is '0000-00', not a month"),
    ("aov_by_product_type", {"labels": [CUT_PREFIX + "a", CUT_PREFIX + "b"], "values": [1, 2]},
     "labels[0] and labels[1] both read 'Pay in 3 and more"),
    ("aov_by_product_type", {"labels": ["Pay in 3", "Pay in 3"], "values": [1, 2]},
     "labels[0] and labels[1] both read 'Pay in 3': each must differ"),
    ("sales_by_product_type", {"labels": ["2024-01"], "series": [{"name": "Pay in 3", "values": [-5]}]},
     "is negative (-5), but a share of a total"),
])
def test_a_value_no_chart_can_carry_is_bad_data_named_in_one_line(spec_id, payload, named, tmp_path):
    message = _refusal(spec_id, payload, tmp_path)
    assert message.startswith(f"{spec_id}: ") and named in message and "\n" not in message, message
    assert len(message) < 200, message


def test_nan_and_infinity_tokens_in_json_text_are_bad_data(tmp_path):
    for token in ("NaN", "Infinity", "-Infinity"):
        text = '{"labels": ["a"], "values": [' + token + "]}"
        result = CallToolResult(content=[TextContent(type="text", text=text)])
        with pytest.raises(ChartError, match=f"non-finite number {token}") as info:
            chart_data(_job(SPECS["aov_by_product_type"], tmp_path), result)
        assert info.value.error_type == ErrorType.BAD_DATA


def test_minus_zero_is_drawn_and_written_as_zero(tmp_path):
    job = _job(SPECS["orders_by_product_type"], tmp_path)
    data = whole_path(job, _text({"labels": ["Pay in 3", "Pay in 4"], "values": [-0.0, 12], "unit": "orders"}))
    assert data is not None and data.panels[0].series[0].values == (0.0, 12.0)
    assert math.copysign(1, data.panels[0].series[0].values[0]) == 1
    assert "Pay in 3 0.0% (0 orders)" in (data.paragraph or ""), data.paragraph
    written = json.loads(data_document(job, data))
    assert json.dumps(written["values"]) == "[0.0, 12.0]"  # not [-0.0, 12.0]


def test_a_tiny_negative_average_is_written_without_a_minus_zero(tmp_path):
    data = whole_path(_job(SPECS["aov_by_product_type"], tmp_path),
                      _text({"labels": ["Pay in 3", "Pay in 4"], "values": [-0.004, 25], "unit": "EUR"}))
    assert data is not None
    assert "Pay in 3 €0.00" in (data.paragraph or ""), data.paragraph


def test_two_years_with_no_month_in_common_are_written_without_a_comparison(tmp_path):
    payload = {"labels": ["Jan", "Feb"], "unit": "EUR",
               "series": [{"name": "2024", "values": [5, None]}, {"name": "2025", "values": [None, 7]}]}
    data = whole_path(_job(SPECS["monthly_sales_yoy"], tmp_path), _text(payload))
    assert data is not None and data.paragraph == (
        "In Feb 2025 the total was €7.00. The best month shown was Feb 2025 (€7.00) and the weakest Jan 2024 (€5.00).")


# -- through the real CLI -------------------------------------------------------------------------

def test_one_bad_value_fails_its_chart_alone_through_the_cli(tmp_path):
    """A 400-digit integer in one chart's answer, an impossible month in another's: each fails
    alone as bad data, named; every batch-mate is drawn; no traceback, no internal error."""
    server = shlex.join([sys.executable, str(REPO / "tests" / "hostile_values_server.py"),
                         "--poison", "get_monthly_sales_by_product_type=huge-int",
                         "--poison", "get_aov_by_month=bad-month"])
    before = tree_digest(plant_user_files(tmp_path), skip=(tmp_path / "out",))
    result = run_cli(["--server-command", server, "--merchant", "LIICIEWKV6BK", "--batch-size", "3"], tmp_path,
                     in_process=True)
    assert_untouched(before, tree_digest(tmp_path, skip=(tmp_path / "out",)))
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, ["LIICIEWKV6BK"])
    outcome = {c["chart_id"]: (c["status"], c["error_type"]) for c in report["charts"]}
    assert outcome == {spec.id: ("ok", None) for spec in BUILTIN_PACK} | {
        "sales_by_product_type": ("failed", "bad_data"), "aov_by_month": ("failed", "bad_data")}, outcome
    errors = {c["chart_id"]: c["error"] for c in report["charts"] if c["error"]}
    assert "(an integer of 400 digits), beyond the ±1e15 a chart can show" in errors["sales_by_product_type"]
    assert "'2024-13', not a month (01-12)" in errors["aov_by_month"]
    assert report["metrics"]["errors_by_type"] == {"bad_data": 2}
    assert "Traceback" not in result.stderr


def test_an_impossible_order_date_fails_only_the_monthly_sql_charts(tmp_path):
    db = tmp_path / "warehouse.db"
    assert run_in_process(["demo-data", "--sqlite", str(db)], tmp_path).returncode == 0
    with sqlite3.connect(db) as connection:  # one order, copied, dated in the 13th month
        columns = [row[1] for row in connection.execute("PRAGMA table_info(orders)")]
        listed = ", ".join(columns)
        chosen = ", ".join("'2024-13-01'" if c == "order_date" else c for c in columns)
        connection.execute(f"INSERT INTO orders ({listed}) SELECT {chosen} FROM orders "
                           "WHERE merchant_token = 'LIICIEWKV6BK' LIMIT 1")
    server = shlex.join([sys.executable, str(REPO / "tests" / "sql_server.py"), "--db", str(db)])
    result = run_cli(["--pack", "business-review-sql", "--server-command", server, "--merchant", "LIICIEWKV6BK"],
                     tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, ["LIICIEWKV6BK"])
    monthly = {"monthly_sales_yoy", "sales_by_product_type", "orders_by_user_type", "aov_by_month"}
    outcome = {c["chart_id"]: (c["status"], c["error_type"]) for c in report["charts"]}
    assert outcome == {spec.id: ("failed", "bad_data") if spec.id in monthly else ("ok", None) for spec in SQL_PACK}
    for chart in report["charts"]:
        if chart["chart_id"] in monthly:
            assert "'2024-13-01'" in chart["error"] or "'2024-13'" in chart["error"], chart["error"]
    assert "Traceback" not in result.stderr
