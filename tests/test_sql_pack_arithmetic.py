"""The SQL pack counts what it says: every chart against arithmetic done here in plain Python.

The warehouse is awkward but legal under the README's schema: NULL and empty customer
attributes (the columns documented as nullable), ages under 18, text in odd case and spaces,
customers whose attributes change between orders (the pack votes with the latest order), two
orders of one customer on one day, months without orders, orders just outside the window, a
merchant with one product type and one user type, a merchant active four months of two years.
It is loaded into SQLite (served by tests/sql_server.py) and into PostgreSQL (served by
mcp-alchemy, whose answers are numbered text with NULL as a word), and each chart's data file
must equal what the pack's documentation promises, computed here without SQL.
"""

from __future__ import annotations

import calendar
import json
import random
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner.demo.export import schema_sql
from tests import thirdparty
from tests.helpers import assert_every_chart_once, run_cli
from tests.postgres import Cluster, postgres_cluster  # noqa: F401 (the postgres fixture)
from tests.test_sql_servers import sql_server

START, END = date(2024, 1, 1), date(2025, 12, 31)
MONTHS = [f"{y}-{m:02d}" for y in (2024, 2025) for m in range(1, 13)]
RETRIEVED = date(2023, 1, 1)  # a year before START: where charts that compare with the previous year begin
WIDE_MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025) for m in range(1, 13)]
PRODUCTS = {"pay_in_3": "Pay in 3", "pay_in_4": "Pay in 4"}
USER_TYPES = {"network": "Network", "returning": "Returning", "new": "New"}  # in the pack's order
AGE_BANDS = ["Under 18", "18-24", "25-34", "35-44", "45-54", "55+", "Unknown"]


@dataclass(frozen=True)
class Order:
    order_id: int
    merchant: str
    day: date
    amount: Decimal
    product: str
    user_type: str
    customer: int
    age: int | None
    gender: str | None
    card: str | None


def _orders() -> list[Order]:
    rng = random.Random(23)
    orders: list[Order] = []

    def add(merchant: str, day: date, customer: int, products: list[str], user_types: list[str],
            age: int | None, gender: str | None, card: str | None) -> None:
        orders.append(Order(len(orders) + 1, merchant, day, Decimal(rng.randint(500, 50_000)) / 100,
                            rng.choice(products), rng.choice(user_types), customer, age, gender, card))

    def some_day(months: list[str]) -> date:
        year, month = map(int, rng.choice(months).split("-"))
        return date(year, month, rng.randint(1, calendar.monthrange(year, month)[1]))

    ages = [None, 16, 17, 18, 24, 25, 34, 35, 44, 45, 54, 55, 90]
    genders = [None, "", "  ", "female", "FEMALE", " Male", "male", "undisclosed"]
    cards = [None, "", "credit", "Debit", "prepaid "]
    busy = [m for m in MONTHS if m not in ("2024-03", "2025-07")]  # two months without orders
    for customer in range(1, 121):  # merchant A: everything at once
        base = (rng.choice(ages), rng.choice(genders), rng.choice(cards))
        for _ in range(rng.randint(1, 6)):
            changed = rng.random() < 0.3  # a customer's attributes may differ from order to order
            attributes = (rng.choice(ages), rng.choice(genders), rng.choice(cards)) if changed else base
            add("ARITH_A", some_day(busy), customer, list(PRODUCTS), list(USER_TYPES), *attributes)
    add("ARITH_A", date(2025, 6, 30), 7, ["pay_in_3"], ["new"], 40, "male", "debit")  # two orders, one day:
    add("ARITH_A", date(2025, 6, 30), 7, ["pay_in_3"], ["new"], 60, "female", "credit")  # the later id wins
    for day in (START - timedelta(days=1), END + timedelta(days=1)):  # just outside the window
        add("ARITH_A", day, 999, ["pay_in_3"], ["new"], 30, "male", "credit")
    for customer in range(200, 240):  # merchant B: one product, one user type, no ages, no cards
        add("ARITH_B", some_day(MONTHS), customer, ["pay_in_4"], ["new"], None, rng.choice(genders), None)
    for customer in range(300, 320):  # merchant C: four months of the second year
        add("ARITH_C", some_day(["2025-05", "2025-06", "2025-07", "2025-08"]), customer, list(PRODUCTS),
            ["returning"], rng.choice(ages[1:]), "female", "credit")
    return orders


ORDERS = _orders()
MERCHANTS = sorted({o.merchant for o in ORDERS})


def _label(text: str | None) -> str:
    """The pack's documented label for a text attribute: trimmed, capitalized, NULL or empty 'Unknown'."""
    text = (text or "").strip()
    return text[:1].upper() + text[1:].lower() if text else "Unknown"


def _band(age: int | None) -> str:
    if age is None:
        return "Unknown"
    if age < 18:
        return "Under 18"
    for high, band in ((24, "18-24"), (34, "25-34"), (44, "35-44"), (54, "45-54")):
        if age <= high:
            return band
    return "55+"


def _shares(values: list[str], order: list[str]) -> dict[str, Any]:
    counts = Counter(values)
    labels = [label for label in order if label in counts]
    return {"labels": labels, "values": [100 * counts[label] / len(values) for label in labels]}


def expected(merchant: str) -> dict[str, dict[str, Any]]:
    """Each chart's data as the README and the pack describe it, by plain arithmetic. The charts
    that compare with the previous year are retrieved from a year before START."""
    mine = [o for o in ORDERS if o.merchant == merchant and START <= o.day <= END]
    wide = [o for o in ORDERS if o.merchant == merchant and RETRIEVED <= o.day <= END]
    by_month: dict[str, list[Order]] = defaultdict(list)
    for o in wide:
        by_month[o.day.isoformat()[:7]].append(o)

    def total(orders: list[Order]) -> float:
        return float(sum(o.amount for o in orders))

    def mean(orders: list[Order]) -> float | None:
        return total(orders) / len(orders) if orders else None

    products = sorted({o.product for o in mine})
    user_types = [u for u in USER_TYPES if any(o.user_type == u for o in wide)]
    latest = {}
    for o in sorted(mine, key=lambda o: (o.day, o.order_id)):  # one vote per customer: the latest order
        latest[o.customer] = o
    customers = list(latest.values())
    genders = [_label(o.gender) for o in customers]
    cards = [_label(o.card) for o in customers]
    return {
        "monthly_sales_yoy": {"labels": list(calendar.month_abbr)[1:], "series": [
            {"name": str(year), "values": [total(by_month[f"{year}-{m:02d}"]) for m in range(1, 13)]}
            for year in (2023, 2024, 2025)]},
        "sales_by_product_type": {"labels": MONTHS, "series": [
            {"name": PRODUCTS[p], "values": [total([o for o in by_month[m] if o.product == p]) for m in MONTHS]}
            for p in products]},
        "orders_by_user_type": {"labels": WIDE_MONTHS, "series": [
            {"name": USER_TYPES[u], "values": [sum(o.user_type == u for o in by_month[m]) for m in WIDE_MONTHS]}
            for u in user_types]},
        "aov_by_month": {"labels": MONTHS, "series": [{"name": "AOV", "values": [mean(by_month[m]) for m in MONTHS]}]},
        "user_demographics": {"groups": [
            {"name": "Age band", **_shares([_band(o.age) for o in customers], AGE_BANDS)},
            {"name": "Gender", **_shares(genders, sorted(set(genders)))},
            {"name": "Card type", **_shares(cards, sorted(set(cards)))}]},
        "orders_by_product_type": {"labels": [PRODUCTS[p] for p in products],
                                   "values": [sum(o.product == p for o in mine) for p in products]},
        "aov_by_product_type": {"labels": [PRODUCTS[p] for p in products],
                                "values": [mean([o for o in mine if o.product == p]) for p in products]},
    }


def differences(ours: Any, theirs: Any, tolerance: float, where: str = "") -> list[str]:
    """Where two chart documents differ: structure and labels exactly, numbers within tolerance."""
    if isinstance(theirs, dict):
        return [d for key in theirs for d in differences(ours.get(key), theirs[key], tolerance, f"{where}.{key}")]
    if isinstance(theirs, list):
        if not isinstance(ours, list) or len(ours) != len(theirs):
            return [f"{where}: {ours!r} vs {theirs!r}"]
        return [d for i, pair in enumerate(zip(ours, theirs, strict=True))
                for d in differences(*pair, tolerance, f"{where}[{i}]")]
    if isinstance(theirs, int | float) and isinstance(ours, int | float):
        return [] if abs(ours - theirs) <= tolerance else [f"{where}: {ours} vs {theirs}"]
    return [] if ours == theirs else [f"{where}: {ours!r} vs {theirs!r}"]


def _rows() -> list[tuple[Any, ...]]:
    return [(o.order_id, o.merchant, o.day.isoformat(), str(o.amount), o.product, o.user_type, o.customer, o.age,
             o.gender, o.card) for o in ORDERS]


def _sqlite(folder: Path) -> str:
    path = folder / "awkward.db"
    with sqlite3.connect(path) as db:
        db.executescript(schema_sql())
        db.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * 10)})", _rows())
    return sql_server(path)


def _postgres(folder: Path, cluster: Cluster) -> list[str]:
    """The warehouse loaded with psql's \\copy: an unquoted empty field is NULL, a quoted one empty text."""
    def field(value: Any) -> str:
        if value is None:
            return ""
        return str(value) if isinstance(value, int) else '"' + str(value).replace('"', '""') + '"'

    (folder / "orders.csv").write_text("".join(",".join(map(field, row)) + "\n" for row in _rows()))
    (folder / "schema.sql").write_text(schema_sql())
    cluster.create_database("awkward")
    cluster.psql("awkward", "-f", "schema.sql", "-c", "\\copy orders FROM 'orders.csv' CSV", cwd=folder)
    alchemy = thirdparty.server("mcp-alchemy")
    return ["--server-command", str(alchemy.command), "--server-env", f"DB_URL={cluster.url('awkward')}",
            "--server-env", "EXECUTE_QUERY_MAX_CHARS=1000000"]


def _check_every_chart(tmp_path: Path, server: list[str]) -> None:
    args = ["--pack", "business-review-sql", "--start-date", START.isoformat(), "--end-date", END.isoformat(),
            "--deck", "none", *[a for m in MERCHANTS for a in ("--merchant", m)], *server]
    result = run_cli(args, tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, MERCHANTS)
    assert result.report_path is not None
    for merchant in MERCHANTS:
        for chart_id, want in expected(merchant).items():
            got = json.loads((result.report_path.parent / merchant / f"{chart_id}.json").read_text())
            tolerance = 0.05 + 1e-9 if chart_id == "user_demographics" else 1e-6  # shares: one decimal
            found = differences(got, want, tolerance)
            assert not found, (merchant, chart_id, found[:5])


def test_the_warehouse_is_as_awkward_as_it_claims():
    """The checks below mean something only if the data holds what they are about."""
    a = expected("ARITH_A")
    demographics = {g["name"]: g["labels"] for g in a["user_demographics"]["groups"]}
    assert {"Under 18", "Unknown"} <= set(demographics["Age band"]) and "Unknown" in demographics["Gender"]
    assert 0.0 in a["sales_by_product_type"]["series"][0]["values"] and None in a["aov_by_month"]["series"][0]["values"]
    votes = [o for o in ORDERS if o.merchant == "ARITH_A" and o.customer == 7]
    assert len({(o.age, o.gender, o.card) for o in votes}) > 1  # the latest order decides, not the first
    assert len(expected("ARITH_B")["orders_by_product_type"]["labels"]) == 1
    assert expected("ARITH_B")["user_demographics"]["groups"][2] == {"name": "Card type", "labels": ["Unknown"],
                                                                     "values": [100.0]}


def test_every_chart_of_the_pack_counts_right_on_sqlite(tmp_path):
    _check_every_chart(tmp_path, ["--server-command", _sqlite(tmp_path)])


@pytest.mark.xdist_group("postgres")
def test_every_chart_of_the_pack_counts_right_on_pg_through_mcp_alchemy(tmp_path, postgres):
    _check_every_chart(tmp_path, _postgres(tmp_path, postgres))
