"""The worker side: render one chart to PNG bytes, which go back to the coordinator to write.

Runs in render worker processes (or in-process when concurrent rendering is off), called by
runner.render.task.run_task, which also says which task the worker begins (`announce`). Workers
write nothing, so they need no shared disk, and one killed mid-render leaves nothing behind.
Imports matplotlib at module level on purpose: the forkserver preloads this module once,
so every worker starts with matplotlib already imported.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from runner.decks.slides import CHART_PLACE_IN  # noqa: E402
from runner.errors import ChartError, ErrorType, detail  # noqa: E402
from runner.fonts import Medium, missing_glyphs  # noqa: E402
from runner.metrics import peak_rss_mb  # noqa: E402
from runner.records import RenderedChart, RenderTask  # noqa: E402
from runner.render.draw import (  # noqa: E402
    STYLE,
    clear_chart,
    draw_chart,
    fallback_style,
    figure_layout,
    glyph_warnings,
)
from runner.render.lifeline import tie_to_parent  # noqa: E402
from runner.render.supervisor import Task, key_of  # noqa: E402

# Drawn at the size the slide shows it (text sizes are then what a reader sees), at a
# resolution that keeps the PNG 1600x900 for the run folder and for zooming in.
WIDTH_IN, HEIGHT_IN = CHART_PLACE_IN[2:]
DPI = 180

# Set in pool workers: the pipe where (pid, chart key) is sent as each render begins.
_started: Any = None
# One canvas per chart layout, reused chart after chart (see draw.clear_chart).
_canvases: dict[tuple[str, int], FigureCanvasAgg] = {}


def init_worker(started: Any = None) -> None:
    global _started
    cast(Any, matplotlib.rcParams).update(STYLE)  # its stubs accept only literal keys
    _started = started
    if started is not None:
        # A pool worker: it ignores Ctrl-C (the coordinator ends workers itself) and dies with the
        # forkserver, which dies with the coordinator.
        tie_to_parent()


def _new_canvas() -> FigureCanvasAgg:
    return FigureCanvasAgg(Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI))


def _canvas_for(layout: tuple[str, int]) -> FigureCanvasAgg:
    """This worker's figure for a chart layout, cleared; a new one the first time."""
    canvas = _canvases.get(layout)
    if canvas is None:
        canvas = _canvases[layout] = _new_canvas()
    else:
        clear_chart(canvas.figure)
    return canvas


def encode_png(canvas: FigureCanvasAgg, compress_level: int) -> bytes:
    """Draw and encode as RGB: the figure is opaque, so an alpha channel would only add bytes
    to filter and compress (PNG encoding is a fifth of a chart's CPU at zlib level 6)."""
    canvas.draw()
    width, height = canvas.get_width_height()
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="png", compress_level=compress_level, dpi=(DPI, DPI))
    return out.getvalue()


def announce(task: Task) -> None:
    """Tell the coordinator which chart (or deck) this worker begins, so a crash or a hang is pinned on it."""
    if _started is not None:
        _started.send((os.getpid(), key_of(task)))


def render(task: RenderTask) -> RenderedChart:
    started, cpu_started = time.perf_counter(), time.process_time()
    job = task.job
    try:
        layout = figure_layout(job, task.data)
        canvas = _canvas_for(layout)
        try:
            with glyph_warnings() as missing:
                draw_chart(canvas.figure, job, task.data)
                content = encode_png(canvas, task.compress_level)
            style = fallback_style(missing)
            if style is not None:  # again, with the machine's fonts that have them, on a figure of its own
                with glyph_warnings() as missing, matplotlib.rc_context(cast(Any, style)):
                    fallback = _new_canvas()
                    draw_chart(fallback.figure, job, task.data)
                    content = encode_png(fallback, task.compress_level)
        except BaseException:
            _canvases.pop(layout, None)  # half drawn: never reuse it
            raise
    except ChartError:
        raise
    except Exception as exc:
        raise ChartError(ErrorType.RENDER_ERROR, detail(f"{job.spec.id}: {type(exc).__name__}: {exc}")) from None
    return RenderedChart(
        png=content,
        sha256=hashlib.sha256(content).hexdigest(),
        render_ms=round((time.perf_counter() - started) * 1000, 1),
        cpu_ms=round((time.process_time() - cpu_started) * 1000, 1),
        worker_pid=os.getpid(),
        worker_rss_mb=peak_rss_mb(),
        missing_glyphs=missing_glyphs(missing, Medium.PNG, job.merchant, job.spec.id),
    )


def ready() -> int:
    """A no-op task that makes the pool start a worker ahead of the first chart."""
    return os.getpid()
