"""The executive summary slide: the pack's key figures as headline numbers, each with its
change against a named comparison ("vs Jan–Dec 2024").

Numbers follow runner.wording: money and counts in full; a change of money or counts in
percent, a change of a share in points; against an empty base there is "nothing in 2024 to
compare with", and where no comparison was retrieved none is claimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.figures import ChartSource, FigureValue, Period, measure, summary_period
from runner.records import DeckTask
from runner.wording import is_money, money, percent_change, points, signed_pct


@dataclass(frozen=True)
class Headline:
    label: str  # "Total sales"
    value: str  # "€1,234,567"
    comparison: str  # "+12.3% vs Jan–Dec 2024"; "" where nothing was there to compare with
    figure: str = field(default="", compare=False)  # the key figure's id: a template's {{kpi_<id>}}


def _number(value: float, unit: str) -> str:
    """Money and percentages as the sentences write them; a count whole, without its unit."""
    if unit == "%" or is_money(unit):
        return money(value, unit)
    return money(round(value), "")


def _comparison(figure: FigureValue, period: Period) -> str:
    nothing = f"nothing in {period.previous_name} to compare with"
    if figure.previous is None:
        return nothing if figure.previous_empty else ""
    against = f"vs {period.previous_name}"
    before = _number(figure.previous, figure.unit)
    if figure.unit == "%":
        return f"{points(figure.value - figure.previous)} {against} ({before})"
    if not figure.previous:
        return nothing
    measured = percent_change(figure.value, figure.previous)
    if measured is None:  # a base below zero: no growth rate, as in the sentences
        return f"{against} ({before})"
    return f"{signed_pct(measured)} {against} ({before})"


def headlines(task: DeckTask) -> tuple[Period, list[Headline]]:
    """The period the figures cover, and each figure that could be measured."""
    period = summary_period(task.start_date, task.end_date)
    sources = {chart.spec.id: ChartSource(chart.spec.kind, chart.data,
                                          chart.spec.retrieval_start(task.start_date)[:7])
               for chart in task.charts if chart.data is not None}
    values = measure(task.figures, sources, period)
    return period, [Headline(v.figure.label, _number(v.value, v.unit), _comparison(v, period), v.figure.id)
                    for v in values]
