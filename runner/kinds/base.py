"""What a chart kind is: one record holding everything the runner does differently per kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from runner.charts import ChartSpec
    from runner.records import ChartData, ChartJob


class Shape(StrEnum):
    """The JSON a kind's data travels in (from a tool, a query's rows, a model, the data file)."""

    SERIES = "series"  # {"labels": [...], "series": [{"name": str, "values": [num|null, ...]}], "unit": str}
    CATEGORIES = "categories"  # {"labels": [...], "values": [num, ...], "unit": str}
    GROUPS = "groups"  # {"groups": [{"name": str, "labels": [...], "values": [num, ...]}], "unit": "%"}


# What agent mode asks the model to answer with, per shape.
SHAPE_HINTS = {
    Shape.SERIES: '{"unit": str, "labels": [str], "series": [{"name": str, "values": [number or null]}]}',
    Shape.CATEGORIES: '{"unit": str, "labels": [str], "values": [number]}',
    Shape.GROUPS: '{"unit": "%", "groups": [{"name": str, "labels": [str], "values": [percent]}]}',
}

# The result columns a SQL chart names, per shape: required, then optional.
SHAPE_COLUMNS: dict[Shape, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Shape.SERIES: (("x", "value"), ("series",)),
    Shape.CATEGORIES: (("label", "value"), ()),
    Shape.GROUPS: (("group", "label", "value"), ()),
}

Drawing = Callable[["Figure", "ChartJob", "ChartData"], None]
Sentence = Callable[["ChartSpec", "ChartData"], str]
# A chart's values month by month ("YYYY-MM" -> value), of one series or of all added up.
Monthly = Callable[["ChartData", "str | None"], "dict[str, float]"]


@dataclass(frozen=True)
class ChartKind:
    name: str
    shape: Shape
    draw: Drawing  # on a figure the render worker gives it (titles are the slide's)
    sentence: Sentence  # the paragraph under the chart
    # A month with no row in a SQL result: 0.0 where no orders means zero, None where the
    # value (an average) is undefined and the line has a gap.
    fill: float | None = 0.0
    parts_of_a_whole: bool = False  # values are parts of a total: a negative one is bad data
    by_year: bool = False  # series are years, labels the months Jan..Dec
    monthly: Monthly | None = None  # for key figures; None for a kind without a time axis
    agent_note: str = ""  # what the model must know beyond the shape

    @property
    def columns(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        required, optional = SHAPE_COLUMNS[self.shape]
        return required, () if self.by_year else optional  # a year-over-year line's series is its year

    @property
    def hint(self) -> str:
        return SHAPE_HINTS[self.shape] + (f" ({self.agent_note})" if self.agent_note else "")


class Comparison(StrEnum):
    NONE = ""
    PREVIOUS_YEAR = "previous_year"  # also retrieve the year before the window, to compare with
