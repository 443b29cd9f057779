"""Pooled MCP client sessions.

An MCP session is bound to the event loop and task that opened it, so a long-lived "holder"
task on the pool's event loop keeps each slot's session open. All of a pool's sessions share
that one loop, on one thread: the GIL runs one thread's Python at a time anyway, and a loop per
session (a thread each) cost every tool call about a fifth more CPU at 32 batches at once,
where the client's CPU per call is what bounds retrieval (scripts/bench.py --retrieval-scaling).
Batches borrow a slot from their own threads and run their coroutines on the loop; calls from
one batch may run concurrently on the slot's session. A slot opens its session lazily, reopens
it after a transport failure, and the pool never holds more sessions than slots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import queue
import shlex
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO, TypeVar

import httpx2
from loguru import logger

from runner.errors import ChartError, ErrorType, UsageError, detail, one_line
from runner.redaction import redact
from runner.retrieval.credentials import access_denied_message, server_environment, server_headers
from runner.retrieval.health import ServerHealth
from runner.retrieval.limits import MAX_MESSAGE_BYTES, CappedTransport, refused_answer
from runner.retrieval.stdio import StderrTail

T = TypeVar("T")

# httpx's limits, but an idle connection is dropped after 2 s instead of 5 s: before the server's own
# keep-alive timeout can close it (uvicorn's and Node's default is 5 s). A request sent on a connection
# the server is closing at that moment fails with a ReadError, which ends the whole MCP session and
# every call on it; with equal timeouts that race is always there, and with dozens of sessions on one
# busy loop the moment between taking a connection and writing on it is long enough to lose it.
CONNECTION_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=2.0)


@dataclass(frozen=True)
class ServerTarget:
    """Where the MCP server is: a streamable-HTTP URL or a stdio command."""

    url: str | None = None
    command: tuple[str, ...] = ()
    # Credentials: kept out of repr, so no log or traceback shows them.
    env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_settings(cls, url: str | None, command: str | None, env: tuple[str, ...] = (),
                      headers: tuple[str, ...] = (), environ: Mapping[str, str] | None = None) -> ServerTarget:
        environ = os.environ if environ is None else environ
        if url:
            if not url.startswith(("http://", "https://")):
                raise UsageError(f"--server-url {redact(url)!r} must start with http:// or https://")
            if env:
                raise UsageError("--server-env is for a server started with --server-command; "
                                 "an HTTP server takes --server-header")
            return cls(url=url, headers=tuple(server_headers(headers, environ).items()))
        try:
            parts = tuple(shlex.split(command or ""))
        except ValueError as exc:
            raise UsageError(f"--server-command {redact(command or '')!r} cannot be parsed: {exc}") from None
        if not parts:
            raise UsageError("--server-command is empty")
        if headers:
            raise UsageError("--server-header is for a server reached with --server-url; "
                             "a stdio server takes --server-env")
        return cls(command=parts, env=tuple(server_environment(env, environ).items()))

    def describe(self) -> str:
        return redact(self.url) if self.url else redact(shlex.join(self.command))


@dataclass
class SessionCounters:
    sessions_opened: int = 0
    tool_calls: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, sessions_opened: int = 0, tool_calls: int = 0) -> None:
        with self._lock:
            self.sessions_opened += sessions_opened
            self.tool_calls += tool_calls


def describe_exception(exc: BaseException) -> str:
    """One line for an exception, looking inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return detail(f"{type(exc).__name__}: {text}") if text else type(exc).__name__


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


class Slot:
    """One pooled session, on the pool's event loop."""

    def __init__(self, index: int, target: ServerTarget, open_timeout: float, counters: SessionCounters,
                 errlog: TextIO | None, health: ServerHealth, loop: asyncio.AbstractEventLoop,
                 tls: Callable[[], ssl.SSLContext]) -> None:
        self.index = index
        self.loop = loop  # the pool's, shared with its other slots
        self._tls = tls  # the pool's TLS settings: loading the CA certificates costs 20 ms of CPU, once a pool
        self._health = health
        self._target = target
        self._open_timeout = open_timeout
        self._counters = counters
        self._errlog = errlog
        self._client: Any = None
        self._denied: int | None = None  # an HTTP 401/403 seen on this slot's current session
        self._gave_up: list[str] = []  # why the stdio transport itself ended the current session
        self._stderr_tail = StderrTail()  # the last lines the current session's server wrote on stderr
        self._stop: asyncio.Event | None = None
        self._holder: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._running: set[concurrent.futures.Future[Any]] = set()

    # -- used from the batch's thread -------------------------------------------------------
    def run(self, make: Callable[[Slot], Awaitable[T]]) -> T:
        """Run `make(slot)` on this slot's loop and wait for it."""
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(_awaited(make(self)), self.loop)
        self._running.add(future)
        try:
            return future.result()
        finally:
            self._running.discard(future)

    def cancel_running(self) -> None:
        for future in list(self._running):
            future.cancel()

    # -- used on the pool's loop --------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _open_client(self) -> AsyncIterator[Any]:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        from runner.retrieval.stdio import stdio_transport

        target = self._target
        if target.url:
            async def watch(response: Any) -> None:
                if response.status_code in (401, 403):
                    self._denied = response.status_code

            # mcp's default timeouts (a response stream may stay open for minutes), plus the size
            # cap on each answer and the 401/403 watch.
            transport = httpx2.AsyncHTTPTransport(verify=self._tls(), limits=CONNECTION_LIMITS)
            http = httpx2.AsyncClient(headers=dict(target.headers), timeout=httpx2.Timeout(30.0, read=300.0),
                                      transport=CappedTransport(transport), event_hooks={"response": [watch]})
            async with http, Client(streamable_http_client(target.url, http_client=http,
                                                           max_sse_event_size=MAX_MESSAGE_BYTES)) as client:
                yield client
            return
        self._gave_up = []
        self._stderr_tail = StderrTail()
        async with Client(stdio_transport(target.command, dict(target.env), self._errlog, self._gave_up,
                                          tail=self._stderr_tail)) as client:
            yield client

    def _access_denied(self) -> ChartError | None:
        if self._denied is None:
            return None
        return ChartError(ErrorType.SERVER_UNAVAILABLE, access_denied_message(self._target.describe(), self._denied),
                          final=True)

    async def _hold(self, ready: asyncio.Future[Any], stop: asyncio.Event) -> None:
        try:
            async with self._open_client() as client:
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported through `ready` or logged
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(describe_exception(exc)))
            elif not isinstance(exc, asyncio.CancelledError):
                logger.debug("MCP session {} ended: {}", self.index, describe_exception(exc))

    async def client(self) -> Any:
        """The open session, opening it first if needed."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None:
                return self._client
            self._health.check()  # a server that is down gets no new session either
            ready: asyncio.Future[Any] = self.loop.create_future()
            stop = asyncio.Event()
            self._denied = None
            holder = asyncio.create_task(self._hold(ready, stop))
            try:
                async with asyncio.timeout(self._open_timeout):
                    client = await asyncio.shield(ready)
            except BaseException as exc:
                stop.set()
                holder.cancel()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if (denied := self._access_denied()) is not None:
                    raise denied from None
                if self._gave_up:  # it does not speak MCP: trying again cannot help
                    reason, final = self._gave_up[0], True
                elif isinstance(exc, TimeoutError):
                    reason, final = f"no answer within {self._open_timeout:g}s", False
                else:
                    reason, final = describe_exception(exc) + self._last_words(), False
                error = ChartError(ErrorType.SERVER_UNAVAILABLE,
                                   f"cannot connect to MCP server {self._target.describe()}: {reason}", final=final)
                self._health.failed(error)
                raise error from None
            self._client, self._stop, self._holder = client, stop, holder
            self._counters.add(sessions_opened=1)
            logger.debug("MCP session {} opened to {}", self.index, self._target.describe())
            return client

    def _last_words(self) -> str:
        """What a stdio server that would not start last said on stderr, and where the rest is."""
        lines = self._stderr_tail.lines() if self._target.command else []
        if not lines:
            return ""
        where = getattr(self._errlog, "name", None)
        return f"; its stderr ended: {' | '.join(lines)}" + (f" (all of it in {where})" if where else "")

    async def invalidate(self, client: Any) -> None:
        """Drop a session that failed at the transport level, so the next call reopens it."""
        if client is not None and client is self._client:
            self._client = None
            await self._close_holder()

    async def _close_holder(self) -> None:
        stop, holder = self._stop, self._holder
        self._stop = self._holder = None
        if stop is not None:
            stop.set()
        if holder is not None:
            try:
                await asyncio.wait_for(holder, timeout=10)
            except BaseException:  # noqa: BLE001 - a session that will not close is abandoned
                holder.cancel()

    async def shutdown(self) -> None:
        self._client = None
        await self._close_holder()

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        """One tool call; transport failures and timeouts become ChartErrors and reset the session."""
        self._health.check()  # not a call at all once the server is down
        self._counters.add(tool_calls=1)
        return await self._request(f"tool {name}", lambda c: c.call_tool(name, arguments), timeout)

    async def list_tools(self, timeout: float) -> list[Any]:
        result = await self._request("tools/list", lambda c: c.list_tools(), timeout)
        return list(result.tools)

    async def _request(self, what: str, send: Callable[[Any], Awaitable[T]], timeout: float) -> T:
        self._health.check()
        client = await self.client()
        try:
            answer = await self._send(client, what, send, timeout)
        except ChartError as error:
            self._health.failed(error, session=client)
            raise
        self._health.answered()
        return answer

    async def _send(self, client: Any, what: str, send: Callable[[Any], Awaitable[T]], timeout: float) -> T:
        from mcp import MCPError

        try:
            async with asyncio.timeout(timeout):
                return await send(client)
        except TimeoutError:
            await self.invalidate(client)
            raise ChartError(ErrorType.TIMEOUT, f"{what} did not answer within {timeout:g}s") from None
        except MCPError as exc:
            if (refused := refused_answer(exc.code, exc.message)) is not None:  # the session is fine
                raise ChartError(ErrorType.BAD_DATA, f"{what}: {one_line(refused)}") from None
            if (denied := self._access_denied()) is not None:
                await self.invalidate(client)
                raise denied from None
            if "closed" in str(exc).lower() or "connection" in str(exc).lower():
                await self.invalidate(client)
                raise ChartError(ErrorType.SERVER_UNAVAILABLE, f"{what}: connection lost ({exc})") from None
            raise ChartError(ErrorType.TOOL_ERROR, f"{what} failed: {describe_exception(exc)}") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.invalidate(client)
            raise ChartError(ErrorType.SERVER_UNAVAILABLE, f"{what}: {describe_exception(exc)}") from None


class SessionPool:
    """At most `size` sessions, borrowed by one batch at a time."""

    def __init__(self, target: ServerTarget, size: int, open_timeout: float,
                 errlog: TextIO | None = None, failure_limit: int = 3) -> None:
        self.counters = SessionCounters()
        self.health = ServerHealth(failure_limit, target.describe())
        # What each HTTP session's transport would make for itself, made once (when the first opens).
        tls = functools.cache(httpx2.create_ssl_context)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-sessions", daemon=True)
        self._thread.start()
        self._slots = [Slot(i, target, open_timeout, self.counters, errlog, self.health, self._loop, tls)
                       for i in range(size)]
        # Last in, first out: a lone borrower gets the slot whose session is already open (for a
        # stdio server, a session is a server process).
        self._free: queue.LifoQueue[Slot] = queue.LifoQueue()
        for slot in reversed(self._slots):
            self._free.put(slot)

    @contextmanager
    def acquire(self) -> Iterator[Slot]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def cancel_all(self) -> None:
        for slot in self._slots:
            slot.cancel_running()

    def close(self) -> None:
        """Close every session at once (each closes within 10 s, or is abandoned), then the loop."""
        if self._loop.is_closed():
            return

        async def shutdown() -> None:
            await asyncio.gather(*(slot.shutdown() for slot in self._slots))

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=15)
        except Exception as exc:  # closing must never hide the run's outcome
            logger.debug("closing the MCP sessions failed: {}", describe_exception(exc))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
