"""The run's journal: each final outcome (a chart, a batch, a merchant's decks), appended to
journal.jsonl in the run folder the moment it is final. The report is written from it at the end
(runner.run_report), and `--resume` reads it to skip what is already done (runner.resume).

One JSON object per line, with one key saying what it is:

    {"journal": 1, "run_id": ..., "job": <sha256 of job.json>}      the first line
    {"chart": [position, row]}    a chart's report row; position: its place in the plan
    {"batch": [number, row]}      a batch's report row; number: its place among the plan's batches
    {"deck": [merchant, [row, ...]]}   a merchant's deck rows; merchant: its place among the merchants
    {"resumed": {...}}            a resume began
    {"end": status}               the run's report was written, with this status

Each line is written with one write() as it happens, so a killed process loses nothing it had
written; the file is synced at most a second apart, so a machine that loses power loses at most
the last second. A line cut short by a kill is the last one: a reader skips it, and a writer that
opens the journal again cuts it off first, so the next line starts clean. Every line read back is
untrusted: one that does not parse or has the wrong shape is skipped, and its chart done again.
"""

from __future__ import annotations

import json
import os
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from runner.errors import ReportWriteError

JOURNAL = "journal.jsonl"
VERSION = 1
SYNC_SECONDS = 1.0
_APPEND = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINE_BYTES = 1_000_000  # a longer line is not one the runner wrote


class Journal:
    """The writer. Only the coordinator's main thread appends."""

    def __init__(self, run_dir: Path, run_id: str, job_hash: str) -> None:
        self.path = run_dir / JOURNAL
        try:
            self._fd = os.open(self.path, _APPEND, 0o644)
            _cut_torn_tail(self._fd)
            if os.fstat(self._fd).st_size == 0:
                self._write({"journal": VERSION, "run_id": run_id, "job": job_hash})
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        self._synced = time.monotonic()

    def chart(self, position: int, row: dict[str, Any]) -> None:
        self._append({"chart": [position, row]})

    def batch(self, number: int, row: dict[str, Any]) -> None:
        self._append({"batch": [number, row]})

    def decks(self, merchant: int, rows: list[dict[str, Any]]) -> None:
        self._append({"deck": [merchant, rows]})

    def resumed(self, record: dict[str, Any]) -> None:
        self._append({"resumed": record})
        self.sync()

    def end(self, status: str) -> None:
        self._append({"end": status})
        self.sync()

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self._write(record)
            if time.monotonic() - self._synced >= SYNC_SECONDS:
                self.sync()
        except OSError as exc:
            raise _unwritable(self.path, exc) from None

    def _write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n").encode()
        written = os.write(self._fd, line)
        while written < len(line):  # a short write (a full disk raises instead): the rest, in order
            written += os.write(self._fd, line[written:])

    def sync(self) -> None:
        """To disk now: the loop calls it each tick, so outcomes are never more than a second from disk."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        self._synced = time.monotonic()

    def tick(self) -> None:
        if time.monotonic() - self._synced >= SYNC_SECONDS:
            self.sync()

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = -1


def _unwritable(path: Path, exc: OSError) -> ReportWriteError:
    """The journal cannot be written (a full disk, a vanished folder): the run cannot keep its
    outcomes, nor write a report from them. It ends as when its report cannot be written: exit 3."""
    return ReportWriteError(f"cannot write the report in {path.parent}: its journal: {exc.strerror or exc}")


def _cut_torn_tail(fd: int) -> None:
    """A line cut short by a kill ends the file without its newline: cut it off, or the next
    line written would join it and both would be lost."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


@dataclass
class JournalIndex:
    """Where each outcome's latest line is in the journal (not the outcomes: a million charts
    would not fit), and the few small records."""

    path: Path
    header: dict[str, Any] | None = None
    charts: array[int] = field(default_factory=lambda: array("q"))  # position -> offset of its line, -1: none
    batches: array[int] = field(default_factory=lambda: array("q"))
    decks: array[int] = field(default_factory=lambda: array("q"))  # merchant -> offset
    resumed: list[dict[str, Any]] = field(default_factory=list)
    end: str | None = None
    skipped: int = 0  # lines that did not parse or had the wrong shape

    def reader(self) -> JournalReader:
        """Reads many outcomes through one open file: for a walk over the whole plan."""
        return JournalReader(self)


class JournalReader:
    def __init__(self, index: JournalIndex) -> None:
        self.index = index
        self._handle = open(index.path, "rb") if index.path.exists() else None

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def chart(self, position: int) -> Any:
        return self._at(self.index.charts, position)

    def batch(self, number: int) -> Any:
        return self._at(self.index.batches, number)

    def deck_rows(self, merchant: int) -> Any:
        return self._at(self.index.decks, merchant)

    def _at(self, offsets: array[int], place: int) -> Any:
        if self._handle is None or place >= len(offsets) or offsets[place] < 0:
            return None
        return _record_at(self._handle, offsets[place])


def _record_at(handle: Any, offset: int) -> Any:
    handle.seek(offset)
    record = json.loads(handle.readline(MAX_LINE_BYTES))
    return next(iter(record.values()))[1]


_PLACED = ("chart", "batch", "deck")


def read_journal(run_dir: Path, charts: int, batches: int, merchants: int) -> JournalIndex:
    """The journal's index, for a plan of this many charts, batches and merchants: the latest line of
    each outcome wins (a resume appends after the first run). Lines that do not parse, or whose
    place is outside the plan, are skipped."""
    index = JournalIndex(run_dir / JOURNAL, charts=array("q", [-1]) * charts, batches=array("q", [-1]) * batches,
                         decks=array("q", [-1]) * merchants)
    sizes = {"chart": charts, "batch": batches, "deck": merchants}
    try:
        handle = open(index.path, "rb")
    except FileNotFoundError:
        return index
    with handle:
        for offset, line in _lines(handle):
            record = _parsed(line)
            if record is None:
                index.skipped += 1
                continue
            (kind, value), = record.items()
            if kind in _PLACED and _placed(value, sizes[kind]):
                {"chart": index.charts, "batch": index.batches, "deck": index.decks}[kind][value[0]] = offset
            elif kind == "journal" and offset == 0:
                index.header = value
            elif kind == "resumed" and isinstance(value, dict):
                index.resumed.append(value)
            elif kind == "end" and isinstance(value, str):
                index.end = value
            else:
                index.skipped += 1
    if index.skipped:
        logger.warning("journal {}: {} line(s) skipped (cut short or not the runner's)", index.path, index.skipped)
    return index


def _lines(handle: Any) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while line := handle.readline(MAX_LINE_BYTES + 1):
        if line.endswith(b"\n"):  # the last line, cut short by a kill, has none: skipped
            yield offset, line
        offset += len(line)


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not record or ("journal" not in record and len(record) != 1):
        return None
    return record if "journal" not in record else {"journal": record}


def _placed(value: Any, size: int) -> bool:
    return (isinstance(value, list) and len(value) == 2 and type(value[0]) is int and 0 <= value[0] < size
            and isinstance(value[1], dict | list))
