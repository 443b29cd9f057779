"""Which merchant's deck is due, built, failed or never built: the coordinator's deck ledger.

A merchant's deck is due the moment its last chart is final (chart_final). The coordinator asks
for the next deck due (next_due), takes its task (task: no longer due), hands it to the render
stage, and gives it back if the stage lost it (again); when it comes back built, its documents are
written here (atomically). Every merchant ends with one record per format, whatever happened.

A deck missing some charts is `partial`; the partial_decks setting says whether their slides say
"not available" or are left out, or whether the merchant gets no deck (`skipped`). Why a chart is
missing is in the chart's report row and the log: the deck's worker is never told.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from runner.errors import ErrorType
from runner.figures import KeyFigure
from runner.files import write_atomically
from runner.metrics import percentile
from runner.records import BuiltDeck, ChartData, ChartJob, DeckChart, DeckTask, PdfConversion
from runner.status import DeckStatus, PartialDecks

DECK_NAME = "business-review"


@dataclass(frozen=True)
class DeckResult:
    """One row of the report's `decks`: flat scalars, the same keys for every deck."""

    merchant: str
    format: str
    status: DeckStatus
    output: str | None
    slides: int | None
    bytes: int | None
    sha256: str | None
    charts_missing: int
    build_ms: float | None
    error_type: ErrorType | None
    error: str | None
    cached: bool = False  # its documents came from the render cache


@dataclass
class _Deck:
    folder: Path
    jobs: list[ChartJob]
    waiting: int  # charts not final yet
    missing_ids: tuple[str, ...] = ()  # charts without data or PNG, in pack order
    submitted: bool = False
    results: tuple[DeckResult, ...] = ()
    index: int = 0  # the merchant's place among the run's merchants

    @property
    def missing(self) -> int:
        return len(self.missing_ids)


class DeckBook:
    def __init__(self, jobs: list[ChartJob], formats: tuple[str, ...], template: bytes | None,
                 generated_on: str, figures: tuple[KeyFigure, ...] = (),
                 partial: PartialDecks = PartialDecks.PLACEHOLDER, names: dict[str, str] | None = None,
                 author: str = DeckTask.author, pdf: PdfConversion = DeckTask.pdf,
                 made_at: str = DeckTask.made_at) -> None:
        self.formats = formats
        self.pdf = pdf  # the pdf_engine setting and its timeout
        self.author = author  # the deck_author setting
        self._names = names or {}  # merchant token -> display name, where one is known
        self.partial = partial
        self._figures = figures
        self._template = template
        self._generated_on = generated_on
        self._made_at = made_at  # when the documents say they were made
        self._decks: dict[str, _Deck] = {}
        self._due: deque[str] = deque()  # merchants whose deck can be built now, in the order they became due
        self._settled: list[str] = []  # merchants whose rows are final, since take_settled last took them
        self.cpu_ms = 0.0
        self._build_ms: list[float] = []
        by_merchant: dict[str, list[ChartJob]] = {}
        for job in jobs:
            by_merchant.setdefault(job.merchant, []).append(job)
        for index, (merchant, merchant_jobs) in enumerate(by_merchant.items()):
            self.add(merchant, index, merchant_jobs, len(merchant_jobs))

    def add(self, merchant: str, index: int, jobs: Sequence[ChartJob], waiting: int, name: str = "") -> None:
        """A merchant taken into the run: `waiting` of its charts are not final yet (a resumed run's
        may all be, and its deck is due at once). `index`: its place among the run's merchants."""
        self._decks[merchant] = _Deck(Path(jobs[0].output).parent, list(jobs), waiting, index=index)
        if name:
            self._names[merchant] = name
        if waiting == 0 and self.formats:
            self._due.append(merchant)

    def take_settled(self) -> list[tuple[str, int, tuple[DeckResult, ...]]]:
        """(merchant, its index, its rows) of each deck settled since the last call."""
        settled = [(merchant, self._decks[merchant].index, self._decks[merchant].results)
                   for merchant in self._settled if merchant in self._decks]
        self._settled.clear()
        return settled

    def forget(self, merchant: str) -> None:
        """The merchant's rows are recorded: no longer held."""
        self._decks.pop(merchant, None)
        self._names.pop(merchant, None)

    def chart_final(self, merchant: str) -> None:
        deck = self._decks.get(merchant)
        if deck is not None and self.formats:
            deck.waiting -= 1
            if deck.waiting == 0:
                self._due.append(merchant)

    def next_due(self) -> str | None:
        """The merchant whose deck is next to build, left due until its task is taken; None if none is due."""
        return self._due[0] if self._due else None

    def again(self, merchant: str) -> None:
        """A deck the render stage lost (its pool broke beside it): due again, first in line."""
        self._due.appendleft(merchant)

    def missing(self, merchant: str) -> int:
        return self._decks[merchant].missing

    def pending(self) -> int:
        """Decks due or being built."""
        return sum(1 for deck in self._decks.values() if deck.waiting == 0 and not deck.results) if self.formats else 0

    def task(self, merchant: str, data: dict[str, ChartData | None], errors: dict[str, str | None]) -> DeckTask | None:
        """The deck's task, its PNGs read back from the run folder; None if no deck is to be built:
        no chart has data, or some have none and partial_decks=skip. The charts' `errors` are not
        passed on: no slide may show them (the report's chart rows and the log do). The deck is no
        longer due."""
        with suppress(ValueError):
            self._due.remove(merchant)
        deck = self._decks[merchant]
        charts = []
        for job in deck.jobs:
            chart_data, png = data.get(job.spec.id), None
            if chart_data is not None:
                try:
                    png = Path(job.output).read_bytes()
                except OSError as exc:
                    errors[job.spec.id], chart_data = f"write_error: {exc.strerror or exc}", None
                    logger.warning("deck for {}: chart {} cannot be read back: {}", merchant, job.spec.id,
                                   errors[job.spec.id])
            charts.append(DeckChart(job.spec, chart_data, png))
        deck.missing_ids = tuple(chart.spec.id for chart in charts if not chart.available)
        deck.submitted = True
        if deck.missing == len(charts):
            self.failed(merchant, ErrorType.DECK_ERROR, "no chart of this merchant has data", DeckStatus.FAILED)
            return None
        if deck.missing and self.partial is PartialDecks.SKIP:
            reason = (f"skipped by partial_decks={self.partial}: {deck.missing} of {len(charts)} chart(s) missing "
                      f"({', '.join(deck.missing_ids)})")
            logger.bind(merchant=merchant).info("deck for {} {}", merchant, reason)  # the charts' failures warned
            self._settle(merchant, DeckStatus.SKIPPED, None, reason)
            return None
        job = deck.jobs[0]
        return DeckTask(merchant, job.start_date, job.end_date, self._generated_on, tuple(charts), self.formats,
                        self._template, figures=self._figures, partial=self.partial,
                        merchant_name=self._names.get(merchant, ""), author=self.author, pdf=self.pdf,
                        made_at=self._made_at)

    def built(self, merchant: str, built: BuiltDeck) -> tuple[DeckResult, ...]:
        """Write a built deck's documents; returns the rows of those that could not be written."""
        deck = self._decks[merchant]
        status = DeckStatus.PARTIAL if deck.missing else DeckStatus.OK
        results = []
        for document in built.documents:
            path = deck.folder / f"{DECK_NAME}.{document.format}"
            try:
                write_atomically(path, document.content)
            except OSError as exc:
                results.append(self._row(merchant, document.format, DeckStatus.FAILED, ErrorType.WRITE_ERROR,
                                         f"{path}: {exc.strerror or exc}"))
                continue
            results.append(DeckResult(merchant, document.format, status, str(path), built.slides, len(document.content),
                                      document.sha256, deck.missing, None if built.cached else built.build_ms,
                                      None, None, built.cached))
        deck.results = tuple(results)
        self._settled.append(merchant)
        if not built.cached:
            self.cpu_ms += built.cpu_ms
            self._build_ms.append(built.build_ms)
        unwritten = tuple(row for row in results if row.status is DeckStatus.FAILED)
        for row in unwritten:
            logger.warning("deck for {} failed ({}): {}", merchant, row.error_type, row.error)
        if written := [row.format for row in results if row.status is not DeckStatus.FAILED]:
            how = "from the render cache" if built.cached else f"in {built.build_ms:.0f} ms"
            if status is DeckStatus.PARTIAL:  # INFO: each missing chart's failure has its own warning
                shown = "left out" if self.partial is PartialDecks.OMIT else 'shown as "not available"'
                logger.bind(merchant=merchant).info(
                    "deck for {} is partial, missing {} of {} charts: {} ({}; partial_decks={}): {} ({} slides) {}",
                    merchant, deck.missing, len(deck.jobs), ", ".join(deck.missing_ids), shown, self.partial,
                    ", ".join(written), built.slides, how)
            else:
                logger.info("deck for {}: {} ({} slides) {}", merchant, ", ".join(written), built.slides, how)
        return unwritten

    def failed(self, merchant: str, error_type: ErrorType, message: str,
               status: DeckStatus = DeckStatus.FAILED) -> None:
        self._settle(merchant, status, error_type, message)

    def _settle(self, merchant: str, status: DeckStatus, error_type: ErrorType | None, message: str) -> None:
        """Every format's row of a deck that was not built; the first word stands."""
        deck = self._decks[merchant]
        if not deck.results:
            deck.results = tuple(self._row(merchant, fmt, status, error_type, message) for fmt in self.formats)
            if status is not DeckStatus.CANCELLED:
                self._settled.append(merchant)

    def _row(self, merchant: str, fmt: str, status: DeckStatus, error_type: ErrorType | None,
             message: str | None) -> DeckResult:
        return DeckResult(merchant, fmt, status, None, None, None, None, self._decks[merchant].missing, None,
                          error_type, message)

    def results(self) -> tuple[DeckResult, ...]:
        """Every merchant's records; decks never built are cancelled (the run stopped first)."""
        for merchant in self._decks:
            self.failed(merchant, ErrorType.CANCELLED, "the run stopped before this deck was built",
                        DeckStatus.CANCELLED)
        return tuple(row for deck in self._decks.values() for row in deck.results) if self.formats else ()

    def metrics(self) -> dict[str, object]:
        statuses = Counter(row.status for row in self.results())
        return {
            "decks_total": sum(statuses.values()),
            **{f"decks_{status}": statuses[status] for status in DeckStatus},
            **self.build_metrics(),
        }

    def build_metrics(self) -> dict[str, object]:
        """What the builds cost; the counts come from the decks' rows (runner.report.deck_status_counts)."""
        return {"p50_build_ms": percentile(self._build_ms, 50), "cpu_ms": round(self.cpu_ms, 1)}
