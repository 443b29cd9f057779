"""A stop at any moment names every chart it can; bad input and errors that end a run are one
line, the right exit code and no traceback (issue 20). Through the real CLI."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from datetime import date
from pathlib import Path

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pptx import Presentation

from runner.errors import UsageError
from runner.request import resolve_date
from tests.helpers import CHART_IDS, check_report, run_cli, server_args
from tests.processes import finish, start_cli, wait_for
from tests.test_hostile import _run_with_file_size_limit
from tests.userfiles import assert_untouched, plant_user_files, tree_digest

pytestmark = pytest.mark.timeout(120)

GATED_TOKENS = ("GATED0000001", "GATED0000002", "GATED0000003")

# An MCP server (stdio) whose list_merchants answers only once the test allows it: the call is
# known to be under way (ASKED exists) when the stop is sent, and answers when ANSWER appears.
GATED_SERVER = f"""
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

asked, answer = Path(sys.argv[1]), Path(sys.argv[2])
app = MCPServer("gated")


@app.tool(description="List the merchants.")
async def list_merchants() -> dict:
    asked.touch()
    while not answer.exists():
        await anyio.sleep(0.02)
    return {{"merchants": [{{"token": token, "name": token}} for token in {GATED_TOKENS!r}]}}


app.run("stdio")
"""


def _gated_server(tmp_path: Path) -> tuple[str, Path, Path]:
    script = tmp_path / "gated_server.py"
    script.write_text(GATED_SERVER)
    asked, answer = tmp_path / "asked", tmp_path / "answer"
    return f"{sys.executable} {script} {asked} {answer}", asked, answer


def _wait_for_file(path: Path, proc, stderr_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared:\n{stderr_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


# -- a stop while the merchants are asked for ------------------------------------------------------

GRACE_LINE = "stop requested while the server's merchants are asked for"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_while_the_merchants_are_asked_for_lists_every_chart_as_cancelled(signum, tmp_path):
    """The deadline stops a run the same way (tests/test_hostile.py has it with a list that never comes)."""
    command, asked, answer = _gated_server(tmp_path)
    proc, stderr_path = start_cli(["--server-command", command], tmp_path)
    try:
        _wait_for_file(asked, proc, stderr_path)  # list_merchants is under way, and will not answer until told
        seen = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
        os.kill(proc.pid, signum)
        seen |= wait_for(proc, stderr_path, GRACE_LINE)  # the runner has seen the stop
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)  # a failed wait leaves no run behind
        raise
    finally:
        answer.touch()
    result = finish(proc, stderr_path, seen)  # the server is gone too
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result, list(GATED_TOKENS))
    assert {(c["status"], c["error_type"]) for c in report["charts"]} == {("cancelled", "cancelled")}
    assert len(report["charts"]) == len(GATED_TOKENS) * len(CHART_IDS)
    assert report["batches"] == []  # stopped before planning: no chart tool was called
    assert report["run"]["error"] == f"stopped by {signal.Signals(signum).name}"
    assert "Traceback" not in result.stderr


def test_a_merchant_list_that_never_comes_is_given_up_after_the_grace(tmp_path):
    command, asked, answer = _gated_server(tmp_path)
    proc, stderr_path = start_cli(["--server-command", command], tmp_path)
    _wait_for_file(asked, proc, stderr_path)
    seen = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
    os.kill(proc.pid, signal.SIGTERM)
    result = finish(proc, stderr_path, seen)
    assert not answer.exists()
    assert result.returncode == 130, result.stderr[-3000:]
    assert result.report["charts"] == [] and result.report["run"]["status"] == "interrupted"
    assert result.report["run"]["error"] == \
        "stopped by SIGTERM before the server's merchant list arrived: no chart was planned"
    assert GRACE_LINE in result.stderr and "Traceback" not in result.stderr


# -- bad input: one line, exit 2, no run folder -------------------------------------------------------


def _one_usage_line(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(f in line for f in fragments), line


@pytest.mark.parametrize("flag", ["--start-date=-9999 years", "--end-date=+9999 years", "--start-date=-2030 years"])
def test_a_date_out_of_the_calendar_is_a_usage_error(flag, tmp_path):
    result = run_cli(["--merchant", "LIICIEWKV6BK", flag], tmp_path, in_process=True)
    _one_usage_line(result, "is out of range", flag.split("=", 1)[1])
    assert not (tmp_path / "out").exists()


@given(st.from_regex(r"[+-]\d{1,4} ?(day|week|month|year)s?", fullmatch=True) | st.text(max_size=30),
       st.dates())
def test_any_relative_date_resolves_or_is_refused_in_one_line(text, today):
    """The property: a date, or a UsageError; never any other exception."""
    try:
        resolved = resolve_date(text, today, "start_date")
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    date.fromisoformat(resolved)


@pytest.mark.parametrize("how", ["flag", "config file"])
def test_an_empty_output_dir_is_refused_and_the_working_folder_untouched(how, tmp_path):
    project = plant_user_files(tmp_path / "project")
    args = ["--merchant", "LIICIEWKV6BK", "--charts", "aov_by_month"]
    if how == "flag":
        args += ["--output-dir", ""]
    else:
        (tmp_path / "job.toml").write_text('output_dir = ""\n')
        args += ["--config", str(tmp_path / "job.toml")]
    before = tree_digest(project)
    result = run_cli(args, project, output_dir=False, in_process=True)
    _one_usage_line(result, "output_dir '' is empty")
    assert_untouched(before, tree_digest(project))


def _pptx_template(path: Path) -> Path:
    deck = Presentation()
    for _ in CHART_IDS:
        slide = deck.slides.add_slide(deck.slide_layouts[6])
        for role in ("title", "chart", "paragraph"):
            slide.shapes.add_textbox(0, 0, 100, 100).text_frame.text = "{{" + role + "}}"
    deck.save(str(path))
    return path


def _bomb(path: Path) -> Path:
    """A template of under 10 MB whose picture expands to 1 GiB: read, it took the run to 2.1 GB."""
    template = _pptx_template(path)
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(template, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("ppt/media/image99.png", "w", force_zip64=True) as member:
        for _ in range(1024):
            member.write(zeros)
    assert template.stat().st_size < 10_000_000
    return template


@pytest.mark.parametrize(("make", "says"), [
    (_bomb, "would expand to 1,07"),
    (lambda path: Path("/etc/passwd"), "is not a PowerPoint file: not a sound zip archive"),
], ids=["expands-to-1-GiB", "not-a-zip"])
def test_a_template_that_is_not_a_pptx_or_would_expand_past_the_bound_is_refused_unread(make, says, tmp_path):
    template = make(tmp_path / "template.pptx")
    result = run_cli(["--merchant", "LIICIEWKV6BK", "--deck-template", str(template)], tmp_path, in_process=True)
    _one_usage_line(result, f"deck template {template} ", says)
    assert not (tmp_path / "out").exists()


def _lying_bomb(path: Path) -> Path:
    """A 1 GiB member whose directory says it holds 1,000 bytes (local and central headers)."""
    template = _pptx_template(path)
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(template, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("ppt/media/image99.png", "w") as member:
        for _ in range(1024):
            member.write(zeros)
    content = bytearray(template.read_bytes())
    with zipfile.ZipFile(template) as archive:
        local = archive.getinfo("ppt/media/image99.png").header_offset
    central = content.rindex(b"ppt/media/image99.png") - 46  # the last entry of the central directory
    assert content[local:local + 4] == b"PK\x03\x04" and content[central:central + 4] == b"PK\x01\x02"
    for size_field in (local + 22, central + 24):
        content[size_field:size_field + 4] = (1000).to_bytes(4, "little")
    template.write_bytes(bytes(content))
    with zipfile.ZipFile(template) as archive:
        assert archive.getinfo("ppt/media/image99.png").file_size == 1000  # the lie is what the directory says
    return template


def test_a_template_member_that_lies_about_its_size_is_refused_within_bounded_memory(tmp_path):
    """Reading stops at the declared size, but a whole-member read inflates everything first: 2.2 GB."""
    template = _lying_bomb(tmp_path / "template.pptx")
    command = [sys.executable, "-m", "runner", "--merchant", "LIICIEWKV6BK", "--deck-template", str(template),
               "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 2 and "not a sound zip archive" in stderr and "Traceback" not in stderr, stderr
    assert usage.ru_maxrss < 600_000, f"peak {usage.ru_maxrss / 1000:.0f} MB"  # KB: the run's own peak
    assert not (tmp_path / "out").exists()


# -- errors that end a run -----------------------------------------------------------------------------


def test_an_embedded_server_that_does_not_start_is_one_line_and_exit_4(tmp_path):
    result = run_cli(["--merchant", "LIICIEWKV6BK", *server_args("--no-such-flag")], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the embedded demo server did not start (see ") and last.endswith("demo-server.log)")
    log = Path(last.removeprefix("error: the embedded demo server did not start (see ").removesuffix(")"))
    assert "--no-such-flag" in log.read_text()  # the server's own words, where the line points


def test_an_unwritable_junit_file_still_gives_the_report_and_exit_3(tmp_path, demo_url, demo_tokens):
    (tmp_path / "notes.txt").write_text("a file, so no folder can be made under it")
    junit = tmp_path / "notes.txt" / "junit.xml"
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", "aov_by_month",
                      "--junit-xml", str(junit)], tmp_path, in_process=True)
    assert result.returncode == 3, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1], ["aov_by_month"])
    assert report["run"]["exit_code"] == 3 and report["charts"][0]["status"] == "ok"
    assert report["run"]["error"].startswith(f"cannot write the JUnit file {junit}: ")
    assert (tmp_path / "out" / "latest").resolve() == result.report_path.parent  # latest moved
    assert "ERROR" in result.stderr and f"cannot write the JUnit file {junit}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_deck_that_cannot_be_written_is_a_warning_and_counted(tmp_path, demo_url, demo_tokens):
    # 200 KB per file: every chart's PNG (at most ~120 KB) and the report fit, no deck (~0.5 MB) does.
    result = _run_with_file_size_limit(["--server-url", demo_url, "--merchant", demo_tokens[0], "--no-cache"],
                                       tmp_path, 200_000)
    assert result.returncode == 1, result.stderr[-3000:]
    assert {c["status"] for c in result.report["charts"]} == {"ok"}
    decks = {(d["format"], d["status"], d["error_type"]) for d in result.report["decks"]}
    assert decks == {("pdf", "failed", "write_error"), ("pptx", "failed", "write_error")}
    assert result.report["metrics"]["errors_by_type"] == {"write_error": 2}
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line and "deck for" in line]
    assert len(warnings) == 2 and all("failed (write_error)" in line for line in warnings), warnings
    assert "errors by type: write_error=2" in result.stderr


# -- a tool that never answers ---------------------------------------------------------------------


def test_a_timeout_while_the_server_answers_nothing_is_not_asked_again(tmp_path, demo_tokens):
    """Neither retried nor repeated in the sequential fallback: one tool timeout, not four (the
    bench's hostile scenario measures the wall with the default 30 s timeout)."""
    result = run_cli([*server_args("--hang"), "--merchant", demo_tokens[0], "--charts", "aov_by_month",
                      "--tool-timeout-seconds", "1"], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1], ["aov_by_month"])
    (chart,) = report["charts"]
    assert (chart["status"], chart["error_type"], chart["attempts"]) == ("failed", "timeout", 1)
    retrieval = report["metrics"]["retrieval"]
    assert (retrieval["tool_calls"], retrieval["batch_retries"], retrieval["sequential_fallbacks"]) == (1, 0, 0)
    assert "not tried again: the server answered nothing while it waited" in result.stderr


def test_a_stdio_server_that_dies_at_start_says_why_and_where_its_stderr_is(tmp_path):
    """Not just 'Connection closed': the last lines the server wrote on stderr (here a Python
    ImportError, as postgres-mcp gives under the wrong mcp) and the log file that holds them all."""
    command = f"{sys.executable} -c 'import no_such_module_for_this_test'"
    result = run_cli(["--server-command", command, "--deck", "none"], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    assert "Traceback" not in result.stderr.replace("its stderr ended: Traceback", "")  # quoted, not ours
    reason = result.report["run"]["error"]
    assert "its stderr ended: " in reason and "No module named 'no_such_module_for_this_test'" in reason
    log = result.report_path.parent / "server-stderr.log"
    assert f"(all of it in {log})" in reason and "ModuleNotFoundError" in log.read_text()
    lines = [line for line in result.stderr.splitlines() if "cannot list merchants" in line]
    assert len(lines) == 1 and "no_such_module_for_this_test" in lines[0]


def test_a_junit_path_that_is_not_a_file_is_refused_before_any_work(tmp_path):
    """The JUnit file is replaced by a rename: at a device or a FIFO (`--junit-xml /dev/full`, as
    root) that put XML where the device was. Only an absent path or a regular file is taken."""
    target = tmp_path / "victim.xml"
    target.write_text("the user's own file\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.xml").symlink_to(target)
    (tmp_path / "folder").mkdir()
    places = {"fifo": "a FIFO", "link.xml": "a link", "folder": "a folder"}
    try:
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        places["null"] = "a character device"
    except PermissionError:  # not root: the FIFO stands for every special file
        pass
    for name, kind in places.items():
        path = tmp_path / name
        result = run_cli(["--merchant", "LIICIEWKV6BK", "--charts", "aov_by_month", "--junit-xml", str(path)], tmp_path,
                         in_process=True)
        _one_usage_line(result, f"--junit-xml {path}: it is {kind}, not a file", "")
        assert not (tmp_path / "out").exists()
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode) and (tmp_path / "link.xml").is_symlink()
    assert target.read_text() == "the user's own file\n"
    if "null" in places:
        assert stat.S_ISCHR((tmp_path / "null").lstat().st_mode)
