"""A scripted stand-in for the Messages API on 127.0.0.1, for agent mode without the internet.

It plays a diligent model: on a batch's first turn it calls, for each requested chart, the
tool whose name and description best match the chart's request; once the results are
back it answers with the JSON the runner asks for, copying the tools' data. Usage figures
are derived from the size of each request (about 4 characters per token), with the system
prompt and tools counted as a cache write the first time and a cache read after.

Tests steer it per merchant (`runaway`: never stop calling tools; `garbage`: answer with
prose) and can queue HTTP errors. It records every request it receives.

Run on its own: `python scripts/fake_claude.py [--port N]` prints `READY <base url>`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHARS_PER_TOKEN = 4
_WORD = re.compile(r"[a-z0-9]+")
_CHART_LINE = re.compile(r"^- ([a-z0-9][a-z0-9_-]*): (.*?); shape ", re.M)


@dataclass(frozen=True)
class QueuedError:
    status: int
    error_type: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeClaude:
    runaway: set[str] = field(default_factory=set)  # merchants whose conversations never end
    garbage: set[str] = field(default_factory=set)  # merchants whose answers are not JSON
    errors: list[QueuedError] = field(default_factory=list)  # returned, in order, before any answer
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen_prefixes: set[str] = set()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- serving ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> FakeClaude:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # else each answer can stall ~40 ms on loopback

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, headers, payload = fake.handle(self.path, dict(self.headers.items()), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-claude", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeClaude:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the model ------------------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str], body: dict[str, Any]
               ) -> tuple[int, tuple[tuple[str, str], ...], dict[str, Any]]:
        with self._lock:
            self.requests.append(Recorded({k.lower(): v for k, v in headers.items()}, body))
            queued = self.errors.pop(0) if self.errors else None
        if queued is not None:
            return queued.status, queued.headers, {"type": "error", "error": {"type": queued.error_type,
                                                                              "message": queued.message}}
        if not path.rstrip("/").endswith("/v1/messages"):
            return 404, (), {"type": "error", "error": {"type": "not_found_error", "message": path}}
        content, stop_reason = self._reply(body)
        return 200, (), {
            "id": f"msg_fake_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body.get("model", "fake"), "content": content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": self._usage(body, content),
        }

    def _usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        prefix = json.dumps([body.get("system"), body.get("tools")], sort_keys=True)
        prefix_tokens = len(prefix) // CHARS_PER_TOKEN
        total = len(json.dumps(body)) // CHARS_PER_TOKEN
        key = hashlib.sha256(prefix.encode()).hexdigest()
        with self._lock:
            cached = key in self._seen_prefixes
            self._seen_prefixes.add(key)
        return {
            "input_tokens": max(1, total - prefix_tokens),
            "output_tokens": max(1, len(json.dumps(content)) // CHARS_PER_TOKEN),
            "cache_creation_input_tokens": 0 if cached else prefix_tokens,
            "cache_read_input_tokens": prefix_tokens if cached else 0,
        }

    def _reply(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        messages = body["messages"]
        prompt = messages[0]["content"] if isinstance(messages[0]["content"], str) else ""
        merchant = _field(prompt, "Merchant token")
        window = re.search(r"Date window: (\S+) to (\S+)", prompt)
        charts = dict(_CHART_LINE.findall(prompt))
        calls, results = _history(messages)
        tools_allowed = (body.get("tool_choice") or {}).get("type") != "none"

        if tools_allowed and merchant in self.runaway:
            tool_use = {"type": "tool_use", "id": f"toolu_{next(self._ids)}", "name": "list_merchants",
                        "input": {}}
            return [{"type": "text", "text": "Let me check the merchant list again."}, tool_use], "tool_use"
        if tools_allowed and not results and window:
            tools = body.get("tools") or []
            uses = []
            for request in charts.values():
                tool = _best_tool(request, tools)
                if tool:
                    uses.append({"type": "tool_use", "id": f"toolu_{next(self._ids)}", "name": tool,
                                 "input": {"merchant_token": merchant, "start_date": window[1],
                                           "end_date": window[2]}})
            return [{"type": "text", "text": "Fetching the data."}, *uses], "tool_use"
        if merchant in self.garbage:
            return [{"type": "text", "text": "I am sorry, the numbers look fine to me."}], "end_turn"
        answer = {}
        tools_of = {call_id: name for call_id, (name, _args) in calls.items()}
        for chart_id, request in charts.items():
            for call_id, (text, is_error) in results.items():
                if is_error or _best_tool(request, body.get("tools") or []) != tools_of.get(call_id):
                    continue
                try:
                    data = json.loads(text)
                except ValueError:
                    continue  # a truncated result: a real model could not copy it either
                answer[chart_id] = {"data": data, "paragraph": _paragraph(request, data)}
        text = "```json\n" + json.dumps({"charts": answer}) + "\n```"
        return [{"type": "text", "text": text}], "end_turn"


def _field(prompt: str, name: str) -> str:
    match = re.search(rf"^{name}: (\S+)", prompt, re.M)
    return match[1] if match else ""


def _history(messages: list[dict[str, Any]]) -> tuple[dict[str, tuple[str, Any]], dict[str, tuple[str, bool]]]:
    calls: dict[str, tuple[str, Any]] = {}
    results: dict[str, tuple[str, bool]] = {}
    for message in messages:
        if isinstance(message["content"], str):
            continue
        for block in message["content"]:
            if block.get("type") == "tool_use":
                calls[block["id"]] = (block["name"], block.get("input"))
            elif block.get("type") == "tool_result":
                content = block.get("content")
                text = content if isinstance(content, str) else "".join(b.get("text", "") for b in content or [])
                results[block["tool_use_id"]] = (text, bool(block.get("is_error")))
    return calls, results


def _best_tool(request: str, tools: list[dict[str, Any]]) -> str | None:
    """The tool sharing the most words with the request; words of its name count double."""
    wanted = set(_WORD.findall(request.lower()))
    best, best_score = None, 0.0
    for tool in tools:
        name_words = set(_WORD.findall(tool["name"].lower().replace("_", " ")))
        words = set(_WORD.findall(tool.get("description", "").lower()))
        score = 2 * len(wanted & name_words) + len(wanted & words) - 0.01 * len(words | name_words)
        if score > best_score:
            best, best_score = tool["name"], score
    return best


def _paragraph(request: str, data: Any) -> str:
    labels = data.get("labels") or [g.get("name") for g in data.get("groups") or []]
    span = f" from {labels[0]} to {labels[-1]}" if labels else ""
    return f"The data show {request}{span}, over {len(labels)} points."
