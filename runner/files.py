"""Files that readers never see half-written (write beside the target, then rename), and a
user's input files read within bounds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runner.errors import UsageError


def write_atomically(path: Path, content: bytes, sync: bool = False) -> None:
    """Write `content` to a temporary file in the same folder, then rename it over `path`.

    `sync` also flushes it to disk first: for the report, which must survive a crash of the
    machine; PNGs can be rendered again, and a sync per chart costs more than the chart.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(content)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_input(path: Path, what: str, limit: int) -> bytes:
    """A user's input file: a regular file (not /dev/zero, a FIFO or a folder) of at most `limit`
    bytes. Stopping at the limit bounds memory even for a file that grows while it is read."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{what} {path} is not a regular file")
        with open(path, "rb") as handle:
            content = handle.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
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
