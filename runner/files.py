"""Files that readers never see half-written (write beside the target, then rename), and a
user's input files read within bounds."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from runner.errors import UsageError

# Created exclusively and never through a link: a name planted in advance (a link to a user's
# file, say) makes the open fail instead of writing where it points.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_NAME_TRIES = 8
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def write_atomically(path: Path, content: bytes, sync: bool = False) -> None:
    """Write `content` to a temporary file in the same folder, then rename it over `path`.

    `sync` also flushes it to disk first: for the report, which must survive a crash of the
    machine; PNGs can be rendered again, and a sync per chart costs more than the chart.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        write_in_folder(folder, path.name, content, sync)
    finally:
        os.close(folder)


def write_in_folder(folder: int, name: str, content: bytes, sync: bool = False) -> None:
    """write_atomically for the file `name` in the open folder `folder` (a descriptor)."""
    with written_in_folder(folder, name, sync) as out:
        out.write(content)


@contextmanager
def written_atomically(path: Path, sync: bool = False) -> Iterator[BinaryIO]:
    """A file written piece by piece (a report of a million rows), in place at `path` only once
    whole: write_atomically for content that is never in memory at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with written_in_folder(folder, path.name, sync) as out:
            yield out
    finally:
        os.close(folder)


@contextmanager
def written_in_folder(folder: int, name: str, sync: bool = False) -> Iterator[BinaryIO]:
    """The file `name` in the open folder `folder`, written through a temporary file renamed over it.

    The temporary name is unpredictable (64 random bits) and created exclusively, so nobody can
    plant a link at it beforehand; the rename replaces whatever is at `name`, a link included,
    without following it.
    """
    for _ in range(_TEMP_NAME_TRIES):
        temp = f".{name}.{secrets.token_hex(8)}.tmp"
        try:
            handle = os.open(temp, _NEW_FILE, 0o666, dir_fd=folder)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name for {name}")
    try:
        with open(handle, "wb", closefd=True) as out:
            yield out
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        if sync:  # the rename too
            os.fsync(folder)
    except BaseException:
        with suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        raise


def open_input(path: Path, what: str) -> BinaryIO:
    """A user's input file, open for reading: a regular file (not /dev/zero, a FIFO or a folder)."""
    try:
        # Not blocking: a FIFO must be refused, not waited on for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is not a regular file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise UsageError(f"{what} {path} is not a regular file")
    return os.fdopen(descriptor, "rb")


def input_lines(handle: BinaryIO, limit: int, what: str) -> Iterator[tuple[int, bytes]]:
    """(number, line) of an input read a line at a time, each read at most `limit` + 1 bytes (a line
    longer than `limit` comes back cut, for the caller to refuse); a read error is a UsageError naming
    `what`."""
    number = 0
    while True:
        try:
            line = handle.readline(limit + 1)
        except OSError as exc:
            raise UsageError(f"{what} cannot be read: {exc.strerror or exc}") from None
        if not line:
            return
        number += 1
        yield number, line


def read_input(path: Path, what: str, limit: int) -> bytes:
    """A user's input file (open_input) of at most `limit` bytes. Stopping at the limit bounds
    memory even for a file that grows while it is read."""
    with open_input(path, what) as handle:
        try:
            content = handle.read(limit + 1)
        except OSError as exc:
            raise UsageError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if len(content) > limit:
        raise UsageError(f"{what} {path} is larger than {limit:,} bytes")
    return content


def read_input_text(path: Path, what: str, limit: int) -> str:
    """read_input as UTF-8 text; a byte-order mark (some editors write one) is dropped."""
    content = read_input(path, what, limit)
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def safe_part(text: str) -> str:
    """A file-name part that can never leave its folder; distinct inputs stay distinct."""
    cleaned = _SAFE.sub("_", text)[:64]
    if cleaned != text or not cleaned:
        cleaned = f"{cleaned or '_'}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return cleaned
