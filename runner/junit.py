"""The run as JUnit XML, for CI dashboards: one test case per (merchant, chart) and per deck.

The class name is the merchant's token, never its display name: CI keeps a test's history under
it, and a name may change or repeat. A failed chart or deck is a <failure> whose type is its
error_type; a cancelled chart or deck, and a deck skipped by partial_decks=skip, is <skipped>
(a chart is never skipped). Times are in seconds: a chart's is its own
work, its retrieval and its render (not the wait for a worker: queued charts would add up to many
times the run), a deck's its build (one build makes all of a merchant's formats: each format gets
an equal share); a chart or deck from the render cache took no render time.

A JUnit file that cannot be written does not lose the run: the report is still written and
`latest` still moves, and the run exits 3 where it would have exited 0 or 1 (runner.run_report.junit_failed).
"""

from __future__ import annotations

import stat
from collections import Counter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from runner.errors import ReportWriteError, UsageError, one_line
from runner.files import write_atomically


def _case(suite: ElementTree.Element, merchant: str, name: str, status: str, error_type: str | None,
          error: str | None, seconds: float) -> str:
    case = ElementTree.SubElement(suite, "testcase", classname=merchant, name=name, time=f"{seconds:.3f}")
    if status == "failed":
        message = one_line(error or "failed", 2000)
        failure = ElementTree.SubElement(case, "failure", type=error_type or "failed", message=message)
        failure.text = message
    elif status in ("cancelled", "skipped"):  # skipped: a deck's (DeckStatus.SKIPPED)
        ElementTree.SubElement(case, "skipped", message=one_line(error or status, 2000))
    return status


def chart_seconds(chart: dict[str, Any]) -> float:
    """The chart's own time: retrieve_ms + render_ms of its row, in seconds."""
    return ((chart["retrieve_ms"] or 0) + (chart["render_ms"] or 0)) / 1000


def deck_seconds(decks: list[dict[str, Any]]) -> list[float]:
    """Each deck row's share of its merchant's build, in seconds."""
    built = Counter(d["merchant"] for d in decks if d.get("build_ms"))
    return [(d.get("build_ms") or 0) / 1000 / (built[d["merchant"]] or 1) for d in decks]


def junit_xml(report: dict[str, Any]) -> bytes:
    run = report["run"]
    suites = ElementTree.Element("testsuites", name="runner")
    suite = ElementTree.SubElement(suites, "testsuite", name=f"runner {run['run_id']}",
                                   timestamp=run["started_at"].removesuffix("Z"), hostname="localhost")
    statuses = [_case(suite, c["merchant"], c["chart_id"], c["status"], c["error_type"], c["error"],
                      chart_seconds(c)) for c in report["charts"]]
    statuses += [_case(suite, d["merchant"], f"deck.{d['format']}", "ok" if d["status"] in ("ok", "partial")
                       else d["status"], d["error_type"], d["error"], seconds)
                 for d, seconds in zip(report["decks"], deck_seconds(report["decks"]), strict=True)]
    counts = {"tests": len(statuses), "failures": statuses.count("failed"), "errors": 0,
              "skipped": statuses.count("cancelled") + statuses.count("skipped"),
              "time": f"{run['wall_ms'] / 1000:.3f}"}
    for element in (suites, suite):
        for key, value in counts.items():
            element.set(key, str(value))
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)


def _not_a_file(path: Path) -> str | None:
    """Why `path` cannot take the JUnit file: it exists and is not a regular file. The file is
    replaced by a rename, which would put XML where a device, a FIFO or a link was."""
    try:
        mode = path.lstat().st_mode
    except OSError:  # absent, or not reachable (a file in its path): the write says why, at the end
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISLNK, "a link"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    return f"it is {next((name for test, name in kinds if test(mode)), 'not a regular file')}, not a file"


def check_junit_path(path: Path) -> None:
    """Before any work: --junit-xml names a file the runner may replace (absent, or a regular file)."""
    if (why := _not_a_file(path)) is not None:
        raise UsageError(f"--junit-xml {path}: {why}")


def write_junit(path: Path, report: dict[str, Any]) -> None:
    if (why := _not_a_file(path)) is not None:  # changed since the check at the start
        raise ReportWriteError(f"cannot write the JUnit file {path}: {why}")
    try:
        write_atomically(path, junit_xml(report))
    except OSError as exc:
        raise ReportWriteError(f"cannot write the JUnit file {path}: {exc.strerror or exc}") from None
