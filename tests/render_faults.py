"""Render faults for tests: a render function that dies or hangs the way real workers do.

The supervisor takes the worker-side render function as a parameter; tests hand it
`functools.partial(faulty_render, faults)` (picklable, so it reaches worker processes). It is
called by runner.render.task.run_task, which has already said which chart the worker begins:
the supervisor pins a crash or a hang on that chart.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

from runner.records import RenderedChart, RenderTask
from runner.render.worker import render

KINDS = ("crash", "segv", "hang", "raise", "crash-once", "noop")


def parse_faults(text: str) -> dict[str, str]:
    """`crash:chart_id,hang:other_id` -> {chart_id: kind}; crash-once takes a flag file:
    `crash-once=/tmp/flag:chart_id`."""
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, chart_id = item.rpartition(":")
        assert kind.split("=")[0] in KINDS and chart_id, f"bad fault {item!r}"
        faults[chart_id] = kind
    return faults


# A valid 1x1 PNG: what a no-op render gives every chart (`noop:*`), so a run's pipeline can be
# driven at any size without matplotlib's cost (the big-run test, the bench's memory slope).
NOOP_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                         "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def noop_render(task: RenderTask) -> RenderedChart:
    import hashlib

    return RenderedChart(NOOP_PNG, hashlib.sha256(NOOP_PNG).hexdigest(), 0.0, 0.0, os.getpid(), 0.0)


def faulty_render(faults: dict[str, str], task: RenderTask) -> RenderedChart:
    kind = faults.get(task.job.spec.id, faults.get("*"))
    if kind == "noop":
        return noop_render(task)
    in_worker = multiprocessing.parent_process() is not None  # never hang or kill the test process itself
    if kind and in_worker:
        if kind == "crash":
            os._exit(70)
        if kind == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if kind == "hang":
            time.sleep(3600)
        if kind.startswith("crash-once="):
            flag = Path(kind.split("=", 1)[1])
            if not flag.exists():
                flag.write_text("crashed")
                os._exit(70)
    if kind == "raise":
        raise RuntimeError("injected render failure")
    return render(task)
