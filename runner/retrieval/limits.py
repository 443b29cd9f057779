"""The size cap on one message from an MCP server, applied at the transport.

A tool result is held to 2M characters once decoded (results.py), but by then a 60 MB answer
has already been read, parsed into objects and copied: minutes of CPU and most of a gigabyte.
So every transport refuses a message over MAX_MESSAGE_BYTES while it is still bytes on the
wire, and the request it answered fails with ANSWER_TOO_LARGE, which sessions.py turns into
`bad_data` for that chart alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2

# Room for a 2M-character result sent twice (as text and as structured content), escaped.
MAX_MESSAGE_BYTES = 10_000_000

# A JSON-RPC error code from the implementation-defined range, for an answer refused unread.
ANSWER_TOO_LARGE = -32090

_START = "the server's answer of "
_END = "; refused unread"


def too_large_text(size: int, limit: int = MAX_MESSAGE_BYTES) -> str:
    return f"{_START}more than {size:,} bytes is over the {limit:,}-byte limit{_END}"


def refused_answer(code: int, message: str) -> str | None:
    """Why an answer was refused at the transport, if this MCP error says it was: stdio sends
    our own code; mcp's HTTP client wraps our exception's text in its own parse error."""
    if code != ANSWER_TOO_LARGE and _END not in message:
        return None
    return message[message.find(_START):] if _START in message else message


class AnswerTooLarge(httpx2.StreamError):
    """A StreamError, because that is what the MCP HTTP client turns into an error answer
    for the request, instead of ending the session."""


class _CappedStream(httpx2.AsyncByteStream):
    def __init__(self, inner: Any, limit: int, declared: int) -> None:
        self._inner = inner
        self._limit = limit
        self._declared = declared

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._declared > self._limit:  # its Content-Length says so: not a byte is read
            raise AnswerTooLarge(too_large_text(self._declared, self._limit))
        size = 0
        async for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                raise AnswerTooLarge(too_large_text(size, self._limit))
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx2.AsyncBaseTransport):
    """Refuses a JSON response body over `limit` bytes as it streams in (or at once, when its
    Content-Length says so). Server-sent events are left to the MCP client's own per-event
    limit, which reports the same way."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if response.headers.get("content-type", "").lower().startswith("text/event-stream"):
            return response
        declared = response.headers.get("content-length", "")
        response.stream = _CappedStream(response.stream, self._limit, int(declared) if declared.isdigit() else 0)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
