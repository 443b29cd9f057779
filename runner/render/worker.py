"""The worker side: render one chart to a PNG, written atomically.

Runs in render worker processes (or in-process when concurrent rendering is off).
Imports matplotlib at module level on purpose: the forkserver preloads this module once,
so every worker starts with matplotlib already imported.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from runner.errors import ChartError  # noqa: E402
from runner.jobs import RenderOutput, RenderTask  # noqa: E402
from runner.render.draw import STYLE, draw_chart  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 16, 9, 100
TEMP_PATTERN = ".*.png.*.tmp"  # what write_png names its temporary files

# Set in pool workers: the pipe where (pid, chart key) is sent as each render begins.
_started: Any = None


def init_worker(started: Any = None) -> None:
    global _started
    matplotlib.rcParams.update(STYLE)
    _started = started
    if started is not None:
        # A pool worker: Ctrl-C reaches the whole process group, but only the coordinator decides
        # what stops; it ends workers itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _inject_fault(kind: str) -> None:
    """The test-only hook: die or hang the way real workers do (exit, segfault, a stuck call)."""
    if kind == "crash":
        os._exit(70)
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "hang":
        time.sleep(3600)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def write_png(fig: Figure, path: Path, compress_level: int) -> bytes:
    """Save to a temporary file beside the target, then rename: readers never see half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # No Software metadata: the bytes stay the same across matplotlib versions.
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None},
                    pil_kwargs={"compress_level": compress_level})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.read_bytes()


def render(task: RenderTask) -> RenderOutput:
    started, cpu_started = time.perf_counter(), time.process_time()
    job = task.job
    if _started is not None:
        _started.send((os.getpid(), job.key))
    if task.fault:
        _inject_fault(task.fault)
    try:
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        FigureCanvasAgg(fig)
        draw_chart(fig, job, task.data)
        content = write_png(fig, Path(job.output), task.compress_level)
    except ChartError:
        raise
    except Exception as exc:
        raise ChartError("render_error", f"{job.spec.id}: {type(exc).__name__}: {exc}"[:300]) from None
    return RenderOutput(
        output=job.output,
        bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        render_ms=round((time.perf_counter() - started) * 1000, 1),
        cpu_ms=round((time.process_time() - cpu_started) * 1000, 1),
        worker_pid=os.getpid(),
        worker_rss_mb=round(_peak_rss_mb(), 1),
    )


def ready() -> int:
    """A no-op task that makes the pool start a worker ahead of the first chart."""
    return os.getpid()
