"""The chart kinds: each is one entry here, and everything the runner does differently per
kind (shape, SQL columns, fill rule, drawing, sentence, key figures, agent hint) is in its
entry and its module. A new kind is a new module and a line below.

Importing this is cheap: the kinds import matplotlib only when they draw.
"""

from __future__ import annotations

from runner.kinds import bars, breakdown, line, stacked_bars, yoy_lines
from runner.kinds.base import ChartKind, Comparison, Shape

KINDS: dict[str, ChartKind] = {kind.name: kind for kind in (
    yoy_lines.KIND, stacked_bars.KIND, line.KIND, bars.BARS, bars.SHARE_BARS, breakdown.KIND)}

__all__ = ["KINDS", "ChartKind", "Comparison", "Shape"]
