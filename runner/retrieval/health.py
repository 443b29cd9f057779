"""A server that is down stays down: one view of the server's health, shared by every session.

After `limit` transport failures or timeouts in a row (across batches and sessions; any answer
resets the count) the server is taken to be down: no more calls, no more sessions, and every
chart still waiting fails at once with the last reason. A nightly run then ends in seconds, not
after every chart has waited out its own timeouts and retries.

A lost session (its connection or its stdio server gone) is one failure, however many calls it
had in flight: each of them fails with it, but counting them all would give up on a server after
one lost session carrying a batch of three calls.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref

from loguru import logger

from runner.errors import ChartError, ErrorType

# Failures of the way to the server, not answers from it: they count towards giving it up, and
# the retry policy (runner.retrieval.retry) tries them again.
TRANSPORT_ERRORS = frozenset({ErrorType.SERVER_UNAVAILABLE, ErrorType.TIMEOUT})


class ServerHealth:
    """`name`, `error_type` and `counted` let the same view watch another server (the Messages
    API in agent mode): the failures it counts, and the error it fails the rest with."""

    def __init__(self, limit: int, where: str, *, name: str = "MCP server",
                 error_type: ErrorType = ErrorType.SERVER_UNAVAILABLE,
                 counted: frozenset[ErrorType] = TRANSPORT_ERRORS) -> None:
        self.limit = limit
        self._where = where
        self._name = name
        self._error_type = error_type
        self._counted = counted
        self._lock = threading.Lock()
        self._failures = 0
        self._last: ChartError | None = None
        # Sessions already counted, held weakly: an MCP client is unhashable, and one that is gone
        # can fail no more calls.
        self._counted_sessions: list[weakref.ref[object]] = []
        self.down = False
        self.answers = 0  # every answer so far: a wait during which it did not grow heard nothing

    def check(self) -> None:
        """Raise the final error if the server is down: nothing is sent to it any more."""
        if self.down and self._last is not None:
            raise ChartError(self._error_type,
                             f"not called: the {self._name} at {self._where} failed {self._failures} times in a "
                             f"row; last: {self._last.message}", final=True)

    def answered(self) -> None:
        with self._lock:
            if not self.down:  # once given up, it stays so: a late answer changes nothing
                self._failures = 0
            self.answers += 1

    async def wait_unless_down(self, seconds: float) -> None:
        """Sleep before a retry, cut short when the server is given up meanwhile (by another
        batch, in another thread): waiting for a retry that will not be sent only delays the run."""
        end = time.monotonic() + seconds
        while not self.down and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))

    def failed(self, error: ChartError, session: object | None = None) -> None:
        """Count a failure towards giving the server up. `session` is the MCP session the failure
        ended: once it has counted, the lost connection its other calls fail with is the same loss.
        A timeout counts for each call all the same: each is a call the server did not answer."""
        if error.final:
            return
        if error.error_type not in self._counted:  # an error the server sent is still an answer
            self.answered()
            return
        with self._lock:
            if self.down:  # already given up: the count says how many it took, not how many came after
                return
            if self._counted_before(session) and error.error_type is not ErrorType.TIMEOUT:
                return
            self._failures += 1
            self._last = error
            if self._failures >= self.limit:
                self.down = True
                logger.error("giving up on the {} at {} after {} failures in a row: {}", self._name, self._where,
                             self._failures, error.message)

    def _counted_before(self, session: object | None) -> bool:
        """Whether a failure of this session has counted already; it has from now on. Under the lock."""
        if session is None:
            return False
        self._counted_sessions = [ref for ref in self._counted_sessions if ref() is not None]
        if any(ref() is session for ref in self._counted_sessions):
            return True
        self._counted_sessions.append(weakref.ref(session))
        return False
