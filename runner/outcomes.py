"""The report's rows a merchant at a time (MerchantOutcome), as every report is written: a run's and a
resumed run's (walked from the journal), a merge's (the run and its rerun read back) and
merge-reports' (the shards read back). The outcomes are walked once into a temporary file
(spooled), which every later walk reads (the counts, each section, the CSV, the JUnit file): the
walk may have done work (files placed, decks built) and is never done twice. Tally counts them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from runner.errors import ReportWriteError
from runner.metrics import batch_counts
from runner.report import deck_status_counts, errors_by_type, merchant_rows, names_of, run_status_counts
from runner.status import DeckStatus


@dataclass
class MerchantOutcome:
    """One merchant's rows of each section: the report is walked a merchant at a time."""

    batches: list[dict[str, Any]]
    charts: list[dict[str, Any]]
    decks: list[dict[str, Any]]
    merchant: dict[str, Any]

    @classmethod
    def of(cls, batches: list[dict[str, Any]], charts: list[dict[str, Any]], decks: list[dict[str, Any]],
           formats: tuple[str, ...]) -> MerchantOutcome:
        """A merchant's rows read back and changed (a merge's), each named as its charts name the
        merchant (the token where none), with its row of `merchants` counted again."""
        names = names_of(charts)
        batches, charts, decks = ([{**row, "merchant_name": names.get(row["merchant"], row["merchant"])}
                                   for row in rows] for rows in (batches, charts, decks))
        (row,) = merchant_rows(charts, decks, formats)
        return cls(batches, charts, decks, row)


def section_rows(outcomes: Iterable[MerchantOutcome], section: str) -> Iterator[dict[str, Any]]:
    """The rows of one section of the report (runner.report.SECTIONS), from its merchants' outcomes."""
    for outcome in outcomes:
        if section == "merchants":
            yield outcome.merchant
        else:
            yield from getattr(outcome, section)


class Walk(Protocol):
    def walk(self) -> Iterator[MerchantOutcome]: ...


class SpooledOutcomes:
    """Outcomes walked from a temporary file. Implements runner.report.Sections."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def walk(self) -> Iterator[MerchantOutcome]:
        with open(self.path, "rb") as spool:
            for line in spool:
                yield MerchantOutcome(**json.loads(line))

    def rows(self, section: str) -> Iterator[dict[str, Any]]:
        return section_rows(self.walk(), section)


@contextmanager
def spooled(outcomes: Iterable[MerchantOutcome], folder: Path) -> Iterator[SpooledOutcomes]:
    """`outcomes` walked once into a temporary file in `folder` (the report's), removed after."""
    try:
        handle, name = tempfile.mkstemp(prefix=".report-rows.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ReportWriteError(f"cannot write the report in {folder}: {exc.strerror or exc}") from None
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                for outcome in outcomes:
                    out.write(json.dumps(vars(outcome), ensure_ascii=False).encode() + b"\n")
        except OSError as exc:
            raise ReportWriteError(f"cannot write the report in {folder}: {exc.strerror or exc}") from None
        yield SpooledOutcomes(Path(name))
    finally:
        with suppress(OSError):
            os.unlink(name)


@dataclass
class Tally:
    """The report's counts, from one walk over its rows."""

    charts: Counter[str] = field(default_factory=Counter)
    decks: Counter[str] = field(default_factory=Counter)
    batches: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, sections: Walk) -> Tally:
        tally = cls()
        for outcome in sections.walk():
            tally.add(outcome.charts, outcome.decks, outcome.batches)
        return tally

    def add(self, charts: list[dict[str, Any]], decks: list[dict[str, Any]], batches: list[dict[str, Any]]) -> None:
        """Count rows in: whole merchants at a time (a merchant's deck errors depend on its charts)."""
        self.charts.update(row["status"] for row in charts)
        self.decks.update(row["status"] for row in decks)
        self.batches.update(row["status"] for row in batches)
        self.errors.update(errors_by_type(charts, decks))

    def metrics(self) -> dict[str, Any]:
        """The report's counts under `metrics`: errors by type, the batches', the decks'."""
        return {"errors_by_type": dict(sorted(self.errors.items())), "retrieval": batch_counts(self.batches.elements()),
                "decks": deck_status_counts(self.decks)}

    def run_counts(self, interrupted: bool, unreachable: bool) -> dict[str, Any]:
        """The run's status, exit code and chart counts (runner.report.run_status_counts)."""
        return run_status_counts(self.charts, self.decks[DeckStatus.FAILED], interrupted, unreachable)
