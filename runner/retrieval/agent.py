"""Agent mode: one fresh Claude conversation per retrieval batch, over the MCP server's tools.

The conversation is bounded three ways: `data_retrieval_max_steps` model calls, a context
budget in tokens (input + cache reads + cache writes of a response), and tool results cut
to `tool_result_max_chars`. When a bound is reached, pending tool calls are answered with
an error and one last call, with tools disabled, collects whatever the model can answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.decks import paragraphs
from runner.errors import ChartError, ErrorType
from runner.jobs import Batch, BatchResult, Retrieval, batch_status
from runner.retrieval.direct import Emit
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.results import decode_json_text
from runner.retrieval.sessions import Slot
from runner.retry import RetryPolicy

CHARS_PER_TOKEN = 4  # a rough size estimate, used only to decide whether a next call still fits

SYSTEM_PROMPT = (
    "You retrieve data for the charts of a merchant business review. Use the tools to fetch each "
    "requested chart's data for the given merchant and date window; call several tools at once when "
    "you can. Do not invent numbers: copy them from tool results. When you have the data, answer with "
    "one JSON object only, no other text, of the form "
    '{"charts": {"<chart id>": {"data": <the chart\'s data>, "paragraph": "<two or three factual '
    'sentences about the data>"}}}. Leave out a chart you could not get.'
)

SHAPE_HINTS = {
    "series": '{"unit": str, "labels": [str], "series": [{"name": str, "values": [number or null]}]}',
    "categories": '{"unit": str, "labels": [str], "values": [number]}',
    "groups": '{"unit": "%", "groups": [{"name": str, "labels": [str], "values": [percent]}]}',
}


@dataclass(frozen=True)
class Usage:
    """Token counts of one response; `context` is what the budget limits."""

    input_tokens: int
    output_tokens: int
    context: int


def batch_prompt(batch: Batch) -> str:
    """The first user message: only this batch's merchant, window and charts."""
    first = batch.jobs[0]
    lines = [
        f"Merchant token: {batch.merchant}",
        f"Date window: {first.start_date} to {first.end_date} (inclusive)",
        "Charts to retrieve (id: request; expected data shape):",
    ]
    for job in batch.jobs:
        spec = job.spec
        lines.append(f"- {spec.id}: {spec.request or spec.title}; shape {SHAPE_HINTS[spec.shape]}")
    return "\n".join(lines)


def _compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Only what the model needs to call the tool: types, enums and required properties."""
    required = list(schema.get("required") or [])
    properties = schema.get("properties") or {}
    keep = required or list(properties)
    compact: dict[str, Any] = {}
    for name in keep:
        prop = properties.get(name) or {}
        compact[name] = {k: prop[k] for k in ("type", "enum", "format", "items") if k in prop} or {"type": "string"}
    return {"type": "object", "properties": compact, "required": required}


def tool_definitions(tools: list[Any], simplified: bool) -> list[dict[str, Any]]:
    """MCP tools in the Messages API format; the last one carries the cache breakpoint."""
    out = []
    for tool in sorted(tools, key=lambda t: t.name):  # a stable order keeps the cached prefix stable
        description = tool.description or ""
        schema = tool.input_schema
        if simplified:
            description = description.split(". ")[0].strip()[:160]
            schema = _compact_schema(schema)
        out.append({"name": tool.name, "description": description, "input_schema": schema})
    if out:
        out[-1]["cache_control"] = {"type": "ephemeral"}
    return out


def truncate_result(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = (f"\n[truncated: the result had {len(text):,} characters, only the first {limit:,} are shown; "
              "narrow the request (shorter date window, fewer items) to see all of it]")
    return text[: max(0, limit - len(marker))] + marker


def _tool_result_text(result: Any) -> str:
    structured = getattr(result, "structured_content", None)
    if isinstance(structured, dict) and structured:
        return json.dumps(structured, separators=(",", ":"))
    return "\n".join(getattr(block, "text", "") for block in result.content or [])


def extract_answer(text: str) -> dict[str, Any]:
    """The model's JSON object, bare or in a ```json fence; ChartError when there is none."""
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.S)
    candidate = fenced.group(1) if fenced else text[text.find("{"): text.rfind("}") + 1]
    if not candidate:
        raise ChartError(ErrorType.BAD_DATA, f"the model's answer holds no JSON object: {text[:80]!r}")
    payload = decode_json_text("the model's answer", candidate)
    charts = payload.get("charts") if isinstance(payload, dict) else None
    if not isinstance(charts, dict):
        raise ChartError(ErrorType.BAD_DATA, 'the model\'s answer has no "charts" object')
    return charts


class _Conversation:
    """One batch's conversation and its counters (lives on the slot's event loop)."""

    def __init__(self, batch: Batch, slot: Slot, config: RunnerConfig, policy: RetryPolicy) -> None:
        self.batch, self.slot, self.config, self.policy = batch, slot, config, policy
        self.log = logger.bind(batch=batch.batch_id)
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": batch_prompt(batch)}]
        self.steps = 0
        self.input_tokens = self.output_tokens = self.peak_context = 0
        self.last: Usage | None = None
        self.stopped: str | None = None  # why the conversation was cut short, if it was

    async def run(self, client: Any) -> str:
        """Drive the loop; returns the model's final text."""
        config = self.config
        tools = tool_definitions(await self.slot.list_tools(config.tool_timeout_seconds),
                                 config.use_simplified_schemas)
        system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
        while True:
            response = await self._call(client, system, tools, final=False)
            uses = [b for b in response.content if b.type == "tool_use"]
            if response.stop_reason != "tool_use" or not uses:
                return _text_of(response)
            if self.steps >= config.data_retrieval_max_steps:
                self.stopped = f"step limit of {config.data_retrieval_max_steps} reached"
            else:
                results = await asyncio.gather(*(self._run_tool(use) for use in uses))
                if self._next_context(results) > config.context_token_budget:
                    self.stopped = f"context budget of {config.context_token_budget:,} tokens reached"
                else:
                    self.messages.append({"role": "user", "content": list(results)})
                    continue
            return await self._finish(client, system, tools, uses)

    async def _finish(self, client: Any, system: list[dict[str, Any]], tools: list[dict[str, Any]],
                      pending: list[Any]) -> str:
        self.log.warning("{}; asking for a final answer without tools", self.stopped)
        note = f"Not run: {self.stopped}. Answer now with the data you already have."
        self.messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "is_error": True, "content": note} for use in pending
        ]})
        if self._next_context([note] * len(pending)) > self.config.context_token_budget:
            return ""
        response = await self._call(client, system, tools, final=True)
        return _text_of(response)

    def _next_context(self, new_results: list[Any]) -> int:
        assert self.last is not None
        added = sum(len(json.dumps(r)) for r in new_results) // CHARS_PER_TOKEN
        return self.last.context + self.last.output_tokens + added

    async def _call(self, client: Any, system: list[dict[str, Any]], tools: list[dict[str, Any]],
                    final: bool) -> Any:
        request: dict[str, Any] = {
            "model": self.config.anthropic_model,
            "max_tokens": self.config.max_output_tokens,
            "system": system,
            "tools": tools,
            "messages": self.messages,
        }
        if final:
            request["tool_choice"] = {"type": "none"}
        response = await call_with_retries(client, request, self.config, self.policy, self.log)
        self.steps += 1
        usage = response.usage
        context = (usage.input_tokens + (usage.cache_read_input_tokens or 0)
                   + (usage.cache_creation_input_tokens or 0))
        self.last = Usage(usage.input_tokens, usage.output_tokens, context)
        self.input_tokens += context
        self.output_tokens += usage.output_tokens
        self.peak_context = max(self.peak_context, context)
        self.log.debug("step {}: {} context tokens, stop {}", self.steps, context, response.stop_reason)
        self.messages.append({"role": "assistant",
                              "content": [b.model_dump(exclude_none=True) for b in response.content]})
        return response

    async def _run_tool(self, use: Any) -> dict[str, Any]:
        limit = self.config.tool_result_max_chars
        self.log.debug("call {} {}", use.name, use.input)
        try:
            result = await self.slot.call_tool(use.name, dict(use.input or {}), self.config.tool_timeout_seconds)
            text, is_error = _tool_result_text(result), bool(result.is_error)
        except ChartError as exc:
            text, is_error = f"{exc.error_type}: {exc.message}", True
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use.id,
                                 "content": truncate_result(text, limit) or "(empty result)"}
        if is_error:
            block["is_error"] = True
        return block


def _text_of(response: Any) -> str:
    return "".join(b.text for b in response.content if b.type == "text")


async def call_with_retries(client: Any, request: dict[str, Any], config: RunnerConfig, policy: RetryPolicy,
                            log: Any) -> Any:
    """The project's capped retry loop (the SDK's own is off): rate limits, 5xx, overload, network."""
    import anthropic

    tries = 0
    while True:
        tries += 1
        try:
            return await client.messages.create(**request)
        except (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError) as exc:
            capped = replace(policy, max_delay_seconds=config.llm_retry_max_wait_seconds)
            delay = capped.next_delay(tries, hint=_retry_after(exc))
            if delay is None:
                raise ChartError(ErrorType.LLM_ERROR, f"Messages API still failing after {tries} tries: "
                                                      f"{_describe_api_error(exc, config)}") from None
            log.info("Messages API: {}; retry {}/{} in {:.1f}s", _describe_api_error(exc, config), tries,
                     policy.retries, delay)
            await asyncio.sleep(delay)
        except anthropic.APIStatusError as exc:  # 400, 401, 403, 404...: retrying cannot help
            raise ChartError(ErrorType.LLM_ERROR, f"Messages API refused the request: "
                                                  f"{_describe_api_error(exc, config)}") from None


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _describe_api_error(exc: Exception, config: RunnerConfig) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(
        body.get("error"), dict) else None
    text = f"{status} {type(exc).__name__}: {detail or exc}" if status else f"{type(exc).__name__}: {exc}"
    if config.anthropic_api_key:
        text = text.replace(config.anthropic_api_key, "***")
    return text[:300]


def run_agent_batch(batch: Batch, slot: Slot, config: RunnerConfig, policy: RetryPolicy, emit: Emit) -> BatchResult:
    """Run one batch as one fresh conversation; emit every chart's outcome."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    conversation = _Conversation(batch, slot, config, policy)
    log = conversation.log
    log.info("start agent conversation for {}: {}", batch.merchant, ", ".join(j.spec.id for j in batch.jobs))

    async def converse(s: Slot) -> str:
        import anthropic

        client = anthropic.AsyncAnthropic(api_key=config.anthropic_api_key, base_url=config.anthropic_base_url,
                                          max_retries=0, timeout=max(60.0, config.tool_timeout_seconds))
        try:
            return await conversation.run(client)
        finally:
            await client.close()

    failure: ChartError | None = None
    answers: dict[str, Any] = {}
    try:
        answers = extract_answer(slot.run(converse))
    except ChartError as exc:
        failure = exc
    elapsed = (time.perf_counter() - started) * 1000
    failed = []
    for job in batch.jobs:
        error: ChartError | None = failure
        data = None
        entry = answers.get(job.spec.id)
        if error is None and not isinstance(entry, dict):
            error = (ChartError(ErrorType.BUDGET_EXCEEDED,
                                f"{job.spec.id}: no answer before the {conversation.stopped}")
                     if conversation.stopped else
                     ChartError(ErrorType.BAD_DATA, f"{job.spec.id}: the model gave no data for this chart"))
        if error is None and isinstance(entry, dict):
            paragraph = entry.get("paragraph")
            paragraph = paragraphs.trimmed(paragraph) if isinstance(paragraph, str) else None
            try:
                data = chart_data_from_json(job.spec, job.merchant, entry.get("data"), paragraph or None)
            except ChartError as exc:
                error = exc
        if error is not None:
            failed.append(error)
        emit(Retrieval(job, batch.batch_id, data, error.error_type if error else None,
                       error.message if error else None, 1, elapsed))
    log.info("done in {:.0f} ms: {} steps, peak context {:,} tokens, {} ok, {} failed", elapsed,
             conversation.steps, conversation.peak_context, len(batch.jobs) - len(failed), len(failed))
    return BatchResult(
        batch_id=batch.batch_id,
        merchant=batch.merchant,
        chart_ids=batch.chart_ids,
        status=batch_status(len(batch.jobs), len(failed)),
        attempts=1,
        started_at=started_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        wall_ms=round(elapsed, 1),
        steps=conversation.steps,
        input_tokens=conversation.input_tokens,
        output_tokens=conversation.output_tokens,
        context_tokens=conversation.peak_context,
        error_type=failed[0].error_type if failed else None,
        error=failed[0].message if failed else None,
    )
