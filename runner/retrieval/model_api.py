"""The Messages API as agent mode calls it: a timeout per call, the project's capped retry loop
(the SDK's own is off), the API's health across batches, and errors in one line that say where.

Every failed try that may pass (rate limited, 5xx or overloaded, no answer in time, no
connection, an answer that is not the Messages API's) counts against the API's health, in any
batch; any proper answer, an error it sends included, resets the count. After
`llm_failure_limit` in a row the API is taken to be down: no batch calls it again, and every
chart still waiting fails at once with `llm_error` and the last reason.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from dataclasses import replace
from typing import Any

from runner.config import RunnerConfig, redact
from runner.errors import ChartError, ErrorType, detail
from runner.retrieval.health import ServerHealth
from runner.retrieval.retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.anthropic.com"
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)


class ModelApi:
    """What the batches of one run share about the Messages API: where it is and its health."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.where = redact(config.anthropic_base_url or DEFAULT_BASE_URL)
        self.health = ServerHealth(config.llm_failure_limit, self.where, name="Messages API",
                                   error_type=ErrorType.LLM_ERROR, counted=frozenset({ErrorType.LLM_ERROR}))


_apis: dict[int, ModelApi] = {}
_apis_lock = threading.Lock()


def model_api(config: RunnerConfig) -> ModelApi:
    """The run's one ModelApi, found by the identity of the run's config (the retrieval stage
    hands each batch the same config object); it is dropped with the config."""
    with _apis_lock:
        api = _apis.get(id(config))
        if api is None or api.config is not config:
            api = _apis[id(config)] = ModelApi(config)
            weakref.finalize(config, _apis.pop, id(config), None)
        return api


class MessagesClient:
    """One conversation's client: `create` sends one request, retried within the policy, the
    health view and the conversation's deadline; `retries` counts the tries sent again."""

    def __init__(self, api: ModelApi, policy: RetryPolicy, log: Any, deadline: float) -> None:
        import anthropic

        config = api.config
        self.api, self.log, self.deadline = api, log, deadline
        self.policy = replace(policy, max_delay_seconds=config.llm_retry_max_wait_seconds)
        self.retries = 0
        self._client = anthropic.AsyncAnthropic(api_key=config.anthropic_api_key, base_url=config.anthropic_base_url,
                                                max_retries=0, timeout=config.llm_timeout_seconds)

    async def close(self) -> None:
        await self._client.close()

    def _out_of_time(self) -> ChartError:
        return ChartError(ErrorType.BUDGET_EXCEEDED, f"the batch's time budget of "
                                                     f"{self.api.config.llm_batch_seconds:g} s ran out")

    async def create(self, request: dict[str, Any]) -> Any:
        import anthropic

        config, health = self.api.config, self.api.health
        tries = 0
        while True:
            health.check()  # not a call at all once the API is down
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self._out_of_time()
            timeout = min(config.llm_timeout_seconds, remaining)
            tries += 1
            self.retries += tries > 1  # counted when sent, not when planned: the API may be down by then
            hint = None
            try:
                response = await self._client.messages.create(**request, timeout=timeout)
            except anthropic.APITimeoutError:
                if timeout < config.llm_timeout_seconds:  # cut short by the batch's budget: not the API's fault
                    raise self._out_of_time() from None
                failure = f"no answer within {timeout:g} s from the Messages API at {self.api.where}"
            except (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError) as exc:
                failure, hint = self.describe(exc), _retry_after(exc)
            except anthropic.APIStatusError as exc:  # 400, 401, 403, 404...: retrying cannot help
                error = ChartError(ErrorType.LLM_ERROR, f"the Messages API refused the request: {self.describe(exc)}")
                if isinstance(exc.body, dict):
                    health.answered()
                else:  # no JSON error: whatever answered is not the Messages API
                    health.failed(error)
                raise error from None
            except anthropic.APIError as exc:
                error = ChartError(ErrorType.LLM_ERROR, self.describe(exc))
                health.failed(error)
                raise error from None
            else:
                problem = _not_a_message(response)
                if problem is None:
                    health.answered()
                    return response
                error = ChartError(ErrorType.LLM_ERROR, f"the answer from {self.api.where} is not a message: {problem}")
                health.failed(error)
                raise error
            health.failed(ChartError(ErrorType.LLM_ERROR, failure))
            if health.down:  # given up on, by this failure or another batch's: no retry to wait for
                raise ChartError(ErrorType.LLM_ERROR, f"{failure}; not tried again: the API is given up")
            delay = self.policy.next_delay(tries, hint=hint)
            if delay is None:
                raise ChartError(ErrorType.LLM_ERROR, f"still failing after {tries} tries: {failure}")
            if delay >= self.deadline - time.monotonic():
                raise self._out_of_time()
            self.log.info("{}; retry {}/{} in {:.1f}s", failure, tries, self.policy.retries, delay)
            await health.wait_unless_down(delay)

    def describe(self, exc: Exception) -> str:
        """One line: what went wrong, with the API's address, never its key."""
        status = getattr(exc, "status_code", None)
        if status is None:
            root = _root_cause(exc)
            text = f"cannot reach the Messages API at {self.api.where}: {root}"
        else:
            body = getattr(exc, "body", None)
            error = body.get("error") if isinstance(body, dict) else None
            if isinstance(error, dict) and error.get("message"):
                said = str(error["message"])
            elif isinstance(body, str) and "<html" in body[:500].lower():
                title = _TITLE.search(body)
                said = f"an HTML page{' titled ' + repr(title[1].strip()) if title else ''}"
            else:
                said = str(body if body is not None else exc)
            text = f"{status} {type(exc).__name__} from the Messages API at {self.api.where}: {said}"
        key = self.api.config.anthropic_api_key
        if key:
            text = text.replace(key, "***")
        return detail(text)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _root_cause(exc: BaseException) -> str:
    """The innermost reason ("[Errno 111] Connection refused"), not the SDK's "Connection error."."""
    seen = exc
    for _ in range(20):  # a chain, not a cycle
        inner = seen.__cause__ or seen.__context__
        if inner is None:
            break
        seen = inner
    if isinstance(seen, OSError) and isinstance(seen.errno, int) and seen.errno > 0:
        return os.strerror(seen.errno)  # asyncio's own words ("Connect call failed") hide the reason
    return str(seen) or type(seen).__name__


def _not_a_message(response: Any) -> str | None:
    """Why a 2xx answer cannot be used as a message, or None: the SDK does not check its shape."""
    from anthropic.types import Message

    if not isinstance(response, Message):
        return f"{type(response).__name__} {str(response)[:120]!r}"
    usage = response.usage
    if not isinstance(response.content, list) or usage is None or not all(
            isinstance(getattr(usage, name, None), int) for name in ("input_tokens", "output_tokens")):
        return "it has no content list or no token usage"
    for block in response.content:
        kind = getattr(block, "type", None)
        if kind == "text" and not isinstance(getattr(block, "text", None), str):
            return "a text block without text"
        if kind == "tool_use" and not (isinstance(getattr(block, "id", None), str)
                                       and isinstance(getattr(block, "name", None), str)):
            return "a tool_use block without an id or a name"
    return None
