"""A server that is down stays down: one view of the server's health, shared by every session.

After `limit` transport failures or timeouts in a row (across batches and sessions; any answer
resets the count) the server is taken to be down: no more calls, no more sessions, and every
chart still waiting fails at once with the last reason. A nightly run then ends in seconds, not
after every chart has waited out its own timeouts and retries.
"""

from __future__ import annotations

import threading

from loguru import logger

from runner.errors import ChartError, ErrorType

TRANSPORT_ERRORS = frozenset({ErrorType.SERVER_UNAVAILABLE, ErrorType.TIMEOUT})


class ServerHealth:
    def __init__(self, limit: int, where: str) -> None:
        self.limit = limit
        self._where = where
        self._lock = threading.Lock()
        self._failures = 0
        self._last: ChartError | None = None
        self.down = False

    def check(self) -> None:
        """Raise the final error if the server is down: nothing is sent to it any more."""
        if self.down and self._last is not None:
            raise ChartError(ErrorType.SERVER_UNAVAILABLE,
                             f"not called: the MCP server failed {self._failures} times in a row; last: "
                             f"{self._last.message}", final=True)

    def answered(self) -> None:
        with self._lock:
            self._failures = 0

    def failed(self, error: ChartError) -> None:
        if error.final:
            return
        if error.error_type not in TRANSPORT_ERRORS:  # an error the server sent is still an answer
            self.answered()
            return
        with self._lock:
            self._failures += 1
            self._last = error
            if self._failures >= self.limit and not self.down:
                self.down = True
                logger.error("giving up on the MCP server {} after {} failures in a row: {}", self._where,
                             self._failures, error.message)
