"""The benchmark still runs and reports every figure (its goals are for people to read, not asserted).
The smoke size keeps this quick; what the figures say needs the full run on an idle machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.timeout(240)


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_smoke_benchmark_prints_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--smoke", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    for scenario in ("render", "cpu", "retrieval", "end_to_end", "scale", "light_commands"):
        assert figures[scenario], scenario
    assert all(math.isfinite(n) and n >= 0 for n in _numbers(figures))
    assert figures["scale"]["charts_ok"] == figures["scale"]["charts"] == 3 * 7
    assert len(figures["goals"]) == 12
    for goal in figures["goals"]:  # each one printed in the table
        assert goal["figure"] in proc.stdout and goal["measured"] in proc.stdout
