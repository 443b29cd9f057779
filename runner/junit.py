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

import io
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape, quoteattr

from runner.errors import ReportWriteError, UsageError, one_line
from runner.files import written_atomically
from runner.report import ListedSections, Sections


def _case(merchant: str, name: str, status: str, error_type: str | None, error: str | None, seconds: float) -> str:
    head = f"<testcase classname={quoteattr(merchant)} name={quoteattr(name)} time=\"{seconds:.3f}\""
    if status == "failed":
        message = one_line(error or "failed", 2000)
        return (f"{head}><failure type={quoteattr(error_type or 'failed')} message={quoteattr(message)}>"
                f"{escape(message)}</failure></testcase>")
    if status in ("cancelled", "skipped"):  # skipped: a deck's (DeckStatus.SKIPPED)
        return f"{head}><skipped message={quoteattr(one_line(error or status, 2000))} /></testcase>"
    return f"{head} />"


def chart_seconds(chart: dict[str, Any]) -> float:
    """The chart's own time: retrieve_ms + render_ms of its row, in seconds."""
    return ((chart["retrieve_ms"] or 0) + (chart["render_ms"] or 0)) / 1000


def deck_seconds(decks: list[dict[str, Any]]) -> list[float]:
    """Each deck row's share of its merchant's build, in seconds."""
    built = Counter(d["merchant"] for d in decks if d.get("build_ms"))
    return [(d.get("build_ms") or 0) / 1000 / (built[d["merchant"]] or 1) for d in decks]


def _deck_status(deck: dict[str, Any]) -> str:
    return "ok" if deck["status"] in ("ok", "partial") else deck["status"]


def _merchants_decks(decks: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The deck rows a merchant at a time (they come grouped by merchant)."""
    group: list[dict[str, Any]] = []
    for deck in decks:
        if group and deck["merchant"] != group[0]["merchant"]:
            yield group
            group = []
        group.append(deck)
    if group:
        yield group


def _cases(sections: Sections) -> Iterator[tuple[str, str]]:
    """(status, XML) of each test case: the charts', then the decks'."""
    for c in sections.rows("charts"):
        yield c["status"], _case(c["merchant"], c["chart_id"], c["status"], c["error_type"], c["error"],
                                 chart_seconds(c))
    for group in _merchants_decks(sections.rows("decks")):
        for d, seconds in zip(group, deck_seconds(group), strict=True):
            yield _deck_status(d), _case(d["merchant"], f"deck.{d['format']}", _deck_status(d), d["error_type"],
                                         d["error"], seconds)


def junit_xml(report: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    _write_xml(out, report["run"], ListedSections(report))
    return out.getvalue()


def _write_xml(out: BinaryIO, run: dict[str, Any], sections: Sections) -> None:
    """Two walks over the rows: the counts head the file, then the cases, a line each."""
    statuses = Counter(status for status, _ in _cases(sections))
    counts = (f'tests="{sum(statuses.values())}" failures="{statuses["failed"]}" errors="0" '
              f'skipped="{statuses["cancelled"] + statuses["skipped"]}" time="{run["wall_ms"] / 1000:.3f}"')
    out.write(f"<?xml version='1.0' encoding='utf-8'?>\n<testsuites name=\"runner\" {counts}>"
              f"<testsuite name={quoteattr('runner ' + run['run_id'])} "
              f"timestamp={quoteattr(run['started_at'].removesuffix('Z'))} hostname=\"localhost\" {counts}>\n"
              .encode())
    for _, case in _cases(sections):
        out.write((case + "\n").encode())
    out.write(b"</testsuite></testsuites>\n")


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


def write_junit(path: Path, report: dict[str, Any], sections: Sections | None = None) -> None:
    """The JUnit file of `report`; its rows from `sections` where given (a run's, walked from its
    journal), else from the report itself."""
    if (why := _not_a_file(path)) is not None:  # changed since the check at the start
        raise ReportWriteError(f"cannot write the JUnit file {path}: {why}")
    try:
        with written_atomically(path) as out:
            _write_xml(out, report["run"], sections or ListedSections(report))
    except OSError as exc:
        raise ReportWriteError(f"cannot write the JUnit file {path}: {exc.strerror or exc}") from None
