"""The render cache's folder: the marker that makes it the runner's, and files read and written in
it without ever following a link.

A folder is the runner's cache when it holds the marker file the runner writes on creating it.
A non-empty folder without one is refused: the cache removes files, and it must never remove a
user's. The one exception is the default place (`<output_dir>/.cache`) holding a cache of the
layout before the marker, recognised by every file in it having the cache's own naming: it is
adopted once, its entries dropped (they carry no hashes, so nothing proves they are whole).

Everything below the cache folder is opened relative to a descriptor of it, with O_NOFOLLOW: a
link planted at a folder's or an entry's name is refused, never followed.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from loguru import logger

from runner.errors import UsageError
from runner.files import write_in_folder
from runner.status import DeckFormat

MARKER = ".runner-cache"
MARKER_TEXT = b"runner render cache, layout 2: the runner removes only the entries its index lists\n"
INDEX = "index"

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted at an entry's name opens at once (and is then refused) instead of
# blocking the run until someone writes to it.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SHARD = re.compile(r"[0-9a-f]{2}")
_TEMP = r"\.[0-9a-f]+\.tmp"  # a write's temporary name: pid (earlier layout) or random hex
# The cache's own names, in this layout and the one before (which had `<key>.deck.json` beside a
# deck's documents and no index).
_ENTRY = rf"([0-9a-f]{{64}})\.(?:png|{'|'.join(DeckFormat)}|deck\.json)"
_SHARD_FILE = re.compile(rf"{_ENTRY}|\.{_ENTRY}{_TEMP}")
_INDEX_FILE = re.compile(rf"[0-9a-f]{{64}}\.json|\.[0-9a-f]{{64}}\.json{_TEMP}")
_MARKER_TEMP = re.compile(rf"{re.escape(MARKER)}{_TEMP}")


class BadEntry(Exception):
    """Something in the cache is not what the runner would have written there: a miss."""


class NotACache(OSError):
    """The cache folder no longer carries the runner's marker."""


# -- claiming the folder --------------------------------------------------------------------------


def claim(folder: Path, adoptable: bool, create: bool = True) -> bool:
    """Make `folder` the runner's cache, or stop the run (UsageError); True if this call made it.

    New or empty: marked. Marked: used. Anything else is refused, unless `adoptable` (the
    default place) and every file in it has the cache's own naming. Without `create`, a folder
    that does not exist yet is left for later (a usage error found before the run folder is
    made must leave nothing behind, the output folder included).
    """
    existed = os.path.lexists(folder)
    if not create and not existed:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        root = os.open(folder, _FOLDER)
    except OSError as exc:
        raise UsageError(f"cache folder {folder} cannot be used: {exc.strerror or exc}") from None
    try:
        if is_marked(root):
            _check_index(folder, root)
            return False
        names = [name for name in os.listdir(root) if not _MARKER_TEMP.fullmatch(name)]
        if names and is_marked(root):  # another run claimed it a moment ago
            return False
        if names:
            found = _earlier_layout(root, names) if adoptable else None
            if found is None:
                raise UsageError(f"cache folder {folder} is not empty and is not a runner cache (no {MARKER} file):"
                                 " give a new or empty --cache-dir, or --no-cache")
            _drop(root, found)
            logger.info("render cache: {} adopted ({} file(s) of the earlier layout dropped: they carry no hash)",
                        folder, sum(len(files) for files in found.values()))
        write_in_folder(root, MARKER, MARKER_TEXT)
    except OSError as exc:
        raise UsageError(f"cache folder {folder} cannot be used: {exc.strerror or exc}") from None
    finally:
        os.close(root)
    return not existed


def unclaim(folder: Path) -> None:
    """Take back a folder `claim` made, while it holds nothing but the marker (a run that ended
    in a usage error leaves nothing behind)."""
    with suppress(OSError):
        root = os.open(folder, _FOLDER | os.O_NOFOLLOW)
        try:
            if os.listdir(root) == [MARKER]:
                os.unlink(MARKER, dir_fd=root)
        finally:
            os.close(root)
        os.rmdir(folder)


def _check_index(folder: Path, root: int) -> None:
    """The index is the one thing trimming trusts to name what it removes: a link there is refused."""
    try:
        with subfolder(root, INDEX):
            pass
    except FileNotFoundError:
        pass
    except BadEntry:
        raise UsageError(f"cache folder {folder} has an {INDEX} that is not a folder (a link or a file): remove it, "
                         "or give another --cache-dir") from None


def is_marked(root: int) -> bool:
    try:
        return read_regular(root, MARKER, len(MARKER_TEXT)) == MARKER_TEXT
    except (OSError, BadEntry):
        return False


def _earlier_layout(root: int, names: list[str]) -> dict[str, list[str]] | None:
    """Folder → files, when every name is one the cache itself writes (shard folders of entries,
    the index folder of records): else None."""
    found: dict[str, list[str]] = {}
    for name in names:
        if name == INDEX:
            pattern = _INDEX_FILE
        elif _SHARD.fullmatch(name):
            pattern = _SHARD_FILE
        else:
            return None
        try:
            with subfolder(root, name) as folder:
                files = os.listdir(folder)
                for file in files:
                    match = pattern.fullmatch(file)
                    if match is None or not stat.S_ISREG(os.stat(file, dir_fd=folder, follow_symlinks=False).st_mode):
                        return None
                    if name != INDEX and not (match.group(1) or match.group(2)).startswith(name):
                        return None
        except (FileNotFoundError, BadEntry):
            return None
        found[name] = files
    return found


def _drop(root: int, found: dict[str, list[str]]) -> None:
    for name, files in found.items():
        with subfolder(root, name) as folder:
            for file in files:
                remove(folder, file)
        with suppress(OSError):  # not empty: another run wrote there meanwhile
            os.rmdir(name, dir_fd=root)


# -- files inside the folder ----------------------------------------------------------------------


@contextmanager
def opened(folder: Path) -> Iterator[int]:
    """The cache folder, open, when it carries the marker (else NotACache)."""
    root = os.open(folder, _FOLDER)
    try:
        if not is_marked(root):
            raise NotACache(errno.EPERM, f"{folder} has no {MARKER} file")
        yield root
    finally:
        os.close(root)


@contextmanager
def subfolder(parent: int, name: str, create: bool = False) -> Iterator[int]:
    """A real folder inside `parent` (created if asked), never a link: BadEntry otherwise."""
    if create:
        with suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
    try:
        handle = os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BadEntry(f"{name} is not a folder (a link or a file)") from None
        raise
    try:
        yield handle
    finally:
        os.close(handle)


def read_regular(parent: int, name: str, limit: int) -> bytes:
    """The file `name` in `parent`: a regular file of at most `limit` bytes, checked before reading
    and bounded while reading (it may grow meanwhile). BadEntry for a link, a FIFO, a device or
    one too large; FileNotFoundError when absent."""
    try:
        handle = os.open(name, _READ, dir_fd=parent)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BadEntry(f"{name} is a link") from None
        raise
    with open(handle, "rb") as file:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise BadEntry(f"{name} is not a regular file")
        if info.st_size > limit:
            raise BadEntry(f"{name} is larger than {limit:,} bytes")
        content = file.read(limit + 1)
    if len(content) > limit:
        raise BadEntry(f"{name} is larger than {limit:,} bytes")
    return content


def remove(parent: int, name: str) -> None:
    """Unlink `name` in `parent`: a link is removed itself, never what it points to."""
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)
