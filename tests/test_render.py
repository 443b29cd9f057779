"""The renderer on real demo data: real PNGs at 1600x900, written atomically, inside the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from runner.charts import BUILTIN_PACK
from runner.demo.data import build_database
from runner.demo.server import CHART_TOOLS, Warehouse
from runner.errors import ChartError
from runner.jobs import ChartJob, RenderTask, plan_batches, safe_part
from runner.render import worker
from runner.render.worker import init_worker, render
from runner.retrieval.parse import chart_data_from_json


@pytest.fixture(scope="module")
def warehouse() -> Warehouse:
    return Warehouse(build_database())


def _job_and_data(warehouse: Warehouse, spec, token: str, folder: Path):
    method = getattr(warehouse, CHART_TOOLS[spec.tool][0])
    data = chart_data_from_json(spec, token, method(token, "2024-01-01", "2025-12-31"))
    return ChartJob(token, spec, "2024-01-01", "2025-12-31", str(folder / token / f"{spec.id}.png")), data


@pytest.mark.parametrize("spec", BUILTIN_PACK, ids=lambda s: s.id)
def test_each_builtin_chart_renders_a_1600x900_png(spec, warehouse, tmp_path):
    init_worker()
    token = warehouse.merchants()[0]["token"]
    out = render(RenderTask(*_job_and_data(warehouse, spec, token, tmp_path), compress_level=6))
    with Image.open(out.output) as image:
        assert image.format == "PNG" and image.size == (1600, 900)
        # A real chart has many colours (lines, bars, text), not a blank canvas.
        assert len(image.convert("RGB").getcolors(maxcolors=1_000_000)) > 50
    assert out.bytes == Path(out.output).stat().st_size
    assert [p.name for p in (tmp_path / token).iterdir()] == [f"{spec.id}.png"]  # no temporary files left


def test_a_reused_figure_gives_the_same_png_as_a_new_one(warehouse, tmp_path):
    """Workers draw each layout on one figure, cleared between charts: the PNG must not change."""
    init_worker()
    first, second = (m["token"] for m in warehouse.merchants()[:2])
    fresh = {}
    for spec in BUILTIN_PACK:
        worker._canvases.clear()
        fresh[spec.id] = render(RenderTask(*_job_and_data(warehouse, spec, second, tmp_path / "fresh"), 1)).sha256
    worker._canvases.clear()
    for spec in BUILTIN_PACK:  # every layout drawn once for another merchant, so all are reused below
        render(RenderTask(*_job_and_data(warehouse, spec, first, tmp_path / "warm"), 1))
    reused = {spec.id: render(RenderTask(*_job_and_data(warehouse, spec, second, tmp_path / "reused"), 1)).sha256
              for spec in reversed(BUILTIN_PACK)}
    assert len(worker._canvases) == len({(s.kind, 3 if s.kind == "breakdown" else 1) for s in BUILTIN_PACK})
    assert reused == fresh


def test_a_failed_render_leaves_no_file(warehouse, tmp_path):
    spec = BUILTIN_PACK[0]
    token = warehouse.merchants()[0]["token"]
    data = chart_data_from_json(spec, token, warehouse.monthly_sales_yoy(token, "2024-01-01", "2025-12-31"))
    # The output path is a folder, so the final rename fails after the PNG was encoded.
    target = tmp_path / "chart.png"
    target.mkdir()
    (target / "keep").write_text("x")
    job = ChartJob(token, spec, "2024-01-01", "2025-12-31", str(target))
    with pytest.raises(ChartError) as info:
        render(RenderTask(job, data, compress_level=6))
    assert info.value.error_type == "render_error"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png"]


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
