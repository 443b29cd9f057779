"""Placeholders in a PowerPoint part's text: `{{name}}`, found and filled wherever PowerPoint split
it across runs of one paragraph (it does, as the text is edited)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pptx.oxml.ns import qn

# Anything between double braces: a name the runner does not know is refused, never left in a deck.
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def fill_runs(texts: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The runs' texts with each known placeholder replaced, wherever the runs split it. The value
    goes into the run the placeholder starts in; the runs it spans past that lose its characters."""
    joined, starts, out = "".join(texts), [], list(texts)
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text)

    def run_at(position: int) -> int:  # the run holding the character at `position`
        return next(i for i, start in enumerate(starts) if start <= position < start + len(texts[i]))

    for match in reversed(list(PLACEHOLDER.finditer(joined))):  # from the end: earlier offsets stay valid
        if match[1] not in values:
            continue
        first, last = run_at(match.start()), run_at(match.end() - 1)
        head = out[first][:match.start() - starts[first]]
        if first == last:
            out[first] = head + values[match[1]] + out[first][match.end() - starts[first]:]
            continue
        out[first] = head + values[match[1]]
        for i in range(first + 1, last):
            out[i] = ""
        out[last] = out[last][match.end() - starts[last]:]
    return out


def run_groups(element: Any) -> Iterator[list[Any]]:
    """Each paragraph's runs (a:r), in the stretches between its line breaks and fields."""
    for paragraph in element.iter(qn("a:p")):
        group: list[Any] = []
        for child in paragraph:
            if child.tag == qn("a:r"):
                group.append(child)
            elif group:
                yield group
                group = []
        if group:
            yield group


def _texts(runs: list[Any]) -> list[str]:
    return [run.findtext(qn("a:t")) or "" for run in runs]


def stretches(element: Any) -> Iterator[str]:
    """The text of each stretch of runs (see run_groups): where a placeholder can be."""
    for runs in run_groups(element):
        yield "".join(_texts(runs))


def placeholders(parts: list[Any]) -> set[str]:
    return {name for part in parts for text in stretches(part._element) for name in PLACEHOLDER.findall(text)}


def fill(element: Any, values: Mapping[str, str]) -> None:
    for runs in run_groups(element):
        texts = _texts(runs)
        for run, old, new in zip(runs, texts, fill_runs(texts, values), strict=True):
            if new != old:
                run.find(qn("a:t")).text = new
