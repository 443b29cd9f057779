"""One merchant's deck, in every format asked for: the slides (runner.decks.slides), then each
format's document from them. Runs in a render worker (the render stage hands decks to the same
pool as charts). A new output format is a runner.status.DeckFormat member, a module with a
`(slides, task) -> bytes` function, and its entry in FORMATS (tests/test_one_place.py checks that
every format has a builder and the report's schema names them). With pdf_engine=libreoffice the
PDF is LibreOffice's of the filled PPTX instead (runner.decks.libreoffice), the PPTX made for it
even when only the PDF is asked for."""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable

from runner.decks.libreoffice import pdf_from_pptx
from runner.decks.pdf_deck import pdf_deck, pdf_missing_glyphs
from runner.decks.powerpoint import pptx_deck
from runner.decks.slides import Slide, slides_for
from runner.errors import ChartError, ErrorType, detail
from runner.records import BuiltDeck, DeckDocument, DeckTask
from runner.status import DeckFormat, PdfEngine

FORMATS: dict[DeckFormat, Callable[[list[Slide], DeckTask], bytes]] = {DeckFormat.PDF: pdf_deck,
                                                                      DeckFormat.PPTX: pptx_deck}


def build_deck(task: DeckTask) -> BuiltDeck:
    """Every asked-for format of one merchant's deck; a failure is a deck_error."""
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    try:
        slides = slides_for(task)
        contents = _documents(slides, task)
        builtin_pdf = DeckFormat.PDF in task.formats and task.pdf.engine is PdfEngine.BUILTIN
        missing = pdf_missing_glyphs(slides, task) if builtin_pdf else ()  # LibreOffice has fonts of its own
    except ChartError:
        raise
    except Exception as exc:
        raise ChartError(ErrorType.DECK_ERROR, detail(f"{task.merchant}: {type(exc).__name__}: {exc}")) from None
    return BuiltDeck(
        documents=tuple(DeckDocument(fmt, content, hashlib.sha256(content).hexdigest()) for fmt, content in contents),
        slides=len(slides),
        build_ms=round((time.perf_counter() - started) * 1000, 1),
        cpu_ms=round((_cpu_seconds() - cpu_started) * 1000, 1),
        missing_glyphs=missing,
    )


def _cpu_seconds() -> float:
    """This process's CPU and its ended children's: LibreOffice's conversion counts as the deck's."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _documents(slides: list[Slide], task: DeckTask) -> list[tuple[str, bytes]]:
    """(format, content) of each asked-for format, in the order asked."""
    if task.pdf.engine is not PdfEngine.LIBREOFFICE or DeckFormat.PDF not in task.formats:
        return [(fmt, FORMATS[DeckFormat(fmt)](slides, task)) for fmt in task.formats]
    pptx = FORMATS[DeckFormat.PPTX](slides, task)
    pdf = pdf_from_pptx(pptx, task.pdf.timeout_seconds)
    return [(fmt, pdf if fmt == DeckFormat.PDF else pptx) for fmt in task.formats]
