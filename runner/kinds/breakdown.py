"""breakdown: 100% bars, one per group (age band, gender, ...), labelled in percent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.kinds.base import ChartKind, Shape
from runner.wording import pct

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from matplotlib.ticker import PercentFormatter

    from runner.kinds.axes import PALETTE, part_labels, plain

    if not fig.axes:
        fig.subplots(len(data.panels), 1, squeeze=False)
    axes = fig.axes
    for ax, panel in zip(axes, data.panels, strict=True):
        left = 0.0
        values = [v or 0.0 for v in panel.series[0].values]
        for i, part in enumerate(values):
            ax.barh([0], [part], left=left, height=0.7, color=PALETTE[i % len(PALETTE)], edgecolor="white")
            left += part
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.4, 0.75)  # room over the bar for the labels of parts too narrow to hold theirs
        part_labels(ax, panel.labels, values, bar_top=0.35)
        ax.set_yticks([0], [plain(panel.title)], fontsize=13)
        ax.set_xticks(range(0, 101, 20))
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        for side in ("left", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
        if ax is not axes[-1]:  # one percent scale, under the last bar
            ax.spines["bottom"].set_visible(False)
            ax.tick_params(axis="x", bottom=False, labelbottom=False)
    axes[-1].set_xlabel(job.spec.y_label or "Share (%)")


def sentence(spec: ChartSpec, data: ChartData) -> str:
    """Each group's largest share; a tie names every label that has it."""
    parts = []
    for panel in data.panels:
        shares = [(label, value) for label, value in zip(panel.labels, panel.series[0].values, strict=True)
                  if value is not None]
        if shares:
            largest = max(value for _, value in shares)
            leaders = [label for label, value in shares if value == largest]
            each = " each" if len(leaders) > 1 else ""
            parts.append(f"{' and '.join(leaders)} by {panel.title.lower()} ({pct(largest)}{each})")
    return "The largest groups: " + "; ".join(parts) + "."


KIND = ChartKind(name="breakdown", shape=Shape.GROUPS, draw=draw, sentence=sentence)
