"""The run folders under the output folder: a new one per run, `latest`, and pruning.

A run is finished once its report.json is on disk (it is written last). Only then does
`latest` point at it, and only finished runs are ever removed by --keep-runs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from runner.errors import UsageError

LATEST = "latest"
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def new_run_dir(output_dir: str) -> tuple[str, Path]:
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    base = Path(output_dir).expanduser()
    try:
        base.mkdir(parents=True, exist_ok=True)
        run_dir = base / run_id
        run_dir.mkdir()  # never exist_ok: two runs must never share a folder
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"output directory {str(base)!r} is not writable: {exc.strerror or exc}") from None
    return run_id, run_dir.resolve()


def point_latest(run_dir: Path) -> None:
    """`<output_dir>/latest` -> this run, replaced in one rename: a reader sees the old run or
    the new one, never no link."""
    link = run_dir.parent / LATEST
    temporary = run_dir.parent / f".{LATEST}-{secrets.token_hex(4)}"
    try:
        temporary.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(temporary, link)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        logger.warning("cannot point {} at this run: {}", link, exc.strerror or exc)


def is_run_id(name: str) -> bool:
    return _RUN_ID.fullmatch(name) is not None


def finished_runs(base: Path) -> list[Path]:
    """Finished run folders, oldest first (run ids start with their UTC start time)."""
    return sorted(p for p in base.iterdir()
                  if is_run_id(p.name) and p.is_dir() and not p.is_symlink() and (p / "report.json").exists())


def prune_runs(base: Path, keep: int, current: Path, *also: Path) -> list[Path]:
    """Remove the oldest finished runs beyond `keep`; never the current run, the one `latest`
    names, nor any run in `also` (those this process read or merged into). Returns what was removed."""
    latest = (base / LATEST).resolve() if (base / LATEST).is_symlink() else None
    spared = {current.resolve(), latest, *(run.resolve() for run in also)}
    runs = finished_runs(base)
    removed = []
    for run in runs[:max(0, len(runs) - keep)]:
        if run.resolve() in spared:
            continue
        shutil.rmtree(run, ignore_errors=True)
        removed.append(run)
    if removed:
        logger.info("removed {} older run(s) beyond --keep-runs {}", len(removed), keep)
    return removed
