"""How the deck writes numbers and periods: the rules every chart's paragraph follows.

The rules (the README's "How decks write numbers" repeats them, and tests/test_sentences.py
formats by them independently):
- Money in euros: whole euros with thousands separators at €1,000 and above (€12,346); cents
  below (€186.40); a negative amount is "-€5.00". Rounding is round-half-even of the float
  (Python's format), and a total is the float nearest the exact sum (math.fsum).
- Counts and other values: whole numbers with thousands separators when whole or at 100 and
  above (1,234 orders); two decimals otherwise (5.50 orders).
- Percentages and changes: one decimal, thousands separators (55.9%, +12.3%, +1,250.0%); a change
  of a value in percent ("%" unit) is in points (+1.2 pt).
- A number that rounds to zero is written without a sign: "0.0%", never "-0.0%" or "+0.0%".
- A change in percent ("up 12.3%", "+12.3%") is only ever measured from a positive base: against
  nothing (zero, negative, or not retrieved) no growth is claimed; the amounts are said instead.
- Steady: a series is "steady" when every value is within STEADY_CHANGE (2%) of the mean of its
  values; two values are "level" when they differ by less than 2% of the smaller (positive) one,
  or are equal. A mix of shares "held steady" when no share moved by STEADY_POINTS (1 point) or more.
- A month is "Jan 2025"; a span of months "Oct–Dec 2025", or "Nov 2024–Jan 2025" across years;
  only the twelve months Jan–Dec of one year are called the year, "2025". Every comparison names
  both sides ("on Oct–Dec 2024").
- A line of monthly averages (AOV) is described by its monthly values (range, first, last), never
  by a mean of them, which is not the period's average.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
# English whatever the machine's locale (calendar.month_abbr follows LC_TIME).
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
STEADY_POINTS = 1.0  # a mix held steady when no share moved by this many points or more
STEADY_CHANGE = 0.02  # steady: every value within 2% of the mean; level: two values within 2%


def unsigned_zero(number: str) -> str:
    """A formatted number that rounds to zero, written without its sign: "0.00", not "-0.00" or "+0.00"."""
    return number if any(ch in "123456789" for ch in number) else number.replace("-", "").replace("+", "")


def is_money(unit: str) -> bool:
    return unit.upper() in ("EUR", "€")


def money(value: float, unit: str) -> str:
    """A value in the chart's unit, as a reader writes it: €12,345, €186.40, 1,234 orders, 55.9%."""
    if unit == "%":
        return pct(value)
    if is_money(unit):
        number = unsigned_zero(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}")
        return "-€" + number[1:] if number.startswith("-") else "€" + number
    number = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"
    return f"{unsigned_zero(number)} {unit}".strip()


def pct(value: float) -> str:
    return unsigned_zero(f"{value:,.1f}") + "%"


def signed_pct(value: float) -> str:
    return unsigned_zero(f"{value:+,.1f}") + "%"


def points(value: float, signed: bool = True) -> str:
    """A difference of percentages in points: a change ("+1.2 pt"), or a gap (signed=False: "1.2 pt")."""
    return unsigned_zero(f"{value:+,.1f}" if signed else f"{value:,.1f}") + " pt"


def share(part: float, whole: float) -> float:
    """`part` in percent of `whole`; 0 of nothing. Validated parts of a whole are 0..whole."""
    return 100 * part / whole if whole else 0.0


def percent_change(new: float, old: float) -> float | None:
    """The change from `old` to `new` in percent, measured only from a positive base: None against
    nothing, a negative base, or a ratio that leaves the floats."""
    if not old > 0:
        return None
    measured = (new - old) / old * 100
    return measured if math.isfinite(measured) else None


def total(values: Iterable[float | None]) -> float:
    """The sum of the values there are, as the float nearest the exact sum: the same whatever
    their order (the tests add up exactly and must print what this prints)."""
    return math.fsum(v for v in values if v is not None)


def is_steady(values: Sequence[float]) -> bool:
    """Every value within STEADY_CHANGE of their mean (all of them zero counts as steady)."""
    mean = total(values) / len(values)
    return all(abs(v - mean) <= STEADY_CHANGE * abs(mean) for v in values)


def is_level(a: float, b: float) -> bool:
    """Two values equal, or differing by less than STEADY_CHANGE of the smaller, positive one."""
    low, high = min(a, b), max(a, b)
    return high == low or (low > 0 and high - low < STEADY_CHANGE * low)


def year_month(label: str) -> tuple[int, int] | None:
    """"2025-01" as (2025, 1); None for a label that is not a month "YYYY-MM" (01-12)."""
    match = _MONTH.match(label)
    if match is None or not 1 <= int(match[2]) <= 12:
        return None
    return int(match[1]), int(match[2])


def month_name(label: str) -> str:
    """"2025-01" as "Jan 2025"; any other label as it is."""
    parts = year_month(label)
    if parts is None:
        return label
    return f"{MONTH_NAMES[parts[1] - 1]} {parts[0]:04d}"


def span(first: str, last: str) -> str:
    """Months "YYYY-MM" from `first` to `last` as a reader names them: "Mar 2025", "Oct–Dec 2025",
    "Nov 2024–Jan 2025", or "2025" for the twelve months of a calendar year."""
    if first == last:
        return month_name(first)
    (y1, m1), (y2, m2) = (int(first[:4]), int(first[5:7])), (int(last[:4]), int(last[5:7]))
    if y1 == y2 and m1 == 1 and m2 == 12:
        return str(y1)
    if y1 == y2:
        return f"{MONTH_NAMES[m1 - 1]}–{MONTH_NAMES[m2 - 1]} {y1}"
    return f"{month_name(first)}–{month_name(last)}"


def labels_span(first: str, last: str) -> str:
    """A chart's run of labels named: a span of months (see span) where both are months in order,
    else the labels as they are ("Q1–Q4")."""
    if year_month(first) and year_month(last) and first <= last:
        return span(first, last)
    return first if first == last else f"{first}–{last}"


def shift_month(month: str, months: int) -> str:
    """"YYYY-MM" moved by `months` (negative: back)."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_between(first: str, last: str) -> list[str]:
    """Every month "YYYY-MM" from `first` to `last`, both included."""
    out, month = [], first[:7]
    while month <= last[:7]:
        out.append(month)
        month = shift_month(month, 1)
    return out
