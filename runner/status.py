"""What a chart, a batch, a deck and a run ended as, what a partial deck becomes, the formats a deck is
written in, and the exit codes."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ChartStatus(StrEnum):
    """A chart is never skipped: the report's charts_skipped stays 0 (runner.report.chart_status_counts)."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    OK = "ok"  # every chart of the batch has its data
    PARTIAL = "partial"  # some have
    FAILED = "failed"  # none has
    CANCELLED = "cancelled"  # the run stopped before the batch ran


class DeckStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # built without some charts (their slides say "not available", or are left out)
    FAILED = "failed"  # not built, or not written
    CANCELLED = "cancelled"  # the run stopped before it was built
    SKIPPED = "skipped"  # not built on purpose: a chart was missing and partial_decks=skip asks for no deck


class PartialDecks(StrEnum):
    """What a merchant gets when some, not all, of its charts are missing (the partial_decks setting).
    The merchant never reads why a chart is missing: that stays in the report and the log."""

    PLACEHOLDER = "placeholder"  # the chart keeps its slide, saying it is not available for this period
    OMIT = "omit"  # the chart's slide is left out
    SKIP = "skip"  # no deck at all: the deck rows say it was skipped, and by which setting


class PdfEngine(StrEnum):
    """What makes a deck's PDF (the pdf_engine setting)."""

    BUILTIN = "builtin"  # the runner's own writer (runner.decks.pdf_deck), from the slides
    LIBREOFFICE = "libreoffice"  # LibreOffice, from the filled PPTX: the PDF follows the template


class DeckFormat(StrEnum):
    """The documents a merchant's deck is written as, in the order the report lists them: the deck
    setting's choices, the report's deck rows and merchant columns (deck_pdf, ...), the cache's deck
    files and a rerun's checks all derive from this. A new format is a member here, its builder in
    runner.decks.build.FORMATS, and its name in report.schema.json (tests/test_one_place.py fails
    until all three agree)."""

    PDF = "pdf"
    PPTX = "pptx"


class RunStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # some charts failed; the report is written
    USAGE = 2  # bad flag, config or input: nothing was done
    INTERNAL = 3
    NOTHING = 4  # nothing succeeded, or the server was unreachable
    INTERRUPTED = 130
