"""The user's own files around a run: plant them, hash them, and prove the run changed none.

A trust test lays out a user's project (files, folders, links) next to the output folder and
the cache, runs the CLI, and asserts that no byte outside the folders the runner owns changed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def plant_user_files(root: Path) -> Path:
    """A small project a user might run the runner from: documents, sources, a link."""
    for name, size in (("docs/file0.bin", 300_000), ("docs/file1.bin", 300_000), ("src/file0.bin", 300_000),
                       ("src/file1.bin", 300_000), ("notes.txt", 20), ("userdir/thesis-0.docx", 50_000)):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hashlib.sha256(name.encode()).digest() * (size // 32 + 1))
    (root / "link-to-notes").symlink_to("notes.txt")
    return root


def tree_digest(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Every entry under `root` (links not followed) with a digest of its content or target,
    except those under the folders in `skip` (the output folder, the cache)."""
    skipped = {p.resolve() if not p.is_symlink() else p.absolute() for p in skip}
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).absolute() not in skipped and (here / d).resolve() not in skipped]
        for name in [*dirs, *files]:
            path = here / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                found[rel] = "dir"
    return found


def assert_untouched(before: dict[str, str], after: dict[str, str]) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"files outside the runner's folders changed: {changed[:20]}"
