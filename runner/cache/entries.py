"""The render cache: PNGs and decks kept under a key made of everything that decides them.

The key hashes the chart's validated data, its spec, its merchant and dates, the PNG
settings, and the version of everything that draws (the runner's drawing and deck code,
matplotlib, python-pptx). Same key, same output: a hit is copied instead of rendered, so a
night whose data did not change renders nothing. Retrieval still runs every time: the data
decide.

The folder is the runner's only when it carries its marker (see runner.cache.folder.claim). Each key has one
record in the cache's index (`index/<key>.json`): its files' formats, sizes and sha256, written
when the entry was. An entry is served only when its files are regular files (never links) whose
content matches the record; anything else is a miss, logged once, and the entry removed. The
record lives apart from the files it vouches for, and names its key: swapping two entries, or
two entries with their records, does not pass.

Safe to share between runs: every file is written to a temporary name and renamed, so a reader
sees a whole file or none, and a key's record is written after its files; an entry evicted under
a reader's feet is a miss. Least recently used entries go first when the cache passes its size (a
hit touches its record), and only entries the index lists are ever removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from contextlib import suppress
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from loguru import logger

from runner import __version__
from runner.cache.folder import INDEX, MARKER_TEXT, BadEntry, opened, read_regular, remove, subfolder
from runner.files import write_in_folder
from runner.records import BuiltDeck, DeckDocument, DeckTask, RenderedChart, RenderTask
from runner.render.supervisor import Output, Task
from runner.status import DeckFormat

_RUNNER = Path(__file__).resolve().parents[1]
# Everything that draws a chart or lays out a deck: a change to any of it is a new cache.
_DRAWING_CODE = tuple(sorted(
    [_RUNNER / "render" / "draw.py", _RUNNER / "render" / "worker.py", _RUNNER / "wording.py", _RUNNER / "figures.py",
     *(_RUNNER / "decks").glob("*.py"), *(_RUNNER / "kinds").glob("*.py")]))


@cache
def code_version() -> str:
    """Changes whenever anything that draws could draw differently."""
    digest = hashlib.sha256(__version__.encode())
    for path in _DRAWING_CODE:
        digest.update(path.read_bytes())
    for package in ("matplotlib", "python-pptx"):
        digest.update(f"{package}={metadata.version(package)}".encode())
    return digest.hexdigest()


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps({"code": code_version(), **payload}, sort_keys=True, default=repr, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# The only fields of a RenderTask ("field.subfield") left out of the chart's key, because they do
# not change the PNG. Every other field is in, a field added later too.
NOT_IN_CHART_KEY = frozenset({
    "job.output",  # where this run writes the PNG: another run folder every night
    "job.call",  # how the data were asked for; the data themselves are in the key
    "data.paragraph",  # an agent's paragraph goes under the chart in the deck, not on it (the deck's key holds it)
})


def chart_key(task: RenderTask) -> str:
    drawn = asdict(task)
    for name in NOT_IN_CHART_KEY:
        outer, inner = name.split(".")
        del drawn[outer][inner]
    return _digest({"chart": drawn})


# The charts and template go in by hash; when a deck was made is not what it shows (a deck served
# from the cache says when it was first made).
_NOT_IN_DECK_KEY = ("charts", "template", "made_at")


def deck_key(task: DeckTask) -> str:
    """Every field of the task goes in (a field added later too): the charts' PNGs and the template
    by their hashes."""
    charts = [{"spec": asdict(c.spec), "data": asdict(c.data) if c.data else None,
               "png": hashlib.sha256(c.png).hexdigest() if c.png is not None else None} for c in task.charts]
    rest = {field.name: getattr(task, field.name) for field in fields(task) if field.name not in _NOT_IN_DECK_KEY}
    return _digest({"deck": rest, "charts": charts,
                    "template": hashlib.sha256(task.template).hexdigest() if task.template else None})


def task_key(task: Task) -> str:
    """The key of a task's output: a chart's or a deck's (never the same: each hashes its own shape)."""
    return chart_key(task) if isinstance(task, RenderTask) else deck_key(task)


class EntryKind(StrEnum):
    CHART = "chart"
    DECK = "deck"


# The formats each kind of entry may have: the only names a record can make the cache open.
ENTRY_FORMATS = {EntryKind.CHART: ("png",), EntryKind.DECK: tuple(fmt.value for fmt in DeckFormat)}
MAX_ENTRY_BYTES = 256_000_000  # a deck with a large template stays well within it
MAX_RECORD_BYTES = 4096
MAX_SLIDES = 100_000
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class EntryFile:
    format: str
    sha256: str
    size: int


@dataclass(frozen=True)
class IndexRecord:
    """What the cache wrote under one key; the only proof that its files are the runner's."""

    key: str
    kind: EntryKind
    files: tuple[EntryFile, ...]
    slides: int = 0

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def record_of(key: str, kind: EntryKind, documents: list[tuple[str, bytes]], slides: int = 0) -> IndexRecord:
    return IndexRecord(key, kind, tuple(EntryFile(fmt, hashlib.sha256(content).hexdigest(), len(content))
                                        for fmt, content in documents), slides)


def _count(value: object, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise ValueError(f"{value!r} is not a count up to {maximum:,}")
    return value


def parse_record(key: str, content: bytes) -> IndexRecord:
    """A record read back from the index: untrusted input, checked like a flag (ValueError)."""
    try:
        raw = json.loads(content)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(raw, dict) or set(raw) != {"key", "kind", "files", "slides"}:
        raise ValueError("not a record")
    if raw["key"] != key:
        raise ValueError("a record of another key")
    kind = EntryKind(raw["kind"]) if raw["kind"] in tuple(EntryKind) else None
    if kind is None or not isinstance(raw["files"], list) or not 1 <= len(raw["files"]) <= len(ENTRY_FORMATS[kind]):
        raise ValueError("not a record")
    files = []
    for item in raw["files"]:
        if not isinstance(item, dict) or set(item) != {"format", "sha256", "size"}:
            raise ValueError("not a file's record")
        if item["format"] not in ENTRY_FORMATS[kind]:
            raise ValueError(f"format {str(item['format'])[:40]!r} is not one the runner writes for a {kind}")
        if not isinstance(item["sha256"], str) or not _HEX64.fullmatch(item["sha256"]):
            raise ValueError("not a sha256")
        files.append(EntryFile(item["format"], item["sha256"], _count(item["size"], MAX_ENTRY_BYTES)))
    if len({f.format for f in files}) != len(files):
        raise ValueError("a format listed twice")
    return IndexRecord(key, kind, tuple(files), _count(raw["slides"], MAX_SLIDES))


@dataclass(frozen=True)
class _Listed:
    """An index record as trim sees it: when last used, how much it holds, what to remove."""

    key: str
    used: float
    size: int
    formats: tuple[str, ...]


class RenderCache:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    def get(self, key: str, task: Task) -> Output | None:
        """The task's output stored under `key`, marked cached; None when there is none to serve."""
        if isinstance(task, RenderTask):
            return self._get_chart(key)
        return self._get_deck(key, task.formats)

    def put(self, key: str, output: Output) -> None:
        """Keep a rendered chart or a built deck under `key` (a cache that cannot be written only costs speed)."""
        if isinstance(output, RenderedChart):
            self._put_chart(key, output)
        else:
            self._put_deck(key, output)

    def _get_chart(self, key: str) -> RenderedChart | None:
        found = self._load(key, EntryKind.CHART)
        if found is None:
            return None
        record, (png,) = found
        return RenderedChart(png, record.files[0].sha256, 0.0, 0.0, 0, 0.0, cached=True)  # the hash _load checked

    def _put_chart(self, key: str, chart: RenderedChart) -> None:
        self._store(record_of(key, EntryKind.CHART, [("png", chart.png)]), [chart.png])

    def _get_deck(self, key: str, formats: tuple[str, ...]) -> BuiltDeck | None:
        """The deck under `key`, when the cache holds exactly the formats asked for."""
        found = self._load(key, EntryKind.DECK)
        if found is None:
            return None
        record, contents = found
        if tuple(f.format for f in record.files) != formats:
            self._reject(key, EntryKind.DECK, "its formats are not the ones asked for")
            return None
        documents = tuple(DeckDocument(f.format, content, f.sha256) for f, content in zip(record.files, contents,
                                                                                           strict=True))
        return BuiltDeck(documents, record.slides, 0.0, 0.0, cached=True)

    def _put_deck(self, key: str, deck: BuiltDeck) -> None:
        documents = [(d.format, d.content) for d in deck.documents]
        if all(fmt in ENTRY_FORMATS[EntryKind.DECK] for fmt, _ in documents):
            self._store(record_of(key, EntryKind.DECK, documents, deck.slides), [d.content for d in deck.documents])

    def _load(self, key: str, kind: EntryKind) -> tuple[IndexRecord, list[bytes]] | None:
        try:
            with opened(self.folder) as root, subfolder(root, INDEX) as index:
                try:
                    record = parse_record(key, read_regular(index, f"{key}.json", MAX_RECORD_BYTES))
                except ValueError as exc:
                    raise BadEntry(f"its index record is not valid: {exc}") from None
                if record.kind != kind:
                    raise BadEntry(f"indexed as a {record.kind}")
                with subfolder(root, key[:2]) as shard:
                    contents = [self._content(shard, key, file) for file in record.files]
                with suppress(OSError):  # recently used; a read-only cache still serves
                    os.utime(f"{key}.json", dir_fd=index, follow_symlinks=False)
                return record, contents
        except FileNotFoundError:  # never stored, or evicted by another run a moment ago
            return None
        except BadEntry as exc:
            self._reject(key, kind, str(exc))
        except OSError as exc:
            logger.debug("render cache: cannot read {}: {}", key, exc.strerror or exc)
        return None

    @staticmethod
    def _content(shard: int, key: str, file: EntryFile) -> bytes:
        content = read_regular(shard, f"{key}.{file.format}", file.size)
        if len(content) != file.size or hashlib.sha256(content).hexdigest() != file.sha256:
            raise BadEntry(f"its {file.format} does not match the hash its index recorded")
        return content

    def _reject(self, key: str, kind: EntryKind, reason: str) -> None:
        logger.warning("render cache: entry {} not served ({}): a miss; removed", key, reason)
        try:
            with opened(self.folder) as root:
                self._remove(root, key, ENTRY_FORMATS[kind])
        except OSError as exc:
            logger.debug("render cache: cannot remove {}: {}", key, exc.strerror or exc)

    @staticmethod
    def _remove(root: int, key: str, formats: tuple[str, ...]) -> None:
        """A key's files (paths made from the key, never read from anywhere), then its record."""
        with suppress(BadEntry, FileNotFoundError), subfolder(root, key[:2]) as shard:
            for fmt in formats:
                remove(shard, f"{key}.{fmt}")
        with suppress(BadEntry, FileNotFoundError), subfolder(root, INDEX) as index:
            remove(index, f"{key}.json")

    def _store(self, record: IndexRecord, contents: list[bytes]) -> None:
        if record.size > MAX_ENTRY_BYTES:
            return
        key = record.key
        try:
            with opened(self.folder) as root, subfolder(root, key[:2], create=True) as shard, \
                    subfolder(root, INDEX, create=True) as index:
                for file, content in zip(record.files, contents, strict=True):
                    write_in_folder(shard, f"{key}.{file.format}", content)
                write_in_folder(index, f"{key}.json", record.encode())  # last: a record means its files are there
        except (OSError, BadEntry) as exc:  # a cache that cannot be written only costs speed
            logger.debug("render cache: cannot store {}: {}", key, exc)

    def trim(self) -> int:
        """Remove the least recently used entries until the cache is within its size; returns how many.
        Only entries the index lists are counted and removed; an index record that is not valid is
        removed with its key's files."""
        try:
            with opened(self.folder) as root, subfolder(root, INDEX) as index:
                listed = self._listed(root, index)
                budget = self.max_bytes - len(MARKER_TEXT)
                total = sum(entry.size for entry in listed)
                removed = 0
                for entry in sorted(listed, key=lambda e: e.used):
                    if total <= budget:
                        break
                    self._remove(root, entry.key, entry.formats)
                    total -= entry.size
                    removed += 1
        except FileNotFoundError:  # nothing stored yet
            return 0
        except (OSError, BadEntry) as exc:
            logger.warning("render cache: {} not trimmed: {}", self.folder, exc)
            return 0
        if removed:
            logger.info("render cache: {} least recently used {} removed to stay within {:.0f} MB", removed,
                        "entry" if removed == 1 else "entries", self.max_bytes / 1e6)
        return removed

    def _listed(self, root: int, index: int) -> list[_Listed]:
        listed = []
        for name in os.listdir(index):
            key = name.removesuffix(".json")
            if not name.endswith(".json") or not _HEX64.fullmatch(key):
                continue  # a write under way, or not the cache's
            try:
                info = os.stat(name, dir_fd=index, follow_symlinks=False)
                record = parse_record(key, read_regular(index, name, MAX_RECORD_BYTES))
            except FileNotFoundError:  # removed by another run meanwhile
                continue
            except (BadEntry, ValueError) as exc:
                logger.warning("render cache: index record {} removed: {}", name, exc)
                self._remove(root, key, tuple(fmt for formats in ENTRY_FORMATS.values() for fmt in formats))
                continue
            formats = tuple(f.format for f in record.files)
            listed.append(_Listed(key, info.st_mtime, record.size + info.st_size, formats))
        return listed
