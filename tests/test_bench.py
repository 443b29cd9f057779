"""The benchmark still runs and reports every figure (its goals are for people to read, not asserted).
The smoke size keeps this quick; what the figures say needs the full run on an idle machine."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers import REPO

# The suite's longest test: a group of its own, so that it is handed out first (tests/conftest.py).
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("bench")]


def _numbers(value: object, path: str = "") -> list[tuple[str, float]]:
    """Every number in the figures, with where it is."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [(path, float(value))]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{path}[{i}]")]
    return []


def test_smoke_benchmark_prints_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--smoke", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=590)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    for scenario in ("render", "cpu", "retrieval", "end_to_end", "scale", "light_commands", "decks", "hostile",
                     "cache", "dask", "agent"):
        assert figures[scenario], scenario
    # Every figure is a number; all but the two signed figures (how much less wall the default run
    # takes than toggles off, and the time the cache saves: at smoke size, under load, either can be
    # negative) are at least zero.
    signed = {".end_to_end.reduction", ".cache.saved_s"}
    bad = {path: n for path, n in _numbers(figures) if not math.isfinite(n) or (n < 0 and path not in signed)}
    assert not bad, bad
    assert figures["scale"]["charts_ok"] == figures["scale"]["charts"] == 3 * 7
    # The smoke size runs one hostile case of each kind; each case has its goal, as do the 20 others.
    assert len(figures["hostile"]) == 4
    hostile_goals = [goal["figure"] for goal in figures["goals"] if goal["figure"].startswith("hostile: ")]
    assert hostile_goals == [f"hostile: {name}" for name in figures["hostile"]]
    assert len(figures["goals"]) == 21 + len(hostile_goals)
    for goal in figures["goals"]:  # each one printed in the table
        assert goal["figure"] in proc.stdout and goal["measured"] in proc.stdout
