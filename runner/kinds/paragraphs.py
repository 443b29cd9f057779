"""The paragraph under each chart, written from its data by its kind's sentence (runner.kinds),
and text from elsewhere (a model's paragraph) made fit for a slide.
"""

from __future__ import annotations

from runner.charts import ChartSpec
from runner.kinds import KINDS
from runner.records import ChartData

MAX_CHARS = 500  # what four lines under a chart hold


def write(spec: ChartSpec, data: ChartData) -> str:
    """The paragraph for validated, non-empty chart data: the part its window shows
    (runner.kinds.window.shown_data), written by the rules in runner.wording."""
    return KINDS[spec.kind].sentence(spec, data)


def trimmed(text: str, limit: int = MAX_CHARS) -> str:
    """A paragraph from elsewhere (the model's), printable and at most `limit` characters: cut at
    the last full sentence that fits, else at a word, with an ellipsis."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    if end >= limit // 2:
        return cut[:end + 1]
    return cut[:limit - 2].rsplit(" ", 1)[0] + " …"
