"""A report.json read back a row at a time (--rerun-failed, --merge, merge-reports): never the whole
chart list in memory, and untrusted input like any other.

The file is parsed by ijson (yajl's C parser underneath) as a stream of events, once per pass: the
head (everything but the lists of rows) in one pass, each list of rows in its own. A pass reads the
file through the descriptor opened at the start, so every pass reads the same file even if the path
is replaced meanwhile. Bounds, checked as the bytes arrive (the parser reads ahead, so a value is
stopped while it is read, not after): a row of at most MAX_ROW_BYTES, flat (scalars only), in every
pass (the head's too, which reads past the rows); each value of the head at most MAX_HEAD_BYTES and
MAX_DEPTH deep, and at most MAX_HEAD_KEYS of them. Anything else is BadReport, one line the
caller makes into its own (exit 2): not JSON, truncated, trailing bytes, NaN, a row too large.

merchant_groups walks the rows a merchant at a time, as the runner writes them: each merchant's
batches, charts and decks together, the sections in the same order of merchants.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import ijson  # type: ignore[import-untyped]

from runner.errors import UsageError, one_line
from runner.merchants import check_merchant_token
from runner.report import SECTIONS

MAX_REPORT_BYTES = 20_000_000_000  # bounds the time a read takes; memory is bounded by the rows'
MAX_ROW_BYTES = 1_000_000  # a runner's row is a few KB: its longest cells (paragraph, error) are cut
MAX_HEAD_BYTES = 64_000_000  # run, config, environment, metrics: run.merged lists every chart a merge redid
MAX_DEPTH = 32
MAX_HEAD_KEYS = 64  # beside the lists of rows: a report has 5
_BOM = b"\xef\xbb\xbf"
_OPENS = frozenset({"start_map", "start_array"})
_Events = Iterator[tuple[str, Any]]


class BadReport(ValueError):
    """A report that is not one the runner wrote: the caller makes it one line naming the file."""


def shown(value: Any) -> str:
    return one_line(repr(value), 60)


class _Source:
    """The report's bytes for one pass, from its descriptor (a byte-order mark dropped). While a
    value is `bounded`, reading on past its limit ends the pass: the value is at least that large."""

    def __init__(self, fd: int) -> None:
        self.fd, self.offset = fd, 0
        self.mark: int | None = None
        self.limit, self.what = 0, ""

    def bound(self, what: str, limit: int) -> None:
        self.mark, self.limit, self.what = self.offset, limit, what

    def unbound(self) -> None:
        self.mark = None

    def read(self, size: int) -> bytes:
        if self.mark is not None and self.offset - self.mark > self.limit:
            raise BadReport(f"{self.what} is larger than {self.limit:,} bytes")
        chunk = os.pread(self.fd, size, self.offset)
        start, self.offset = self.offset, self.offset + len(chunk)
        return chunk[len(_BOM):] if start == 0 and chunk.startswith(_BOM) else chunk


def _first_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return one_line(text.strip().split("\n", 1)[0], 120)


def _unreadable(exc: BaseException) -> BadReport:
    if isinstance(exc, OSError):
        return BadReport(f"cannot be read: {exc.strerror or exc}")
    return BadReport(f"not JSON: {_first_line(exc)}")


def _skip(events: _Events, event: str) -> None:
    """The rest of a value whose first event was `event`."""
    depth = 1 if event in _OPENS else 0
    while depth:
        event, _ = next(events)
        depth += 1 if event in _OPENS else -1 if event in ("end_map", "end_array") else 0


def _skip_rows(events: _Events, source: _Source, section: str) -> None:
    """The rest of a list of rows (its start read), each row bounded as rows() bounds it."""
    depth, index = 0, 0
    source.bound(f"{section}[0]", MAX_ROW_BYTES)
    for event, _ in events:
        if event in _OPENS:
            depth += 1
        elif event in ("end_map", "end_array"):
            if not depth:
                source.unbound()
                return
            depth -= 1
        if not depth:  # a row read: the next one is bounded from here
            index += 1
            source.bound(f"{section}[{index}]", MAX_ROW_BYTES)


def _value(events: _Events, event: str, value: Any, depth: int = 0) -> Any:
    """A JSON value built from its events, at most MAX_DEPTH deep."""
    if event not in _OPENS:
        return value
    if depth >= MAX_DEPTH:
        raise BadReport(f"a value is nested more than {MAX_DEPTH} deep")
    if event == "start_array":
        items: list[Any] = []
        for event, value in events:
            if event == "end_array":
                return items
            items.append(_value(events, event, value, depth + 1))
    built: dict[str, Any] = {}
    for event, key in events:
        if event == "end_map":
            break
        built[key] = _value(events, *next(events), depth + 1)
    return built


class ReportFile:
    """A report.json opened once (a regular file, never through a link, at most MAX_REPORT_BYTES)
    and read in passes. `what` names it in an error opening it (`--rerun-failed PATH`)."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.found: frozenset[str] = frozenset()  # the lists of rows it holds, once head() has read it
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            reason = "is a link" if path.is_symlink() else "does not exist" if not os.path.lexists(path) \
                else f"cannot be read: {exc.strerror or exc}"
            raise UsageError(f"{what} {reason}") from None
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_REPORT_BYTES:
            os.close(self.fd)
            reason = "is not a regular file" if not stat.S_ISREG(info.st_mode) else \
                f"is larger than {MAX_REPORT_BYTES:,} bytes"
            raise UsageError(f"{what} {reason}")

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ReportFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def head(self) -> dict[str, Any]:
        """Everything but the lists of rows (SECTIONS), whose absence or kind rows() reports; the
        whole file is parsed, so a file cut short or with bytes after its end is refused here."""
        try:
            return self._head()
        except (ijson.JSONError, OSError) as exc:
            raise _unreadable(exc) from None

    def rows(self, section: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(where, row) for each row of a list (none where the report has no such list): each a
        flat object of at most MAX_ROW_BYTES. Stops reading at the end of the list."""
        try:
            yield from self._rows(section)
        except (ijson.JSONError, OSError) as exc:
            raise _unreadable(exc) from None

    def _top(self, source: _Source) -> Iterator[tuple[str, _Events]]:
        """(key, events) for each key of the top-level object; a key's value must be consumed.
        The events come straight from the parser (a layer per event would double a pass's time):
        head() and rows() make its errors BadReport."""
        events = ijson.basic_parse(source, use_float=True)
        event, _ = next(events, ("end", None))
        if event != "start_map":
            raise BadReport("it is not a JSON object")
        source.bound("a key of the report", MAX_ROW_BYTES)
        for event, key in events:
            if event == "end_map":
                break
            # Bounded from here: a value's first event may be all of it (a string).
            source.bound(f"report.{key}" if key in SECTIONS else f"report.{one_line(key, 40)}",
                         MAX_ROW_BYTES if key in SECTIONS else MAX_HEAD_BYTES)
            yield key, events
            source.bound("a key of the report", MAX_ROW_BYTES)
        for _ in events:  # to its end: bytes after the object, or a truncated one, are refused
            pass

    def _head(self) -> dict[str, Any]:
        source, head = _Source(self.fd), dict[str, Any]()
        for key, events in self._top(source):
            if key in head:
                raise BadReport(f"it holds {shown(key)} twice")
            if len(head) >= MAX_HEAD_KEYS:
                raise BadReport(f"it holds more than {MAX_HEAD_KEYS} keys")
            event, value = next(events)
            if key in SECTIONS:
                if event != "start_array":
                    raise BadReport(f"report.{key} is not a list")
                _skip_rows(events, source, key)
                head[key] = None
            else:
                head[key] = _value(events, event, value)
        self.found = frozenset(key for key in head if key in SECTIONS)
        return {key: value for key, value in head.items() if key not in SECTIONS}

    def _rows(self, section: str) -> Iterator[tuple[str, dict[str, Any]]]:
        source = _Source(self.fd)
        for key, events in self._top(source):
            event, _ = next(events)
            if key != section:
                _skip_rows(events, source, key) if key in SECTIONS and event == "start_array" else _skip(events, event)
                continue
            if event != "start_array":
                raise BadReport(f"report.{section} is not a list")
            here = f"{section}[0]"
            source.bound(here, MAX_ROW_BYTES)  # from before its first event: a scalar row is bounded too
            for index, (event, _) in enumerate(events, start=1):
                if event == "end_array":
                    return
                if event != "start_map":
                    raise BadReport(f"{here} is not a flat object")
                row: dict[str, Any] = {}
                for event, cell in events:
                    if event == "end_map":
                        break
                    event, row[cell] = next(events)
                    if event in _OPENS:
                        raise BadReport(f"{here} is not a flat object")
                yield here, row
                here = f"{section}[{index}]"
                source.bound(here, MAX_ROW_BYTES)  # the parser reads no more until the next row is asked for
            return

    def copy_to(self, out: BinaryIO) -> None:
        """The file's bytes as read (the report a merge replaces, kept beside)."""
        offset = 0
        while chunk := os.pread(self.fd, 1 << 20, offset):
            out.write(chunk)
            offset += len(chunk)


# -- rows checked, and walked a merchant at a time --------------------------------------------------------


@dataclass(frozen=True)
class RowKind:
    """A list of rows: the columns kept (each a scalar), the cells computed with and their types, the
    cells that are enum members, and the cell that tells a merchant's rows apart (None: none)."""

    columns: tuple[str, ...]
    cells: dict[str, Any] = field(default_factory=dict)
    enums: dict[str, type[StrEnum]] = field(default_factory=dict)
    key: str | None = None


def typed(record: dict[str, Any], key: str, kinds: Any, here: str) -> Any:
    """record[key], of one of `kinds`; JSON true is no count (a bool is an int to isinstance)."""
    value, allowed = record.get(key), kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise BadReport(f"{here}.{key} is {shown(value)}")
    return value


def member(kind: type[StrEnum], value: Any, here: str) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        raise BadReport(f"{here} is {shown(value)}") from None


def check_row(raw: dict[str, Any], here: str, kind: RowKind) -> dict[str, Any]:
    """A row of rows() (flat) cut to its columns, its cells of their types, its enums' values members
    (error_type may be null) and its merchant a token as on the command line (a path part, a JUnit
    class name)."""
    row = {column: raw.get(column) for column in kind.columns}  # rows() gives flat rows only: each a scalar
    for cell, kinds in kind.cells.items():
        typed(row, cell, kinds, here)
    merchant = typed(row, "merchant", str, here)
    try:
        token: str | None = check_merchant_token(merchant, here)
    except UsageError:
        token = None
    if token != merchant:
        raise BadReport(f"{here}.merchant {shown(merchant)} is not a merchant token")
    for cell, enum in kind.enums.items():
        if row[cell] is not None or cell != "error_type":
            row[cell] = member(enum, row[cell], f"{here}.{cell}")
    return row


@dataclass(frozen=True)
class MerchantRows:
    """One merchant's rows of a report read back, checked."""

    merchant: str
    batches: list[dict[str, Any]]
    charts: list[dict[str, Any]]
    decks: list[dict[str, Any]]


Checked = Callable[[str, str, dict[str, Any]], dict[str, Any]]  # (section, where, raw row) -> row


class _Groups:
    """A list's rows, a merchant at a time, with a look at the next merchant's."""

    def __init__(self, file: ReportFile, section: str, checked: Checked) -> None:
        self.section = section
        self._rows = (checked(section, here, raw) for here, raw in file.rows(section))
        self._next = next(self._rows, None)

    def upcoming(self) -> str | None:
        return self._next["merchant"] if self._next is not None else None

    def take(self, merchant: str) -> list[dict[str, Any]]:
        rows = []
        while self._next is not None and self._next["merchant"] == merchant:
            rows.append(self._next)
            self._next = next(self._rows, None)
        return rows


def merchant_groups(file: ReportFile, kinds: dict[str, RowKind], checked: Checked) -> Iterator[MerchantRows]:
    """The report's batches, charts and decks a merchant at a time, in the charts' order of merchants
    (three passes side by side); a merchant's charts in two places, a chart or deck twice, or batches
    or decks in another order than the charts' are refused."""
    groups = {section: _Groups(file, section, checked) for section in ("batches", "charts", "decks")}
    seen: set[str] = set()  # merchants: a few bytes each, not the rows
    while (merchant := groups["charts"].upcoming()) is not None:
        if merchant in seen:
            raise BadReport(f"the charts of merchant {merchant} are listed twice (not together)")
        seen.add(merchant)
        rows = {section: group.take(merchant) for section, group in groups.items()}
        for section, group in rows.items():
            key = kinds[section].key
            if key is not None and len({row[key] for row in group}) < len(group):
                raise BadReport(f"a {section[:-1]} of merchant {merchant} is listed twice")
        yield MerchantRows(merchant, rows["batches"], rows["charts"], rows["decks"])
    for section in ("batches", "decks"):
        if (left := groups[section].upcoming()) is not None:
            raise BadReport(f"the {section} of merchant {left} are not in the order of the charts' merchants "
                            "(or it has no chart)")
