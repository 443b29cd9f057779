"""The fault suite: every fault, bad input and interruption through the real CLI in a subprocess,
against the real demo MCP server (with its fault-injection options) and real worker processes."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from runner.charts import BUILTIN_PACK
from tests.helpers import by_chart, check_report, run_cli, server_args
from tests.processes import closed_port, finish, start_cli, wait_for

pytestmark = pytest.mark.timeout(120)


def statuses(report: dict) -> dict[str, tuple[str, str | None]]:
    return {f'{c["merchant"]}:{c["chart_id"]}': (c["status"], c["error_type"]) for c in report["charts"]}


# -- render workers -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["crash", "segv"])
def test_a_chart_that_kills_its_worker_twice_fails_alone(kind, tmp_path, demo_url, demo_tokens):
    merchants = demo_tokens[:1]
    result = run_cli(["--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)]], tmp_path,
                     render_faults=f"{kind}:aov_by_month")
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, merchants)
    charts = by_chart(report)
    assert charts.pop("aov_by_month") == {("failed", "worker_crashed")}
    assert all(value == {("ok", None)} for value in charts.values()), charts
    assert report["metrics"]["render"]["worker_restarts"] == 2  # it crashed twice, each time on its own


def test_a_hung_render_times_out_and_the_pool_recovers(tmp_path, demo_url, demo_tokens):
    # The timeout holds for every render: far above a render's time (a fraction of a second, a few
    # seconds on a machine busy many times over), so only the hung one can pass it.
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--render-timeout-seconds", "10"],
                     tmp_path, render_faults="hang:user_demographics")
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, [demo_tokens[0]])
    charts = by_chart(report)
    assert charts.pop("user_demographics") == {("failed", "timeout")}
    assert all(value == {("ok", None)} for value in charts.values()), charts
    assert report["metrics"]["render"]["worker_restarts"] == 1


def test_workers_are_recycled(tmp_path, demo_url, demo_tokens):
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[1], "--render-worker-max-charts", "1"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, [demo_tokens[1]])
    # One chart per worker, two workers: a new pool every two charts, and many distinct workers.
    assert report["metrics"]["render"]["pool_recycles"] >= 2
    assert len({c["worker_pid"] for c in report["charts"]}) >= 4
    # Replaced pools give their pipes back; what stays open is multiprocessing's forkserver and
    # resource tracker, one of each per process, however many pools the run used.
    process = report["metrics"]["process"]
    assert process["open_fds_end"] <= process["open_fds_start"] + 2, process


# -- MCP server faults --------------------------------------------------------------------------


def test_flaky_tool_calls_are_retried_twice_at_most(tmp_path, demo_tokens):
    # The injected failure is an error the tool reports: tried at most twice, never in the fallback.
    # Calls from two threads share the server's seeded generator, so which charts fail varies.
    result = run_cli([*server_args("--fail-rate=0.3"), "--retry-attempts", "4", "--merchant", demo_tokens[0]],
                     tmp_path, in_process=True)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = check_report(result)
    outcomes = {(c["status"], c["error_type"], c["attempts"]) for c in report["charts"]}
    assert outcomes <= {("ok", None, 1), ("ok", None, 2), ("failed", "tool_error", 2)}, outcomes
    retrieval = report["metrics"]["retrieval"]
    assert retrieval["batch_retries"] == sum(c["attempts"] - 1 for c in report["charts"]) > 0
    assert retrieval["sequential_fallbacks"] == 0
    assert result.returncode == (0 if all(c["status"] == "ok" for c in report["charts"]) else 1)


def test_a_tool_that_stops_answering_times_out(tmp_path, demo_tokens):
    # One hung tool among working ones: the failure limit is raised so that the server, which keeps
    # answering the other tools, is not taken for down (the next test covers that). The timeout
    # holds for every call: far above a demo call's time even on a busy machine.
    result = run_cli([*server_args("--hang", "--fault-tool=get_aov_by_month"), "--tool-timeout-seconds", "5",
                      "--retry-attempts", "1", "--charts", "aov_by_month,user_demographics", "--merchant",
                      demo_tokens[0], "--server-failure-limit", "100"], tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, demo_tokens[:1], chart_ids=["aov_by_month", "user_demographics"])
    charts = by_chart(report)
    assert charts == {"aov_by_month": {("failed", "timeout")}, "user_demographics": {("ok", None)}}
    assert report["metrics"]["retrieval"]["sequential_fallbacks"] >= 1


def test_a_server_that_never_answers_is_given_up_once(tmp_path):
    """Every tool hangs: after three timeouts in a row the server is down, and the charts still
    waiting fail at once instead of each waiting out its own timeouts, retries and fallback."""
    result = run_cli([*server_args("--hang"), "--tool-timeout-seconds", "1"], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    report = check_report(result)
    assert {(c["status"], c["error_type"]) for c in report["charts"]} <= {("failed", "server_unavailable"),
                                                                           ("failed", "timeout")}
    assert any(c["error"].startswith("not called: the MCP server at http") for c in report["charts"])
    retrieval = report["metrics"]["retrieval"]
    # Without the health view: 21 charts x 3 tries, then the fallback, and a session per timeout.
    assert retrieval["tool_calls"] <= 12 and retrieval["mcp_sessions_opened"] <= 5, retrieval
    assert "giving up on the MCP server" in result.stderr


def test_a_server_that_dies_mid_run(tmp_path, demo_tokens):
    # One call at a time, so the four calls before the crash have all answered.
    result = run_cli([*server_args("--crash-after=4"), "--max-concurrent-batches", "1", "--batch-size", "1",
                      "--merchant", demo_tokens[0]], tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result)
    counts = Counter(c["status"] for c in report["charts"])
    assert counts["ok"] == 4 and counts["failed"] == 3
    assert {c["error_type"] for c in report["charts"] if c["status"] == "failed"} == {"server_unavailable"}


def test_an_unreachable_server_fails_fast_with_exit_4_and_no_secret(tmp_path):
    secret = "s3cr3t-token-value"
    url = f"http://user:{secret}@127.0.0.1:{closed_port()}/mcp?api_token={secret}"
    started = time.monotonic()
    result = run_cli(["--server-url", url, "--merchant", "AAAAAAAAAAAA"], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    assert time.monotonic() - started < 30
    report = check_report(result, ["AAAAAAAAAAAA"])
    assert {(c["status"], c["error_type"]) for c in report["charts"]} == {("failed", "server_unavailable")}
    assert report["run"]["status"] == "failed"
    assert secret not in result.stderr + result.stdout + result.report_path.read_text()
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert errors and "127.0.0.1" in errors[0]


# -- bad data from tools ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "tool", "chart_id"),
    [
        ("text", "get_aov_by_month", "aov_by_month"),
        ("shape", "get_aov_by_month", "aov_by_month"),
        ("nan", "get_monthly_orders_by_user_type", "orders_by_user_type"),
        ("negative", "get_orders_by_product_type", "orders_by_product_type"),
        ("percent", "get_user_demographics", "user_demographics"),
        ("huge", "get_aov_by_month", "aov_by_month"),
        ("deep", "get_aov_by_month", "aov_by_month"),
        ("series", "get_monthly_orders_by_user_type", "orders_by_user_type"),
    ],
)
def test_bad_data_fails_only_its_chart(kind, tool, chart_id, tmp_path):
    other = "aov_by_product_type"
    result = run_cli([*server_args(f"--malformed={kind}", f"--fault-tool={tool}"), "--charts",
                      f"{chart_id},{other}", "--max-concurrent-charts", "1"], tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    report = check_report(result, chart_ids=[chart_id, other])
    assert by_chart(report) == {chart_id: {("failed", "bad_data")}, other: {("ok", None)}}
    assert report["metrics"]["retrieval"]["batch_retries"] == 0  # bad data is not retried


# -- bad input from users -----------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    config = tmp_path / "bad.toml"
    config.write_text("batch_size = [")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return [
        (["--config", str(config)], "not valid TOML"),
        (["--charts", "aov_by_month,no_such_chart"], "no_such_chart"),
        (["--merchants-file", str(empty)], "lists no merchant tokens"),
        (["--merchants-file", str(tmp_path / "missing.txt")], "does not exist"),
        (["--merchants-file", str(tmp_path)], "is not a regular file"),
        (["--merchant", "abc\x1b[2Jdef"], "only letters, digits"),
        (["--merchant", "x" * 10_000], "too long"),
        (["--start-date", "2025-06-01", "--end-date", "2025-01-01"], "after"),
        (["--start-date", "2025-02-30"], "2025-02-30"),
        (["--output-dir", str(blocker / "sub")], "not writable"),
        (["--pack", str(config)], "bad.toml"),
        (["--retrieval", "agnet"], "agnet"),
    ]


def _hostile_files(tmp_path: Path) -> list[tuple[list[str], str]]:
    """Inputs that would cost unbounded memory or time: each refused with one line."""
    fifo = tmp_path / "pack.fifo"
    os.mkfifo(fifo)
    many = tmp_path / "many.toml"
    many.write_text("".join(f'[[chart]]\nid = "c{i}"\ntitle = "C"\nkind = "bars"\ntool = "t"\n' for i in range(201)))
    deep_toml, deep_json = tmp_path / "deep.toml", tmp_path / "deep.json"
    deep_toml.write_text('[[chart]]\nid = "c"\ntitle = "C"\nkind = "bars"\ntool = "t"\narguments = { a = '
                         + "[" * 500 + "]" * 500 + " }\n")
    deep_json.write_text('{"charts": [{"id": "c", "title": "C", "kind": "bars", "tool": "t", "arguments": {"a": '
                         + "[" * 500 + "]" * 500 + "}}]}")
    very_deep = tmp_path / "very-deep.json"
    very_deep.write_text('{"charts": ' + "[" * 100_000 + "]" * 100_000 + "}")
    merchants = tmp_path / "merchants.txt"  # a run has no size limit, but one merchant's line has
    merchants.write_text("M1\n" + "M" * 10_000_000 + "\n")
    return [
        (["--merchants-file", str(merchants)], f"{merchants}:2: a line longer than 1,000,000 bytes"),
        (["--merchants-file", "/dev/zero"], "is not a regular file"),
        (["--pack", "/dev/zero"], "is not a regular file"),
        (["--config", "/dev/zero"], "is not a regular file"),
        (["--pack", str(fifo)], "is not a regular file"),
        (["--pack", str(many)], "at most 200"),
        (["--pack", str(deep_toml)], "nests too deeply"),  # tomllib gives up before the depth check
        (["--pack", str(deep_json)], "nest more than 8 levels"),
        (["--pack", str(very_deep)], "nests too deeply"),
    ]


def _bad_sql_and_credential_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    def pack(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    chart = 'id = "c"\ntitle = "C"\nkind = "bars"\nlabel = "l"\nvalue = "v"\n'
    server = ["--server-command", "python -m nowhere"]
    return [
        (["--merchant", "x' OR '1'='1"], "x' OR '1'='1"),  # refused before any server is started
        (["--merchant", "../../x"], "only letters, digits"),
        (["--pack", pack("no-token.toml", f'[[chart]]\n{chart}sql = "SELECT l, v FROM t"\n')],
         "must use :merchant_token"),
        (["--pack", pack("unknown.toml", f'[[chart]]\n{chart}sql = "SELECT 1 WHERE m = :merchant_token '
                                         'AND r = :region"\n')], ":region"),
        (["--pack", pack("quote.toml", f'[params]\nregion = "EU\' OR 1=1"\n[[chart]]\n{chart}'
                                       'sql = "SELECT 1 WHERE m = :merchant_token AND r = :region"\n')],
         "may not hold quotes"),
        (["--pack", pack("columns.toml", '[[chart]]\nid = "c"\ntitle = "C"\nkind = "line"\n'
                                         'sql = "SELECT 1 WHERE m = :merchant_token"\n')],
         "must name its result columns"),
        (["--pack", pack("both.toml", f'[[chart]]\n{chart}tool = "t"\nsql = "SELECT :merchant_token"\n')],
         "not both"),
        ([*server, "--server-env", "RUNNER_TEST_UNSET_VARIABLE"], "RUNNER_TEST_UNSET_VARIABLE"),
        ([*server, "--server-env", "RUNNER_TEST_UNSET_*"], "no variable of the environment matches"),
        (["--server-url", "http://127.0.0.1:9/mcp", "--server-header", "Authorization: Bearer ${RUNNER_TEST_UNSET}"],
         "${RUNNER_TEST_UNSET} is not set"),
        (["--server-url", "http://127.0.0.1:9/mcp", "--server-header", "no colon here"], "'Name: value'"),
        (["--server-env", "HOME"], "--server-command"),
    ]


@pytest.mark.parametrize("inputs", [_bad_inputs, _bad_sql_and_credential_inputs, _hostile_files],
                         ids=["general", "sql-credentials", "hostile-files"])
def test_bad_user_input_exits_2_naming_the_problem(tmp_path, inputs):
    for args, expected in inputs(tmp_path):
        result = run_cli(args, tmp_path, output_dir="--output-dir" not in args, in_process=True)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, lines)
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists(), args  # stopped before any work


# -- interruption -------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, whole_group", [(signal.SIGINT, True), (signal.SIGINT, False),
                                                 (signal.SIGTERM, False)])
def test_interrupt_during_retrieval(signum, whole_group, tmp_path):
    proc, stderr_path = start_cli([*server_args("--latency-ms=1500")], tmp_path)
    seen = wait_for(proc, stderr_path, "call get_")
    if whole_group:  # Ctrl-C at a terminal
        os.killpg(proc.pid, signum)
    else:  # kill PID, or a scheduler stopping the job
        proc.send_signal(signum)
    result = finish(proc, stderr_path, seen)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    report = check_report(result)
    assert report["run"]["status"] == "interrupted"
    assert {c["status"] for c in report["charts"]} == {"cancelled"}
    # Every planned batch is listed, cancelled: those waiting, and those whose calls were under way.
    assert len(report["batches"]) == report["metrics"]["retrieval"]["batches_total"] == 9
    assert {b["status"] for b in report["batches"]} == {"cancelled"}


def test_interrupt_after_the_charts_while_closing_and_reporting(tmp_path, demo_url, demo_tokens):
    proc, stderr_path = start_cli(["--merchant", demo_tokens[0]], tmp_path)  # with its embedded server
    seen = wait_for(proc, stderr_path, "server and sessions are closing")
    proc.send_signal(signal.SIGINT)
    result = finish(proc, stderr_path, seen)
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result, [demo_tokens[0]])
    assert report["run"]["status"] == "interrupted" and report["run"]["exit_code"] == 130
    assert {c["status"] for c in report["charts"]} == {"ok"}  # finished work stays finished


def test_interrupt_during_rendering(tmp_path, demo_url, demo_tokens):
    proc, stderr_path = start_cli(["--server-url", demo_url, "--merchant", demo_tokens[0]], tmp_path,
                               render_faults="hang:user_demographics")
    # Stopped once every other chart is rendered: only the hung one is still under way.
    seen = wait_for(proc, stderr_path, "rendered in", count=len(BUILTIN_PACK) - 1)
    seen |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, stderr_path, seen)
    assert result.returncode == 130, result.stderr[-3000:]
    report = check_report(result, [demo_tokens[0]])
    charts = statuses(report)
    assert charts.pop(f"{demo_tokens[0]}:user_demographics") == ("cancelled", "cancelled")
    assert set(charts.values()) == {("ok", None)}  # finished work stays finished
    for chart in report["charts"]:
        if chart["status"] == "ok":
            assert Path(chart["output"]).stat().st_size == chart["bytes"]
        else:
            assert chart["output"] is None
    assert {(d["format"], d["status"]) for d in report["decks"]} == {("pdf", "cancelled"), ("pptx", "cancelled")}
    assert not list(result.report_path.parent.rglob("business-review.*"))  # no deck, not half of one
