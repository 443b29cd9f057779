"""The renderer on real demo data: real PNGs at 1600x900, and output paths that stay inside the run folder."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from runner.charts import BUILTIN_PACK
from runner.files import safe_part
from runner.planning import plan_batches
from runner.render import worker
from runner.render.worker import init_worker, render
from tests.helpers import render_task


@pytest.mark.parametrize("spec", BUILTIN_PACK, ids=lambda s: s.id)
def test_each_builtin_chart_renders_a_1600x900_png(spec, warehouse, tmp_path):
    init_worker()
    token = warehouse.merchants()[0]["token"]
    out = render(render_task(warehouse, spec, token, tmp_path, compress_level=6))
    with Image.open(io.BytesIO(out.png)) as image:
        assert image.format == "PNG" and image.size == (1600, 900)
        # A real chart has many colours (lines, bars, text), not a blank canvas.
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50
    assert out.sha256 == hashlib.sha256(out.png).hexdigest()
    assert not list(tmp_path.iterdir())  # the worker writes nothing: the coordinator does


def test_a_reused_figure_gives_the_same_png_as_a_new_one(warehouse, tmp_path):
    """Workers draw each layout on one figure, cleared between charts: the PNG must not change."""
    init_worker()
    first, second = (m["token"] for m in warehouse.merchants()[:2])
    fresh = {}
    for spec in BUILTIN_PACK:
        worker._canvases.clear()
        fresh[spec.id] = render(render_task(warehouse, spec, second, tmp_path)).sha256
    worker._canvases.clear()
    for spec in BUILTIN_PACK:  # every layout drawn once for another merchant, so all are reused below
        render(render_task(warehouse, spec, first, tmp_path))
    reused = {spec.id: render(render_task(warehouse, spec, second, tmp_path)).sha256 for spec in reversed(BUILTIN_PACK)}
    assert len(worker._canvases) == len({(s.kind, 3 if s.kind == "breakdown" else 1) for s in BUILTIN_PACK})
    assert reused == fresh


@pytest.mark.parametrize("token", ["../../x", "/etc/passwd", "..", "a/b\\c", "", "ümlaut", "x" * 500])
def test_safe_part_never_leaves_its_folder(token, tmp_path):
    part = safe_part(token)
    assert part and "/" not in part and "\\" not in part and part not in {".", ".."}
    assert len(part) <= 80
    assert (tmp_path / part).resolve().parent == tmp_path.resolve()


def test_distinct_tokens_get_distinct_folders(tmp_path):
    assert safe_part("a/b") != safe_part("a_b")
    assert safe_part("abc123") == "abc123"  # ordinary tokens stay readable
    batches = plan_batches(["../../x", "abc"], BUILTIN_PACK, "2024-01-01", "2025-12-31", tmp_path, 3)
    outputs = [Path(job.output).resolve() for batch in batches for job in batch.jobs]
    assert len(set(outputs)) == 14
    assert all(tmp_path.resolve() in path.parents for path in outputs)
    assert [b.batch_id for b in batches] == [f"batch-{i:03d}" for i in range(1, 7)]
