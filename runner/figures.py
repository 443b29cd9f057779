"""Key figures: what a pack declares for the deck's summary slide, and their values.

A figure is a chart and an aggregate of its monthly values (sum, last, mean), optionally of
one series; or the ratio of two figures (AOV is sales ÷ orders, across two charts); or a
figure as a share of another (orders from new customers, in % of all orders). Each is
measured over the window's last 12 months (the whole window when it is shorter) and, where
its charts were retrieved from a year earlier, against the same months a year before.
A figure whose data is missing is left out, never shown as zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.kinds import KINDS
from runner.wording import months_between, shift_month, span

if TYPE_CHECKING:
    from runner.records import ChartData

MAX_FIGURES = 12
SUMMARY_MONTHS = 12
_PACK_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # a chart's or a key figure's id


class Aggregate(StrEnum):
    SUM = "sum"  # the period's total
    LAST = "last"  # the period's last month
    MEAN = "mean"  # the mean of the period's months that have a value


@dataclass(frozen=True)
class KeyFigure:
    id: str
    label: str
    chart: str = ""  # the chart whose monthly values it aggregates
    series: str = ""  # one series of that chart; empty: all of them added up
    aggregate: Aggregate = Aggregate.SUM
    ratio: tuple[str, str] | None = None  # (numerator, denominator): two other figures' ids
    share_of: str = ""  # this figure in percent of that figure


@dataclass(frozen=True)
class Period:
    months: tuple[str, ...]  # "YYYY-MM", the figures' months
    previous: tuple[str, ...]  # the same months a year earlier

    @property
    def name(self) -> str:
        return span(self.months[0], self.months[-1])

    @property
    def previous_name(self) -> str:
        return span(self.previous[0], self.previous[-1])


@dataclass(frozen=True)
class FigureValue:
    figure: KeyFigure
    unit: str  # "EUR", "orders", "%", ...
    value: float
    previous: float | None  # None: nothing to compare with (see previous_empty)
    previous_empty: bool = False  # the earlier months were retrieved and hold nothing to divide by


def summary_period(start_date: str, end_date: str) -> Period:
    months = months_between(start_date, end_date)[-SUMMARY_MONTHS:]
    return Period(tuple(months), tuple(shift_month(m, -12) for m in months))


# -- declaring ----------------------------------------------------------------------------------------------
_FIELDS = {"id", "label", "chart", "series", "aggregate", "ratio", "share_of"}


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or not value.isprintable():
        raise UsageError(f"{where}: {key!r} must be printable text, got {str(value)[:40]!r}")
    return value.strip()


def pack_table(entry: Any, fields: set[str], what: str, where: str) -> dict[str, Any]:
    """One of a pack's [[chart]] or [[figure]] tables (`what`): a table, with no field but `fields`."""
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected a table of {what} fields, got {type(entry).__name__}")
    unknown = sorted(set(entry) - fields)
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)}")
    return entry


def check_pack_id(value: str, what: str, where: str) -> None:
    """A chart's or a key figure's id (`what`), as the pack gives it."""
    if not _PACK_ID.match(value):
        raise UsageError(f"{where}: {what} id {value!r} must be 1-64 of a-z, 0-9, '_' or '-'")


def figure_from_mapping(entry: Any, where: str) -> KeyFigure:
    entry = pack_table(entry, _FIELDS, "figure", where)
    figure_id, label = _text(entry, "id", where), _text(entry, "label", where)
    check_pack_id(figure_id, "figure", where)
    if not label:
        raise UsageError(f"{where} ({figure_id}): 'label' is required")
    where = f"{where} ({figure_id})"
    ratio = entry.get("ratio")
    chart = _text(entry, "chart", where)
    if ratio is not None:
        if not (isinstance(ratio, list) and len(ratio) == 2 and all(isinstance(r, str) for r in ratio)):
            raise UsageError(f"{where}: 'ratio' must be two figure ids, [numerator, denominator]")
        if chart or "series" in entry or "aggregate" in entry or "share_of" in entry:
            raise UsageError(f"{where}: a ratio takes no chart, series, aggregate or share_of")
        return KeyFigure(figure_id, label, ratio=(ratio[0].strip(), ratio[1].strip()))
    if not chart:
        raise UsageError(f"{where}: give 'chart' (with an aggregate) or 'ratio'")
    aggregate = _text(entry, "aggregate", where) or "sum"
    if aggregate not in tuple(Aggregate):
        raise UsageError(f"{where}: aggregate {aggregate!r} is not one of {', '.join(Aggregate)}")
    return KeyFigure(figure_id, label, chart=chart, series=_text(entry, "series", where),
                     aggregate=Aggregate(aggregate), share_of=_text(entry, "share_of", where))


def check_figures(figures: tuple[KeyFigure, ...], charts: Mapping[str, str], where: str) -> None:
    """Every figure names charts of the pack that have months, and figures declared before it.
    `charts` maps the pack's chart ids to their kinds."""
    if len(figures) > MAX_FIGURES:
        raise UsageError(f"{where}: {len(figures)} figures; a summary slide holds at most {MAX_FIGURES}")
    seen: set[str] = set()
    for figure in figures:
        named = f"{where}: figure {figure.id!r}"
        if figure.id in seen:
            raise UsageError(f"{named} appears twice")
        for other in (*(figure.ratio or ()), *([figure.share_of] if figure.share_of else [])):
            if other not in seen:
                raise UsageError(f"{named} uses figure {other!r}, which is not declared before it")
        if figure.chart:
            if figure.chart not in charts:
                raise UsageError(f"{named} names chart {figure.chart!r}, which is not in the pack")
            if KINDS[charts[figure.chart]].monthly is None:
                raise UsageError(f"{named}: chart {figure.chart!r} is a {charts[figure.chart]} chart, "
                                 "which has no months to add up")
        seen.add(figure.id)


# -- measuring ----------------------------------------------------------------------------------------------
def _aggregate(values: Mapping[str, float], months: tuple[str, ...], how: Aggregate) -> float | None:
    present = [values[m] for m in months if m in values]
    if not present:
        return None
    if how is Aggregate.SUM:
        return sum(present)
    if how is Aggregate.LAST:
        return values.get(months[-1])
    return sum(present) / len(present)


def _previous(values: Mapping[str, float], period: Period, how: Aggregate) -> float | None:
    """The same months a year earlier, where the data holds them. A total needs every month there
    (a tool or a query gives a month without orders as 0): a model that fetched less than it was
    asked for gives no comparison, rather than a false "new"."""
    if how is Aggregate.SUM and not all(month in values for month in period.previous):
        return None
    return _aggregate(values, period.previous, how)


@dataclass(frozen=True)
class ChartSource:
    """One chart's material for the figures: its kind, data, and the first month retrieved."""

    kind: str
    data: ChartData
    retrieved_from: str  # "YYYY-MM"


def measure(figures: tuple[KeyFigure, ...], sources: Mapping[str, ChartSource], period: Period,
            ) -> list[FigureValue]:
    """The figures that can be measured, in declared order; one whose chart failed, or whose
    series or months have no value, is left out (and so is any figure built on it)."""
    known: dict[str, FigureValue] = {}
    for figure in figures:
        value = _measure(figure, sources, period, known)
        if value is not None:
            known[figure.id] = value
    return list(known.values())


def _measure(figure: KeyFigure, sources: Mapping[str, ChartSource], period: Period,
             known: dict[str, FigureValue]) -> FigureValue | None:
    if figure.ratio is not None:
        top, bottom = (known.get(f) for f in figure.ratio)
        if top is None or bottom is None or not bottom.value:
            return None
        previous = top.previous / bottom.previous if top.previous is not None and bottom.previous else None
        return FigureValue(figure, top.unit, top.value / bottom.value, previous, bottom.previous == 0)
    source = sources.get(figure.chart)
    if source is None:
        return None
    monthly = KINDS[source.kind].monthly
    assert monthly is not None  # check_figures allows only charts with months
    values = monthly(source.data, figure.series or None)
    value = _aggregate(values, period.months, figure.aggregate)
    if value is None:
        return None
    previous = _previous(values, period, figure.aggregate) if source.retrieved_from <= period.previous[0] else None
    unit = source.data.unit
    if figure.share_of:
        whole = known.get(figure.share_of)
        if whole is None or not whole.value:
            return None
        share_before = 100 * previous / whole.previous if previous is not None and whole.previous else None
        return FigureValue(figure, "%", 100 * value / whole.value, share_before, whole.previous == 0)
    return FigureValue(figure, unit, value, previous)
