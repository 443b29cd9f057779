"""The small frozen records passed between the parts: what to fetch, what was fetched, what to
render and what was rendered. All are picklable and hold no open handles, so they can cross
process boundaries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from runner.charts import ChartSpec
from runner.clock import iso_time
from runner.errors import ErrorType
from runner.figures import KeyFigure
from runner.fonts import MissingGlyphs
from runner.status import BatchStatus, PartialDecks, PdfEngine


@dataclass(frozen=True)
class ToolCall:
    """The one MCP call that fetches a chart's data in direct mode, placeholders filled."""

    tool: str
    arguments_json: str  # JSON text, so the record stays hashable

    def arguments(self) -> dict[str, object]:
        return dict(json.loads(self.arguments_json))


@dataclass(frozen=True)
class ChartJob:
    merchant: str
    spec: ChartSpec
    start_date: str
    end_date: str
    output: str  # absolute PNG path inside the run folder
    call: ToolCall | None = None  # None in agent mode, where the model chooses its calls

    @property
    def key(self) -> tuple[str, str]:
        return (self.merchant, self.spec.id)

    @property
    def retrieve_start(self) -> str:
        """The first day retrieved: the window's start, or a year earlier for a chart that compares."""
        return self.spec.retrieval_start(self.start_date)

    @property
    def data_output(self) -> str:
        """Where the chart's validated data is written: beside its PNG."""
        return str(Path(self.output).with_suffix(".json"))


@dataclass(frozen=True)
class Batch:
    batch_id: str
    merchant: str
    jobs: tuple[ChartJob, ...]
    positions: tuple[int, ...] = ()  # each job's place in the plan (runner.planning), for the journal
    number: int = 0  # the batch's place among the plan's batches, from 0

    @property
    def chart_ids(self) -> str:
        """The batch's chart ids as the report's `chart_ids` column: "a,b,c"."""
        return ",".join(job.spec.id for job in self.jobs)


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Panel:
    title: str
    labels: tuple[str, ...]
    series: tuple[Series, ...]


@dataclass(frozen=True)
class ChartData:
    """Validated chart data: every shape becomes one or more panels of labelled series."""

    unit: str
    panels: tuple[Panel, ...]
    paragraph: str | None = None


@dataclass(frozen=True)
class RenderTask:
    job: ChartJob
    data: ChartData
    compress_level: int


@dataclass(frozen=True)
class RenderedChart:
    """What a worker sends back: the PNG itself (the coordinator writes it) and its costs."""

    png: bytes
    sha256: str
    render_ms: float
    cpu_ms: float
    worker_pid: int
    worker_rss_mb: float
    cached: bool = False  # copied from the render cache, not rendered
    worker: str = ""  # the Dask worker's address, when a Dask cluster rendered it
    missing_glyphs: tuple[MissingGlyphs, ...] = ()  # characters no font has, drawn as boxes (the run warns)


@dataclass(frozen=True)
class DeckChart:
    """One chart slide's material: the data and PNG, or none (why is for the report, not the deck)."""

    spec: ChartSpec
    data: ChartData | None
    png: bytes | None

    @property
    def available(self) -> bool:
        return self.data is not None and self.png is not None


@dataclass(frozen=True)
class PdfConversion:
    """How a deck's PDF is made (the pdf_engine and pdf_timeout_seconds settings)."""

    engine: PdfEngine = PdfEngine.BUILTIN
    timeout_seconds: float = 30.0  # LibreOffice is stopped after this long, and the deck fails


@dataclass(frozen=True)
class DeckTask:
    """Everything a worker needs to build one merchant's deck; it reads no files."""

    merchant: str
    start_date: str
    end_date: str
    generated_on: str  # ISO date
    charts: tuple[DeckChart, ...]
    formats: tuple[str, ...]  # runner.status.DeckFormat values, in the order the run asks for them
    template: bytes | None = None  # a user's .pptx template
    figures: tuple[KeyFigure, ...] = ()  # the pack's key figures, for the summary slide
    partial: PartialDecks = PartialDecks.PLACEHOLDER  # a missing chart's slide: "not available", or left out
    merchant_name: str = ""  # the merchant's display name, cleaned (runner.merchants.merchant_name); "" when unknown
    pdf: PdfConversion = PdfConversion()  # the built-in writer, or LibreOffice from the filled PPTX
    author: str = "runner"  # the deck_author setting: the documents' author (PPTX core properties, PDF Info)
    # When the documents say they were made (ISO 8601, UTC): the run's start (runner.clock.documents_moment).
    # Not in the deck's cache key: a deck served from the cache keeps the moment it was built.
    made_at: str = "2000-01-01T00:00:00+00:00"

    @property
    def made(self) -> datetime:
        return datetime.fromisoformat(self.made_at)

    @property
    def display_name(self) -> str:
        """What the slides call the merchant: its name, or its token when no name is known."""
        return self.merchant_name or self.merchant


@dataclass(frozen=True)
class DeckDocument:
    format: str
    content: bytes
    sha256: str


@dataclass(frozen=True)
class BuiltDeck:
    documents: tuple[DeckDocument, ...]
    slides: int
    build_ms: float
    cpu_ms: float
    cached: bool = False
    missing_glyphs: tuple[MissingGlyphs, ...] = ()  # characters of the PDF no font has (the run warns)


@dataclass(frozen=True)
class Retrieval:
    """The outcome of fetching one chart's data: data, or the reason there is none."""

    job: ChartJob
    batch_id: str
    data: ChartData | None
    error_type: ErrorType | None
    error: str | None
    attempts: int  # tries, first included
    retrieve_ms: float


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    merchant: str
    chart_ids: str
    status: BatchStatus
    attempts: int
    started_at: str
    wall_ms: float
    steps: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    context_tokens: int | None = None
    error_type: ErrorType | None = None
    error: str | None = None
    # Charts that failed for a transient reason, not yet final: the sequential fallback may retry them.
    held: tuple[Retrieval, ...] = ()

    @classmethod
    def finished(cls, batch: Batch, started_at: datetime, wall_ms: float, *, failed: int, attempts: int,
                 error_type: ErrorType | None = None, error: str | None = None, held: tuple[Retrieval, ...] = (),
                 steps: int | None = None, input_tokens: int | None = None, output_tokens: int | None = None,
                 context_tokens: int | None = None) -> BatchResult:
        """A batch's row as the report has it: its status from how many of its charts failed, its
        start as an ISO time, its wall time to a tenth of a millisecond."""
        return cls(batch_id=batch.batch_id, merchant=batch.merchant, chart_ids=batch.chart_ids,
                   status=batch_status(len(batch.jobs), failed), attempts=attempts,
                   started_at=str(iso_time(started_at)), wall_ms=round(wall_ms, 1), steps=steps,
                   input_tokens=input_tokens, output_tokens=output_tokens, context_tokens=context_tokens,
                   error_type=error_type, error=error, held=held)


def batch_status(charts: int, failed: int) -> BatchStatus:
    if not failed:
        return BatchStatus.OK
    return BatchStatus.FAILED if failed == charts else BatchStatus.PARTIAL
