"""Rerun only what failed, and merge the outcome back into the original run.

`--rerun-failed PATH/report.json` runs exactly the (merchant, chart) pairs that were failed or
cancelled there, with that run's dates and pack; the rerun's own folder holds no decks (a
merchant's deck needs all its charts). `--merge` then writes the combined outcome into the
original run's folder: charts that now succeeded replace the failed ones, their PNG and data
files placed where the original run would have put them, the touched merchants' decks rebuilt
from every chart on disk, and report.json rewritten (the one it replaces kept beside it).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import ChartSpec, load_pack
from runner.decks.book import DECK_NAME
from runner.errors import UsageError
from runner.files import read_input_text, write_atomically
from runner.job import JobInputs
from runner.jobs import DeckChart, DeckTask, safe_part
from runner.report import merchant_rows
from runner.status import ChartStatus, DeckStatus, ExitCode

MAX_REPORT_BYTES = 200_000_000
RERUN = (ChartStatus.FAILED, ChartStatus.CANCELLED)


@dataclass(frozen=True)
class Rerun:
    report_path: Path  # the original report, its symlinks resolved
    report: dict[str, Any]
    pairs: tuple[tuple[str, str], ...]  # (merchant, chart id) to run again, in the report's order

    @property
    def run_dir(self) -> Path:
        return self.report_path.parent


def read_rerun(path: str) -> Rerun:
    """The failed and cancelled pairs of a finished run's report."""
    report_path = Path(path).expanduser().resolve()
    try:
        report = json.loads(read_input_text(report_path, "report", MAX_REPORT_BYTES))
        run, charts = report["run"], report["charts"]
        pairs = tuple((c["merchant"], c["chart_id"]) for c in charts if c["status"] in RERUN)
        missing = [key for key in ("run_id", "start_date", "end_date", "started_at") if not run.get(key)]
        if missing:
            raise KeyError(missing[0])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--rerun-failed {path}: not a runner report ({type(exc).__name__}: {exc})") from None
    return Rerun(report_path, report, pairs)


def rerun_inputs(rerun: Rerun, demo_server_args: tuple[str, ...] = ()) -> JobInputs:
    run = rerun.report["run"]
    pack = run.get("pack") or "business-review"
    specs = {spec.id: spec for spec in load_pack(pack)}
    wanted = dict.fromkeys(chart for _, chart in rerun.pairs)
    missing = [chart for chart in wanted if chart not in specs]
    if missing:
        raise UsageError(f"--rerun-failed: pack {pack} has no chart {missing[0]!r} any more")
    charts: tuple[ChartSpec, ...] = tuple(specs[chart] for chart in wanted)
    merchants = tuple(dict.fromkeys(merchant for merchant, _ in rerun.pairs))
    return JobInputs(merchants=merchants, charts=charts, start_date=run["start_date"], end_date=run["end_date"],
                     demo_server_args=demo_server_args, pack=pack, only=rerun.pairs,
                     reruns=str(rerun.report_path))


def _place(row: dict[str, Any], key: str, target: Path) -> str | None:
    """Copy a file the rerun wrote to where the original run would have put it."""
    if not row.get(key):
        return None
    write_atomically(target, Path(row[key]).read_bytes())
    return str(target)


def merge(rerun: Rerun, rerun_report: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The original run with the rerun's outcome folded in; returns (report path, report)."""
    from runner.decks.build import build_deck
    from runner.retrieval.parse import chart_data_from_json
    from runner.run import exit_code_for

    original = rerun.report
    rows = {(c["merchant"], c["chart_id"]): c for c in original["charts"]}
    touched: set[str] = set()
    for row in rerun_report["charts"]:
        key = (row["merchant"], row["chart_id"])
        if key not in rows:
            continue
        folder = rerun.run_dir / safe_part(row["merchant"])
        base = folder / safe_part(row["chart_id"])
        merged = dict(row)
        merged["output"] = _place(row, "output", base.with_suffix(".png"))
        merged["data_output"] = _place(row, "data_output", base.with_suffix(".json"))
        rows[key] = merged
        touched.add(row["merchant"])
    charts = [rows[(c["merchant"], c["chart_id"])] for c in original["charts"]]

    pack = {spec.id: spec for spec in load_pack(original["run"].get("pack") or "business-review")}
    decks = original.get("decks", [])
    formats = tuple(sorted({d["format"] for d in decks}))
    for merchant in sorted(touched):
        if not formats:
            break
        mine = [c for c in charts if c["merchant"] == merchant]
        deck_charts = []
        for chart in mine:
            spec = pack[chart["chart_id"]]
            if chart["status"] == ChartStatus.OK and chart["output"] and chart["data_output"]:
                document = json.loads(Path(chart["data_output"]).read_text())
                data = chart_data_from_json(spec, merchant, document, document.get("paragraph"))
                deck_charts.append(DeckChart(spec, data, Path(chart["output"]).read_bytes()))
            else:
                deck_charts.append(DeckChart(spec, None, None, f"{chart['error_type']}: {chart['error']}"))
        task = DeckTask(merchant, original["run"]["start_date"], original["run"]["end_date"],
                        original["run"]["started_at"][:10], tuple(deck_charts), formats)
        built = build_deck(task)
        missing = sum(1 for c in mine if c["status"] != ChartStatus.OK)
        status = DeckStatus.PARTIAL if missing else DeckStatus.OK
        for document in built.documents:
            path = rerun.run_dir / safe_part(merchant) / f"{DECK_NAME}.{document.format}"
            write_atomically(path, document.content)
            for deck in decks:
                if deck["merchant"] == merchant and deck["format"] == document.format:
                    deck.update(status=status, output=str(path), slides=built.slides, bytes=len(document.content),
                                sha256=document.sha256, charts_missing=missing, build_ms=round(built.build_ms, 1),
                                error_type=None, error=None, cached=False)

    counts = Counter(c["status"] for c in charts)
    run = dict(original["run"])
    decks_failed = sum(1 for d in decks if d["status"] == DeckStatus.FAILED)
    run_status, code = exit_code_for(len(charts), counts[ChartStatus.OK], False, False, decks_failed)
    run.update(status=run_status, exit_code=int(code), charts_ok=counts[ChartStatus.OK],
               charts_failed=counts[ChartStatus.FAILED], charts_cancelled=counts[ChartStatus.CANCELLED],
               charts_skipped=counts[ChartStatus.SKIPPED], error=None,
               merged=[*run.get("merged", []), rerun_report["run"]["run_id"]])
    report = {**original, "run": run, "charts": charts, "decks": decks,
              "merchants": merchant_rows(charts, decks, formats)}
    path = rerun.report_path
    shutil.copyfile(path, path.with_name(f"report.before-{rerun_report['run']['run_id']}.json"))
    write_atomically(path, (json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False) + "\n").encode())
    logger.info("merged into {}: {} chart(s) ok of {} (exit {})", path, counts[ChartStatus.OK], len(charts),
                ExitCode(code).value)
    return path, report
