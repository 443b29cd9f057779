"""Drawing a chart on a matplotlib Figure (object API only: no pyplot state).

What a kind draws is its registry entry's (runner.kinds); this module gives every chart the
same frame: the style, the title block, the margins, and the reuse of one figure per layout.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from runner.jobs import ChartData, ChartJob
from runner.kinds import KINDS

STYLE: dict[str, Any] = {
    "font.size": 13,
    "axes.titlesize": 20,
    "axes.labelsize": 14,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def figure_layout(job: ChartJob, data: ChartData) -> tuple[str, int]:
    """Charts with the same layout can be drawn on the same (cleared) figure."""
    return job.spec.kind, len(data.panels)


def clear_chart(fig: Figure) -> None:
    """Remove what draw_chart added, keeping the axes and their ticks.

    Making axes and ticks is about a third of a chart's CPU, so a worker draws each layout on
    one figure again and again; the result is the same, pixel for pixel (tests/test_render.py).
    """
    for ax in fig.axes:
        for container in list(ax.containers):
            container.remove()
        for artist in [*ax.lines, *ax.patches, *ax.texts, *ax.collections]:
            artist.remove()
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
        ax.relim()
        ax.set_autoscale_on(True)  # set_ylim turned it off
    for text in list(fig.texts):
        text.remove()


def draw_chart(fig: Figure, job: ChartJob, data: ChartData) -> None:
    """Draw on a new figure, or on one of the same layout after clear_chart."""
    subtitle = f"Merchant {job.merchant}  ·  {job.start_date} to {job.end_date}"
    fig.suptitle(job.spec.title, fontsize=22, fontweight="bold", x=0.06, ha="left", y=0.97)
    fig.text(0.06, 0.905, subtitle, fontsize=13, color="#555555", ha="left")
    KINDS[job.spec.kind].draw(fig, job, data)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.85, bottom=0.1, hspace=0.5)
