"""The part of a chart's data that its window shows.

A chart that compares with the previous year is retrieved from a year before its window
(ChartSpec.retrieval_start); its data file keeps all of it, the key figures compare with it,
and what is drawn and described is this: the window's months, and for a year-over-year chart
the calendar months of the window, one line per year, with the year before the window's last
twelve months as the line they are compared with.
"""

from __future__ import annotations

from runner.charts import ChartSpec
from runner.errors import ChartError, ErrorType
from runner.records import ChartData, Panel, Series
from runner.wording import months_between, shift_month, year_month


def shown_or_empty(spec: ChartSpec, merchant: str, data: ChartData, start_date: str, end_date: str) -> ChartData:
    """The shown part of data just retrieved; empty_data when the window itself has nothing (a
    merchant that traded only in the year retrieved before it)."""
    return require_values(spec, merchant, shown_data(spec, data, start_date, end_date))


def shown_data(spec: ChartSpec, data: ChartData, start_date: str, end_date: str) -> ChartData:
    kind = spec.chart_kind
    if kind.monthly is None or len(data.panels) != 1:
        return data
    panel = data.panels[0]
    window = months_between(start_date, end_date)
    if kind.by_year:
        return _years_shown(data, window)
    else:
        if not all(year_month(label) for label in panel.labels):
            return data
        first, last = window[0], window[-1]
        keep = [i for i, label in enumerate(panel.labels) if first <= label <= last]
    if len(keep) == len(panel.labels):
        return data
    series = tuple(Series(s.name, tuple(s.values[i] for i in keep)) for s in panel.series)
    return ChartData(data.unit, (Panel(panel.title, tuple(panel.labels[i] for i in keep), series),), data.paragraph)


def _years_shown(data: ChartData, window: list[str]) -> ChartData:
    """The window's months, and the year before its last twelve (what they are compared with):
    for a window of under a year, on an axis of its calendar months only."""
    panel = data.panels[0]
    if len(panel.labels) != 12 or not all(s.name.isdigit() and len(s.name) == 4 for s in panel.series):
        return data
    wanted = set(window) | {shift_month(month, -12) for month in window[-12:]}
    positions = sorted({int(month[5:7]) - 1 for month in window})
    series = []
    for s in panel.series:
        values = tuple(s.values[i] if f"{s.name}-{i + 1:02d}" in wanted else None for i in positions)
        if any(v is not None for v in values):  # a year with nothing in those months has no line
            series.append(Series(s.name, values))
    return ChartData(data.unit, (Panel(panel.title, tuple(panel.labels[i] for i in positions), tuple(series)),),
                     data.paragraph)


def no_data(spec: ChartSpec, merchant: str) -> ChartError:
    return ChartError(ErrorType.EMPTY_DATA, f"{spec.id}: no data for merchant {merchant!r} in the requested window")


def all_zero(panels: tuple[Panel, ...]) -> bool:
    return all(not v for p in panels for s in p.series for v in s.values)


def require_values(spec: ChartSpec, merchant: str, data: ChartData) -> ChartData:
    """The data, if any value of it is not zero (and not missing): else the chart is empty_data."""
    if all_zero(data.panels):
        raise no_data(spec, merchant)
    return data
