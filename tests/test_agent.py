"""Agent mode against a scripted fake of the Messages API on 127.0.0.1 and the real demo MCP server."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.charts import BUILTIN_PACK
from runner.config import load_config
from runner.demo.fake_claude import FakeClaude, QueuedError, ToolFault
from runner.errors import ChartError
from runner.retrieval.agent import extract_answer, tool_call_problem, truncate_result
from runner.retrieval.model_api import MessagesClient, ModelApi
from runner.retrieval.retry import RetryPolicy
from tests.helpers import CHART_IDS, assert_every_chart_once, assert_no_processes_left, run_cli

# A key shaped like a real one: a short one would mask ordinary words wherever it is scrubbed.
API_KEY = "sk-ant-api03-Qx7mZ2vK9pL4wT8nR3yB6cH1dF5gJ0sA"


@pytest.fixture
def fake():
    with FakeClaude() as server:
        yield server


def agent_run(tmp_path, fake, demo_url, merchants, *extra):
    env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": fake.url}
    args = ["--retrieval", "agent", "--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)],
            *extra]
    return run_cli(args, tmp_path, env=env, in_process=True)


def conversations(fake) -> dict[str, list[dict]]:
    """Recorded requests grouped by their first user message (one conversation each)."""
    grouped: dict[str, list[dict]] = {}
    for recorded in fake.requests:
        grouped.setdefault(recorded.body["messages"][0]["content"], []).append(recorded.body)
    return grouped


def assert_key_never_written(result, tmp_path: Path) -> None:
    assert API_KEY not in result.stdout + result.stderr
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".log", ".csv"}:
            assert API_KEY not in path.read_text(errors="replace"), path


def test_agent_run_completes_with_fresh_bounded_contexts(tmp_path, fake, demo_url, demo_tokens):
    merchants = demo_tokens[:2]
    result = agent_run(tmp_path, fake, demo_url, merchants, "--csv")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, merchants)
    report = result.report
    assert all(c["status"] == "ok" for c in report["charts"])
    assert all(c["paragraph"] for c in report["charts"])
    assert report["run"]["retrieval_mode"] == "agent"
    for batch in report["batches"]:
        assert batch["steps"] == 2 and batch["input_tokens"] > 0 and batch["output_tokens"] > 0
        assert 0 < batch["context_tokens"] < 100_000 // 10  # far below the budget
    tokens = report["metrics"]["tokens"]
    assert tokens["input_tokens"] == sum(b["input_tokens"] for b in report["batches"])
    assert tokens["max_batch_context_tokens"] == max(b["context_tokens"] for b in report["batches"])
    assert "tokens:" in result.stderr and "peak context" in result.stderr

    # Fresh context: each conversation names one merchant and only its batch's charts, and no
    # message of one conversation ever appears in another.
    grouped = conversations(fake)
    assert len(grouped) == len(report["batches"])
    by_batch = {b["merchant"] + ":" + b["chart_ids"] for b in report["batches"]}
    seen_contents: dict[str, str] = {}
    for prompt, requests in grouped.items():
        merchant = prompt.split("Merchant token: ")[1].split()[0]
        ids = [line[2:].split(":")[0] for line in prompt.splitlines() if line.startswith("- ")]
        assert f"{merchant}:{','.join(ids)}" in by_batch
        other = [m for m in merchants if m != merchant]
        for body in requests:
            assert not any(o in json.dumps(body["messages"]) for o in other)
            for message in body["messages"][1:]:
                key = json.dumps(message, sort_keys=True)
                assert seen_contents.setdefault(key, prompt) == prompt, "a message crossed conversations"
        # The stable prefix is cached, and the schemas are compact.
        assert requests[0]["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert requests[0]["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert all("title" not in json.dumps(t["input_schema"]) for t in requests[0]["tools"])
    # SDK 2.x sends the key as a bearer token.
    assert all(API_KEY in (r.headers.get("x-api-key", "") + r.headers.get("authorization", ""))
               for r in fake.requests)
    assert_key_never_written(result, tmp_path)
    assert_no_processes_left(report)


def test_step_limit_stops_a_runaway_conversation(tmp_path, fake, demo_url, demo_tokens):
    runaway, fine = demo_tokens[0], demo_tokens[1]
    fake.runaway.add(runaway)
    result = agent_run(tmp_path, fake, demo_url, [runaway, fine], "--data-retrieval-max-steps", "3",
                       "--batch-size", "7")
    assert result.returncode == 1, result.stderr[-3000:]
    assert_every_chart_once(result, [runaway, fine])
    for chart in result.report["charts"]:
        expected = ("failed", "budget_exceeded") if chart["merchant"] == runaway else ("ok", None)
        assert (chart["status"], chart["error_type"]) == expected, chart
    runaway_batch = next(b for b in result.report["batches"] if b["merchant"] == runaway)
    assert runaway_batch["steps"] == 4  # three steps, then one last call without tools
    requests = next(r for p, r in conversations(fake).items() if runaway in p)
    assert len(requests) == 4 and requests[-1]["tool_choice"] == {"type": "none"}
    pending = requests[-1]["messages"][-1]["content"]
    assert pending and all(b["is_error"] and "step limit" in b["content"] for b in pending)


def test_token_budget_stops_a_runaway_conversation(tmp_path, fake, demo_url, demo_tokens):
    runaway, fine = demo_tokens[2], demo_tokens[3]
    fake.runaway.add(runaway)
    budget = 4000
    result = agent_run(tmp_path, fake, demo_url, [runaway, fine], "--context-token-budget", str(budget),
                       "--batch-size", "7")
    assert result.returncode == 1, result.stderr[-3000:]
    for chart in result.report["charts"]:
        expected = ("failed", "budget_exceeded") if chart["merchant"] == runaway else ("ok", None)
        assert (chart["status"], chart["error_type"]) == expected, chart
    runaway_batch = next(b for b in result.report["batches"] if b["merchant"] == runaway)
    assert runaway_batch["steps"] < 15
    assert runaway_batch["context_tokens"] <= budget
    assert "context budget" in runaway_batch["error"]


def test_rate_limit_is_retried_after_retry_after_and_the_retries_are_counted(tmp_path, fake, demo_url, demo_tokens):
    """429 twice, then fine: the run is ok, and the summary says two model calls were sent again."""
    fake.errors.extend([QueuedError(429, "rate_limit_error", "slow down", (("retry-after", "1"),))] * 2)
    started = time.monotonic()
    result = agent_run(tmp_path, fake, demo_url, [demo_tokens[0]], "--batch-size", "7",
                       "--max-concurrent-batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(fake.requests) == 4  # two refused calls, the retry that worked, the answer
    assert time.monotonic() - started >= 2.0
    assert "retry 1/2 in 1.0s" in result.stderr and "retry 2/2 in 1.0s" in result.stderr
    assert f"429 RateLimitError from the Messages API at {fake.url}: slow down" in result.stderr
    assert result.report["metrics"]["retrieval"]["llm_retries"] == 2
    assert [b["attempts"] for b in result.report["batches"]] == [3]
    assert "model API retries 2" in result.stderr


def test_auth_error_fails_the_batch_at_once_without_leaking_the_key(tmp_path, fake, demo_url, demo_tokens):
    fake.errors.append(QueuedError(401, "authentication_error", f"invalid x-api-key {API_KEY}"))
    result = agent_run(tmp_path, fake, demo_url, [demo_tokens[0]], "--batch-size", "7")
    assert result.returncode == 4, result.stderr[-3000:]  # nothing succeeded
    assert len(fake.requests) == 1
    assert {(c["status"], c["error_type"]) for c in result.report["charts"]} == {("failed", "llm_error")}
    assert "401" in result.report["charts"][0]["error"]
    assert_key_never_written(result, tmp_path)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_errors(result, where: str) -> None:
    """Each chart's error names the API's address, in one line; nothing came out as a traceback."""
    assert "Traceback" not in result.stderr
    assert not any(line.lstrip().startswith(("<", "</")) for line in result.stderr.splitlines()), "raw HTML"
    for chart in result.report["charts"]:
        assert (chart["status"], chart["error_type"]) == ("failed", "llm_error"), chart
        assert where in chart["error"] and "\n" not in chart["error"] and len(chart["error"]) <= 500, chart


RATE_LIMITED = QueuedError(429, "rate_limit_error", "rate limited by the fake", (("retry-after", "0.01"),))

# (row, how the fake misbehaves, what the chart's error says): every one a failure of the API
# itself, which counts against its health.
API_FAULTS = [
    ("persistent_429", {"always": RATE_LIMITED}, "429 RateLimitError"),
    ("persistent_5xx", {"always": QueuedError(500, "api_error", "boom")}, "500 InternalServerError"),
    ("gateway_html_page", {"always": QueuedError(502, "api_error", "Bad Gateway", html=True)},
     "an HTML page titled '502 Bad Gateway'"),
    ("web_server_answering_200", {"always": QueuedError(200, "", "It works", html=True)}, "is not a message"),
    ("never_answers", {"hang": True}, "no answer within 2 s"),
]


@pytest.mark.parametrize(("row", "faults", "said"), API_FAULTS, ids=[row for row, _, _ in API_FAULTS])
def test_an_api_that_keeps_failing_is_given_up_after_the_failure_limit(tmp_path, fake, demo_url, demo_tokens,
                                                                      row, faults, said):
    """Three failed calls in a row, whatever the batch, and the API is not called again: the
    last batch fails at once with the last reason, though each call had retries left (an
    answer that is not a message is not tried again, but counts the same)."""
    for name, value in faults.items():
        setattr(fake, name, value)
    merchants = demo_tokens[:4]
    result = agent_run(tmp_path, fake, demo_url, merchants, "--batch-size", "7", "--max-concurrent-batches",
                       "1", "--retry-attempts", "5", "--llm-failure-limit", "3", "--llm-timeout-seconds", "2")
    assert result.returncode == 4, result.stderr[-3000:]
    assert len(fake.requests) == 3
    assert_every_chart_once(result, merchants)
    assert_one_line_errors(result, fake.url)
    assert all(said in c["error"] for c in result.report["charts"])
    last = [c["error"] for c in result.report["charts"] if c["merchant"] == merchants[-1]]
    assert all(e.startswith(f"not called: the Messages API at {fake.url} failed 3 times in a row; last: ")
               for e in last)
    assert f"giving up on the Messages API at {fake.url}" in result.stderr
    after = result.stderr.split(f"giving up on the Messages API at {fake.url}", 1)[1]
    assert "; retry " not in after  # no retry is announced, nor waited for, once the API is given up
    assert_key_never_written(result, tmp_path)


def test_an_unreachable_api_is_named_without_its_credentials(tmp_path, demo_url, demo_tokens):
    rows = ((f"http://apiuser:hunter2pass@127.0.0.1:{closed_port()}", "refused"),
            ("http://no-such-host.invalid", ""))
    for i, (base_url, reason) in enumerate(rows):
        env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": base_url}
        (tmp_path / str(i)).mkdir()
        result = run_cli(["--retrieval", "agent", "--server-url", demo_url, "--merchant", demo_tokens[0],
                          "--max-concurrent-batches", "1"], tmp_path / str(i), env=env, in_process=True)
        assert result.returncode == 4, result.stderr[-3000:]
        where = base_url.replace("apiuser:hunter2pass", "***")
        assert_one_line_errors(result, f"cannot reach the Messages API at {where}: ")
        assert reason in result.report["charts"][0]["error"].lower()
        assert "hunter2pass" not in result.stderr + json.dumps(result.report)
        # Three batches: the first spends the three failures, the other two are not called.
        assert sum("not called: the Messages API" in c["error"] for c in result.report["charts"]) == 4


def test_the_batch_time_budget_ends_a_call_that_would_outlast_it(tmp_path, fake, demo_url, demo_tokens):
    """A call cut short by the batch's own budget is not the API's failure: both batches make
    their call, and their charts fail for the budget."""
    fake.hang = True
    result = agent_run(tmp_path, fake, demo_url, demo_tokens[:2], "--batch-size", "7", "--max-concurrent-batches",
                       "1", "--llm-batch-seconds", "2", "--llm-failure-limit", "1")
    assert result.returncode == 4, result.stderr[-3000:]
    assert {(c["error_type"], "time budget of 2 s ran out" in c["error"]) for c in result.report["charts"]} == {
        ("budget_exceeded", True)}
    assert len(fake.requests) <= 2 and "giving up" not in result.stderr


TOOL_FAULTS = [
    (ToolFault.BROKEN_INPUT, "must be a JSON object, not '{\"merchant_token\": "),
    (ToolFault.WRONG_ARGUMENTS, "unknown argument(s) merchant, from, to; missing merchant_token, start_date, "
                                "end_date; get_"),
    (ToolFault.UNKNOWN_TOOL, "there is no tool named 'fetch_"),
]


@pytest.mark.parametrize(("fault", "said"), TOOL_FAULTS, ids=[f.value for f, _ in TOOL_FAULTS])
def test_tool_calls_the_model_gets_wrong_fail_their_charts_and_say_why(tmp_path, fake, demo_url, demo_tokens,
                                                                     fault, said):
    merchant = demo_tokens[0]
    fake.tool_faults[merchant] = fault
    result = agent_run(tmp_path, fake, demo_url, [merchant, demo_tokens[1]], "--batch-size", "7")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for chart in result.report["charts"]:
        if chart["merchant"] != merchant:
            assert chart["status"] == "ok", chart
            continue
        assert chart["error_type"] == "bad_data", chart
        tool = next(spec.tool for spec in BUILTIN_PACK if spec.id == chart["chart_id"])
        if fault is ToolFault.UNKNOWN_TOOL:  # it never called the chart's own tool: its last wrong call is named
            assert "the model gave no data for this chart; the model's last failed tool call: fetch_" in chart["error"]
        else:  # the chart's own tool's failed call, not a batch-mate's
            assert f"the model gave no data for this chart; its last failed tool call: {tool}(" in chart["error"]
        assert said in chart["error"], chart["error"]
    batch = next(b for b in result.report["batches"] if b["merchant"] == merchant)
    assert batch["steps"] == 2 and batch["input_tokens"] > 0  # the failed calls took a step, and tokens count
    # The model saw why each call failed; the conversation it was sent stays valid (inputs are objects).
    requests = next(r for p, r in conversations(fake).items() if merchant in p)
    assert len(requests) == 2
    echoed, results = requests[1]["messages"][1:3]
    assert all(isinstance(b["input"], dict) for b in echoed["content"] if b["type"] == "tool_use")
    assert results["content"] and all(b["is_error"] and said.split("; get_")[0] in b["content"]
                                      for b in results["content"])
    assert result.report["metrics"]["retrieval"]["tool_calls"] < 14  # the wrong calls never reached the server


def test_context_budget_is_kept_before_the_call_that_would_exceed_it(tmp_path, fake, demo_url, demo_tokens):
    budget = 1200
    result = agent_run(tmp_path, fake, demo_url, demo_tokens[:2], "--context-token-budget", str(budget))
    assert result.returncode in (1, 4), result.stderr[-3000:]
    batches = result.report["batches"]
    assert max(b["context_tokens"] for b in batches) <= budget
    assert result.report["metrics"]["tokens"]["max_batch_context_tokens"] <= budget
    assert "budget_exceeded" in {b["error_type"] for b in batches}
    assert all(c["error_type"] in (None, "budget_exceeded") for c in result.report["charts"])


def test_tool_errors_reach_the_model_and_big_results_are_truncated(tmp_path, fake, demo_url, demo_tokens):
    bad_token = "NOTATOKEN000"
    result = agent_run(tmp_path, fake, demo_url, [bad_token, demo_tokens[0]], "--batch-size", "7",
                       "--tool-result-max-chars", "400")
    assert result.returncode == 1, result.stderr[-3000:]
    by_merchant = {m: {c["chart_id"]: c["error_type"] for c in result.report["charts"] if c["merchant"] == m}
                   for m in (bad_token, demo_tokens[0])}
    assert set(by_merchant[bad_token].values()) == {"bad_data"}
    # The fake, like a real model, cannot copy a cut result: those charts fail, the short ones pass.
    assert set(by_merchant[demo_tokens[0]].values()) == {"bad_data", None}
    grouped = conversations(fake)
    bad = next(r for p, r in grouped.items() if bad_token in p)[-1]["messages"][-1]["content"]
    assert bad and all(b["is_error"] and "unknown merchant" in b["content"] for b in bad)
    good = next(r for p, r in grouped.items() if demo_tokens[0] in p)[-1]["messages"][-1]["content"]
    truncated = [b for b in good if "[truncated" in b["content"]]
    assert truncated and all(len(b["content"]) <= 400 for b in good)


def test_an_answer_that_is_not_json_fails_its_charts(tmp_path, fake, demo_url, demo_tokens):
    fake.garbage.add(demo_tokens[4])
    result = agent_run(tmp_path, fake, demo_url, [demo_tokens[4], demo_tokens[5]], "--batch-size", "7")
    assert result.returncode == 1
    for chart in result.report["charts"]:
        if chart["merchant"] == demo_tokens[4]:
            assert chart["error_type"] == "bad_data" and "no JSON" in chart["error"]
        else:
            assert chart["status"] == "ok"


def test_agent_mode_without_a_key_exits_2_before_any_work(tmp_path):
    result = run_cli(["--retrieval", "agent"], tmp_path, in_process=True)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# -- units --------------------------------------------------------------------------------------


def test_retry_after_is_capped(fake):
    fake.errors.append(QueuedError(529, "overloaded_error", "busy", (("retry-after", "3600"),)))
    config = load_config(env={"SCALAPAY_LLM_RETRY_MAX_WAIT_SECONDS": "0.2", "ANTHROPIC_API_KEY": API_KEY,
                              "ANTHROPIC_BASE_URL": fake.url})

    async def go():
        from loguru import logger

        client = MessagesClient(ModelApi(config), RetryPolicy.from_config(config), logger, time.monotonic() + 60)
        try:
            request = {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
            return await client.create(request), client.retries
        finally:
            await client.close()

    started = time.monotonic()
    response, retries = asyncio.run(go())
    assert response.stop_reason == "end_turn" and len(fake.requests) == 2 and retries == 1
    assert time.monotonic() - started < 30  # waited the cap, not an hour


@given(name=st.text(max_size=30), arguments=st.one_of(
    st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.integers(), st.text(max_size=20)), max_size=5),
    st.text(max_size=40), st.lists(st.integers(), max_size=3), st.integers(), st.none()))
def test_any_tool_call_the_model_makes_is_checked_without_raising(name, arguments):
    schemas = {"get_aov": {"type": "object", "properties": {"merchant_token": {"type": "string"}},
                           "required": ["merchant_token"]}}
    problem = tool_call_problem(name, arguments, schemas)
    fine = name == "get_aov" and isinstance(arguments, dict) and set(arguments) == {"merchant_token"}
    assert (problem is None) == fine
    assert problem is None or ("\n" not in problem and len(problem) < 400)


def test_truncate_result_and_extract_answer():
    text = "x" * 1000
    cut = truncate_result(text, 300)
    assert len(cut) <= 300 and "[truncated" in cut and "narrow" in cut
    assert truncate_result("short", 300) == "short"
    assert extract_answer('Here:\n```json\n{"charts": {"a": {"data": {}}}}\n```') == {"a": {"data": {}}}
    assert extract_answer('{"charts": {}}') == {}
    for bad in ("no json here", '{"charts": [1]}', '{"charts": {"a": NaN}}'):
        with pytest.raises(ChartError):
            extract_answer(bad)


def test_fake_picks_the_right_tool_for_every_builtin_chart(demo_url):
    """The fake model must pick each spec's own tool, or the agent tests would prove nothing."""
    from mcp import Client

    from runner.charts import BUILTIN_PACK
    from runner.demo.fake_claude import _best_tool
    from runner.retrieval.agent import tool_definitions

    async def tools():
        async with Client(demo_url) as client:
            return (await client.list_tools()).tools

    listed = asyncio.run(tools())
    for simplified in (True, False):
        definitions = tool_definitions(listed, simplified)
        assert {spec.id: _best_tool(spec.request, definitions) for spec in BUILTIN_PACK} == {
            spec.id: spec.tool for spec in BUILTIN_PACK}
    assert CHART_IDS == [spec.id for spec in BUILTIN_PACK]
