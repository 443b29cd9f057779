"""The run as JUnit XML, for CI dashboards: one test case per (merchant, chart) and per deck.

The class name is the merchant; a failed chart or deck is a <failure> whose type is its
error_type; a cancelled or skipped one is <skipped>. Times are in seconds.

A JUnit file that cannot be written does not lose the run: the report is still written and
`latest` still moves, and the run exits 3 where it would have exited 0 or 1 (runner.run.junit_failed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from runner.errors import one_line
from runner.files import write_atomically
from runner.report import ReportWriteError


def _case(suite: ElementTree.Element, merchant: str, name: str, status: str, error_type: str | None,
          error: str | None, seconds: float) -> str:
    case = ElementTree.SubElement(suite, "testcase", classname=merchant, name=name, time=f"{seconds:.3f}")
    if status == "failed":
        message = one_line(error or "failed", 2000)
        failure = ElementTree.SubElement(case, "failure", type=error_type or "failed", message=message)
        failure.text = message
    elif status in ("cancelled", "skipped"):
        ElementTree.SubElement(case, "skipped", message=one_line(error or status, 2000))
    return status


def junit_xml(report: dict[str, Any]) -> bytes:
    run = report["run"]
    suites = ElementTree.Element("testsuites", name="runner")
    suite = ElementTree.SubElement(suites, "testsuite", name=f"runner {run['run_id']}",
                                   timestamp=run["started_at"].removesuffix("Z"), hostname="localhost")
    statuses = [_case(suite, c["merchant"], c["chart_id"], c["status"], c["error_type"], c["error"],
                      (c["total_ms"] or c["retrieve_ms"] or 0) / 1000) for c in report["charts"]]
    statuses += [_case(suite, d["merchant"], f"deck.{d['format']}", "ok" if d["status"] in ("ok", "partial")
                       else d["status"], d["error_type"], d["error"], (d.get("build_ms") or 0) / 1000)
                 for d in report["decks"]]
    counts = {"tests": len(statuses), "failures": statuses.count("failed"), "errors": 0,
              "skipped": statuses.count("cancelled") + statuses.count("skipped"),
              "time": f"{run['wall_ms'] / 1000:.3f}"}
    for element in (suites, suite):
        for key, value in counts.items():
            element.set(key, str(value))
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_junit(path: Path, report: dict[str, Any]) -> None:
    try:
        write_atomically(path, junit_xml(report))
    except OSError as exc:
        raise ReportWriteError(f"cannot write the JUnit file {path}: {exc.strerror or exc}") from None
