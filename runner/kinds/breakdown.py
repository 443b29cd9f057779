"""breakdown: 100% bars, one per group (age band, gender, ...), labelled in percent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.decks.wording import Text, pct
from runner.kinds.base import ChartKind, Shape

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.jobs import ChartData, ChartJob


def draw(fig: Figure, job: ChartJob, data: ChartData) -> None:
    from matplotlib.ticker import PercentFormatter

    from runner.render.axes import PALETTE, plain

    if not fig.axes:
        fig.subplots(len(data.panels), 1, squeeze=False)
    axes = fig.axes
    for ax, panel in zip(axes, data.panels, strict=True):
        left = 0.0
        values = [v or 0.0 for v in panel.series[0].values]
        for i, (label, part) in enumerate(zip(panel.labels, values, strict=True)):
            ax.barh([0], [part], left=left, height=0.7, color=PALETTE[i % len(PALETTE)], edgecolor="white")
            if part >= 6:
                ax.text(left + part / 2, 0, f"{plain(label)}\n{part:.1f}%", ha="center", va="center",
                        color="white", fontsize=12, fontweight="bold")
            elif part > 0:
                centre = left + part / 2
                align = "right" if centre > 90 else ("left" if centre < 10 else "center")
                ax.annotate(f"{plain(label)} {part:.1f}%", (centre, 0.38), xytext=(0, 4),
                            textcoords="offset points", ha=align, fontsize=10)
            left += part
        ax.set_xlim(0, 100)
        ax.set_yticks([0], [plain(panel.title)], fontsize=14)
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        for side in ("left", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[-1].set_xlabel(job.spec.y_label or "Share (%)")


def sentence(spec: ChartSpec, data: ChartData) -> Text:
    parts = []
    for panel in data.panels:
        points = [(label, value) for label, value in zip(panel.labels, panel.series[0].values, strict=True)
                  if value is not None]
        if points:
            label, part = max(points, key=lambda p: p[1])
            parts.append(f"{label} by {panel.title.lower()} ({pct(part)})")
    text = "The largest groups: " + "; ".join(parts) + "."
    return Text(f"{spec.title}: " + ", ".join(p.split(" by ")[0] for p in parts), text)


KIND = ChartKind(name="breakdown", about="100% bars, one per group, labelled in percent", shape=Shape.GROUPS,
                 draw=draw, sentence=sentence)
