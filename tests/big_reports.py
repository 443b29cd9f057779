"""Reports of tens of thousands of chart rows, written row by row by the tests (never by a real run):
input for the streamed readers of --rerun-failed and merge-reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.charts import BUILTIN_PACK, DEFAULT_PACK
from runner.report import BATCH_COLUMNS, CHART_COLUMNS, SCHEMA_VERSION
from runner.server_record import server_record
from runner.shards import Shard

RUN_ID = "20260101T000000Z-abcdef"
CHART_IDS = [spec.id for spec in BUILTIN_PACK]
TITLES = {spec.id: spec.title for spec in BUILTIN_PACK}
# A paragraph and an error of the length real rows carry: a row is about 1.3 KB, as a run's are.
PARAGRAPH = "Average order value rose in the second half of the period, led by the larger baskets. " * 4
ERROR = "server_unavailable: the MCP server did not answer within 30 s (connection reset by peer)"


def chart_row(merchant: str, chart_id: str, status: str, run_id: str = RUN_ID) -> dict[str, Any]:
    failed = status == "failed"
    row = {column: None for column in CHART_COLUMNS}
    row.update(run_id=run_id, merchant=merchant, chart_id=chart_id, title=TITLES[chart_id], status=status,
               error_type="server_unavailable" if failed else None, error=ERROR if failed else None,
               batch_id=f"b-{merchant}", attempts=1, retrieve_ms=212.5, queue_ms=None if failed else 3.2,
               render_ms=None if failed else 41.7, total_ms=None if failed else 260.1,
               paragraph=None if failed else PARAGRAPH, started_at="2026-01-01T00:00:01Z",
               finished_at="2026-01-01T00:00:02Z", cached=False, merchant_name=f"Merchant {merchant}")
    return row


def _head(run_id: str, merchants: int, shard: Shard | None, exit_code: int) -> dict[str, Any]:
    server = server_record(None, None, DEFAULT_PACK).as_report()
    return {
        "schema_version": SCHEMA_VERSION,
        "run": {"run_id": run_id, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:10:00Z",
                "status": {0: "ok", 1: "partial"}.get(exit_code, "failed"), "exit_code": exit_code,
                "retrieval_mode": "direct",
                "merchants": merchants, "wall_ms": 600000.0, "output_dir": "/nowhere", "start_date": "2025-01-01",
                "end_date": "2025-12-31", "dates_given": {}, "pack": DEFAULT_PACK, "reruns": None, "error": None,
                "merged": [], "server": server, "junit_xml": None, "shard": str(shard) if shard else None},
        "config": {}, "environment": {},
        "metrics": {"retrieval": {"tool_calls": merchants}, "render": {"workers": 2}, "tokens": {},
                    "process": {}, "decks": None, "errors_by_type": {}},
    }


def _dumped(value: Any) -> str:
    return json.dumps(value, indent=2).replace("\n", "\n    ")


def write_big_report(folder: Path, tokens: list[str], status: str = "ok", shard: Shard | None = None,
                     run_id: str = RUN_ID, failing: frozenset[str] = frozenset()) -> Path:
    """A report of every chart of the built-in pack for each token (status `status`; failed for the
    merchants `failing`), a batch per merchant and no decks, written as the runner writes one; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    head = _head(run_id, len(tokens), shard, 4 if status != "ok" else 1 if failing else 0)

    def status_of(token: str) -> str:
        return "failed" if token in failing else status

    sections: dict[str, Iterator[dict[str, Any]]] = {
        "batches": ({**{c: None for c in BATCH_COLUMNS}, "batch_id": f"b-{t}", "merchant": t,
                     "chart_ids": ",".join(CHART_IDS), "status": "ok" if status_of(t) == "ok" else "failed",
                     "attempts": 1} for t in tokens),
        "charts": (chart_row(t, chart_id, status_of(t), run_id) for t in tokens for chart_id in CHART_IDS),
        "decks": iter(()),
        "merchants": ({"merchant": t} for t in tokens),
    }
    path = folder / "report.json"
    with open(path, "w", encoding="utf-8") as out:
        out.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, indent=2)}" for k, v in head.items()))
        for name, rows in sections.items():
            out.write(f',\n  "{name}": [')
            first = True
            for row in rows:
                out.write(("\n" if first else ",\n") + "    " + _dumped(row))
                first = False
            out.write("]" if first else "\n  ]")
        out.write("\n}\n")
    return path
