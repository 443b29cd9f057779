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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from runner.charts import ChartSpec, load_pack
from runner.decks.book import DeckBook
from runner.errors import UsageError
from runner.files import read_input, read_input_text, write_atomically
from runner.job import JobInputs
from runner.jobs import ChartData, ChartJob, safe_part
from runner.report import merchant_rows, write_report
from runner.run import MAX_TEMPLATE_BYTES, exit_code_for
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


def _rebuilt_decks(rerun: Rerun, charts: list[dict[str, Any]], touched: set[str]) -> list[dict[str, Any]]:
    """The original run's deck rows, those of the touched merchants rebuilt (by the same deck ledger
    as a run, with the run's template) from every chart on disk."""
    from runner.decks.build import build_deck
    from runner.retrieval.parse import chart_data_from_json

    original = rerun.report
    decks: list[dict[str, Any]] = original.get("decks", [])
    formats = tuple(dict.fromkeys(d["format"] for d in decks))
    if not formats or not touched:
        return decks
    run = original["run"]
    pack = {spec.id: spec for spec in load_pack(run.get("pack") or "business-review")}
    mine = [c for c in charts if c["merchant"] in touched]
    jobs = [ChartJob(c["merchant"], pack[c["chart_id"]], run["start_date"], run["end_date"],
                     str(rerun.run_dir / safe_part(c["merchant"]) / f"{safe_part(c['chart_id'])}.png")) for c in mine]
    template_path = (original.get("config", {}).get("deck_template") or {}).get("value")
    template = read_input(Path(template_path), "deck template", MAX_TEMPLATE_BYTES) if template_path else None
    book = DeckBook(jobs, formats, template, run["started_at"][:10])
    for merchant in sorted(touched):
        data: dict[str, ChartData | None] = {}
        for chart in (c for c in mine if c["merchant"] == merchant):
            if chart["status"] == ChartStatus.OK and chart["data_output"]:
                document = json.loads(Path(chart["data_output"]).read_text())
                data[chart["chart_id"]] = chart_data_from_json(pack[chart["chart_id"]], merchant, document,
                                                               document.get("paragraph"))
        errors: dict[str, str | None] = {c["chart_id"]: f"{c['error_type']}: {c['error']}" for c in mine
                                         if c["merchant"] == merchant and c["error"]}
        task = book.task(merchant, data, errors)
        if task is not None:
            book.built(merchant, build_deck(task))
    rebuilt = {(d.merchant, d.format): asdict(d) for d in book.results()}
    return [rebuilt.get((d["merchant"], d["format"]), d) for d in decks]


def merge(rerun: Rerun, rerun_report: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The original run with the rerun's outcome folded in; returns (report path, report)."""
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

    decks = _rebuilt_decks(rerun, charts, touched)
    counts = Counter(c["status"] for c in charts)
    run = dict(original["run"])
    decks_failed = sum(1 for d in decks if d["status"] == DeckStatus.FAILED)
    run_status, code = exit_code_for(len(charts), counts[ChartStatus.OK], False, False, decks_failed)
    run.update(status=run_status, exit_code=int(code), charts_ok=counts[ChartStatus.OK],
               charts_failed=counts[ChartStatus.FAILED], charts_cancelled=counts[ChartStatus.CANCELLED],
               charts_skipped=counts[ChartStatus.SKIPPED], error=None,
               merged=[*run.get("merged", []), rerun_report["run"]["run_id"]])
    formats = tuple(dict.fromkeys(d["format"] for d in decks))
    report = {**original, "run": run, "charts": charts, "decks": decks,
              "merchants": merchant_rows(charts, decks, formats)}
    path = rerun.report_path
    shutil.copyfile(path, path.with_name(f"report.before-{rerun_report['run']['run_id']}.json"))
    write_report(rerun.run_dir, report, with_csv=(rerun.run_dir / "charts.csv").exists())
    logger.info("merged into {}: {} chart(s) ok of {} (exit {})", path, counts[ChartStatus.OK], len(charts),
                ExitCode(code).value)
    return path, report
