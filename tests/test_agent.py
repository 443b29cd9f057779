"""Agent mode against a scripted fake of the Messages API on 127.0.0.1 and the real demo MCP server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx2
import pytest

from runner.config import load_config
from runner.demo.fake_claude import FakeClaude, QueuedError
from runner.errors import ChartError
from runner.retrieval.agent import call_with_retries, extract_answer, truncate_result
from runner.retry import RetryPolicy
from tests.helpers import CHART_IDS, assert_every_chart_once, assert_no_processes_left, run_cli

API_KEY = "sk-ant-test-DO-NOT-LEAK-4f9a"


@pytest.fixture
def fake():
    with FakeClaude() as server:
        yield server


def agent_run(tmp_path, fake, demo_url, merchants, *extra):
    env = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": fake.url}
    args = ["--retrieval", "agent", "--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)],
            *extra]
    return run_cli(args, tmp_path, env=env)


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


def test_rate_limit_is_retried_after_retry_after(tmp_path, fake, demo_url, demo_tokens):
    fake.errors.append(QueuedError(429, "rate_limit_error", "slow down", (("retry-after", "1"),)))
    started = time.monotonic()
    result = agent_run(tmp_path, fake, demo_url, [demo_tokens[0]], "--batch-size", "7",
                       "--max-concurrent-batches", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(fake.requests) == 3  # the refused call, its retry, the answer
    assert time.monotonic() - started >= 1.0
    assert "retry 1/2 in 1.0s" in result.stderr


def test_auth_error_fails_the_batch_at_once_without_leaking_the_key(tmp_path, fake, demo_url, demo_tokens):
    fake.errors.append(QueuedError(401, "authentication_error", f"invalid x-api-key {API_KEY}"))
    result = agent_run(tmp_path, fake, demo_url, [demo_tokens[0]], "--batch-size", "7")
    assert result.returncode == 4, result.stderr[-3000:]  # nothing succeeded
    assert len(fake.requests) == 1
    assert {(c["status"], c["error_type"]) for c in result.report["charts"]} == {("failed", "llm_error")}
    assert "401" in result.report["charts"][0]["error"]
    assert_key_never_written(result, tmp_path)


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
    result = run_cli(["--retrieval", "agent"], tmp_path)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# -- units --------------------------------------------------------------------------------------


def test_retry_after_is_capped_and_uses_the_sdk_over_httpx2():
    import anthropic

    calls = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx2.Response(529, headers={"retry-after": "3600"},
                                   json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        return httpx2.Response(200, json={
            "id": "m", "type": "message", "role": "assistant", "model": "x", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "{}"}], "usage": {"input_tokens": 1, "output_tokens": 1}})

    config = load_config(env={"SCALAPAY_LLM_RETRY_MAX_WAIT_SECONDS": "0.2", "ANTHROPIC_API_KEY": "k"})

    async def go():
        client = anthropic.AsyncAnthropic(api_key="k", max_retries=0,
                                          http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
        request = {"model": "x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        from loguru import logger

        return await call_with_retries(client, request, config, RetryPolicy.from_config(config), logger)

    response = asyncio.run(go())
    assert response.stop_reason == "end_turn" and len(calls) == 2
    assert 0.15 <= calls[1] - calls[0] < 5  # waited the cap, not an hour


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
