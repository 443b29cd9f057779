"""A lost MCP session counts once towards `--server-failure-limit`, however many calls it had in
flight, through the CLI against a stdio server whose first sessions die holding a whole batch
(tests/session_losing_server.py). Each of the lost calls still fails and is tried again."""

from __future__ import annotations

import shlex
import sys
from collections import Counter

import pytest

from tests.helpers import CHART_IDS, REPO, check_report, run_cli

pytestmark = pytest.mark.timeout(180)

LIMIT = 3  # the default --server-failure-limit
BATCH = len(CHART_IDS)  # one batch a merchant: a lost session holds 7 calls, more than the limit


def losing_server(losses: int, tmp_path) -> list[str]:
    tickets = tmp_path / "tickets"
    tickets.mkdir()
    command = shlex.join([sys.executable, str(REPO / "tests" / "session_losing_server.py"), "--losses", str(losses),
                          "--in-flight", str(BATCH), "--tickets", str(tickets)])
    return ["--server-command", command, "--batch-size", str(BATCH), "--server-failure-limit", str(LIMIT),
            "--retry-attempts", str(LIMIT), "--deck", "none"]


def test_sessions_lost_with_a_batch_in_flight_do_not_give_the_server_up(tmp_path, demo_tokens):
    """Two batches at once each lose their session with 7 calls in flight: two failures, not 14.
    Their calls are tried again on new sessions, and the run goes on to the third merchant."""
    losses, merchants = LIMIT - 1, demo_tokens[:3]
    result = run_cli([*losing_server(losses, tmp_path), *[a for m in merchants for a in ("--merchant", m)]],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, merchants)
    assert Counter(c["status"] for c in report["charts"]) == {"ok": len(merchants) * BATCH}
    # Each lost call tried once more (which batch lost which session depends on which server process asks first).
    assert sum(c["attempts"] - 1 for c in report["charts"]) == losses * BATCH, report["charts"]
    retrieval = report["metrics"]["retrieval"]
    assert retrieval["tool_calls"] == (len(merchants) + losses) * BATCH, retrieval
    assert "giving up on the MCP server" not in result.stderr


def test_as_many_lost_sessions_as_the_limit_give_the_server_up(tmp_path, demo_tokens):
    """One batch loses three sessions in a row, 7 calls each: the third loss reaches the limit,
    and the charts fail without another session or call."""
    merchant = demo_tokens[0]
    result = run_cli([*losing_server(LIMIT, tmp_path), "--merchant", merchant], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-3000:]
    report = check_report(result, [merchant])
    assert {(c["status"], c["error_type"]) for c in report["charts"]} == {("failed", "server_unavailable")}
    assert all(c["error"].startswith("not called: the MCP server at ") for c in report["charts"])
    retrieval = report["metrics"]["retrieval"]
    assert (retrieval["mcp_sessions_opened"], retrieval["tool_calls"]) == (LIMIT, LIMIT * BATCH), retrieval
    assert f"after {LIMIT} failures in a row" in result.stderr
