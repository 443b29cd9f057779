"""Agent mode: one fresh Claude conversation per retrieval batch, over the MCP server's tools.

The conversation is bounded four ways: `data_retrieval_max_steps` model calls, a context
budget in tokens (input + cache reads + cache writes of a response), `llm_batch_seconds`,
and tool results cut to `tool_result_max_chars`. When the steps or the context run out,
pending tool calls are answered with an error and one last call, with tools disabled,
collects whatever the model can answer. The context budget is kept before a call, from an
estimate (see `_Conversation.next_context`). A tool call the model gets wrong (no such
tool, input that is not an object, wrong argument names) is answered with an error it can
read, and a chart whose data never comes names the last failed call.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from runner.config import RunnerConfig
from runner.errors import ChartError, ErrorType, one_line
from runner.kinds import paragraphs
from runner.kinds.window import shown_or_empty
from runner.records import Batch, BatchResult, Retrieval
from runner.retrieval.direct import Emit
from runner.retrieval.model_api import MessagesClient, model_api
from runner.retrieval.parse import chart_data_from_json
from runner.retrieval.results import decode_json_text
from runner.retrieval.retry import RetryPolicy
from runner.retrieval.sessions import Slot

# Characters per token for estimating what a call will cost before it is made: English and
# JSON run at 3.5-4, so 3.5 errs on the side of stopping early. Figures (long digit runs) can
# cost more tokens per character; keep some headroom in --context-token-budget for them.
CHARS_PER_TOKEN = 3.5

SYSTEM_PROMPT = (
    "You retrieve data for the charts of a merchant business review. Use the tools to fetch each "
    "requested chart's data for the given merchant and date window; call several tools at once when "
    "you can. Do not invent numbers: copy them from tool results. When you have the data, answer with "
    "one JSON object only, no other text, of the form "
    '{"charts": {"<chart id>": {"data": <the chart\'s data>, "paragraph": "<two or three factual '
    'sentences about the data>"}}}. Leave out a chart you could not get.'
)

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
        extended = f" (from {job.retrieve_start}: the year before the window too, to compare with)" \
            if job.retrieve_start != job.start_date else ""
        lines.append(f"- {spec.id}: {spec.request or spec.title}{extended}; shape {spec.chart_kind.hint}")
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


def tool_call_problem(name: str, arguments: Any, schemas: dict[str, dict[str, Any]]) -> str | None:
    """What is wrong with a tool call the model made, in words it can act on; None if nothing."""
    schema = schemas.get(name)
    if schema is None:
        return f"there is no tool named {one_line(name, 80)!r}; the tools are: {', '.join(sorted(schemas))}"
    if not isinstance(arguments, dict):
        return f"the input of {name} must be a JSON object, not {one_line(repr(arguments), 120)}"
    properties = schema.get("properties")
    unknown = ([k for k in arguments if k not in properties]
               if isinstance(properties, dict) and schema.get("additionalProperties") is not True else [])
    missing = [k for k in schema.get("required") or [] if k not in arguments]
    if not unknown and not missing:
        return None
    wrong = ([f"unknown argument(s) {', '.join(one_line(k, 40) for k in unknown)}"] if unknown else []) + (
        [f"missing {', '.join(missing)}"] if missing else [])
    return f"{'; '.join(wrong)}; {name} takes {', '.join(properties or {}) or 'no arguments'}"


class _Conversation:
    """One batch's conversation and its counters (lives on the slot's event loop)."""

    def __init__(self, batch: Batch, slot: Slot, config: RunnerConfig) -> None:
        self.batch, self.slot, self.config = batch, slot, config
        self.log = logger.bind(batch=batch.batch_id)
        self.system = [{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}]
        self.tools: list[dict[str, Any]] = []
        self.schemas: dict[str, dict[str, Any]] = {}
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": batch_prompt(batch)}]
        self.steps = 0
        self.input_tokens = self.output_tokens = self.peak_context = 0
        self.last: Usage | None = None
        self.stopped: str | None = None  # why the conversation was cut short, if it was
        self.last_failed_call: str | None = None  # the model's last tool call that did not work, and why
        self.failed_calls: dict[str, str] = {}  # tool name -> its last failed call: a chart is told of its own

    async def run(self, client: MessagesClient) -> str:
        """Drive the loop; returns the model's final text."""
        config = self.config
        client.api.health.check()  # a down API costs no MCP call either
        listed = await self.slot.list_tools(config.tool_timeout_seconds)
        self.tools = tool_definitions(listed, config.use_simplified_schemas)
        self.schemas = {tool.name: tool.input_schema for tool in listed}
        if not self._fits(None):
            self.stopped = f"context budget of {config.context_token_budget:,} tokens reached by the first request"
            return ""
        while True:
            response = await self._call(client, final=False)
            uses = [b for b in response.content if getattr(b, "type", None) == "tool_use"]
            if response.stop_reason != "tool_use" or not uses:
                return _text_of(response)
            if self.steps >= config.data_retrieval_max_steps:
                self.stopped = f"step limit of {config.data_retrieval_max_steps} reached"
            else:
                results = await asyncio.gather(*(self._run_tool(use) for use in uses))
                message = {"role": "user", "content": list(results)}
                if self._fits(message):
                    self.messages.append(message)
                    continue
                self.stopped = f"context budget of {config.context_token_budget:,} tokens reached"
            return await self._finish(client, uses)

    async def _finish(self, client: MessagesClient, pending: list[Any]) -> str:
        self.log.warning("{}; asking for a final answer without tools", self.stopped)
        note = f"Not run: {self.stopped}. Answer now with the data you already have."
        message = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "is_error": True, "content": note} for use in pending
        ]}
        if not self._fits(message):
            return ""
        self.messages.append(message)
        return _text_of(await self._call(client, final=True))

    def next_context(self, message: dict[str, Any] | None) -> int:
        """The context of the next call if `message` is added: the last response's context and
        output (now part of the conversation) plus the new text at CHARS_PER_TOKEN; before the
        first call, the whole request at that rate."""
        added = [message] if message else []
        if self.last is None:
            return math.ceil(len(json.dumps([self.system, self.tools, self.messages, *added])) / CHARS_PER_TOKEN)
        return self.last.context + self.last.output_tokens + math.ceil(len(json.dumps(added)) / CHARS_PER_TOKEN)

    def _fits(self, message: dict[str, Any] | None) -> bool:
        return self.next_context(message) <= self.config.context_token_budget

    async def _call(self, client: MessagesClient, final: bool) -> Any:
        request: dict[str, Any] = {
            "model": self.config.anthropic_model,
            "max_tokens": self.config.max_output_tokens,
            "system": self.system,
            "tools": self.tools,
            "messages": self.messages,
        }
        if final:
            request["tool_choice"] = {"type": "none"}
        response = await client.create(request)
        self.steps += 1
        usage = response.usage
        context = (usage.input_tokens + (usage.cache_read_input_tokens or 0)
                   + (usage.cache_creation_input_tokens or 0))
        self.last = Usage(usage.input_tokens, usage.output_tokens, context)
        self.input_tokens += context
        self.output_tokens += usage.output_tokens
        self.peak_context = max(self.peak_context, context)
        self.log.debug("step {}: {} context tokens, stop {}", self.steps, context, response.stop_reason)
        self.messages.append({"role": "assistant", "content": [_echo(b) for b in response.content]})
        return response

    async def _run_tool(self, use: Any) -> dict[str, Any]:
        arguments = getattr(use, "input", None)
        arguments = {} if arguments is None else arguments
        self.log.debug("call {} {}", use.name, arguments)
        problem = tool_call_problem(use.name, arguments, self.schemas)
        if problem is not None:
            text, is_error = problem, True
        else:
            try:
                result = await self.slot.call_tool(use.name, dict(arguments), self.config.tool_timeout_seconds)
                text, is_error = _tool_result_text(result), bool(result.is_error)
            except ChartError as exc:
                if exc.final:  # the MCP server is down or refused us: not the model's doing
                    raise
                text, is_error = f"{exc.error_type}: {exc.message}", True
        text = truncate_result(text, self.config.tool_result_max_chars) or "(empty result)"
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use.id, "content": text}
        if is_error:
            block["is_error"] = True
            shown = json.dumps(arguments) if isinstance(arguments, dict) else repr(arguments)
            self.last_failed_call = f"{one_line(use.name, 80)}({one_line(shown, 160)}): {one_line(text, 200)}"
            if isinstance(use.name, str):
                self.failed_calls[use.name] = self.last_failed_call
        return block


def _echo(block: Any) -> dict[str, Any]:
    """A response block as it goes back in the conversation; a tool_use input that is not an
    object becomes {} (the API accepts nothing else), its tool result says what it was."""
    echoed: dict[str, Any] = block.model_dump(exclude_none=True, warnings=False)
    if echoed.get("type") == "tool_use" and not isinstance(echoed.get("input"), dict):
        echoed["input"] = {}
    return echoed


def _text_of(response: Any) -> str:
    return "".join(b.text for b in response.content if getattr(b, "type", None) == "text")


def run_agent_batch(batch: Batch, slot: Slot, config: RunnerConfig, policy: RetryPolicy, emit: Emit) -> BatchResult:
    """Run one batch as one fresh conversation; emit every chart's outcome."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    api = model_api(config)
    conversation = _Conversation(batch, slot, config)
    log = conversation.log
    log.info("start agent conversation for {}: {}", batch.merchant, ", ".join(j.spec.id for j in batch.jobs))
    retries = 0

    async def converse(s: Slot) -> str:
        nonlocal retries
        client = MessagesClient(api, policy, log, time.monotonic() + config.llm_batch_seconds)
        try:
            return await conversation.run(client)
        finally:
            retries = client.retries
            await client.close()

    failure: ChartError | None = None
    answers: dict[str, Any] = {}
    try:
        text = slot.run(converse)
        answers = extract_answer(text) if text or not conversation.stopped else {}
    except ChartError as exc:
        failure = exc
    elapsed = (time.perf_counter() - started) * 1000
    failed = []
    for job in batch.jobs:
        error: ChartError | None = failure
        data = None
        entry = answers.get(job.spec.id)
        if error is None and not isinstance(entry, dict):
            error = _no_answer(job.spec.id, job.spec.tool, conversation)
        if error is None and isinstance(entry, dict):
            paragraph = entry.get("paragraph")
            paragraph = paragraphs.trimmed(paragraph) if isinstance(paragraph, str) else None
            try:
                data = chart_data_from_json(job.spec, job.merchant, entry.get("data"), paragraph or None)
                shown_or_empty(job.spec, job.merchant, data, job.start_date, job.end_date)
            except ChartError as exc:
                error = exc
        if error is not None:
            failed.append(error)
        emit(Retrieval(job, batch.batch_id, data, error.error_type if error else None,
                       error.message if error else None, 1, elapsed))
    log.info("done in {:.0f} ms: {} steps, {} model API retries, peak context {:,} tokens, {} ok, {} failed", elapsed,
             conversation.steps, retries, conversation.peak_context, len(batch.jobs) - len(failed), len(failed))
    return BatchResult.finished(
        batch, started_at, elapsed, failed=len(failed),
        attempts=1 + retries,  # model calls sent again count as the batch's retries
        error_type=failed[0].error_type if failed else None, error=failed[0].message if failed else None,
        steps=conversation.steps, input_tokens=conversation.input_tokens, output_tokens=conversation.output_tokens,
        context_tokens=conversation.peak_context)


def _no_answer(chart_id: str, tool: str | None, conversation: _Conversation) -> ChartError:
    if conversation.stopped:
        return ChartError(ErrorType.BUDGET_EXCEEDED, f"{chart_id}: no answer before the {conversation.stopped}")
    if tool and tool in conversation.failed_calls:  # the chart's own tool: that call is what went wrong
        return ChartError(ErrorType.BAD_DATA, f"{chart_id}: the model gave no data for this chart; its last failed "
                                              f"tool call: {conversation.failed_calls[tool]}")
    if conversation.last_failed_call:  # no failed call of its own: what the model last got wrong
        return ChartError(ErrorType.BAD_DATA, f"{chart_id}: the model gave no data for this chart; the model's last "
                                              f"failed tool call: {conversation.last_failed_call}")
    return ChartError(ErrorType.BAD_DATA, f"{chart_id}: the model gave no data for this chart")
