"""The paragraph under each chart says only what its data show: every number, month and span in it
is recomputed here from the chart data, with this file's own arithmetic (exact fractions) and its
own formatting of the rules in runner.wording's docstring, and must be what is printed.

Data are generated with hypothesis for every kind (zeros, one year, partial years, a quarter, flat
series, one category, all-but-one zero, gaps, tiny and huge values), go through the real validator
and the real window (runner.kinds.window.shown_data), and the kind's sentence is read back with a
pattern that matches the whole paragraph, so nothing in it goes unchecked.

The product adds in floats; this file adds exactly. Where the exact value sits within 1e-12 of a
rounding boundary (a half cent, 1,000 euros, a threshold), either side of it is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.charts import BUILTIN_PACK, ChartSpec, Comparison
from runner.errors import ChartError
from runner.kinds import paragraphs
from runner.kinds.window import shown_data
from runner.records import ChartData
from runner.retrieval.parse import chart_data_from_json

SPECS = {spec.id: spec for spec in BUILTIN_PACK}
ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NAMES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot")  # no digits: every digit is a number
STEADY = Fraction(2, 100)  # the documented 2%
MIX_STEADY = Fraction(1)  # the documented point
NEAR = Fraction(1, 10**12)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# -- this file's own months and formatting ----------------------------------------------------------------
def index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_at(i: int) -> str:
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def back_a_year(month: str) -> str:
    return month_at(index(month) - 12)


def months_from(first: str, last: str) -> list[str]:
    return [month_at(i) for i in range(index(first), index(last) + 1)]


def month_words(month: str) -> str:
    return f"{ABBR[int(month[5:7]) - 1]} {month[:4]}"


def span_words(months: list[str]) -> str:
    """A run of consecutive months as the rules name it; only Jan–Dec of one year is the year."""
    first, last = months[0], months[-1]
    assert months == months_from(first, last)
    if first == last:
        return month_words(first)
    if first[:4] == last[:4]:
        if first[5:] == "01" and last[5:] == "12":
            return first[:4]
        return f"{ABBR[int(first[5:]) - 1]}–{ABBR[int(last[5:]) - 1]} {first[:4]}"
    return f"{month_words(first)}–{month_words(last)}"


def grouped(n: int) -> str:
    digits = str(n)
    groups = []
    while len(digits) > 3:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    return ",".join([digits, *groups])


def fixed(x: Fraction, places: int) -> str:
    """x rounded half to even at `places` decimals, thousands grouped; zero has no sign."""
    n = round(x * 10**places)
    whole, part = divmod(abs(n), 10**places)
    return ("-" if n < 0 else "") + grouped(whole) + (f".{part:0{places}d}" if places else "")


def percent(x: Fraction) -> str:
    return fixed(x, 1) + "%"


def signed(x: Fraction, suffix: str = "%") -> str:
    text = fixed(x, 1)
    return ("+" + text if round(x * 10) > 0 else text) + suffix


def amount(x: Fraction, unit: str) -> str:
    if unit == "%":
        return percent(x)
    if unit == "EUR":
        text = fixed(x, 0 if abs(x) >= 1000 else 2)
        return "-€" + text[1:] if text.startswith("-") else "€" + text
    text = fixed(x, 0 if x.denominator == 1 or abs(x) >= 100 else 2)
    return f"{text} {unit}".strip()


def printed_value(printed: str) -> tuple[Fraction, Fraction]:
    """The number a printed amount states, and half its last digit's step."""
    digits = re.search(r"-?[\d,]*\d(?:\.\d+)?", printed.replace("€", ""))
    assert digits, printed
    text = digits[0].replace(",", "")
    places = len(text.split(".")[1]) if "." in text else 0
    return Fraction(text), Fraction(1, 2 * 10**places)


def assert_printed(printed: str, fmt: Callable[[Fraction], str], x: Fraction) -> None:
    """`printed` is fmt of x, or of a value within float error of x (1e-12 relative; past 2**53 a
    float's last digits are noise)."""
    if printed == fmt(x):
        return
    error = NEAR * abs(x) + NEAR
    value, half = printed_value(printed)
    low, high = x - error, x + error
    inside = [min(max(y, low), high) for y in (value, value - half, value + half, value - half / 2, value + half / 2)]
    assert any(fmt(y) == printed for y in inside), (printed, fmt(x), float(x))


def exact(values: list[float | None]) -> Fraction:
    return sum((Fraction(v) for v in values if v is not None), Fraction(0))


def verdict(margin: Fraction, scale: Fraction) -> bool | None:
    """margin <= 0, or None where it is too near the boundary for floats to decide."""
    if abs(margin) <= NEAR * max(scale, Fraction(1, 10**6)):
        return None
    return margin <= 0


def is_steady(values: list[Fraction]) -> bool | None:
    """Every value within 2% of their mean."""
    if all(v == values[0] for v in values):
        return True
    mean = sum(values, Fraction(0)) / len(values)
    worst = max(abs(v - mean) - STEADY * abs(mean) for v in values)
    return verdict(worst, max(abs(v) for v in values))


def is_level(a: Fraction, b: Fraction) -> bool | None:
    """Equal, or less than 2% apart, of the smaller, positive one."""
    low, high = min(a, b), max(a, b)
    if high == low:
        return True
    if low <= 0:
        return False
    margin = high - low - STEADY * low
    decided = verdict(margin, high)
    return None if decided is None else margin < 0


def agrees(claimed: bool, own: bool | None) -> bool:
    return own is None or claimed == own


def growth(new: Fraction, old: Fraction) -> Fraction:
    return (new - old) / old * 100


def amount_pattern(unit: str) -> str:
    number = r"-?\d[\d,]*(?:\.\d\d)?"
    if unit == "EUR":
        return r"-?€\d[\d,]*(?:\.\d\d)?"
    if unit == "%":
        return r"-?\d[\d,]*\.\d%"
    return number + (f" {unit}" if unit else "")


PCT = r"\d[\d,]*\.\d%"
SIGNED = r"[+-]?\d[\d,]*\.\d%"
MONTH = r"[A-Z][a-z]{2} \d{4}"


def check_span(printed: str, months: list[str]) -> None:
    assert printed == span_words(months), (printed, months)
    if re.fullmatch(r"\d{4}", printed):  # a period called a year is that whole year
        assert months == months_from(f"{printed}-01", f"{printed}-12")


# -- generating chart data ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    start: str  # "YYYY-MM-DD"
    end: str

    @property
    def months(self) -> list[str]:
        return months_from(self.start[:7], self.end[:7])


@st.composite
def windows(draw: st.DrawFn) -> Window:
    first = draw(st.integers(2024 * 12, 2025 * 12 + 11))
    length = draw(st.sampled_from([1, 2, 3, 3, 6, 7, 12, 12, 13, 18, 24, 24]) | st.integers(1, 30))
    return Window(f"{month_at(first)}-01", f"{month_at(first + length - 1)}-28")


def one_value(integers: bool, negative: bool) -> st.SearchStrategy[float]:
    if integers:
        return st.sampled_from([0.0, 1.0]) | st.integers(0, 5000).map(float) | st.integers(0, 10**12).map(float)
    low = -(10**7) if negative else 0
    return (st.just(0.0) | st.integers(low, 10**7).map(lambda c: c / 100)
            | st.integers(1, 99).map(lambda k: k / 10_000) | st.integers(10**9, 10**15).map(float)
            | st.integers(99_990, 100_010).map(lambda c: c / 100))  # about the €1,000 line


@st.composite
def value_lists(draw: st.DrawFn, n: int, integers: bool = False, negative: bool = False,
                gaps: bool = False) -> list[float | None]:
    style = draw(st.sampled_from(["random", "random", "flat", "nearly_flat", "leading_zeros", "one_nonzero",
                                  "zeros"]))
    value = one_value(integers, negative)
    if style == "flat":
        values: list[float | None] = [draw(value)] * n
    elif style == "nearly_flat":
        base = draw(st.integers(100, 10**6))
        values = [float(base + draw(st.integers(-base // 40, base // 40))) if integers else
                  (base + draw(st.integers(-base // 40, base // 40))) / 100 for _ in range(n)]
    elif style == "leading_zeros":
        zeros = draw(st.integers(0, n))
        values = [0.0] * zeros + [draw(value) for _ in range(n - zeros)]
    elif style == "one_nonzero":
        values = [0.0] * n
        values[draw(st.integers(0, n - 1))] = draw(value)
    elif style == "zeros":
        values = [0.0] * n
    else:
        values = [draw(value) for _ in range(n)]
    if gaps:
        values = [None if draw(st.integers(0, 5)) == 0 else v for v in values]
    return values


def validated(spec: ChartSpec, payload: dict) -> ChartData:
    try:
        return chart_data_from_json(spec, "M1", payload)
    except ChartError:  # nothing at all in the data: no chart, no sentence
        assume(False)
        raise


def paragraph(spec: ChartSpec, data: ChartData) -> str:
    text = paragraphs.write(spec, data)
    assert "average" not in text and "mean" not in text
    return text


# -- yoy_lines ---------------------------------------------------------------------------------------------
@st.composite
def yoy_charts(draw: st.DrawFn) -> tuple[ChartSpec, Window, dict[str, float | None], str, dict]:
    spec = SPECS["monthly_sales_yoy"]
    if draw(st.booleans()):
        spec = replace(spec, compare=Comparison.NONE)
    window = draw(windows())
    unit = draw(st.sampled_from(["EUR", "EUR", "orders"]))
    retrieved = months_from(spec.retrieval_start(window.start)[:7], window.end[:7])
    values = draw(value_lists(len(retrieved), integers=unit == "orders", negative=unit == "EUR"))
    raw: dict[str, float | None] = dict(zip(retrieved, values, strict=True))
    before = [m for m in retrieved if m < window.months[0]]
    for month in before:  # a tool may leave months out before the window; never inside it
        if draw(st.integers(0, 6)) == 0:
            raw[month] = None
    years = range(int(retrieved[0][:4]), int(retrieved[-1][:4]) + 1)
    dropped = draw(st.sampled_from([None, None, None, years[0]])) if len(years) > 1 else None
    if dropped is not None and any(m >= window.months[0] for m in raw if m.startswith(str(dropped))):
        dropped = None  # a year with months in the window is always sent
    if dropped is not None:  # a tool that sends only the years it has (this one all before the window)
        raw = {m: v for m, v in raw.items() if not m.startswith(str(dropped))}
    series = [{"name": str(year), "values": [raw.get(f"{year}-{m:02d}") for m in range(1, 13)]}
              for year in years if year != dropped]
    return spec, window, raw, unit, {"labels": list(ABBR), "series": series, "unit": unit}


def check_yoy(text: str, spec: ChartSpec, window: Window, raw: dict[str, float | None], unit: str) -> None:
    wanted = set(window.months) | {back_a_year(m) for m in window.months[-12:]}
    shown = {m: Fraction(v) for m, v in raw.items() if m in wanted and v is not None}
    if not any(shown.values()):
        assert text == (f"Nothing over {span_words(months_from(min(shown), max(shown)))}." if shown
                        else "No figures for the months shown."), text
        return
    current = window.months[-12:]
    previous = [back_a_year(m) for m in current]
    money = amount_pattern(unit)
    found = re.fullmatch(
        rf"In (?P<current>.+?) the total was (?P<now>{money})(?P<against>[;,] .+?)?\."
        rf"(?: (?:Since (?P<since>{MONTH}) \(nothing before it\), the|The) best month shown was (?P<best>{MONTH}) "
        rf"\((?P<high>{money})\) and the weakest (?P<worst>{MONTH}) \((?P<low>{money})\)\.)?", text)
    assert found, text
    check_span(found["current"], current)
    now = exact([raw[m] for m in current])
    assert_printed(found["now"], lambda x: amount(x, unit), now)

    against = found["against"] or ""
    # A year with no line had nothing where the chart retrieved it; a month sent as null is unknown.
    lines = {m[:4] for m in shown}
    nothing = 0.0 if spec.compare is Comparison.PREVIOUS_YEAR else None
    earlier = [raw.get(m) if m[:4] in lines else nothing for m in previous]
    base = exact(earlier)
    if None in earlier:
        assert against == "", text  # not known: no comparison at all
        base = Fraction(0)
    else:
        named = span_words(previous)
        if not any(earlier):
            assert against == f"; there was nothing in {named} to compare with", text
        elif base <= 0:
            claim = re.fullmatch(rf", against ({money}) in (.+)", against)
            assert claim and claim[2] == named, text
            assert_printed(claim[1], lambda x: amount(x, unit), base)
        else:
            claim = re.fullmatch(rf", (?:level with (?P<l_on>.+?) \((?P<l_base>{money}), (?P<l_change>{SIGNED})\)|"
                                 rf"(?P<way>up|down) (?P<change>{PCT}) on (?P<on>.+?) \((?P<base>{money})\))",
                                 against)
            assert claim, text
            measured = growth(now, base)
            assert agrees(claim["l_on"] is not None, is_level(now, base)), text
            if claim["l_on"] is not None:
                assert claim["l_on"] == named
                assert_printed(claim["l_base"], lambda x: amount(x, unit), base)
                assert_printed(claim["l_change"], signed, measured)
            else:
                assert claim["on"] == named and claim["way"] == ("up" if measured > 0 else "down"), text
                assert_printed(claim["base"], lambda x: amount(x, unit), base)
                assert_printed(claim["change"], percent, abs(measured))
    if not base > 0:  # no growth claimed against nothing
        assert not re.search(r"\b(up|down|level)\b|%", text), text

    months = sorted(shown)
    trading = next(i for i, m in enumerate(months) if shown[m] != 0)
    counted = months[trading:]
    high, low = max(shown[m] for m in counted), min(shown[m] for m in counted)
    if len(counted) < 2 or high == low:
        assert found["best"] is None, text
        return
    assert found["best"] is not None, text
    assert found["since"] == (month_words(counted[0]) if trading else None), text
    named = {month_words(m): m for m in counted}
    assert found["best"] in named and found["worst"] in named, text
    assert shown[named[found["best"]]] == high and shown[named[found["worst"]]] == low, text
    assert_printed(found["high"], lambda x: amount(x, unit), high)
    assert_printed(found["low"], lambda x: amount(x, unit), low)


@SETTINGS
@given(chart=yoy_charts())
def test_year_over_year_sentences_are_true(chart):
    spec, window, raw, unit, payload = chart
    data = validated(spec, payload)
    text = paragraph(spec, shown_data(spec, data, window.start, window.end))
    check_yoy(text, spec, window, raw, unit)


# -- stacked_bars ------------------------------------------------------------------------------------------
@st.composite
def monthly_charts(draw: st.DrawFn, spec: ChartSpec, units: list[str], most: int,
                   ) -> tuple[Window, list[str], dict[str, list[float | None]], str, dict]:
    window = draw(windows())
    unit = draw(st.sampled_from(units))
    months = months_from(spec.retrieval_start(window.start)[:7], window.end[:7])
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=most, unique=True))
    integers = spec.counts
    negative = not spec.counts and not spec.chart_kind.parts_of_a_whole
    series = {name: draw(value_lists(len(months), integers=integers, negative=negative, gaps=draw(st.booleans())))
              for name in names}
    payload = {"labels": months, "series": [{"name": n, "values": v} for n, v in series.items()], "unit": unit}
    return window, months, series, unit, payload


def in_window(window: Window, months: list[str], series: dict[str, list[float | None]],
              ) -> dict[str, list[float | None]]:
    keep = [i for i, m in enumerate(months) if m in window.months]
    return {name: [values[i] for i in keep] for name, values in series.items()}


def shares(series: dict[str, list[float | None]], first: int, last: int) -> dict[str, Fraction]:
    totals = {name: exact(values[first:last + 1]) for name, values in series.items()}
    whole = sum(totals.values(), Fraction(0))
    return {name: (100 * part / whole if whole else Fraction(0)) for name, part in totals.items()}


def check_stacked(text: str, window: Window, series: dict[str, list[float | None]], unit: str) -> None:
    months = window.months
    everything = exact([v for values in series.values() for v in values])
    if not everything:
        assert text == f"Nothing over {span_words(months)}.", text
        return
    found = re.fullmatch(
        rf"Of (?P<total>{amount_pattern(unit)}) over (?P<period>[^:]+): (?P<listed>[^.]+(?:\.\d%[^.]*)*)\."
        rf"(?: The mix held steady between (?P<s_first>.+?) and (?P<s_last>.+?): no share moved by a point or more\."
        rf"| The largest shift: (?P<name>.+?) (?P<verb>rose|fell) from (?P<a>{PCT}) to (?P<b>{PCT}) "
        rf"between (?P<first>.+?) and (?P<last>.+?)\.)?", text)
    assert found, text
    assert_printed(found["total"], lambda x: amount(x, unit), everything)
    check_span(found["period"], months)
    overall = shares(series, 0, len(months) - 1)
    listed = [re.fullmatch(rf"(.+) ({PCT})", item) for item in found["listed"].split(", ")]
    assert all(listed) and sorted(m[1] for m in listed) == sorted(series), text  # type: ignore[index]
    for item in listed:
        assert_printed(item[2], percent, overall[item[1]])  # type: ignore[index]
    order = [overall[item[1]] for item in listed]  # type: ignore[index]
    assert all(a >= b - NEAR for a, b in zip(order, order[1:], strict=False)), text  # largest first

    with_data = [i for i in range(len(months)) if any(values[i] for values in series.values())]
    if len(series) < 2 or len(with_data) < 6:
        assert found["s_first"] is None and found["name"] is None, text
        return
    size = max(1, min(3, len(with_data) // 4))
    early, late = (with_data[0], with_data[size - 1]), (with_data[-size], with_data[-1])
    first, last = shares(series, *early), shares(series, *late)
    moved = {name: last[name] - first[name] for name in series}
    widest = max(abs(m) for m in moved.values())
    steady = verdict(widest - MIX_STEADY, MIX_STEADY)
    held = found["s_first"] is not None
    assert agrees(held, None if steady is None else widest < MIX_STEADY), text
    start, end = (found["s_first"], found["s_last"]) if held else (found["first"], found["last"])
    check_span(start, months[early[0]:early[1] + 1])
    check_span(end, months[late[0]:late[1] + 1])
    if not held:
        name = found["name"]
        assert abs(moved[name]) >= widest - Fraction(1, 10) - NEAR, text  # the largest, as printed
        assert found["verb"] == ("rose" if moved[name] > 0 else "fell"), text
        assert_printed(found["a"], percent, first[name])
        assert_printed(found["b"], percent, last[name])


@pytest.mark.parametrize("chart_id", ["sales_by_product_type", "orders_by_user_type"])
@SETTINGS
@given(data=st.data())
def test_stacked_bar_sentences_are_true(chart_id, data):
    spec = SPECS[chart_id]
    window, months, series, unit, payload = data.draw(monthly_charts(spec, ["orders"] if spec.counts else ["EUR"],
                                                                     most=4))
    chart = validated(spec, payload)
    text = paragraph(spec, shown_data(spec, chart, window.start, window.end))
    check_stacked(text, window, in_window(window, months, series), unit)


# -- line --------------------------------------------------------------------------------------------------
def check_line(text: str, window: Window, series: dict[str, list[float | None]], unit: str) -> None:
    months = window.months
    name = next((n for n, values in series.items() if any(v is not None for v in values)), None)
    if name is None:
        assert text == f"No figures over {span_words(months)}.", text
        return
    points = [(m, Fraction(v)) for m, v in zip(months, series[name], strict=True) if v is not None]
    money = amount_pattern(unit)

    def say(printed: str, x: Fraction) -> None:
        assert_printed(printed, lambda y: amount(y, unit), x)

    (first_month, first), (last_month, last) = points[0], points[-1]
    if len(points) == 1:
        found = re.fullmatch(rf"{re.escape(name)} was ({money}) in ({MONTH})\.", text)
        assert found and found[2] == month_words(last_month), text
        say(found[1], last)
        return
    values = [v for _, v in points]
    low, high = min(values), max(values)
    steady = re.fullmatch(rf"{re.escape(name)} held steady over (.+?), between ({money}) and ({money}) each month\.",
                          text)
    assert agrees(steady is not None, is_steady(values)), text
    if steady:
        check_span(steady[1], months_from(first_month, last_month))
        say(steady[2], low)
        say(steady[3], high)
        return
    change = r"(?: \((?P<change>[+-]?\d[\d,]*\.\d(?:%| pt))\))?"
    trend = rf"(?P<last>{money}) in (?P<last_month>{MONTH}), against (?P<first>{money}) in (?P<first_month>{MONTH})"
    if len(points) == 2:
        found = re.fullmatch(rf"{re.escape(name)} was {trend}{change}\.", text)
    else:
        found = re.fullmatch(rf"Over (?P<period>.+?), the monthly {re.escape(name)} ranged from (?P<low>{money}) in "
                             rf"(?P<low_month>{MONTH}) to (?P<high>{money}) in (?P<high_month>{MONTH})\. It was "
                             rf"{trend}{change}\.", text)
    assert found, text
    if len(points) > 2:
        check_span(found["period"], months_from(first_month, last_month))
        at = dict(points)
        assert at[next(m for m, _ in points if month_words(m) == found["low_month"])] == low, text
        assert at[next(m for m, _ in points if month_words(m) == found["high_month"])] == high, text
        say(found["low"], low)
        say(found["high"], high)
    assert (found["last_month"], found["first_month"]) == (month_words(last_month), month_words(first_month))
    say(found["last"], last)
    say(found["first"], first)
    if unit == "%":  # a percentage's change is in points
        assert_printed(found["change"], lambda x: signed(x, " pt"), last - first)
    elif first > 0:
        assert_printed(found["change"], signed, growth(last, first))
    else:  # no growth rate from a base of zero or below
        assert found["change"] is None, text


@SETTINGS
@given(data=st.data())
def test_line_sentences_are_true(data):
    spec = SPECS["aov_by_month"]
    window, months, series, unit, payload = data.draw(monthly_charts(spec, ["EUR", "EUR", "%", ""], most=2))
    chart = validated(spec, payload)
    text = paragraph(spec, shown_data(spec, chart, window.start, window.end))
    check_line(text, window, in_window(window, months, series), unit)


# -- bars and share_bars -----------------------------------------------------------------------------------
@st.composite
def category_charts(draw: st.DrawFn, spec: ChartSpec, units: list[str]) -> tuple[list[str], list[float], str, dict]:
    labels = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    unit = draw(st.sampled_from(units))
    values = draw(value_lists(len(labels), integers=spec.counts, negative=not spec.counts))
    return labels, values, unit, {"labels": labels, "values": values, "unit": unit}  # type: ignore[return-value]


@SETTINGS
@given(data=st.data())
def test_bar_sentences_are_true(data):
    spec = SPECS["aov_by_product_type"]
    labels, values, unit, payload = data.draw(category_charts(spec, ["EUR", "EUR", "orders", "%"]))
    text = paragraph(spec, validated(spec, payload))
    money = amount_pattern(unit)
    at = {label: Fraction(v) for label, v in zip(labels, values, strict=True)}
    high, low = max(at.values()), min(at.values())
    if len(labels) == 1:
        found = re.fullmatch(rf"(.+): ({money})\.", text)
        assert found and found[1] == labels[0], text
        assert_printed(found[2], lambda x: amount(x, unit), high)
        return
    found = re.fullmatch(r"(?P<listed>.+?)\. (?P<gap>[A-Z][a-z]+ (?:and|is) .+)\.", text)
    assert found, text
    items = [re.fullmatch(rf"([A-Z][a-z]+) ({money})", item) for item in found["listed"].split(", ")]
    assert all(items) and sorted(i[1] for i in items) == sorted(labels), text  # type: ignore[index]
    for item in items:
        assert_printed(item[2], lambda x: amount(x, unit), at[item[1]])  # type: ignore[index]
    order = [at[i[1]] for i in items]  # type: ignore[index]
    assert order == sorted(order, reverse=True), text
    level = re.fullmatch(r"(\w+) and (\w+)(?:, the highest and the lowest,)? are level", found["gap"])
    assert agrees(level is not None, is_level(high, low)), text
    if level:
        assert (at[level[1]], at[level[2]]) == (high, low), text
        return
    if unit == "%":
        gap = re.fullmatch(r"(\w+) is (\d[\d,]*\.\d) pt above (\w+)", found["gap"])
        assert gap, text
        assert_printed(gap[2], lambda x: fixed(x, 1), high - low)
    else:
        gap = re.fullmatch(rf"(\w+) is ({money})(?: \(({SIGNED})\))? above (\w+)", found["gap"])
        assert gap, text
        assert_printed(gap[2], lambda x: amount(x, unit), high - low)
        if low > 0:
            assert_printed(gap[3], signed, growth(high, low))
        else:
            assert gap[3] is None, text  # no growth rate from a base of zero or below
    assert at[gap[1]] == high and at[gap.groups()[-1]] == low, text


@SETTINGS
@given(data=st.data())
def test_share_bar_sentences_are_true(data):
    spec = SPECS["orders_by_product_type"]
    labels, values, unit, payload = data.draw(category_charts(spec, ["orders"]))
    text = paragraph(spec, validated(spec, payload))
    money = amount_pattern(unit)
    at = {label: Fraction(v) for label, v in zip(labels, values, strict=True)}
    whole = sum(at.values(), Fraction(0))
    found = re.fullmatch(rf"Of ({money}): (.+)\.", text)
    assert found, text
    assert_printed(found[1], lambda x: amount(x, unit), whole)
    parts = found[2].split(" and ") if len(labels) <= 3 else found[2].split(", ")
    pattern = rf"(\w+) ({PCT}) \(({money})\)" if len(labels) <= 3 else rf"(\w+) ({PCT})"
    items = [re.fullmatch(pattern, part) for part in parts]
    assert all(items) and sorted(i[1] for i in items) == sorted(labels), text  # type: ignore[index]
    for item in items:
        assert_printed(item[2], percent, 100 * at[item[1]] / whole)  # type: ignore[index]
        if len(labels) <= 3:
            assert_printed(item[3], lambda x: amount(x, unit), at[item[1]])  # type: ignore[index]
    order = [at[i[1]] for i in items]  # type: ignore[index]
    assert order == sorted(order, reverse=True), text


# -- breakdown ---------------------------------------------------------------------------------------------
@st.composite
def breakdowns(draw: st.DrawFn) -> list[tuple[str, list[str], list[float]]]:
    groups = []
    for title in draw(st.lists(st.sampled_from(["Age band", "Gender", "Card type"]), min_size=1, max_size=3,
                               unique=True)):
        labels = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
        weights = draw(st.lists(st.integers(0, 50), min_size=len(labels), max_size=len(labels)).filter(any))
        if draw(st.booleans()):  # ties for the largest
            weights = [max(weights) if w else 0 for w in weights]
        tenths = [1000 * w // sum(weights) for w in weights]
        tenths[-1] += 1000 - sum(tenths)  # they add up to 100.0%
        groups.append((title, labels, [t / 10 for t in tenths]))
    return groups


@SETTINGS
@given(groups=breakdowns())
def test_breakdown_sentences_are_true(groups):
    spec = SPECS["user_demographics"]
    payload = {"groups": [{"name": t, "labels": ls, "values": vs} for t, ls, vs in groups], "unit": "%"}
    text = paragraph(spec, validated(spec, payload))
    found = re.fullmatch(r"The largest groups: (.+)\.", text)
    assert found, text
    parts = found[1].split("; ")
    assert len(parts) == len(groups), text
    for part, (title, labels, values) in zip(parts, groups, strict=True):
        claim = re.fullmatch(rf"(.+) by {title.lower()} \(({PCT})( each)?\)", part)
        assert claim, text
        largest = max(values)
        leaders = [label for label, v in zip(labels, values, strict=True) if v == largest]
        assert claim[1].split(" and ") == leaders and bool(claim[3]) == (len(leaders) > 1), text
        assert_printed(claim[2], percent, Fraction(largest))


# -- the cases the decks got wrong, by hand ----------------------------------------------------------------
def test_a_merchant_new_this_year_gets_no_growth_claim_and_no_weakest_month_before_it_traded():
    spec = SPECS["monthly_sales_yoy"]
    payload = {"labels": list(ABBR), "unit": "EUR", "series": [
        {"name": "2024", "values": [0.0] * 12},
        {"name": "2025", "values": [0.0, 0.0, 5000.0, 6000.0, 7000.0, 6500.0, 6100.0, 7200.0, 8000.0, 9000.0,
                                    11000.0, 11791.0]}]}
    data = shown_data(spec, validated(spec, payload), "2024-01-01", "2025-12-31")
    assert paragraph(spec, data) == (
        "In 2025 the total was €77,591; there was nothing in 2024 to compare with. Since Mar 2025 (nothing before "
        "it), the best month shown was Dec 2025 (€11,791) and the weakest Mar 2025 (€5,000).")


def test_a_quarter_is_named_as_one_on_both_sides():
    spec = SPECS["monthly_sales_yoy"]
    payload = {"labels": list(ABBR), "unit": "EUR", "series": [
        {"name": "2024", "values": [None] * 9 + [100.0, 200.0, 300.0]},
        {"name": "2025", "values": [None] * 9 + [110.0, 190.0, 330.0]}]}
    data = shown_data(spec, validated(spec, payload), "2025-10-01", "2025-12-31")
    text = paragraph(spec, data)
    assert text.startswith("In Oct–Dec 2025 the total was €630.00, up 5.0% on Oct–Dec 2024 (€600.00).")


def test_rare_cases_read_back_by_the_same_rules():
    """Cases the generators reach seldom: a year before of net refunds, and a window of nothing."""
    spec = SPECS["monthly_sales_yoy"]
    window = Window("2025-10-01", "2025-12-31")
    raw: dict[str, float | None] = {m: 0.0 for m in months_from("2024-10", "2025-09")}
    raw |= {"2024-10": -50.0, "2024-11": 20.0, "2025-10": 10.0, "2025-11": 0.0, "2025-12": 30.0}
    payload = {"labels": list(ABBR), "unit": "EUR", "series": [
        {"name": year, "values": [raw.get(f"{year}-{m:02d}") for m in range(1, 13)]} for year in ("2024", "2025")]}
    text = paragraph(spec, shown_data(spec, validated(spec, payload), window.start, window.end))
    assert ", against -€30.00 in Oct–Dec 2024." in text
    check_yoy(text, spec, window, raw, "EUR")

    spec = SPECS["orders_by_user_type"]  # retrieved from a year before the window: orders then, none in it
    months = months_from("2024-10", "2025-12")
    series: dict[str, list[float | None]] = {"Alpha": [3.0] * 3 + [0.0] * 12, "Bravo": [1.0] + [0.0] * 14}
    payload = {"labels": months, "unit": "orders", "series": [{"name": n, "values": v} for n, v in series.items()]}
    text = paragraph(spec, shown_data(spec, validated(spec, payload), window.start, window.end))
    assert text == "Nothing over Oct–Dec 2025."
    check_stacked(text, window, in_window(window, months, series), "orders")
