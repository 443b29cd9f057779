"""A scripted stand-in for the Messages API on 127.0.0.1, for agent mode without the internet.

It plays a diligent model: on a batch's first turn it calls, for each requested chart, the
tool whose name and description best match the chart's request; once the results are
back it answers with the JSON the runner asks for, copying the tools' data. Usage figures
are derived from the size of each request (about 4 characters per token), with the system
prompt and tools counted as a cache write the first time and a cache read after.

Tests steer it per merchant (`runaway`: never stop calling tools; `garbage`: answer with
prose; `tool_faults`: call tools wrongly, "*" for every merchant), queue HTTP errors (JSON
or an HTML page) answered in turn before anything else, set one answered to every request
(`always`), or have it accept requests and never answer them (`hang`). It records every
request it receives, answered or not.

Run on its own: `python scripts/fake_claude.py [--port N]` prints `READY <base url>`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHARS_PER_TOKEN = 4
_WORD = re.compile(r"[a-z0-9]+")
_CHART_LINE = re.compile(r"^- ([a-z0-9][a-z0-9_-]*): (.*?); shape ", re.M)
_EXTENDED = re.compile(r"\(from (\d{4}-\d{2}-\d{2}): ")


@dataclass(frozen=True)
class QueuedError:
    status: int
    error_type: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()
    html: bool = False  # the body is a web server's HTML page, not the API's JSON error

    def body(self) -> tuple[str, bytes]:
        if self.html:
            page = (f"<!DOCTYPE html>\n<html>\n<head><title>{self.status} {self.message}</title></head>\n"
                    f"<body>\n<center><h1>{self.status} {self.message}</h1></center>\n<hr><center>nginx</center>\n"
                    "</body>\n</html>\n")
            return "text/html", page.encode()
        payload = {"type": "error", "error": {"type": self.error_type, "message": self.message}}
        return "application/json", json.dumps(payload).encode()


class ToolFault(StrEnum):
    """Ways the fake model gets its tool calls wrong."""

    BROKEN_INPUT = "broken-input"  # the input is a string of cut-off JSON, not an object
    WRONG_ARGUMENTS = "wrong-arguments"  # the right tool with argument names it made up
    UNKNOWN_TOOL = "unknown-tool"  # a tool the server does not have


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeClaude:
    runaway: set[str] = field(default_factory=set)  # merchants whose conversations never end
    garbage: set[str] = field(default_factory=set)  # merchants whose answers are not JSON
    tool_faults: dict[str, ToolFault] = field(default_factory=dict)  # merchant (or "*") -> how its calls go wrong
    errors: list[QueuedError] = field(default_factory=list)  # returned, in order, before any answer
    always: QueuedError | None = None  # returned to every request once `errors` is empty
    hang: bool = False  # accept every request and never answer it
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._seen_prefixes: set[str] = set()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._closing = threading.Event()  # ends the hanging handlers, so stop() does not wait for them

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
                answer = fake.handle(self.path, dict(self.headers.items()), body)
                if answer is None:  # hang: hold the connection until the fake stops
                    fake._closing.wait()
                    self.close_connection = True
                    return
                status, headers, content_type, data = answer
                self.send_response(status)
                self.send_header("content-type", content_type)
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
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeClaude:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the model ------------------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str], body: dict[str, Any]
               ) -> tuple[int, tuple[tuple[str, str], ...], str, bytes] | None:
        """(status, headers, content type, body) for one request; None: never answer it."""
        with self._lock:
            self.requests.append(Recorded({k.lower(): v for k, v in headers.items()}, body))
            queued = self.errors.pop(0) if self.errors else self.always
        if self.hang:
            return None
        if queued is not None:
            return queued.status, queued.headers, *queued.body()
        if not path.rstrip("/").endswith("/v1/messages"):
            return 404, (), *QueuedError(404, "not_found_error", path).body()
        content, stop_reason = self._reply(body)
        message = {
            "id": f"msg_fake_{next(self._ids)}", "type": "message", "role": "assistant",
            "model": body.get("model", "fake"), "content": content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": self._usage(body, content),
        }
        return 200, (), "application/json", json.dumps(message).encode()

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
            fault = self.tool_faults.get(merchant) or self.tool_faults.get("*")
            uses = []
            for request in charts.values():
                tool = _best_tool(request, tools)
                extended = _EXTENDED.search(request)  # the chart compares with the year before the window
                if tool:
                    uses.append({"type": "tool_use", "id": f"toolu_{next(self._ids)}",
                                 **_tool_call(tool, merchant, extended[1] if extended else window[1], window[2],
                                              fault)})
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


def _tool_call(tool: str, merchant: str, start: str, end: str, fault: ToolFault | None) -> dict[str, Any]:
    arguments = {"merchant_token": merchant, "start_date": start, "end_date": end}
    if fault is ToolFault.BROKEN_INPUT:
        return {"name": tool, "input": json.dumps(arguments)[:30]}
    if fault is ToolFault.WRONG_ARGUMENTS:
        return {"name": tool, "input": {"merchant": merchant, "from": start, "to": end}}
    if fault is ToolFault.UNKNOWN_TOOL:
        return {"name": tool.replace("get_", "fetch_", 1) + "_v2", "input": arguments}
    return {"name": tool, "input": arguments}


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
