"""The run folders under the output folder: a new one per run, `latest`, and pruning.

A run is finished once its report.json is on disk (it is written last). Only then does
`latest` point at it, and only finished runs are ever removed by --keep-runs.

--keep-runs counts nights, not folders. A rerun (--rerun-failed) is part of the night of the run
it repairs: its folder holds a RERUN_OF file naming that night's run id, written when the folder
is made, and a rerun of a rerun names the first run. A rerun merged into its run is removed
once merged (runner.merge); one not merged stays with its night, and goes with it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from runner.errors import UsageError

LATEST = "latest"
RERUN_OF = "RERUN_OF"
_RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def new_run_dir(output_dir: str, reruns: str | None = None) -> tuple[str, Path]:
    """A new run folder; `reruns`, the report a rerun repairs, makes it part of that run's night."""
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    base = Path(output_dir).expanduser()
    try:
        base.mkdir(parents=True, exist_ok=True)
        run_dir = base / run_id
        run_dir.mkdir()  # never exist_ok: two runs must never share a folder
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
        night = night_of(Path(reruns).parent) if reruns else None
        if night is not None:
            (run_dir / RERUN_OF).write_text(night + "\n")
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
    """Finished run folders, oldest first."""
    return sorted((p for p in base.iterdir()
                   if is_run_id(p.name) and p.is_dir() and not p.is_symlink() and (p / "report.json").exists()),
                  key=_age)


def _age(run: Path) -> tuple[str, int]:
    """A finished run's place in time: the second its id starts with, then when its report was
    written (runs started within one second have ids that sort by their random part)."""
    try:
        written = (run / "report.json").stat(follow_symlinks=False).st_mtime_ns
    except OSError:
        written = 0
    return run.name.split("-", 1)[0], written


def night_of(run: Path) -> str | None:
    """The run id of the night a run folder belongs to: the run it reruns, else its own (None for
    a folder not named as a run). The RERUN_OF file is read as input: at most a line, never
    through a link, used only when it holds a run id."""
    try:
        handle = os.open(run / RERUN_OF, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        handle = None
    if handle is not None:
        with os.fdopen(handle, "rb") as file:
            named = file.read(64).decode("ascii", "replace").strip() if stat.S_ISREG(os.fstat(file.fileno()).st_mode) \
                else ""
        if is_run_id(named):
            return named
    return run.name if is_run_id(run.name) else None


def prune_runs(base: Path, keep: int, current: Path, *also: Path) -> list[Path]:
    """Remove the finished runs of all but the newest `keep` nights (a night: a run and the reruns
    of it); never the current run, the one `latest` names, nor any run in `also` (those this
    process read or merged into). Returns what was removed."""
    latest = (base / LATEST).resolve() if (base / LATEST).is_symlink() else None
    spared = {current.resolve(), latest, *(run.resolve() for run in also)}
    nights: dict[str, list[Path]] = {}
    first: dict[str, int] = {}  # each night's oldest run, as its place among the finished runs
    for place, run in enumerate(finished_runs(base)):
        night = night_of(run) or run.name
        nights.setdefault(night, []).append(run)
        first.setdefault(night, place)
    # A night's id is its first run's (that run may be gone): its second, then its oldest run's place.
    by_age = sorted(nights, key=lambda night: (night.split("-", 1)[0], first[night]))
    older = by_age[:max(0, len(nights) - keep)]
    removed = []
    for run in (run for night in older for run in nights[night]):
        if run.resolve() in spared:
            continue
        shutil.rmtree(run, ignore_errors=True)
        removed.append(run)
    if removed:
        logger.info("removed {} older run folder(s) beyond --keep-runs {} (nights)", len(removed), keep)
    return removed
