"""Progress the user can follow: a live display on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from loguru import logger

from runner.coordinator import Progress


def _summary(p: Progress) -> str:
    return (f"batches {p.batches_done}/{p.batches_total} · charts ok {p.charts_ok}, failed {p.charts_failed}"
            f" of {p.charts_total} · in flight: retrieving {p.retrieving}, rendering {p.rendering}")


class ProgressReporter:
    """Listens to a Progress; owns the rich Live display when stderr is a terminal."""

    def __init__(self, live: bool, interval_seconds: float = 5.0) -> None:
        self._live_wanted = live
        self._interval = interval_seconds
        self._last = 0.0
        self._live: Any = None
        self.console: Any = None
        if live:
            from rich.console import Console

            self.console = Console(stderr=True)

    def log_sink(self, message: str) -> None:
        """Loguru sink that prints above the live display instead of tearing it."""
        self.console.print(message.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> ProgressReporter:
        if self._live_wanted:
            from rich.live import Live

            self._live = Live(console=self.console, refresh_per_second=4, transient=True)
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if self._live is not None:
            if now - self._last >= 0.1:
                self._last = now
                self._live.update(self._render(progress))
        elif now - self._last >= self._interval:
            self._last = now
            logger.info("progress: {}", _summary(progress))

    def _render(self, p: Progress) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        done = p.charts_ok + p.charts_failed
        table.add_row("charts", ProgressBar(total=max(p.charts_total, 1), completed=done, width=40),
                      f"{done}/{p.charts_total}  ok {p.charts_ok}  failed {p.charts_failed}")
        table.add_row("batches", ProgressBar(total=max(p.batches_total, 1), completed=p.batches_done, width=40),
                      f"{p.batches_done}/{p.batches_total}")
        table.add_row("in flight", "", f"retrieving {p.retrieving}  rendering {p.rendering}")
        return table


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
