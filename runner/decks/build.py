"""One merchant's deck, in every format asked for: the slides (runner.decks.slides), then each
format's document from them. Runs in a render worker (the render stage hands decks to the same
pool as charts). A new output format is a runner.status.DeckFormat member, a module with a
`(slides, task) -> bytes` function, and its entry in FORMATS (tests/test_one_place.py checks that
every format has a builder and the report's schema names them)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from runner.decks.pdf_deck import pdf_deck
from runner.decks.powerpoint import pptx_deck
from runner.decks.slides import Slide, slides_for
from runner.errors import ChartError, ErrorType, detail
from runner.records import BuiltDeck, DeckDocument, DeckTask
from runner.status import DeckFormat

FORMATS: dict[DeckFormat, Callable[[list[Slide], DeckTask], bytes]] = {DeckFormat.PDF: pdf_deck,
                                                                      DeckFormat.PPTX: pptx_deck}


def build_deck(task: DeckTask) -> BuiltDeck:
    """Every asked-for format of one merchant's deck; a failure is a deck_error."""
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        slides = slides_for(task)
        contents = [(fmt, FORMATS[DeckFormat(fmt)](slides, task)) for fmt in task.formats]
    except ChartError:
        raise
    except Exception as exc:
        raise ChartError(ErrorType.DECK_ERROR, detail(f"{task.merchant}: {type(exc).__name__}: {exc}")) from None
    return BuiltDeck(
        documents=tuple(DeckDocument(fmt, content, hashlib.sha256(content).hexdigest()) for fmt, content in contents),
        slides=len(slides),
        build_ms=round((time.perf_counter() - started) * 1000, 1),
        cpu_ms=round((time.process_time() - cpu_started) * 1000, 1),
    )
