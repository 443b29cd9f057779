"""`--resume`: continue a run that was killed or stopped, from its folder.

A run folder holds its fixed job (job.json: the dates as resolved then, the pack and charts, the
settings that shape its files), its merchants (merchants.jsonl, runner.planning) and its journal
(runner.journal). A resumed run takes all three from the folder; only how it runs (concurrency,
executor, timeouts, cache) may be given anew. Charts the journal holds as final (ok or failed;
a cancelled chart is not) are neither retrieved nor rendered again: they are carried over, their
PNG checked and, where their merchant's deck is still to build, their data read back. Anything
that does not check out is done again. A lock on the folder keeps two processes from running it
at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.chart_states import ChartState, TrackedChart
from runner.charts import ChartSpec, load_pack, select_charts
from runner.config import RunnerConfig, is_author, setting
from runner.errors import ChartError, ErrorType, UsageError
from runner.journal import JOURNAL, JournalIndex, JournalReader
from runner.read_back import read_data
from runner.records import ChartJob
from runner.request import JobInputs
from runner.run_folders import is_run_id
from runner.run_report import valid_chart_row
from runner.status import ChartStatus, DeckStatus, RunStatus

JOB_FILE = "job.json"
MAX_JOB_BYTES = 50_000_000  # a rerun's job lists its (merchant, chart) pairs
JOB_VERSION = 1
# The settings that shape a run's files: fixed with its job, refused if given anew on resume.
FIXED_SETTINGS = ("batch_size", "deck", "deck_author", "deck_template", "partial_decks", "pdf_engine",
                  "png_compress_level", "retrieval_mode")
# Fixed settings that came after the job file's first version: a job file without one is resumed with
# its default, which is what shaped that run's files.
SETTINGS_ADDED_LATER = frozenset({"deck_author", "pdf_engine"})
FINISHED = frozenset({RunStatus.OK.value, RunStatus.PARTIAL.value, RunStatus.FAILED.value})


def charts_fingerprint(charts: tuple[ChartSpec, ...]) -> str:
    """Everything about the charts that shapes their files, as one hash: a pack changed since the
    run began would make a resumed run's charts differ from its first part's."""
    return hashlib.sha256(repr(charts).encode()).hexdigest()


def file_fingerprint(path: str | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None


def job_hash(job: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def write_job(run_dir: Path, job: dict[str, Any]) -> str:
    """The run's fixed job, written once; returns its hash, which the journal's first line names."""
    from runner.files import write_atomically

    write_atomically(run_dir / JOB_FILE, (json.dumps(job, indent=1, ensure_ascii=False) + "\n").encode(), sync=True)
    return job_hash(job)


def _read_regular(path: Path, limit: int, what: str) -> bytes:
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"--resume {path.parent}: its {what} cannot be read ({exc.strerror or exc}): "
                         "not a run folder") from None
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise UsageError(f"--resume {path.parent}: its {what} is not a regular file")
        content = file.read(limit + 1)
    if len(content) > limit:
        raise UsageError(f"--resume {path.parent}: its {what} is larger than {limit:,} bytes")
    return content


def _first_line(path: Path) -> bytes:
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(handle, "rb") as file:
        return file.readline(10_000) if stat.S_ISREG(os.fstat(file.fileno()).st_mode) else b""


def read_job(run_dir: Path) -> dict[str, Any]:
    """A run folder's job, checked: a folder that is not a run is a UsageError naming it."""
    if not run_dir.is_dir() or run_dir.is_symlink():
        raise UsageError(f"--resume {run_dir}: not a run folder (no such folder)")
    content = _read_regular(run_dir / JOB_FILE, MAX_JOB_BYTES, JOB_FILE)
    try:
        job = json.loads(content)
    except ValueError:
        raise UsageError(f"--resume {run_dir}: its {JOB_FILE} is not JSON") from None
    keys = {"version": int, "run_id": str, "start_date": str, "end_date": str, "pack": str, "charts": list,
            "charts_sha256": str, "settings": dict}
    if not isinstance(job, dict) or job.get("version") != JOB_VERSION or any(
            not isinstance(job.get(key), kind) for key, kind in keys.items()) or not is_run_id(job["run_id"]):
        raise UsageError(f"--resume {run_dir}: its {JOB_FILE} is not a job the runner wrote")
    header = _first_line(run_dir / JOURNAL)
    try:
        first = json.loads(header)
    except ValueError:
        first = None
    if not isinstance(first, dict) or first.get("journal") != 1 or first.get("run_id") != job["run_id"] \
            or first.get("job") != job_hash(job):
        raise UsageError(f"--resume {run_dir}: its {JOURNAL} does not belong to its {JOB_FILE} (another job's, "
                         "or changed since the run began)")
    return job


def resumable_run(output_dir: str) -> Path | None:
    """`--resume` alone: the newest run folder in the output folder that has not finished; None if
    every run there has."""
    base = Path(output_dir).expanduser()
    try:
        runs = sorted((p for p in base.iterdir() if is_run_id(p.name) and p.is_dir() and not p.is_symlink()
                       and (p / JOB_FILE).is_file()), key=lambda p: p.name, reverse=True)
    except OSError as exc:
        raise UsageError(f"--resume: the output folder {str(base)!r} cannot be read: {exc.strerror or exc}") from None
    for run in runs:
        if journal_end(run) not in FINISHED:
            return run
    return None


def journal_end(run_dir: Path) -> str | None:
    """The status the journal's last `end` line gives, or None: the run never finished."""
    path = run_dir / JOURNAL
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 4096))
            tail = handle.read().splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and set(record) == {"end"}:
            return str(record["end"])
        if isinstance(record, dict) and set(record) & {"chart", "batch", "deck", "resumed"}:
            return None  # outcomes after the last end: a resume that did not finish
    return None


class RunLock:
    """An exclusive lock on a run folder (flock on the folder itself: no file to leave behind), held
    for the whole run by the run and by each resume: a second process resuming the same folder, or
    resuming a run still going, is refused with one line."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd = -1

    def __enter__(self) -> RunLock:
        try:
            self._fd = os.open(self.run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise UsageError(f"cannot lock the run folder {self.run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = -1
            raise UsageError(f"--resume {self.run_dir}: another process is running this run now") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing releases the lock
            self._fd = -1


_OUR_TEMP = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")  # runner.files' temporary names


def remove_torn_writes(run_dir: Path) -> int:
    """The temporary files a killed run left mid-write (runner.files writes beside the target, then
    renames): removed before resuming. Only regular files with the runner's temporary names, in the
    run folder and its merchants' folders, never through a link."""
    removed = 0
    for folder in (run_dir, *(p for p in run_dir.iterdir() if p.is_dir() and not p.is_symlink())):
        for path in folder.iterdir():
            if _OUR_TEMP.fullmatch(path.name) and stat.S_ISREG(path.lstat().st_mode):
                path.unlink()
                removed += 1
    return removed


@dataclass(frozen=True)
class Resumed:
    """A run folder to continue, and its job as read from it."""

    run_dir: Path
    job: dict[str, Any]


@dataclass
class Carried:
    """A resumed run's outcomes from before it began, read from the journal as the plan is walked."""

    index: JournalIndex
    reader: JournalReader

    def chart(self, position: int, job: ChartJob, need_data: bool) -> TrackedChart | None:
        """The chart as final, if the journal says it is and its files check out; None: do it again."""
        row = self.reader.chart(position)
        if not valid_chart_row(row, job) or row["status"] not in (ChartStatus.OK, ChartStatus.FAILED):
            return None
        chart = TrackedChart(job, str(row.get("batch_id") or ""), position=position,
                             error_type=_error_type(row.get("error_type")), error=row.get("error"))
        if row["status"] == ChartStatus.FAILED:
            chart.state = ChartState.FAILED
            return chart
        if not _png_as_recorded(Path(job.output), row.get("bytes")):
            return None
        if need_data:
            try:
                _, chart.data = read_data(Path(job.data_output), job.spec, job.merchant)
            except ChartError:
                return None
        chart.state = ChartState.OK
        return chart

    def decks_settled(self, merchant: int) -> bool:
        rows = self.reader.deck_rows(merchant)
        return isinstance(rows, list) and bool(rows) and all(
            isinstance(row, dict) and row.get("status") in {s.value for s in DeckStatus}
            and row.get("status") != DeckStatus.CANCELLED for row in rows)


def _error_type(value: Any) -> ErrorType | None:
    try:
        return ErrorType(value) if value is not None else None
    except ValueError:
        return ErrorType.INTERNAL


def _png_as_recorded(path: Path, size: Any) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and type(size) is int and info.st_size == size


def resumed_job(run_dir: Path, config: RunnerConfig,
                demo_server_args: tuple[str, ...] = ()) -> tuple[RunnerConfig, JobInputs, Resumed]:
    """The settings and job of a run to resume: the job, and the settings that shape its files,
    from its folder (one given anew that differs is refused); how it runs from `config`."""
    job = read_job(run_dir)
    fixed = job["settings"]
    for name in FIXED_SETTINGS:
        if name not in fixed and name in SETTINGS_ADDED_LATER:
            fixed[name] = setting(name).default  # a run begun before the setting existed was shaped by its default
        if name not in fixed:
            raise UsageError(f"--resume {run_dir}: its {JOB_FILE} does not record {name}")
        if config.source_of(name) != "default" and getattr(config, name) != fixed[name]:
            raise UsageError(f"--resume: {name} was {fixed[name]!r} when run {job['run_id']} began and cannot change "
                             f"(given {getattr(config, name)!r}): a resumed run keeps its job")
    try:
        config = replace(config, output_dir=str(run_dir.parent), **{name: fixed[name] for name in FIXED_SETTINGS})
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--resume {run_dir}: its {JOB_FILE} holds a bad setting: {exc}") from None
    if not is_author(config.deck_author):
        raise UsageError(f"--resume {run_dir}: its {JOB_FILE} holds a bad setting: deck_author={config.deck_author!r}")
    if job.get("deck_template_sha256") != file_fingerprint(config.deck_template):
        raise UsageError(f"--resume: the deck template {config.deck_template} changed since run {job['run_id']} "
                         "began: a resumed run keeps its job")
    pack = load_pack(job["pack"])
    charts = select_charts(pack.charts, ",".join(str(chart) for chart in job["charts"]))
    if charts_fingerprint(charts) != job["charts_sha256"]:
        raise UsageError(f"--resume: the pack {job['pack']} changed since run {job['run_id']} began: a resumed run "
                         "keeps its job")
    only = job.get("only")
    inputs = JobInputs(merchants=(), charts=charts, start_date=job["start_date"], end_date=job["end_date"],
                       write_csv=bool(job.get("csv")), demo_server_args=demo_server_args,
                       dates_given=tuple(dict(job.get("dates_given") or {}).items()), pack=job["pack"],
                       only=None if only is None else tuple((str(m), str(c)) for m, c in only),
                       reruns=job.get("reruns"), figures=pack.figures, merchants_sql=pack.merchants_sql,
                       shard=job.get("shard"))
    return config, inputs, Resumed(run_dir, job)
