"""How the deck writes numbers and periods: the formatting rules every sentence follows.

The rules (the README's "How decks write numbers" repeats them, and the tests format by them
independently):
- Money in euros: whole euros with thousands separators at €1,000 and above (€12,346); cents
  below (€186.40). Rounding is Python's round-half-even of the exact float.
- Counts: whole numbers with thousands separators (1,234 orders).
- Other values: whole numbers at 100 and above, two decimals below.
- Percentages and changes: one decimal (55.9%, +12.3%); a change in share is in points (+1.2 pt).
- A number that rounds to zero is written without a sign: "0.0%", never "-0.0%".
- A month is "Jan 2025"; a span of months "Oct–Dec 2025", or "Nov 2024–Jan 2025" across years;
  twelve months from January are the year, "2025".
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
STEADY_POINTS = 1.0  # a share moving less than this many points has held steady
STEADY_CHANGE = 0.02  # a value changing less than 2% has held steady


@dataclass(frozen=True)
class Text:
    headline: str  # one line for the summary slide
    paragraph: str


def unsigned_zero(number: str) -> str:
    """A formatted number that rounds to zero, written without its sign: "0.00", not "-0.00"."""
    return number if any(ch in "123456789" for ch in number) else number.replace("-", "")


def is_money(unit: str) -> bool:
    return unit.upper() in ("EUR", "€")


def money(value: float, unit: str) -> str:
    """A value in the chart's unit, as a reader writes it: €12,345, €186.40, 1,234 orders, 55.9%."""
    if unit == "%":
        return pct(value)
    if is_money(unit):
        return "€" + unsigned_zero(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}")
    number = f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.2f}"
    return f"{unsigned_zero(number)} {unit}".strip()


def pct(value: float) -> str:
    return unsigned_zero(f"{value:.1f}") + "%"


def signed_pct(value: float) -> str:
    return unsigned_zero(f"{value:+.1f}") + "%"


def points(value: float) -> str:
    return unsigned_zero(f"{value:+.1f}") + " pt"


def share(part: float, whole: float) -> float:
    """`part` in percent of `whole`; 0 of nothing. Validated parts of a whole are 0..whole."""
    return 100 * part / whole if whole else 0.0


def growth(new: float, old: float) -> float | None:
    """The change from `old` to `new` in percent; None where there is nothing to measure it by
    (no `old`, or one so near zero that the ratio leaves the floats)."""
    change = (new - old) / abs(old) * 100 if old else math.inf
    return change if math.isfinite(change) else None


def change(new: float, old: float) -> str:
    measured = growth(new, old)
    return "new" if measured is None else signed_pct(measured)


def month_name(label: str) -> str:
    """"2025-01" as "Jan 2025"; any other label as it is."""
    match = _MONTH.match(label)
    if match is None or not 1 <= int(match[2]) <= 12:
        return label
    return f"{calendar.month_abbr[int(match[2])]} {match[1]}"


def span(first: str, last: str) -> str:
    """Months "YYYY-MM" from `first` to `last` as a reader names them: "Mar 2025", "Oct–Dec 2025",
    "Nov 2024–Jan 2025", or "2025" for the twelve months of a calendar year."""
    if first == last:
        return month_name(first)
    (y1, m1), (y2, m2) = (int(first[:4]), int(first[5:7])), (int(last[:4]), int(last[5:7]))
    if y1 == y2 and m1 == 1 and m2 == 12:
        return str(y1)
    if y1 == y2:
        return f"{calendar.month_abbr[m1]}–{calendar.month_abbr[m2]} {y1}"
    return f"{month_name(first)}–{month_name(last)}"


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
