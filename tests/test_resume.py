"""`--resume` through the CLI with real processes: a run killed (SIGKILL to the coordinator, or to
its whole process group) or stopped (SIGTERM) mid-way, then resumed, ends with the report an
unbroken run of the same job writes, and the resume neither retrieves nor renders again a chart
the journal held as final. The demo server logs each chart tool call (--call-log), so the calls
a resume makes are counted; --no-cache makes every render a real one. Also: a torn journal line,
two resumes at once, and the folders and flags `--resume` refuses."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.charts import BUILTIN_PACK
from runner.demo.cluster import local_dask_cluster
from runner.demo.launch import embedded_server
from runner.journal import JOURNAL, Journal, read_journal
from runner.resume import JOB_FILE, RunLock, job_hash
from runner.run_folders import is_run_id
from tests.helpers import (
    REPO,
    CliRun,
    assert_no_processes_left,
    clean_env,
    cli_command,
    cli_result,
    run_cli,
    validate_report,
)
from tests.processes import still_running

pytestmark = pytest.mark.timeout(300)

TOOL_OF = {spec.id: spec.tool for spec in BUILTIN_PACK}
FINAL = ("ok", "failed")  # a cancelled chart is not final: a resume does it again
MERCHANTS = 3


@dataclass(frozen=True)
class Server:
    """The module's demo server: slow enough to kill a run mid-way, logging each chart tool call."""

    url: str
    calls: Path
    tokens: tuple[str, ...]


def _list_merchants(url: str) -> tuple[str, ...]:
    import asyncio

    from mcp import Client

    async def fetch() -> tuple[str, ...]:
        async with Client(url) as client:
            result = await client.call_tool("list_merchants", {})
            return tuple(m["token"] for m in result.structured_content["merchants"])

    return asyncio.run(fetch())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("resume-server")
    calls = folder / "calls.log"
    with embedded_server(folder / "server.log", ["--latency-ms", "200", "--call-log", str(calls)]) as (url, _pid):
        yield Server(url, calls, _list_merchants(url))


def job(server: Server, merchants: int = MERCHANTS) -> list[str]:
    return ["--server-url", server.url, "--no-cache", *(f"--merchant={token}" for token in server.tokens[:merchants])]


def resume_args(server: Server, run_dir: Path | None) -> list[str]:
    """How a resume runs is given anew: the server and the cache (off, so every render is counted)."""
    return ["--resume", *([str(run_dir)] if run_dir else []), "--server-url", server.url, "--no-cache"]


@dataclass(frozen=True)
class Outcome:
    """What an unbroken run and a resumed one must agree on."""

    charts: dict[tuple[str, str], tuple[str, str | None]]  # (merchant, chart) -> (status, sha256 of the PNG on disk)
    decks: dict[tuple[str, str], str]  # (merchant, format) -> status

    @classmethod
    def of(cls, report: dict[str, Any], merchants: tuple[str, ...]) -> Outcome:
        charts = {(c["merchant"], c["chart_id"]): (c["status"], _sha256(Path(c["output"])) if c["output"] else None)
                  for c in report["charts"] if c["merchant"] in merchants}
        return cls(charts, {(d["merchant"], d["format"]): d["status"] for d in report["decks"]
                            if d["merchant"] in merchants})


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def unbroken(server: Server, tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    """The job run once from start to end: what every resumed run must end equal to."""
    result = run_cli(job(server), tmp_path_factory.mktemp("unbroken"), in_process=True)
    assert result.returncode == 0 and result.report is not None, result.stderr[-3000:]
    assert {c["status"] for c in result.report["charts"]} == {"ok"}
    return result


# -- a run in its own process, and the journal it leaves ---------------------------------------------


def start_run(args: list[str], tmp_path: Path) -> subprocess.Popen[bytes]:
    """The CLI in a session of its own (its group can be killed whole), its output in files."""
    command = [*cli_command(args), "--output-dir", str(tmp_path / "out")]
    with open(tmp_path / "stdout.log", "wb") as stdout, open(tmp_path / "stderr.log", "wb") as stderr:
        return subprocess.Popen(command, stdout=stdout, stderr=stderr, env=clean_env({"PYTHONPATH": str(REPO)}),
                                cwd=tmp_path, stdin=subprocess.DEVNULL, start_new_session=True)


def journal_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The journal's whole lines that parse (a line being written has no newline yet)."""
    lines = []
    for line in (run_dir / JOURNAL).read_bytes().splitlines(keepends=True):
        try:
            lines.append(json.loads(line)) if line.endswith(b"\n") else None
        except ValueError:
            pass
    return lines


def final_charts(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Position -> row of each chart the journal holds as final (the latest line of a position wins)."""
    latest = {record["chart"][0]: record["chart"][1] for record in journal_lines(run_dir) if "chart" in record}
    return {position: row for position, row in latest.items() if row["status"] in FINAL}


def wait_for_final_charts(proc: subprocess.Popen[bytes], tmp_path: Path, count: int,
                          timeout: float = 120) -> tuple[Path, set[int]]:
    """Wait until the run's journal holds `count` final charts; returns its folder and every
    process it had started meanwhile."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before {count} charts were final:\n{_stderr(tmp_path)}"
        try:
            seen.update(child.pid for child in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        runs = [p for p in (tmp_path / "out").glob("*") if is_run_id(p.name) and (p / JOURNAL).exists()]
        if runs and len(final_charts(runs[0])) >= count:
            return runs[0], seen
        time.sleep(0.02)
    raise AssertionError(f"{count} charts were never final:\n{_stderr(tmp_path)}")


def _stderr(tmp_path: Path) -> str:
    return (tmp_path / "stderr.log").read_text(errors="replace")[-3000:]


def kill_coordinator(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)


def killed_mid_way(args: list[str], tmp_path: Path, charts: int,
                   kill: Callable[[subprocess.Popen[bytes]], None]) -> tuple[Path, set[int]]:
    """The run killed once a third of its charts are final, and not all; its folder and processes."""
    proc = start_run(args, tmp_path)
    try:
        run_dir, seen = wait_for_final_charts(proc, tmp_path, -(-charts // 3))
        kill(proc)
        proc.wait(timeout=30)
    except BaseException:
        _end_group(proc)
        raise
    assert proc.returncode == -signal.SIGKILL
    assert len(final_charts(run_dir)) < charts, "the kill came after the last chart: nothing left to resume"
    return run_dir, seen


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """A failed test leaves nothing of its run behind (the group outlives its leader)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@dataclass(frozen=True)
class Before:
    """A run folder as a resume finds it."""

    final: frozenset[tuple[str, str]]  # (merchant, chart) the journal holds as final
    mtimes: dict[str, int]  # the PNG of each chart final ok -> its st_mtime_ns
    decks_settled: frozenset[str]  # merchants whose decks the journal holds
    calls: int  # chart tool calls the server had logged
    temporary: frozenset[Path]  # files a kill left half-written (never renamed into place)


def before_resume(run_dir: Path, server: Server) -> Before:
    # A call of the killed run may still be on its way into the server: one more request, on a new
    # session, reaches the server after it, so the count below holds every call of the killed run.
    _list_merchants(server.url)
    rows = final_charts(run_dir).values()
    decks = {record["deck"][1][0]["merchant"] for record in journal_lines(run_dir) if "deck" in record}
    return Before(frozenset((row["merchant"], row["chart_id"]) for row in rows),
                  {row["output"]: Path(row["output"]).stat().st_mtime_ns for row in rows if row["status"] == "ok"},
                  frozenset(decks), len(server.calls.read_text().splitlines()), temporary_files(run_dir))


def temporary_files(run_dir: Path) -> frozenset[Path]:
    """Dot files: what runner.files writes before renaming it into place."""
    return frozenset(run_dir.rglob(".*"))


def assert_resumed_as_unbroken(result: CliRun, before: Before, unbroken: CliRun, server: Server,
                               merchants: tuple[str, ...]) -> dict[str, Any]:
    """The resumed run's report is the unbroken run's (charts, statuses, PNG bytes, decks); the
    resume made a tool call and a render for each chart not final before it, and no other."""
    assert result.returncode == 0 and result.report is not None, result.stderr[-3000:]
    report = result.report
    validate_report(report)
    assert report["run"]["status"] == "ok"
    assert Outcome.of(report, merchants) == Outcome.of(unbroken.report, merchants)
    assert len(report["charts"]) == 7 * len(merchants)
    redo = {(m, c) for m in merchants for c in TOOL_OF} - before.final
    calls = Counter(tuple(line.split()) for line in server.calls.read_text().splitlines()[before.calls:])
    assert calls == Counter((TOOL_OF[c], m) for m, c in redo), "a resume retrieves exactly the charts not final"
    assert report["metrics"]["retrieval"]["tool_calls"] == len(redo)
    assert report["metrics"]["render"]["charts_rendered"] == len(redo)
    assert {path: Path(path).stat().st_mtime_ns for path in before.mtimes} == before.mtimes, "a final PNG rewritten"
    carried_decks = {m for m in before.decks_settled if all((m, c) in before.final for c in TOOL_OF)}
    assert report["run"]["resumed"] == {"times": 1, "at": [report["run"]["resumed"]["at"][0]],
                                        "charts_carried_over": len(before.final),
                                        "decks_carried_over": len(carried_decks)}
    # The resume leaves no file half-written; one the kill left is not swept (reported to the lead).
    assert temporary_files(result.report_path.parent) <= before.temporary
    assert_no_processes_left(report)
    return report


# -- killed, stopped, torn ---------------------------------------------------------------------------


@pytest.mark.parametrize("kill", [kill_coordinator, kill_group], ids=["coordinator", "process-group"])
def test_a_run_killed_mid_way_resumes_to_the_unbroken_runs_report(tmp_path, server, unbroken, kill):
    merchants = server.tokens[:MERCHANTS]
    run_dir, seen = killed_mid_way(job(server), tmp_path, 7 * MERCHANTS, kill)
    before = before_resume(run_dir, server)
    result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
    assert result.report_path is not None and result.report_path.parent == run_dir, result.stderr[-3000:]
    assert_resumed_as_unbroken(result, before, unbroken, server, merchants)
    # The killed coordinator's forkserver, workers and resource tracker end with it.
    assert seen, "the run had started no process before the kill"
    assert not still_running(seen, grace=10), f"the killed run's processes are left: {still_running(seen, 0)}"


def test_a_run_stopped_by_sigterm_resumes_with_resume_alone(tmp_path, server, unbroken):
    merchants = server.tokens[:MERCHANTS]
    proc = start_run(job(server), tmp_path)
    try:
        run_dir, seen = wait_for_final_charts(proc, tmp_path, -(-7 * MERCHANTS // 3))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    except BaseException:
        _end_group(proc)
        raise
    stopped = cli_result(proc.returncode, (tmp_path / "stdout.log").read_text(), _stderr(tmp_path))
    assert stopped.returncode == 130 and stopped.report is not None, stopped.stderr
    assert stopped.report["run"]["status"] == "interrupted" and stopped.report_path.parent == run_dir
    assert stopped.report["run"]["charts_cancelled"] > 0, "the stop came after the last chart: nothing to resume"
    before = before_resume(run_dir, server)
    result = run_cli(resume_args(server, None), tmp_path, in_process=True)  # the newest unfinished run in --output-dir
    assert result.report_path is not None and result.report_path.parent == run_dir, result.stderr[-3000:]
    assert_resumed_as_unbroken(result, before, unbroken, server, merchants)
    assert not still_running(seen, grace=10)


def test_a_journal_line_torn_by_the_kill_is_cut_and_a_garbled_one_redone(tmp_path, server, unbroken):
    merchants = server.tokens[:MERCHANTS]
    run_dir, _ = killed_mid_way(job(server), tmp_path, 7 * MERCHANTS, kill_group)
    journal = run_dir / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    # One final chart's line garbled in the middle of the journal: that chart is done again.
    garbled = next(i for i, line in enumerate(lines) if b'"status": "ok"' in line and line.startswith(b'{"chart"'))
    lines[garbled] = b'{"chart": [0, {"merchant": \x00\xff garbage\n'
    torn = b'{"chart": [3, {"run_id": "' + run_dir.name.encode() + b'", "merchant": "'  # a write cut short
    journal.write_bytes(b"".join(lines) + torn)
    # A PNG's write cut short by the kill: runner.files' temporary file, which the resume removes.
    half_written = next(run_dir.glob("*/")) / ".monthly_sales_yoy.png.0123456789abcdef.tmp"
    half_written.write_bytes(b"\x89PNG half")
    before = before_resume(run_dir, server)
    assert len(before.final) == len(final_charts(run_dir))
    result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
    assert_resumed_as_unbroken(result, before, unbroken, server, merchants)
    # The torn part was cut off: the resume's lines start where the last whole line ended, and
    # each is whole; the garbled line stays where it was, skipped.
    kept = b"".join(lines)
    after = journal.read_bytes()
    assert after.startswith(kept) and after.endswith(b"\n")
    added = after[len(kept):].splitlines()
    assert added and all(isinstance(json.loads(line), dict) for line in added)
    assert not half_written.exists() and not temporary_files(run_dir)


def test_a_torn_last_line_is_skipped_and_cut_and_a_garbage_line_skipped(tmp_path):
    row = {"status": "ok"}
    writer = Journal(tmp_path, "run", "job-hash")
    writer.chart(0, row)
    writer.close()
    with open(tmp_path / JOURNAL, "ab") as journal:
        journal.write(b"not json at all\n")  # a line in the middle that is not the runner's
    writer = Journal(tmp_path, "run", "job-hash")
    writer.chart(2, row)
    writer.close()
    with open(tmp_path / JOURNAL, "ab") as journal:
        journal.write(b'{"chart": [1, {"stat')  # a kill in the middle of a write
    index = read_journal(tmp_path, charts=3, batches=0, merchants=0)
    assert index.header == {"journal": 1, "run_id": "run", "job": "job-hash"}
    with index.reader() as reader:
        assert [reader.chart(p) for p in range(3)] == [row, None, row] and index.skipped == 1
    writer = Journal(tmp_path, "run", "job-hash")  # opened again: the torn tail is cut first
    writer.chart(1, row)
    writer.close()
    lines = (tmp_path / JOURNAL).read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines) and len(lines) == 5
    assert json.loads(lines[-1]) == {"chart": [1, row]}
    index = read_journal(tmp_path, charts=3, batches=0, merchants=0)
    with index.reader() as reader:
        assert [reader.chart(p) for p in range(3)] == [row, row, row] and index.skipped == 1


# -- what --resume refuses, and what it leaves alone ---------------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-merchant run its deadline stopped early (interrupted: resumable); tests resume copies."""
    tmp = tmp_path_factory.mktemp("stopped")
    result = run_cli([*job(server, 1), "--max-run-seconds", "0.5"], tmp, in_process=True)
    assert result.returncode == 130 and result.report is not None, result.stderr[-3000:]
    return result.report_path.parent


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "out" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(result: CliRun, code: int) -> str:
    assert result.returncode == code, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return line


def test_a_second_process_resuming_a_run_is_refused_and_changes_nothing(tmp_path, server, stopped_run):
    run_dir = copy_of(stopped_run, tmp_path)
    with RunLock(run_dir):  # as a first resume holds it for its whole run
        files = files_of(run_dir)
        result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
        assert one_line(result, 2) == f"error: --resume {run_dir}: another process is running this run now"
        assert files_of(run_dir) == files


def test_a_finished_run_is_not_resumed(tmp_path, server, unbroken):
    run_dir = copy_of(unbroken.report_path.parent, tmp_path)
    files = files_of(run_dir)
    result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
    assert one_line(result, 0) == f"run {run_dir.name} already finished (ok): nothing to resume"
    assert files_of(run_dir) == files
    alone = run_cli(resume_args(server, None), tmp_path, in_process=True)  # every run in --output-dir finished
    assert one_line(alone, 0) == f"nothing to resume: every run in {tmp_path / 'out'} has finished"
    assert files_of(run_dir) == files


@pytest.mark.parametrize("kind", ["empty folder", "file", "missing"])
def test_a_folder_that_is_not_a_run_is_refused(tmp_path, server, kind):
    target = tmp_path / "not-a-run"
    if kind == "empty folder":
        target.mkdir()
    elif kind == "file":
        target.write_text("{}\n")
    result = run_cli(resume_args(server, target), tmp_path, in_process=True)
    assert one_line(result, 2).startswith(f"error: --resume {target}")


def test_a_run_whose_job_changed_is_refused(tmp_path, server, unbroken):
    run_dir = copy_of(unbroken.report_path.parent, tmp_path)
    job_file = run_dir / JOB_FILE
    job_file.write_text(job_file.read_text().replace('"end_date": "2025-12-31"', '"end_date": "2025-06-30"'))
    assert "2025-06-30" in job_file.read_text()
    result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
    assert "does not belong to its job.json" in one_line(result, 2)


def test_a_resume_keeps_its_job_and_takes_how_it_runs_anew(tmp_path, server, stopped_run):
    run_dir = copy_of(stopped_run, tmp_path)
    files = files_of(run_dir)
    merchant = run_cli([*resume_args(server, run_dir), "--merchant", server.tokens[5]], tmp_path, in_process=True)
    assert "drop --merchant" in one_line(merchant, 2)
    decks = run_cli([*resume_args(server, run_dir), "--deck", "none"], tmp_path, in_process=True)
    assert one_line(decks, 2).startswith("error: --resume: deck was 'pdf,pptx' when run")
    assert files_of(run_dir) == files
    result = run_cli([*resume_args(server, run_dir), "--max-concurrent-batches", "4"], tmp_path, in_process=True)
    assert result.returncode == 0 and result.report is not None, result.stderr[-3000:]
    assert result.report["run"]["status"] == "ok" and result.report["run"]["resumed"]["times"] == 1
    assert result.report["config"]["max_concurrent_batches"]["value"] == 4


def test_a_run_begun_before_a_fixed_setting_existed_resumes_with_its_default(tmp_path, server, stopped_run):
    # A job file written before deck_author and pdf_engine were settings: the run's files were
    # shaped by what is now their default, so it resumes with that, and a header that matches.
    run_dir = copy_of(stopped_run, tmp_path)
    job_file = run_dir / JOB_FILE
    old = json.loads(job_file.read_text())
    for name in ("deck_author", "pdf_engine"):
        del old["settings"][name]
    job_file.write_text(json.dumps(old, indent=1, ensure_ascii=False) + "\n")
    journal = run_dir / JOURNAL
    header, rest = journal.read_text().split("\n", 1)
    journal.write_text(json.dumps({**json.loads(header), "job": job_hash(old)}) + "\n" + rest)
    changed = run_cli([*resume_args(server, run_dir), "--deck-author", "Ana"], tmp_path, in_process=True)
    assert one_line(changed, 2).startswith("error: --resume: deck_author was 'runner' when run")
    result = run_cli(resume_args(server, run_dir), tmp_path, in_process=True)
    assert result.returncode == 0 and result.report is not None, result.stderr[-3000:]
    assert result.report["run"]["status"] == "ok" and result.report["run"]["resumed"]["times"] == 1
    assert result.report["config"]["deck_author"]["value"] == "runner"
    assert result.report["config"]["pdf_engine"]["value"] == "builtin"


# -- on a Dask cluster -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A scheduler and two workers, as in tests/test_dask.py."""
    with local_dask_cluster(tmp_path_factory.mktemp("dask"), 2, {"PYTHONPATH": str(REPO)}) as cluster:
        yield cluster.address


@pytest.mark.xdist_group("dask")  # one cluster at a time on this machine, beside tests/test_dask.py's
def test_a_run_on_dask_killed_mid_way_resumes_to_the_unbroken_runs_report(tmp_path, server, unbroken, dask_cluster):
    merchants = server.tokens[:2]
    on_dask = ["--executor", "dask", "--dask-scheduler", dask_cluster]
    run_dir, seen = killed_mid_way([*job(server, 2), *on_dask], tmp_path, 14, kill_coordinator)
    before = before_resume(run_dir, server)
    proc = subprocess.run(cli_command([*resume_args(server, run_dir), *on_dask]), capture_output=True, text=True,
                          env=clean_env(), cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=240)
    result = cli_result(proc.returncode, proc.stdout, proc.stderr)
    report = assert_resumed_as_unbroken(result, before, unbroken, server, merchants)
    assert report["metrics"]["render"]["executor"] == "dask"
    assert not still_running(seen, grace=10)
