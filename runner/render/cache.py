"""The render cache: PNGs and decks kept under a key made of everything that decides them.

The key hashes the chart's validated data, its spec, its merchant and dates, the PNG
settings, and the version of everything that draws (the runner's drawing and deck code,
matplotlib, python-pptx). Same key, same output: a hit is copied instead of rendered, so a
night whose data did not change renders nothing. Retrieval still runs every time: the data
decide.

Safe to share between runs: every entry is written to a temporary name and renamed, so a
reader sees a whole file or none; an entry evicted under a reader's feet is a miss. Least
recently used entries go first when the cache passes its size (a hit touches its entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from loguru import logger

from runner import __version__
from runner.files import write_atomically
from runner.jobs import BuiltDeck, DeckDocument, DeckTask, RenderTask

_DRAWING_CODE = ("render/draw.py", "render/worker.py", "decks/build.py", "decks/pdf.py", "decks/powerpoint.py",
                 "decks/paragraphs.py")


@cache
def code_version() -> str:
    """Changes whenever anything that draws could draw differently."""
    digest = hashlib.sha256(__version__.encode())
    root = Path(__file__).resolve().parents[1]
    for name in _DRAWING_CODE:
        digest.update((root / name).read_bytes())
    for package in ("matplotlib", "python-pptx"):
        digest.update(f"{package}={metadata.version(package)}".encode())
    return digest.hexdigest()


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps({"code": code_version(), **payload}, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def chart_key(task: RenderTask) -> str:
    job = task.job
    return _digest({"chart": asdict(job.spec), "merchant": job.merchant, "dates": [job.start_date, job.end_date],
                    "data": asdict(task.data), "compress_level": task.compress_level})


def deck_key(task: DeckTask) -> str:
    charts = [{"spec": asdict(c.spec), "data": asdict(c.data) if c.data else None, "error": c.error,
               "png": hashlib.sha256(c.png).hexdigest() if c.png is not None else None} for c in task.charts]
    return _digest({"deck": task.merchant, "dates": [task.start_date, task.end_date], "on": task.generated_on,
                    "formats": list(task.formats), "charts": charts,
                    "template": hashlib.sha256(task.template).hexdigest() if task.template else None})


class RenderCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def _path(self, key: str, suffix: str) -> Path:
        return self.folder / key[:2] / f"{key}.{suffix}"

    def _read(self, key: str, suffix: str) -> bytes | None:
        path = self._path(key, suffix)
        try:
            content = path.read_bytes()
            os.utime(path)  # recently used
        except OSError:  # absent, or evicted by another run a moment ago
            return None
        return content

    def _write(self, key: str, suffix: str, content: bytes) -> None:
        path = self._path(key, suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, content)
        except OSError as exc:  # a cache that cannot be written only costs speed
            logger.debug("render cache: cannot store {}: {}", path.name, exc.strerror or exc)

    def get_chart(self, key: str) -> bytes | None:
        return self._read(key, "png")

    def put_chart(self, key: str, png: bytes) -> None:
        self._write(key, "png", png)

    def get_deck(self, key: str) -> BuiltDeck | None:
        index = self._read(key, "deck.json")
        if index is None:
            return None
        entry = json.loads(index)
        documents = []
        for fmt in entry["formats"]:
            content = self._read(key, fmt)
            if content is None:
                return None
            documents.append(DeckDocument(fmt, content, hashlib.sha256(content).hexdigest()))
        return BuiltDeck(tuple(documents), entry["slides"], 0.0, 0.0, cached=True)

    def put_deck(self, key: str, deck: BuiltDeck) -> None:
        for document in deck.documents:
            self._write(key, document.format, document.content)
        index = {"formats": [d.format for d in deck.documents], "slides": deck.slides}
        self._write(key, "deck.json", json.dumps(index).encode())  # last: an index means its documents are there

    def trim(self) -> int:
        """Remove the least recently used entries until the cache is within its size; returns how many."""
        entries = []
        for entry in self.folder.glob("*/*"):
            try:
                if not entry.name.startswith("."):
                    stat = entry.stat()
                    entries.append((stat.st_mtime, stat.st_size, entry))
            except OSError:  # removed by another run meanwhile
                continue
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, entry in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            entry.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            logger.info("render cache: {} least recently used file(s) removed to stay within {:.0f} MB", removed,
                        self.max_bytes / 1e6)
        return removed
