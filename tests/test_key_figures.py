"""The summary slide's key figures: declared by the pack, measured over the window's last 12
months against the same months a year earlier, and every number on the slide recomputed here
with this test's own arithmetic and formatting (the rules in runner/wording.py)."""

from __future__ import annotations

import calendar
import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pptx import Presentation
from pypdf import PdfReader

from runner.charts import BUILTIN_FIGURES, BUILTIN_PACK, load_pack
from runner.decks.summary import Headline, headlines
from runner.demo.export import schema_sql
from runner.errors import UsageError
from runner.kinds.window import shown_data
from runner.records import DeckChart, DeckTask
from runner.retrieval.parse import chart_data_from_json
from tests.helpers import run_cli
from tests.test_sql_servers import sql_server

SPECS = {spec.id: spec for spec in BUILTIN_PACK}
USER_TYPES = ("Network", "Returning", "New")


# -- the test's own arithmetic and formatting ------------------------------------------------------------
def month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_at(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def name(first: str, last: str) -> str:
    abbr = calendar.month_abbr
    (y1, m1), (y2, m2) = (int(first[:4]), int(first[5:])), (int(last[:4]), int(last[5:]))
    if first == last:
        return f"{abbr[m1]} {y1}"
    if y1 == y2:
        return str(y1) if (m1, m2) == (1, 12) else f"{abbr[m1]}–{abbr[m2]} {y1}"
    return f"{abbr[m1]} {y1}–{abbr[m2]} {y2}"


def no_signed_zero(text: str) -> str:
    return text if any(c in "123456789" for c in text) else text.lstrip("+-")


def euros(value: float) -> str:
    return "€" + no_signed_zero(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}")


def count(value: float) -> str:
    return f"{round(value):,}"


def percent(value: float) -> str:
    return no_signed_zero(f"{value:,.1f}") + "%"


def expected_headlines(sales: dict[str, float], orders: dict[str, dict[str, int]], start: str, end: str,
                       ) -> tuple[str, list[Headline]]:
    months = [month_at(i) for i in range(month_index(start), month_index(end) + 1)][-12:]
    before = [month_at(month_index(m) - 12) for m in months]
    now_name, then = name(months[0], months[-1]), name(before[0], before[-1])

    def total(values: dict[str, float], period: list[str]) -> float:
        return sum(values.get(m, 0.0) for m in period)

    all_orders = {m: float(sum(by_type.values())) for m, by_type in orders.items()}
    new_orders = {m: float(by_type["New"]) for m, by_type in orders.items()}
    s_now, s_then = total(sales, months), total(sales, before)
    o_now, o_then = total(all_orders, months), total(all_orders, before)
    n_now, n_then = total(new_orders, months), total(new_orders, before)

    def versus(now: float, old: float, show: str) -> str:
        if old == 0:
            return f"nothing in {then} to compare with"
        return no_signed_zero(f"{(now - old) / old * 100:+,.1f}") + f"% vs {then} ({show})"

    out = [Headline("Total sales", euros(s_now), versus(s_now, s_then, euros(s_then))),
           Headline("Orders", count(o_now), versus(o_now, o_then, count(o_then)))]
    if o_now:
        aov_then = s_then / o_then if o_then else None
        out.append(Headline("Average order value", euros(s_now / o_now), f"nothing in {then} to compare with"
                            if aov_then is None else versus(s_now / o_now, aov_then, euros(aov_then))))
        share_now = 100 * n_now / o_now
        if o_then:
            share_then = 100 * n_then / o_then
            moved = no_signed_zero(f"{share_now - share_then:+,.1f}") + " pt"
            comparison = f"{moved} vs {then} ({percent(share_then)})"
        else:
            comparison = f"nothing in {then} to compare with"
        out.append(Headline("Orders from new customers", percent(share_now), comparison))
    return now_name, out


# -- generated data ---------------------------------------------------------------------------------------
@st.composite
def merchants(draw: st.DrawFn) -> tuple[str, str, dict[str, float], dict[str, dict[str, int]]]:
    first = draw(st.integers(month_index("2022-01"), month_index("2025-12")))
    length = draw(st.sampled_from([1, 2, 3, 6, 11, 12, 13, 24, 30]))
    start, last = month_at(first), month_at(first + length - 1)
    end = f"{last}-{calendar.monthrange(int(last[:4]), int(last[5:]))[1]:02d}"
    retrieved = [month_at(i) for i in range(first - 12, first + length)]
    opens = draw(st.integers(0, len(retrieved)))  # the merchant trades from this month on (maybe never)
    flat = draw(st.booleans())
    orders: dict[str, dict[str, int]] = {}
    sales: dict[str, float] = {}
    for i, month in enumerate(retrieved):
        trading = i >= opens
        counts = {u: (7 if flat else draw(st.integers(0, 40))) if trading else 0 for u in USER_TYPES}
        if trading and draw(st.booleans()):
            counts["New"] = 0  # months without new customers
        orders[month] = counts
        cents = draw(st.integers(100, 90_000_000)) if any(counts.values()) else 0
        sales[month] = cents / 100
    return f"{start}-01", end, sales, orders


def chart_payloads(start: str, end: str, sales: dict[str, float], orders: dict[str, dict[str, int]],
                   ) -> tuple[dict, dict]:
    """The two charts as the demo server's tools answer for the retrieval window."""
    years = range(int(min(sales)[:4]), int(end[:4]) + 1)
    yoy = {"labels": list(calendar.month_abbr)[1:], "unit": "EUR", "series": [
        {"name": str(y), "values": [sales.get(f"{y}-{m:02d}") for m in range(1, 13)]} for y in years]}
    months = sorted(orders)
    stacked = {"labels": months, "unit": "orders", "series": [
        {"name": u, "values": [orders[m][u] for m in months]} for u in USER_TYPES]}
    return yoy, stacked


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(merchants())
def test_every_summary_number_is_recomputed(case):
    start, end, sales, orders = case
    yoy, stacked = chart_payloads(start, end, sales, orders)
    charts = []
    for chart_id, payload in (("monthly_sales_yoy", yoy), ("orders_by_user_type", stacked)):
        try:
            data = chart_data_from_json(SPECS[chart_id], "M1", payload)
        except Exception:  # all zero: the chart is empty_data, and its figures are left out
            data = None
        charts.append(DeckChart(SPECS[chart_id], data, b"png" if data else None))
    task = DeckTask("M1", start, end, "2026-01-01", tuple(charts), ("pdf",), figures=BUILTIN_FIGURES)
    period, shown = headlines(task)
    period_name, want = expected_headlines(sales, orders, start, end)
    assert period.name == period_name
    if charts[0].data is None:  # no sales at all in the retrieved window
        want = [h for h in want if h.label == "Orders"] if charts[1].data else []
    if charts[1].data is None:
        want = [h for h in want if h.label == "Total sales"]
    assert shown == want


def test_both_built_in_packs_declare_the_same_figures():
    assert load_pack("business-review").figures == load_pack("business-review-sql").figures == BUILTIN_FIGURES
    compared = {spec.id for spec in load_pack("business-review-sql").charts if spec.compare}
    assert compared == {spec.id for spec in BUILTIN_PACK if spec.compare} == {"monthly_sales_yoy",
                                                                               "orders_by_user_type"}


@pytest.mark.parametrize(("figure", "message"), [
    ('id = "x"\nlabel = "X"\nchart = "nope"', "names chart 'nope', which is not in the pack"),
    ('id = "x"\nlabel = "X"\nratio = ["a", "b"]', "uses figure 'a', which is not declared before it"),
    ('id = "x"\nlabel = "X"\nchart = "c"\naggregate = "median"', "aggregate 'median' is not one of sum, last, mean"),
    ('id = "x"\nlabel = "X"\nchart = "bars"', "is a bars chart, which has no months to add up"),
    ('id = "X!"\nlabel = "X"\nchart = "c"', "figure id 'X!' must be"),
    ('id = "x"\nchart = "c"', "'label' is required"),
])
def test_a_bad_figure_declaration_is_one_clear_line(tmp_path, figure, message):
    pack = tmp_path / "pack.toml"
    pack.write_text('[[chart]]\nid = "c"\ntitle = "C"\ntool = "t"\nkind = "line"\n\n'
                    '[[chart]]\nid = "bars"\ntitle = "B"\ntool = "u"\nkind = "bars"\n\n'
                    f"[[figure]]\n{figure}\n")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_pack(pack)


def test_only_charts_with_months_compare_with_the_previous_year(tmp_path):
    pack = tmp_path / "pack.toml"
    pack.write_text('[[chart]]\nid = "c"\ntitle = "C"\ntool = "t"\nkind = "bars"\ncompare = "previous_year"\n')
    with pytest.raises(UsageError, match="a bars chart has no months to compare"):
        load_pack(pack)
    pack.write_text('[[chart]]\nid = "c"\ntitle = "C"\ntool = "t"\nkind = "line"\ncompare = "last_week"\n')
    with pytest.raises(UsageError, match="compare 'last_week' is not one the runner knows"):
        load_pack(pack)


# -- through the CLI --------------------------------------------------------------------------------------
def _pdf_pages(path: Path) -> list[str]:
    """Each page's text, its lines joined: a tile wraps a long comparison."""
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


def _pptx_slides(path: Path) -> list[str]:
    return [" ".join(" ".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame).split())
            for slide in Presentation(str(path)).slides]


def _warehouse_totals(warehouse, token: str, first: str, last: str) -> tuple[float, int, int]:
    rows = warehouse.db.execute(
        "SELECT SUM(o.amount), COUNT(*), SUM(o.user_type = 'new') FROM orders o JOIN merchants m "
        "ON m.id = o.merchant_id WHERE m.token = ? AND o.month BETWEEN ? AND ?", (token, first, last)).fetchone()
    return rows[0] or 0.0, rows[1], rows[2] or 0


def test_a_quarter_is_compared_with_the_same_quarter_a_year_earlier(tmp_path, demo_url, demo_tokens, warehouse):
    token = demo_tokens[0]
    name = next(m["name"] for m in warehouse.merchants() if m["token"] == token)
    (tmp_path / "merchants.csv").write_text(f"{token},{name}\n")
    result = run_cli(["--server-url", demo_url, "--merchants-file", str(tmp_path / "merchants.csv"),
                      "--start-date", "2025-10-01", "--end-date", "2025-12-31"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = result.report_path.parent / token
    sales, orders, new = _warehouse_totals(warehouse, token, "2025-10", "2025-12")
    sales_before, orders_before, new_before = _warehouse_totals(warehouse, token, "2024-10", "2024-12")
    share, share_before = 100 * new / orders, 100 * new_before / orders_before
    growth = no_signed_zero(f"{(sales - sales_before) / sales_before * 100:+.1f}")
    wanted = ["Oct–Dec 2025, compared with Oct–Dec 2024", "Total sales", euros(sales),
              f"{growth}% vs Oct–Dec 2024 ({euros(sales_before)})", count(orders),
              euros(sales / orders), percent(share),
              no_signed_zero(f"{share - share_before:+.1f}") + f" pt vs Oct–Dec 2024 ({percent(share_before)})"]
    summary_pdf, summary_pptx = _pdf_pages(folder / "business-review.pdf")[1], _pptx_slides(
        folder / "business-review.pptx")[1]
    for text in wanted:
        assert text in summary_pdf, (text, summary_pdf)
        assert text in summary_pptx, (text, summary_pptx)
    assert "2025," not in summary_pdf.replace("Oct–Dec 2025,", "")  # the quarter is never called the year
    title = f"Business review · {name} · 1 Oct 2025 – 31 Dec 2025"  # a document's own title, not its maker's
    assert PdfReader(folder / "business-review.pdf").metadata.title == title
    properties = Presentation(str(folder / "business-review.pptx")).core_properties
    assert (properties.title, properties.author, properties.last_modified_by, properties.comments) == (
        title, "runner", "runner", "")
    document = json.loads((folder / "monthly_sales_yoy.json").read_text())
    assert (document["start_date"], document["end_date"], document["retrieved_start_date"]) == (
        "2025-10-01", "2025-12-31", "2024-10-01")
    spec = SPECS["monthly_sales_yoy"]
    drawn = shown_data(spec, chart_data_from_json(spec, token, document), "2025-10-01", "2025-12-31")
    assert drawn.panels[0].labels == ("Oct", "Nov", "Dec")  # an axis of the quarter's months only
    assert [s.name for s in drawn.panels[0].series] == ["2024", "2025"]


def _new_merchant_warehouse(folder: Path) -> Path:
    """Two merchants in the documented schema: OLD trades from 2023, NEW25 only from March 2025."""
    path = folder / "new.db"
    with sqlite3.connect(path) as db:
        db.executescript(schema_sql())
        rows, order_id = [], 0
        for token, first in (("OLD", date(2023, 1, 1)), ("NEW25", date(2025, 3, 1))):
            for index in range(36):
                year, month = 2023 + index // 12, index % 12 + 1
                day = date(year, month, 10)
                if day < first:
                    continue
                for n in range(1 + (index * 7 + len(token)) % 5):
                    order_id += 1
                    amount = f"{50 + (order_id * 37) % 400}.{order_id % 100:02d}"
                    rows.append((order_id, token, day.isoformat(), amount,
                                 "pay_in_3" if order_id % 3 else "pay_in_4", ("new", "returning", "network")[n % 3],
                                 order_id % 40, 30, "female", "credit"))
        db.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * 10)})", rows)
        db.executemany("INSERT INTO merchants VALUES (?, ?, ?)", [("OLD", "Old Shop", "home"),
                                                                  ("NEW25", "New Shop", "fashion")])
    return path


def test_a_merchant_new_in_the_window_is_new_not_infinitely_up(tmp_path):
    db = _new_merchant_warehouse(tmp_path)
    result = run_cli(["--pack", "business-review-sql", "--server-command", sql_server(db), "--merchant", "NEW25",
                      "--start-date", "2024-01-01", "--end-date", "2025-12-31"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    folder = result.report_path.parent / "NEW25"
    with sqlite3.connect(db) as conn:
        sales, orders = conn.execute("SELECT SUM(amount), COUNT(*) FROM orders WHERE merchant_token = 'NEW25' "
                                     "AND order_date BETWEEN '2025-01-01' AND '2025-12-31'").fetchone()
    for text in (_pdf_pages(folder / "business-review.pdf")[1], _pptx_slides(folder / "business-review.pptx")[1]):
        assert euros(sales) in text and count(orders) in text and euros(sales / orders) in text
        # Each of the four figures says so: sales and orders were nothing, and AOV and the share divide by them.
        assert text.count("nothing in 2024 to compare with") == 4
        assert "vs 2024" not in text
        assert "inf" not in text and "+0.0%" not in text
