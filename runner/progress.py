"""Progress the user can follow: a live display on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from loguru import logger


@dataclass(frozen=True)
class Progress:
    """Where every chart is now; the coordinator makes one, a reporter shows it.
    retrieving + queued + rendering + done + failed + cancelled == charts_total."""

    batches_total: int
    batches_done: int  # batches that have ended, counted when they end
    charts_total: int
    retrieving: int  # no data yet
    queued: int  # data in hand, waiting for a render worker
    rendering: int  # a worker is on it now (never more than the workers)
    done: int
    failed: int
    cancelled: int = 0
    running: tuple[str, ...] = ()  # the batches under way: "batch-003 MERCHANT: chart, chart"

    def summary(self) -> str:
        cancelled = f", cancelled {self.cancelled}" if self.cancelled else ""
        return (f"batches {self.batches_done}/{self.batches_total} · charts {self.charts_total}: "
                f"retrieving {self.retrieving}, queued {self.queued}, rendering {self.rendering}, "
                f"done {self.done}, failed {self.failed}{cancelled}")


class ProgressReporter:
    """Shows Progress: a rich Live display when stderr is a terminal, else a log line every
    `interval_seconds`; either way a last line when the run ends."""

    def __init__(self, live: bool, interval_seconds: float = 5.0) -> None:
        self._live_wanted = live
        self._interval = interval_seconds
        self._last_shown = 0.0
        self._latest: Progress | None = None
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
        if self._latest is not None:
            logger.info("progress: {}", self._latest.summary())

    def __call__(self, progress: Progress) -> None:
        self._latest = progress
        now = time.monotonic()
        if self._live is not None:
            if now - self._last_shown >= 0.1:
                self._last_shown = now
                self._live.update(self.display(progress))
        elif now - self._last_shown >= self._interval:
            self._last_shown = now
            logger.info("progress: {}", progress.summary())

    @staticmethod
    def display(p: Progress) -> Any:
        """One line per row at any terminal width: the bars give way first, then text is cut
        with an ellipsis (merchant tokens and chart ids can be long), never wrapped."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        def line(label: str, text: str) -> Text:
            return Text(f"{label:<9} {text}", no_wrap=True, overflow="ellipsis")

        bars = Table.grid(padding=(0, 1))
        bars.add_column(no_wrap=True, width=9)
        bars.add_column(max_width=40)
        bars.add_column(no_wrap=True, overflow="ellipsis")
        finished = p.done + p.failed + p.cancelled
        cancelled = f"  cancelled {p.cancelled}" if p.cancelled else ""
        bars.add_row("charts", ProgressBar(total=max(p.charts_total, 1), completed=finished, width=None),
                     f"{finished}/{p.charts_total}  done {p.done}  failed {p.failed}{cancelled}")
        bars.add_row("batches", ProgressBar(total=max(p.batches_total, 1), completed=p.batches_done, width=None),
                     f"{p.batches_done}/{p.batches_total}")
        return Group(bars, line("in flight", f"retrieving {p.retrieving}  queued {p.queued}  rendering {p.rendering}"),
                     line("now", "; ".join(p.running) or "-"))


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty()
