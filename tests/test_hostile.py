"""Hostile servers, hostile inputs, hard kills and a full disk, through the real CLI: whatever
happens, the run ends in bounded time and memory, accounts for every chart, and leaves
nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import CliRun, check_report, clean_env, cli_command, cli_result, run_cli, server_args
from tests.processes import closed_port, finish, start_cli, still_running, wait_for, wait_until_it_handles

pytestmark = pytest.mark.timeout(120)


def _run_with_file_size_limit(args: list[str], tmp_path: Path, limit: int) -> CliRun:
    """The CLI where no file may grow past `limit` bytes: each write past it fails as on a full
    disk (EFBIG rather than ENOSPC, the same OSError path), with no mount needed."""
    import resource

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([*cli_command(args), "--output-dir", str(tmp_path / "out")], capture_output=True,
                          text=True, env=clean_env(), cwd=tmp_path, stdin=subprocess.DEVNULL, timeout=180,
                          preexec_fn=limited)
    return cli_result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(("limit", "report_fits"), [(40_000, True), (3_000, False)],
                         ids=["charts-do-not-fit", "report-does-not-fit"])
def test_a_full_disk_is_a_failure_not_a_crash(tmp_path, demo_url, demo_tokens, limit, report_fits):
    result = _run_with_file_size_limit(["--server-url", demo_url, "--merchant", demo_tokens[0]], tmp_path, limit)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if not report_fits:  # one line naming the folder and the reason, exit 3
        assert result.returncode == 3 and result.report is None, result.stderr[-3000:]
        assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write the report in ")
        return
    assert result.report is not None, result.stderr[-3000:]
    assert result.returncode == result.report["run"]["exit_code"] in (1, 4)
    failed = [c for c in result.report["charts"] if c["status"] == "failed"]
    assert failed and {c["error_type"] for c in failed} == {"write_error"}
    assert not [p for p in result.report_path.parent.rglob("*") if p.name.startswith(".")]  # no partial file


def test_a_run_past_its_deadline_stops_as_on_sigterm_and_says_why(tmp_path, demo_tokens):
    result = run_cli(["--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--max-run-seconds", "3",
                      *server_args("--latency-ms=60000")], tmp_path, in_process=True)  # no call answers in time
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:2])
    assert report["run"]["status"] == "interrupted"
    assert report["run"]["error"] == "stopped by its deadline (--max-run-seconds 3)"
    assert {c["status"] for c in report["charts"]} == {"cancelled"}
    assert "Traceback" not in result.stderr


def test_a_stop_before_the_merchant_list_arrives_says_so(tmp_path):
    result = run_cli(["--max-run-seconds", "2", *server_args("--latency-ms=60000")], tmp_path, in_process=True)
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.report["charts"] == [] and result.report["run"]["status"] == "interrupted"
    assert result.report["run"]["error"] == \
        "stopped by its deadline (--max-run-seconds 2) before the server's merchant list arrived: no chart was planned"


def test_every_chart_is_listed_when_the_server_fails_before_planning(tmp_path, demo_tokens):
    # The SQL pack asks the server for its tools before it plans any chart: here nobody answers.
    url = f"http://127.0.0.1:{closed_port()}/mcp"
    result = run_cli(["--pack", "business-review-sql", "--server-url", url, "--merchant", demo_tokens[0],
                      "--retry-attempts", "0"], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    report = check_report(result, [demo_tokens[0]])
    assert {(c["status"], c["error_type"]) for c in report["charts"]} == {("failed", "server_unavailable")}
    assert all("cannot connect" in c["error"] for c in report["charts"])


def test_nothing_outlives_a_coordinator_killed_with_sigkill(tmp_path, demo_tokens):
    """The OOM killer or a CI time box: no handler runs, yet the forkserver, the resource tracker,
    the render workers and the embedded server must all go, and `python -m runner | cat` must end."""
    proc, stderr_path = start_cli(["--merchant", demo_tokens[0]], tmp_path, render_faults="hang:user_demographics")
    seen = wait_for(proc, stderr_path, "rendered in")
    time.sleep(0.5)
    seen |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    names = " ".join(" ".join(psutil.Process(pid).cmdline()) for pid in seen if psutil.pid_exists(pid))
    assert "forkserver" in names and "demo-server" in names, names  # the helpers were there to kill
    proc.kill()
    proc.wait(timeout=30)
    assert not still_running(seen, grace=20), still_running(seen, grace=0)
    stdout = proc.stdout.read() if proc.stdout else ""  # EOF: nobody holds the runner's stdout any more
    assert "report.json" not in stdout




# -- an answer too large to read ------------------------------------------------------------------


def _demo_server_command(*args: str) -> str:
    return " ".join([sys.executable, "-m", "runner", "demo-server", *args])


@pytest.mark.parametrize(("kind", "transport"), [("huge", "stdio"), ("huge_structured", "stdio"),
                                                 ("huge_plain", "stdio"), ("huge_structured", "http")])
def test_a_60_mb_answer_fails_its_chart_alone_unread(kind, transport, tmp_path, demo_tokens):
    faults = [f"--malformed={kind}", "--fault-tool=get_aov_by_month"]
    server = (["--server-command", _demo_server_command(*faults)] if transport == "stdio" else server_args(*faults))
    result = run_cli([*server, "--merchant", demo_tokens[0]], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1])
    (refused,) = [c for c in report["charts"] if c["status"] != "ok"]
    assert (refused["chart_id"], refused["error_type"]) == ("aov_by_month", "bad_data")
    assert "over the 10,000,000-byte limit; refused unread" in refused["error"]
    # Read whole and parsed, 60 MB took the coordinator to 440-720 MB.
    assert report["metrics"]["process"]["coordinator_peak_rss_mb"] < 300
    assert "Traceback" not in result.stderr


# -- a server that does not speak MCP -------------------------------------------------------------


def _processes_running(*cmdline: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == list(cmdline)]


def test_a_server_that_writes_only_junk_is_given_up_after_a_grace(tmp_path, demo_tokens):
    server = "sh -c 'echo Serving on stdio; echo \"{not json\"; exec sleep 987.25'"
    result = run_cli(["--server-command", server, "--merchant", demo_tokens[0]], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1])
    errors = {(c["error_type"], c["error"]) for c in report["charts"]}
    (error_type, error), = errors
    assert error_type == "server_unavailable"
    assert "2 line(s) on stdout that are not MCP, and no MCP message within 10s; the first: 'Serving on stdio'" \
        in error
    assert report["metrics"]["retrieval"]["mcp_sessions_opened"] == 0
    assert "Traceback" not in result.stderr and "Failed to parse" not in result.stderr
    assert not _processes_running("sleep", "987.25")


# -- a stop at any moment -------------------------------------------------------------------------


@pytest.mark.parametrize(("delay", "signum"), [(0.0, signal.SIGINT), (0.0, signal.SIGTERM),
                                               (0.5, signal.SIGTERM), (1.5, signal.SIGINT)])
def test_a_stop_at_any_moment_gives_a_report_of_every_chart(delay, signum, tmp_path, demo_tokens):
    """From the runner's first line on (before it, Python itself is starting): during imports,
    while the forkserver and the embedded server start, or mid-run. Ctrl-C reaches the whole
    process group."""
    proc, stderr_path = start_cli(["--merchant", demo_tokens[0], "--merchant", demo_tokens[1]], tmp_path)
    wait_until_it_handles(proc, signal.SIGTERM)  # Python catches SIGINT from its start, SIGTERM only ours
    if delay == 0:  # the runner holds signals from its first line, long before the run itself starts
        assert not re.search(r"INFO\s+run ", stderr_path.read_text())
    time.sleep(delay)  # the moment of the stop, not a wait for anything
    os.killpg(proc.pid, signum)
    result = finish(proc, stderr_path, set())
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:2])
    assert report["run"]["status"] == "interrupted" and report["run"]["exit_code"] == 130
    assert report["run"]["error"] == f"stopped by {signal.Signals(signum).name}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_a_signal_after_the_report_does_not_change_the_exit_code(tmp_path, demo_url, demo_tokens):
    """Python restores the default handlers while it finalizes: a SIGTERM then would end the
    process with -15 under a report that says 0."""
    proc, stderr_path = start_cli(["--server-url", demo_url, "--merchant", demo_tokens[0]], tmp_path)
    assert proc.stdout is not None
    report_line = proc.stdout.readline()
    while proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.01)
    report = json.loads(Path(report_line.strip()).read_text())
    assert proc.returncode == report["run"]["exit_code"] == 0, stderr_path.read_text()[-3000:]
