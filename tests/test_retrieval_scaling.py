"""A session pool as wide as a cluster needs (issue 26): what each more session costs.

At 32 or 64 batches at once the client's CPU per tool call bounds retrieval (scripts/bench.py
--retrieval-scaling). So a pool's sessions share one event loop on one thread, not a thread
each, and one TLS context, not one each (loading the CA certificates costs 20 ms of CPU). And
dozens of sessions on one busy loop must not lose one to a server's keep-alive timeout.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import certifi
import pytest

from runner.retrieval.sessions import ServerTarget, SessionPool

pytestmark = pytest.mark.timeout(120)

SESSIONS = 8


def _open_every_session(pool: SessionPool, size: int, then: Callable[[], None] = lambda: None) -> list[int]:
    """Borrow all `size` slots at once (each borrower waits for the others, so no slot is lent
    twice), open each one's session and list the server's tools on it; `then()` runs while all
    are open and borrowed. Returns how many tools each session listed."""
    everyone = threading.Barrier(size, action=then)
    listed: list[int] = []

    def borrow() -> None:
        with pool.acquire() as slot:
            listed.append(len(slot.run(lambda s: s.list_tools(timeout=30))))
            everyone.wait(timeout=60)

    borrowers = [threading.Thread(target=borrow, name=f"test-borrower-{i}") for i in range(size)]
    for borrower in borrowers:
        borrower.start()
    for borrower in borrowers:
        borrower.join(timeout=90)
    return listed


def test_a_pool_runs_all_its_sessions_on_one_thread(demo_url: str) -> None:
    before = set(threading.enumerate())
    pool = SessionPool(ServerTarget(url=demo_url), SESSIONS, open_timeout=30)
    added: list[threading.Thread] = []

    def count_threads() -> None:
        added.extend(t for t in threading.enumerate() if t not in before and not t.name.startswith("test-"))

    try:
        listed = _open_every_session(pool, SESSIONS, count_threads)
        assert pool.counters.sessions_opened == SESSIONS
    finally:
        pool.close()
    assert len(listed) == SESSIONS and min(listed) >= 7  # every session works: the seven chart tools, at least
    assert len(added) == 1, [t.name for t in added]  # a thread a session was 8 here
    assert not any(t.is_alive() for t in added)  # and close() ends it


def test_a_pool_loads_the_ca_certificates_once(demo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # so the certificates are loaded on any machine
    loads: list[Any] = []
    load = ssl.SSLContext.load_verify_locations

    def counted(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        load(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    pool = SessionPool(ServerTarget(url=demo_url), SESSIONS, open_timeout=30)
    try:
        assert len(_open_every_session(pool, SESSIONS)) == SESSIONS
    finally:
        pool.close()
    assert len(loads) == 1  # once for the pool; once a session was 8 here



class IdleClosingProxy:
    """A TCP proxy to the demo server that closes a connection which has idled `idle` seconds
    when the next request arrives on it, unanswered: a server whose keep-alive timeout ran out
    just as the client wrote (uvicorn's and Node's is 5 s)."""

    def __init__(self, url: str, idle: float) -> None:
        where = urlsplit(url)
        self._upstream = (where.hostname or "127.0.0.1", where.port or 80)
        self._idle = idle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}{where.path}"
        self.closed = 0  # connections closed on a request
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._upstream)
            last = [time.monotonic()]  # the pair's last traffic, either way
            threading.Thread(target=self._pump, args=(client, upstream, last, True), name="test-proxy",
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, last, False), name="test-proxy",
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, last: list[float], requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests and time.monotonic() - last[0] >= self._idle:
                    self.closed += 1
                    for end in (source, sink):  # a reset, as a server closing with the request unread
                        end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        end.close()
                    return
                last[0] = time.monotonic()
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.close()

    def close(self) -> None:
        self._listener.close()


def test_a_session_outlives_a_connection_the_server_drops_after_its_keep_alive(demo_url: str) -> None:
    proxy = IdleClosingProxy(demo_url, idle=3.0)
    pool = SessionPool(ServerTarget(url=proxy.url), 1, open_timeout=30)
    try:
        with pool.acquire() as slot:
            first = slot.run(lambda s: s.list_tools(timeout=30))
            time.sleep(3.5)  # the scenario itself: the connection idles past the server's keep-alive
            again = slot.run(lambda s: s.list_tools(timeout=30))
    finally:
        pool.close()
        proxy.close()
    # The client dropped the idle connection itself (after 2 s) and asked on a new one; with
    # httpx's 5 s it wrote on the old one, the server closed it, and the whole MCP session ended.
    assert len(again) == len(first) >= 7
    assert pool.counters.sessions_opened == 1
    assert proxy.closed == 0
