"""The README's nightly recipe, as written there, over three simulated nights with one repair.

The recipe's commands and job file are read from README.md's "Nightly runs" section; the test
changes only what must point at this machine (the server's URL, the merchants file, a faked
`today`, keep_runs = 2). The server is a demo server over HTTP on one port: healthy on night 1,
failing one tool on night 2, healthy again for the morning's repair and night 3 (the warehouse
was fixed), so the repair reads the very server the night read.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import tempfile
import tomllib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import JUnitXml

from runner.demo.launch import embedded_server
from tests.helpers import REPO, CliRun, run_in_process, validate_report

pytestmark = pytest.mark.timeout(600)

NIGHTS = ("2026-01-10", "2026-01-11", "2026-01-12")  # the window is 2024-01-01..2025-12-31 all month
FAULT = ("--malformed", "nan", "--fault-tool", "get_user_demographics")  # night 2: one chart per merchant fails
TOKEN = "night-token-5f2c9a71d0"  # the server's credential, from the environment only


def _recipe() -> tuple[list[str], dict[str, Any]]:
    """The README's nightly commands and job file."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Nightly runs"):]
    section = section[:section.index("\n## ", 1)]
    commands = re.search(r"```bash\n(.*?)```", section, re.S)[1].strip().splitlines()
    job = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S)[1])
    return commands, job


def _toml(values: dict[str, Any]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())  # str, list, bool, int


class Night:
    """A CI workspace: the job file beside its merchants file, the runner's default output folder."""

    def __init__(self, root: Path, job: dict[str, Any], merchants: list[str]) -> None:
        self.root, self.job = root, job
        (root / "merchants.txt").write_text("".join(f"{m}\n" for m in merchants))
        self.out = root / "runner-output"

    def command(self, line: str, today: str, url: str, *extra: str, env: dict[str, str] | None = None) -> CliRun:
        """One of the README's lines as a CI job runs it (its variables, in its workspace), with the
        job file of that night; through the CLI in this process."""
        (self.root / "job.toml").write_text(_toml({**self.job, "server_url": url, "today": today}))
        words = shlex.split(line)
        assignments = dict(word.split("=", 1) for word in words[:words.index("python")])
        args = words[words.index("python") + 3:]  # after `python -m runner`
        return run_in_process([*args, *extra], self.root, {"MCP_TOKEN": TOKEN, **assignments, **(env or {})})

    def folders(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir() if not p.name.startswith(".") and p.name != "latest")


@contextmanager
def _server(log: Path, port: int | None = None, faults: tuple[str, ...] = ()):
    with embedded_server(log, (*(("--port", str(port)) if port else ()), *faults)) as (url, _pid):
        yield url, int(url.rsplit(":", 1)[1].split("/")[0])


def _junit(path: Path) -> dict[str, Any]:
    (suite,) = list(JUnitXml.fromfile(str(path)))
    outcome = {(c.classname, c.name): type(c.result[0]).__name__ if c.result else "passed" for c in suite}
    return {"tests": suite.tests, "failures": suite.failures, "errors": suite.errors, "skipped": suite.skipped,
            "cases": outcome, "suite": suite.name}


def _hit_rate(report: dict[str, Any]) -> str:
    return f"{report['metrics']['render']['charts_cached']}/{report['run']['charts_total']}"


def _one_usage_line(result: CliRun, *expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in expected:
        assert text in lines[0], lines[0]


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """What a merged report and a clean run over the same final charts must both say."""
    run, metrics = report["run"], report["metrics"]
    counts = ("status", "exit_code", "merchants", "charts_total", "charts_ok", "charts_failed", "charts_skipped",
              "charts_cancelled", "start_date", "end_date", "pack", "server")
    batch_keys = [key for key in ("batches_total", "batches_ok", "batches_failed", "batches_cancelled")
                  if key in metrics["retrieval"]]
    return {
        "run": {key: run[key] for key in counts},
        "errors_by_type": metrics["errors_by_type"],
        "decks_metrics": {k: v for k, v in metrics["decks"].items() if k.startswith("decks_")},
        "batches_metrics": {key: metrics["retrieval"][key] for key in batch_keys},
        "merchants": report["merchants"],
        "batches": sorted((b["merchant"], b["chart_ids"], b["status"], b["error_type"]) for b in report["batches"]),
        "charts": sorted((c["merchant"], c["chart_id"], c["title"], c["status"], c["error_type"], c["sha256"],
                          c["bytes"], Path(c["output"]).relative_to(run["output_dir"]).as_posix())
                         for c in report["charts"]),
        "decks": sorted((d["merchant"], d["format"], d["status"], d["charts_missing"], d["slides"],
                         Path(d["output"]).relative_to(run["output_dir"]).as_posix()) for d in report["decks"]),
    }


def _csv(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "charts.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return sorted(({k: row[k] for k in ("merchant", "chart_id", "status", "error_type", "sha256", "bytes")}
                   for row in rows), key=lambda row: (row["merchant"], row["chart_id"]))


def test_the_readme_nightly_recipe_over_three_nights_with_one_repair(tmp_path, demo_url, demo_tokens):
    (night_line, repair_line), job = _recipe()
    assert "--junit-xml results.xml" in night_line and "--rerun-failed" in repair_line and "--merge" in repair_line
    night = Night(tmp_path, {**job, "merchants_file": "merchants.txt", "keep_runs": 2}, demo_tokens[:2])
    seen: list[str] = []

    # Night 1: a healthy server.
    with _server(tmp_path / "server-1.log") as (url, port):
        first = night.command(night_line, NIGHTS[0], url)
    assert first.returncode == 0, first.stderr[-3000:]
    seen.append(f"night 1: exit {first.returncode}, JUnit {_junit(tmp_path / 'results.xml')['tests']} tests "
                f"{_junit(tmp_path / 'results.xml')['failures']} failures, cache {_hit_rate(first.report)}, "
                f"folders {night.folders()}")
    assert first.report["run"]["server"]["kind"] == "url" and first.report["run"]["server"]["target"] == url
    assert first.report["run"]["junit_xml"] == str(tmp_path / "results.xml")

    # Night 2: the same server, failing one tool.
    with _server(tmp_path / "server-2.log", port, FAULT) as (url2, _):
        assert url2 == url
        second = night.command(night_line, NIGHTS[1], url)
    assert second.returncode == 1, second.stderr[-3000:]
    failed = {(c["merchant"], c["chart_id"]) for c in second.report["charts"] if c["status"] == "failed"}
    assert failed == {(m, "user_demographics") for m in demo_tokens[:2]}
    broken = _junit(tmp_path / "results.xml")
    assert broken["failures"] == 2
    seen.append(f"night 2: exit {second.returncode}, JUnit {broken['tests']} tests {broken['failures']} failures, "
                f"cache {_hit_rate(second.report)}, folders {night.folders()}")
    night_two = second.report_path.parent
    latest = night.out / "latest" / "report.json"

    # The morning: the warehouse is fixed, the server is back, healthy, at the same address.
    with _server(tmp_path / "server-3.log", port) as (url3, _):
        assert url3 == url
        folders = night.folders()
        # Another server is refused, naming both: one line, exit 2, no folder.
        other = night.command(repair_line, NIGHTS[1], url, "--server-url", demo_url)
        _one_usage_line(other, f"read the MCP server at {url}", f"would read the MCP server at {demo_url}",
                        "--rerun-server-anyway")
        # The rerun without the job file (the README's old line) is given no server: refused, no demo server.
        bare = night.command(repair_line.replace("SCALAPAY_CONFIG=job.toml ", ""), NIGHTS[1], url)
        _one_usage_line(bare, f"read the MCP server at {url}", "SCALAPAY_CONFIG=job.toml",
                        "would start the embedded demo server")
        assert night.folders() == folders and not list(night.out.rglob("demo-server.log"))

        repaired = night.command(repair_line, NIGHTS[1], url)
        assert repaired.returncode == 0, repaired.stderr[-3000:]
        assert f"MCP server: {url}" in repaired.stderr and "embedded" not in repaired.stderr
        assert repaired.report_path == night_two / "report.json" and latest.resolve() == night_two / "report.json"
        merged = repaired.report
        validate_report(merged)
        (entry,) = merged["run"]["merged"]
        assert sorted(entry["charts"]) == sorted(f"{m}/{c}" for m, c in failed) and entry["charts_ok"] == 2
        assert not (night.out / entry["rerun_run_id"]).exists()  # merged into night 2, its folder removed
        green = _junit(tmp_path / "results.xml")  # what the CI job re-reads
        assert (green["failures"], green["errors"], green["skipped"]) == (0, 0, 0)
        assert green["suite"] == f"runner {merged['run']['run_id']}" and green["tests"] == broken["tests"]
        seen.append(f"repair: exit {repaired.returncode}, JUnit {green['tests']} tests {green['failures']} "
                    f"failures, cache {_hit_rate(merged)} (the night's), folders {night.folders()}")
        assert night.folders() == sorted([first.report_path.parent.name, night_two.name])

        # A clean run over the same final charts, elsewhere: the merged report must say what it says.
        clean = night.command(night_line, NIGHTS[1], url, "--output-dir", str(tmp_path / "clean"), "--junit-xml",
                              str(tmp_path / "clean.xml"), "--keep-runs", "5")
        assert clean.returncode == 0, clean.stderr[-3000:]
        assert _comparable(merged) == _comparable(clean.report)
        assert _csv(night_two) == _csv(clean.report_path.parent)
        clean_junit = _junit(tmp_path / "clean.xml")
        assert {k: green[k] for k in ("tests", "failures", "errors", "skipped", "cases")} == {
            k: clean_junit[k] for k in ("tests", "failures", "errors", "skipped", "cases")}

        # Night 3.
        third = night.command(night_line, NIGHTS[2], url)
    assert third.returncode == 0, third.stderr[-3000:]
    last = _junit(tmp_path / "results.xml")
    seen.append(f"night 3: exit {third.returncode}, JUnit {last['tests']} tests {last['failures']} failures, "
                f"cache {_hit_rate(third.report)}, folders {night.folders()}")
    # keep_runs = 2: the newest two nights, the repaired night 2 among them; no rerun fragment.
    assert night.folders() == sorted([night_two.name, third.report_path.parent.name])
    assert not list(night.out.glob("*/RERUN_OF")) and (night.out / "latest").resolve() == third.report_path.parent
    assert third.report["metrics"]["render"]["charts_cached"] == third.report["run"]["charts_total"]
    assert {r["run"]["server"]["fingerprint"] for r in (first.report, second.report, merged, third.report)} == {
        first.report["run"]["server"]["fingerprint"]}
    assert not list(night.out.rglob("demo-server.log"))  # the embedded demo server never started
    for path in [*night.out.rglob("*.json"), *night.out.rglob("*.csv"), tmp_path / "results.xml"]:
        assert TOKEN not in path.read_text(errors="replace"), path
    print("\n" + "\n".join(seen))


# -- --keep-runs counts nights ----------------------------------------------------------------------


def _run_id(n: int) -> str:
    return f"2026{n // 28 % 12 + 1:02d}{n % 28 + 1:02d}T000000Z-{n:06x}"


_NIGHTS = st.lists(st.tuples(st.lists(st.integers(min_value=1, max_value=40), max_size=3), st.booleans()),
                   min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(nights=_NIGHTS, keep=st.integers(min_value=1, max_value=4), spare=st.integers(min_value=0, max_value=5),
       garbage=st.booleans())
def test_keep_runs_keeps_the_newest_nights_with_their_reruns(nights, keep, spare, garbage):
    """A unit over folders on disk: each night a run (finished or still going) and reruns of it
    made any time later (their RERUN_OF names the night). Pruning removes exactly the finished
    folders of all but the newest `keep` nights, never a spared run; a RERUN_OF that names no run
    (or is a link) makes its folder a night of its own."""
    from runner.run_folders import RERUN_OF, prune_runs

    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        night_of: dict[Path, str] = {}
        for i, (reruns, finished) in enumerate(nights):
            night = _run_id(i * 100)
            (base / night).mkdir()
            if finished:
                (base / night / "report.json").write_text("{}")
            night_of[base / night] = night
            for later in reruns:
                rerun = base / _run_id(i * 100 + later * 7)
                if rerun in night_of:
                    continue
                rerun.mkdir()
                (rerun / "report.json").write_text("{}")
                if garbage and later % 2:
                    (rerun / RERUN_OF).symlink_to(base / night / "report.json")  # never followed: its own night
                    night_of[rerun] = rerun.name
                else:
                    (rerun / RERUN_OF).write_text(night + "\n")
                    night_of[rerun] = night
        finished = {run for run in night_of if (run / "report.json").exists()}
        kept_nights = sorted({night_of[run] for run in finished})[-keep:]
        spared = sorted(night_of)[spare % len(night_of)]
        removed = prune_runs(base, keep, spared)
        left = {p for p in base.iterdir()}
        assert left == {run for run in night_of if run not in finished or night_of[run] in kept_nights} | {
            spared} & set(night_of)
        assert set(removed) == set(night_of) - left
