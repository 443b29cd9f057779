"""The stdio transport to an MCP server: its stdin and stdout, one JSON-RPC message a line.

Ours rather than mcp's `stdio_client` for two things a hostile server needs. A line over
MAX_MESSAGE_BYTES is skipped as it streams in, never held whole (mcp's reader joins every
chunk onto the pending line, quadratic in its length) and the request it answered gets an
ANSWER_TOO_LARGE error. And a server whose stdout carries something other than MCP, and then
nothing that is, is given up after JUNK_GRACE_SECONDS instead of a full open timeout.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import mcp_types
from anyio.abc import Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger
from mcp.client.stdio import get_default_environment
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.message import SessionMessage

from runner.errors import one_line
from runner.redaction import ScrubbingWriter
from runner.retrieval.limits import ANSWER_TOO_LARGE, MAX_MESSAGE_BYTES, too_large_text

JUNK_GRACE_SECONDS = 10.0
EXIT_GRACE_SECONDS = 2.0  # after stdin closes, before the process group gets SIGTERM (then SIGKILL)
_ENDS = 4096  # bytes kept from each end of a skipped line, to find the id of the request it answers

# The id among a message's top-level scalars: first (Python SDK order) or last (TypeScript SDK).
_SCALAR = r'"[A-Za-z]+"\s*:\s*(?:"[^"\\]*"|-?\d+|true|false|null)\s*'
_HEAD = re.compile(rf'\s*\{{((?:\s*{_SCALAR},)*)')
_TAIL = re.compile(rf'((?:,\s*{_SCALAR})+)\}}\s*$')
_ID = re.compile(r'"id"\s*:\s*(-?\d+|"[^"\\]*")')


@dataclass
class _Traffic:
    """What the reader has seen, and the requests still waiting for an answer."""

    junk_seen: anyio.Event = field(default_factory=anyio.Event)
    first_junk: str | None = None
    junk_lines: int = 0
    answered_any: bool = False
    waiting: set[Any] = field(default_factory=set)


def _request_id(head: bytes, tail: bytes) -> Any:
    text_head, text_tail = head.decode("utf-8", "replace"), tail.decode("utf-8", "replace")
    for found in (_HEAD.match(text_head), _TAIL.search(text_tail)):
        if found and (key := _ID.search(found.group(1))):
            value = key.group(1)
            return value[1:-1] if value.startswith('"') else int(value)
    return None


async def _read(process: Process, out: MemoryObjectSendStream[SessionMessage | Exception], traffic: _Traffic,
                limit: int) -> None:
    assert process.stdout is not None
    parts: list[bytes] = []
    size = 0
    head = tail = b""
    skipping = False
    async with out:
        try:
            async for chunk in process.stdout:
                while chunk:
                    end = chunk.find(b"\n")
                    piece, chunk = (chunk, b"") if end < 0 else (chunk[:end], chunk[end + 1:])
                    size += len(piece)
                    if skipping:
                        tail = (tail + piece)[-_ENDS:]
                    elif size > limit:
                        skipping = True
                        head = b"".join(parts)[:_ENDS]
                        tail = (head + piece)[-_ENDS:]
                        parts = []
                    else:
                        parts.append(piece)
                    if end < 0:
                        continue
                    if skipping:
                        await _refuse(out, traffic, size, head, tail, limit)
                    else:
                        await _deliver(out, traffic, b"".join(parts))
                    parts, size, head, tail, skipping = [], 0, b"", b"", False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            pass  # our own shutdown, or the server went away: the session sees the stream end


async def _deliver(out: MemoryObjectSendStream[SessionMessage | Exception], traffic: _Traffic,
                   line: bytes) -> None:
    if not line.strip():
        return
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError:
        junk = one_line(line[:200].decode("utf-8", "replace"), 80)
        logger.debug("MCP server wrote a line that is not JSON-RPC: {}", junk)
        traffic.junk_lines += 1
        if traffic.first_junk is None:
            traffic.first_junk = junk
            traffic.junk_seen.set()
        return
    traffic.answered_any = True
    if isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
        traffic.waiting.discard(message.id)
    await _send(out, SessionMessage(message))


async def _refuse(out: MemoryObjectSendStream[SessionMessage | Exception], traffic: _Traffic, size: int,
                  head: bytes, tail: bytes, limit: int) -> None:
    text = too_large_text(size, limit)
    request = _request_id(head, tail)
    if request is None and len(traffic.waiting) == 1:
        request = next(iter(traffic.waiting))
    if request is None:
        # Nothing to answer it with: end the connection, so whatever waits fails now, not at its timeout.
        logger.debug("MCP server sent a message that cannot be matched to a request; {}", text)
        await out.aclose()
        return
    traffic.waiting.discard(request)
    logger.debug("MCP answer to request {} refused: {}", request, text)
    error = mcp_types.JSONRPCError(jsonrpc="2.0", id=request,
                                   error=mcp_types.ErrorData(code=ANSWER_TOO_LARGE, message=text))
    await _send(out, SessionMessage(error))


async def _send(out: MemoryObjectSendStream[SessionMessage | Exception], message: SessionMessage) -> None:
    with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
        await out.send(message)  # once the session is gone, the rest of stdout is drained unread


async def _write(process: Process, messages: MemoryObjectReceiveStream[SessionMessage],
                 out: MemoryObjectSendStream[SessionMessage | Exception], traffic: _Traffic) -> None:
    assert process.stdin is not None
    try:
        async with messages:
            async for item in messages:
                message = item.message
                if isinstance(message, mcp_types.JSONRPCRequest):
                    traffic.waiting.add(message.id)
                line = message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await process.stdin.send(line.encode())
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        await out.aclose()  # the server stopped reading: the session must not wait on it


async def _watch_for_junk(traffic: _Traffic, grace: float, out: MemoryObjectSendStream[Any],
                          failed: list[str]) -> None:
    """Ends the connection when junk came first and no MCP message within `grace` after it."""
    await traffic.junk_seen.wait()
    await anyio.sleep(grace)
    if not traffic.answered_any:
        failed.append(f"it wrote {traffic.junk_lines} line(s) on stdout that are not MCP, and no MCP message "
                      f"within {grace:g}s; the first: {traffic.first_junk!r}")
        await out.aclose()


class StderrTail:
    """The last lines a server wrote on stderr: what a server that dies at start says about why
    (a Python ImportError, a bad flag), for the error that would otherwise say only that the
    connection closed."""

    def __init__(self, lines: int = 4, line_chars: int = 300) -> None:
        self._lines: deque[str] = deque(maxlen=lines)
        self._open = ""
        self._line_chars = line_chars

    def add(self, text: str) -> None:
        *ended, self._open = (self._open + text).split("\n")
        self._lines.extend(line[:self._line_chars] for line in ended if line.strip())
        self._open = self._open[-self._line_chars:]

    def lines(self) -> list[str]:
        last = [*self._lines, *([self._open] if self._open.strip() else [])]
        return last[-(self._lines.maxlen or 1):]


async def _copy_stderr(process: Process, errlog: TextIO, copied: anyio.Event, tail: StderrTail) -> None:
    """The server's stderr into its log, through the secrets scrubber (it may print what it was
    given: a password, a token), which is why it is a pipe we read and not the file itself."""
    assert process.stderr is not None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    writer = ScrubbingWriter(errlog)
    try:
        async for chunk in process.stderr:
            text = decoder.decode(chunk)
            writer.write(text)
            tail.add(text)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
        pass  # our own shutdown, or the server went away
    finally:
        writer.write(decoder.decode(b"", final=True))
        writer.close()
        copied.set()


async def _stop(process: Process, copied: anyio.Event) -> None:
    """Close stdin, give the server a moment to exit, then end its whole process group; its
    last words on stderr still reach the log."""
    if process.stdin is not None:
        with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            await process.stdin.aclose()
    with anyio.move_on_after(EXIT_GRACE_SECONDS):
        while process.returncode is None:
            await anyio.sleep(0.02)
    if process.returncode is None:
        await terminate_posix_process_tree(process, EXIT_GRACE_SECONDS)
    with anyio.move_on_after(EXIT_GRACE_SECONDS):  # a grandchild may hold stderr open: not for long
        await copied.wait()
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.aclose()


@asynccontextmanager
async def stdio_transport(command: Sequence[str], env: Mapping[str, str], errlog: TextIO | None,
                          failed: list[str], limit: int = MAX_MESSAGE_BYTES,
                          junk_grace: float = JUNK_GRACE_SECONDS,
                          tail: StderrTail | None = None) -> AsyncIterator[tuple[Any, Any]]:
    """(read stream, write stream) to a server started from `command`, in its own process group.
    Why the transport itself gave up, if it did, is appended to `failed`; the last lines of the
    server's stderr are kept in `tail`."""
    process = await anyio.open_process(list(command), env=get_default_environment() | dict(env),
                                       stderr=subprocess.PIPE, start_new_session=True)
    to_session, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    traffic = _Traffic()
    copied = anyio.Event()
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_read, process, to_session, traffic, limit)
            tasks.start_soon(_write, process, from_session, to_session, traffic)
            tasks.start_soon(_watch_for_junk, traffic, junk_grace, to_session, failed)
            tasks.start_soon(_copy_stderr, process, errlog or sys.stderr, copied, tail or StderrTail())
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    read_stream.close()
                    write_stream.close()
                    await _stop(process, copied)
                tasks.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
