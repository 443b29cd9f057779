"""Files that readers never see half-written: write beside the target, then rename."""

from __future__ import annotations

import os
from pathlib import Path


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
