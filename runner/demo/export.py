"""The demo warehouse in the documented `orders` schema, as a SQLite file or CSV files.

This is the flat table a real warehouse would expose to the SQL chart pack: one row per
order with its merchant, date, amount, product, user type and customer; beside it the optional
`merchants` table (merchant_token, name, category), from which the pack's merchants query takes
the first merchants and the names their decks show. Point any SQL MCP server at it
(`mcp-server-motherduck --db-path ...` over a DuckDB copy, for one) and run
`--pack business-review-sql`: the charts match the demo server's.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.demo.data import build_database

ORDERS_COLUMNS = (
    ("order_id", "INTEGER NOT NULL"),
    ("merchant_token", "VARCHAR(64) NOT NULL"),
    ("order_date", "DATE NOT NULL"),
    ("amount", "DECIMAL(12, 2) NOT NULL"),
    ("product_type", "VARCHAR(16) NOT NULL"),  # pay_in_3 | pay_in_4
    ("user_type", "VARCHAR(16) NOT NULL"),  # network | returning | new
    ("customer_id", "INTEGER NOT NULL"),
    # A customer's attributes may be unknown (NULL, or empty text): the SQL pack counts them as "Unknown".
    ("customer_age", "INTEGER"),
    ("customer_gender", "VARCHAR(16)"),  # female | male | undisclosed
    ("card_type", "VARCHAR(16)"),  # credit | debit | prepaid
)
MERCHANTS_COLUMNS = (("merchant_token", "VARCHAR(64) NOT NULL"), ("name", "VARCHAR(100) NOT NULL"),
                     ("category", "VARCHAR(32) NOT NULL"))

# The demo data knows orders by month; a day derived from the order id (not from the seeded
# generator, so the data set itself is unchanged) makes each a dated order.
_ORDERS = """
SELECT o.id, m.token, o.month || '-' || printf('%02d', 1 + (o.id * 7) % 28), o.amount, o.product_type,
       o.user_type, c.id, c.age, c.gender, c.card_type
FROM orders o JOIN merchants m ON m.id = o.merchant_id JOIN customers c ON c.id = o.customer_id
ORDER BY o.id
"""
_MERCHANTS = "SELECT token, name, category FROM merchants ORDER BY id"


def _create(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{name} {kind}' for name, kind in columns)})"


def _tables(merchants: int) -> Iterator[tuple[str, tuple[tuple[str, str], ...], list[tuple[Any, ...]]]]:
    source = build_database(merchants=merchants)
    yield "orders", ORDERS_COLUMNS, source.execute(_ORDERS).fetchall()
    yield "merchants", MERCHANTS_COLUMNS, source.execute(_MERCHANTS).fetchall()
    source.close()


def write_sqlite(path: Path, merchants: int) -> None:
    """A SQLite file holding `orders` and `merchants`, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial)
    try:
        for table, columns, rows in _tables(merchants):
            db.execute(_create(table, columns))
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})", rows)
        db.execute("CREATE INDEX orders_by_merchant_date ON orders (merchant_token, order_date)")
        db.commit()
    finally:
        db.close()
    os.replace(partial, path)


def schema_sql() -> str:
    """CREATE TABLE statements for `orders` and `merchants`, in SQL that Postgres, DuckDB,
    SQLite and Snowflake all take."""
    return "".join(f"{_create(table, columns)};\n" for table, columns in
                   (("orders", ORDERS_COLUMNS), ("merchants", MERCHANTS_COLUMNS)))


def write_csv(folder: Path, merchants: int) -> list[Path]:
    """orders.csv and merchants.csv with a header row, and schema.sql to create their tables
    (for a database that loads CSV into tables it has: psql's \\copy, for one)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table, columns, rows in _tables(merchants):
        path = folder / f"{table}.csv"
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([name for name, _ in columns])
            writer.writerows(rows)
        os.replace(partial, path)
        written.append(path)
    schema = folder / "schema.sql"
    partial = schema.with_name(f".{schema.name}.partial")
    partial.write_text(schema_sql(), encoding="utf-8")
    os.replace(partial, schema)
    return [*written, schema]
