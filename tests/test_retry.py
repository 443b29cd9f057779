"""The one retry policy: its rules, and what they cost a real run against the demo server."""

from __future__ import annotations

import re

import pytest

from runner.errors import ChartError, ErrorType
from runner.retrieval.retry import RetryPolicy
from tests.helpers import CHART_IDS, assert_every_chart_once, run_cli

UNKNOWN = "AAAAAAAAAAAA"  # a well-formed token the warehouse does not know: the tool says so


def test_how_often_each_failure_is_tried():
    policy = RetryPolicy(retries=4, delay_seconds=0.5)
    assert policy.tries_for(ErrorType.SERVER_UNAVAILABLE) == policy.tries_for(ErrorType.TIMEOUT) == 5
    assert policy.tries_for(ErrorType.TOOL_ERROR) == 2  # the tool answered: at most twice in all
    assert policy.tries_for(ErrorType.BAD_DATA) == policy.tries_for(ErrorType.EMPTY_DATA) == 1
    assert RetryPolicy(retries=0, delay_seconds=1).tries_for(ErrorType.TOOL_ERROR) == 1
    assert [policy.falls_back(t) for t in (ErrorType.TIMEOUT, ErrorType.SERVER_UNAVAILABLE, ErrorType.TOOL_ERROR,
                                           ErrorType.BAD_DATA, None)] == [True, True, False, False, False]


def test_delays_double_and_are_capped():
    policy = RetryPolicy(retries=3, delay_seconds=0.5, max_delay_seconds=1.5)
    assert [policy.next_delay(tries) for tries in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, None]
    assert policy.next_delay(1, hint=3600) == 1.5  # a retry-after is honoured up to the cap
    assert policy.next_delay(1, ErrorType.TOOL_ERROR) == 0.5 and policy.next_delay(2, ErrorType.TOOL_ERROR) is None
    assert policy.next_delay(1, ErrorType.BAD_DATA) is None


def test_run_stops_at_the_first_final_error():
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ChartError(ErrorType.TIMEOUT, "slow")
        raise ChartError(ErrorType.BAD_DATA, "garbage")

    tried = RetryPolicy(retries=5, delay_seconds=0).run(flaky, "test")
    assert tried.value is None and tried.error is not None and tried.error.error_type is ErrorType.BAD_DATA
    assert tried.tries == len(calls) == 3


@pytest.mark.timeout(120)
def test_a_tool_error_costs_two_calls_per_chart_and_no_fallback(tmp_path, demo_url, demo_tokens):
    good = demo_tokens[0]
    result = run_cli(["--server-url", demo_url, "--merchant", UNKNOWN, "--merchant", good], tmp_path,
                     env={"SCALAPAY_RETRY_DELAY_SECONDS": "0.2"}, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    assert_every_chart_once(result, [UNKNOWN, good])
    report = result.report
    retrieval = report["metrics"]["retrieval"]
    bad = [c for c in report["charts"] if c["merchant"] == UNKNOWN]
    assert {(c["status"], c["error_type"], c["attempts"]) for c in bad} == {("failed", "tool_error", 2)}
    assert all("unknown merchant" in c["error"] for c in bad)
    assert {c["attempts"] for c in report["charts"] if c["merchant"] == good} == {1}
    assert retrieval["tool_calls"] == 2 * len(CHART_IDS) + len(CHART_IDS)
    assert retrieval["sequential_fallbacks"] == 0
    assert retrieval["batch_retries"] == len(CHART_IDS)  # retries only: first tries are not counted
    # A batch whose charts all failed is failed, not ok.
    assert {b["status"] for b in report["batches"] if b["merchant"] == UNKNOWN} == {"failed"}
    assert {b["status"] for b in report["batches"] if b["merchant"] == good} == {"ok"}
    assert retrieval["batches_failed"] == 3
    # One final warning per failed chart; the retry itself is an INFO line.
    retries = [line for line in result.stderr.splitlines() if "retry 1/1" in line]
    assert len(retries) == len(CHART_IDS) and all(re.search(r"INFO +\[batch-\d+\]", line) for line in retries)
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert sorted(re.search(r"\b([a-z_]+) failed \(tool_error\)", w).group(1) for w in warnings) == sorted(CHART_IDS)
