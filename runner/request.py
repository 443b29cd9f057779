"""The job: which merchants, which charts, which dates. From flags, or from the config file.

A config file may hold the job beside the settings (settings.JOB_KEYS), so a nightly CI
job is `SCALAPAY_CONFIG=job.toml python -m runner`. A flag given on the command line wins over
the same key in the file. Dates may be relative ("-24 months", "last month end"); they are
resolved once, at start, and the report records both forms.
"""

from __future__ import annotations

import calendar
import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from runner.charts import BUILTIN_PACK_NAMES, DEFAULT_PACK, ChartSpec, load_pack, select_charts
from runner.errors import UsageError
from runner.figures import KeyFigure
from runner.files import input_lines, open_input
from runner.merchants import check_merchant_token, merchant_name
from runner.settings import DEFAULT_END, DEFAULT_START, JOB_KEYS, JobKey
from runner.shards import Shard

MAX_MERCHANTS_LINE_BYTES = 1_000_000  # a token and its display name: the guard against one huge line

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_OFFSET = re.compile(r"([+-]\d{1,4})\s*(day|week|month|year)s?")
_ANCHORS = ("today", "yesterday", "this month start", "last month start", "last month end", "last year start",
            "last year end")
DATE_FORMS = "YYYY-MM-DD, " + ", ".join(_ANCHORS) + ", or an offset from today such as -24 months or -7 days"


@dataclass(frozen=True)
class JobInputs:
    """What to build, as the user asked for it (before any server is contacted)."""

    merchants: tuple[str, ...]  # empty: the server's first few (retrieval.discovery)
    charts: tuple[ChartSpec, ...]
    start_date: str
    end_date: str
    write_csv: bool = False
    demo_server_args: tuple[str, ...] = ()  # extra flags for the embedded server
    dates_given: tuple[tuple[str, str], ...] = ()  # relative dates as written, before they were resolved
    pack: str = DEFAULT_PACK  # a built-in pack's name, or the pack file's absolute path
    # The (merchant, chart id) pairs to build when not every merchant gets every chart (a rerun).
    only: tuple[tuple[str, str], ...] | None = None
    reruns: str | None = None  # the report whose failed charts this run runs again
    figures: tuple[KeyFigure, ...] = ()  # the pack's key figures, for the decks' summary slide
    merchant_names: tuple[tuple[str, str], ...] = ()  # (token, display name) where the job gives one
    merchants_sql: str = ""  # the pack's query listing merchants and names (SQL packs), for discovery
    # --shard K/N, checked (runner.shards): given merchants are already cut to the shard's; the
    # merchants a server lists (discovery) are cut when the run is planned.
    shard: str | None = None
    merchants_file: str | None = None  # more merchants, streamed from this file (runner.request.job_merchants)

    @property
    def merchants_given(self) -> bool:
        """The job names its merchants (else the server's first few are taken)."""
        return bool(self.merchants or self.merchants_file)


@dataclass(frozen=True)
class JobRequest:
    """The job keys (settings.JOB_KEYS, one field each) as one source gave them; None where it said nothing."""

    merchants: tuple[str, ...] | None = None
    merchants_file: str | None = None
    shard: str | None = None  # K/N: only this shard of the merchants (runner.shards)
    merchant_names: tuple[tuple[str, str], ...] | None = None  # (token, name) from the job file's merchants
    start_date: str | None = None
    end_date: str | None = None
    pack: str | None = None
    charts: str | None = None
    csv: bool | None = None
    today: str | None = None  # YYYY-MM-DD: the day relative dates count from (default: the real today)

    def over(self, base: JobRequest) -> JobRequest:
        """This request, with `base` filling what it leaves out."""
        given = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(base, **{name: value for name, value in given.items() if value is not None})


def _shift_months(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _relative(value: str, today: date, end: bool) -> date | None:
    """A relative form's date, or None if `value` is none; ValueError or OverflowError past the calendar.

    A month or year offset lands on a month's edge (the first day for a start, the last for an
    end), so a window such as "-24 months" to "last month end" stays the same all month and a
    nightly run's render cache keeps hitting."""
    def last_month_end() -> date:
        return today.replace(day=1) - timedelta(days=1)

    anchors = {"today": lambda: today, "yesterday": lambda: today - timedelta(days=1),
               "this month start": lambda: today.replace(day=1),
               "last month start": lambda: last_month_end().replace(day=1), "last month end": last_month_end,
               "last year start": lambda: date(today.year - 1, 1, 1),
               "last year end": lambda: date(today.year - 1, 12, 31)}
    if value in anchors:
        return anchors[value]()
    if offset := _OFFSET.fullmatch(value):
        count, unit = int(offset.group(1)), offset.group(2)
        if unit in ("day", "week"):
            return today + timedelta(days=count * (7 if unit == "week" else 1))
        month = _shift_months(today.replace(day=1), count * (12 if unit == "year" else 1))
        return month.replace(day=calendar.monthrange(month.year, month.month)[1]) if end else month
    return None


def resolve_date(text: str, today: date, where: str, end: bool = False) -> str:
    """A date as YYYY-MM-DD, from an absolute or a relative form."""
    value = " ".join(text.strip().lower().split())
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise UsageError(f"{where} {text!r} is not a calendar date") from None
    try:
        resolved = _relative(value, today, end)
    except (ValueError, OverflowError):  # before year 1 or after 9999
        raise UsageError(f"{where} {text!r} is out of range: dates run from {date.min} to {date.max}") from None
    if resolved is None:
        raise UsageError(f"{where} {text!r} is not a date: expected {DATE_FORMS}")
    return resolved.isoformat()


def check_dates(start: str, end: str) -> None:
    for flag, value in (("--start-date", start), ("--end-date", end)):
        if not _DATE.fullmatch(value):
            raise UsageError(f"{flag} {value!r} must be a date as YYYY-MM-DD")
        try:
            date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"{flag} {value!r} is not a calendar date") from None
    if start > end:
        raise UsageError(f"--start-date {start} is after --end-date {end}")


_TOKEN_HEADERS, _NAME_HEADERS = ("merchant_token", "token"), ("name", "merchant_name")


def _fields(line: str, where: str) -> list[str]:
    """A line's fields: CSV (quotes hold commas) when it has a comma or a quote, else the line."""
    if "," not in line and '"' not in line:
        return [line]
    try:
        return next(csv.reader([line], strict=True, skipinitialspace=True))
    except csv.Error as exc:
        raise UsageError(f"{where}: not a CSV line ({exc}): {line[:60]!r}") from None


def _header(line: str, where: str) -> tuple[int, int | None] | None:
    """A header row's token and name columns; None if the line is no header."""
    header = [field.strip().lower() for field in _fields(line, where)]
    token = next((header.index(name) for name in _TOKEN_HEADERS if name in header), None)
    if token is None:
        return None
    return token, next((header.index(name) for name in _NAME_HEADERS if name in header), None)


def _merchant(line: str, where: str, columns: tuple[int, int | None] | None) -> tuple[str, str]:
    """A line's (token, name): TOKEN,Name, or the header's columns."""
    fields = [field.strip() for field in _fields(line, where)]
    if columns is None and len(fields) > 2:
        raise UsageError(f"{where}: {len(fields)} fields; a line is TOKEN or TOKEN,Name (quote a name that "
                         "holds a comma, or give a header row merchant_token,name)")
    token_at, name_at = columns or (0, 1)
    if token_at >= len(fields):
        raise UsageError(f"{where}: no merchant token in column {token_at + 1}")
    token = check_merchant_token(fields[token_at], where)
    name = fields[name_at] if name_at is not None and name_at < len(fields) else ""
    return token, merchant_name(name, token) if name else ""


def iter_merchants(path: str) -> Iterator[tuple[str, str]]:
    """(token, name) per merchant of a merchants file, read a line at a time (a file of any length;
    a line of at most MAX_MERCHANTS_LINE_BYTES); name "" where the line gives none.

    A line is TOKEN, or TOKEN,Name (CSV: quote a name that holds a comma); or the file is a CSV
    whose header row names a merchant_token (or token) column and, optionally, name. A line
    starting with `#` is a comment, as is a `#` before the line's first comma (a name may hold one)."""
    columns: tuple[int, int | None] | None = None  # a header's token and name columns
    first, found = True, False
    with open_input(Path(path), "merchants file") as handle:
        for number, raw in input_lines(handle, MAX_MERCHANTS_LINE_BYTES, f"merchants file {path}"):
            where = f"{path}:{number}"
            if len(raw) > MAX_MERCHANTS_LINE_BYTES:
                raise UsageError(f"{where}: a line longer than {MAX_MERCHANTS_LINE_BYTES:,} bytes")
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UsageError(f"merchants file {path} is not UTF-8 text ({exc.reason} on line {number})") from None
            comment = line.find("#")
            if comment >= 0 and not 0 <= line.find(",") < comment:
                line = line[:comment]
            line = line.strip()
            if not line:
                continue
            if first:
                first, columns = False, _header(line, where)
                if columns is not None:
                    continue
            found = True
            if columns is None and "," not in line and '"' not in line:  # most files: a token alone
                yield check_merchant_token(line, where), ""
            else:
                yield _merchant(line, where, columns)
    if not found:
        raise UsageError(f"merchants file {path} lists no merchant tokens")


def job_merchants(inputs: JobInputs) -> Iterator[tuple[str, str]]:
    """The job's merchants as (token, display name), each once and in order: those given, then the
    merchants file's, streamed; only the shard's with --shard. A display name the job gives wins
    over the file's."""
    names = dict(inputs.merchant_names)
    shard = Shard.parse(inputs.shard) if inputs.shard is not None else None
    listed: Iterable[tuple[str, str]] = ((token, names.get(token, "")) for token in inputs.merchants)
    if inputs.merchants_file:
        listed = itertools.chain(listed, ((token, names.get(token) or name)
                                          for token, name in iter_merchants(inputs.merchants_file)))
    seen: set[str] = set()
    for token, name in listed:
        if token in seen or (shard is not None and not shard.holds(token)):
            continue
        seen.add(token)
        yield token, name


def _job_merchants(value: Any, where: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The job file's merchants: a list of tokens or {token, name} tables, or a table token = name."""
    how = "expected a list of merchant tokens or {token = ..., name = ...} tables, or a table of token = name"
    if isinstance(value, dict):
        value = [{"token": token, "name": name} for token, name in value.items()]
    if not isinstance(value, list):
        raise UsageError(f"invalid merchants {where}: {how}")
    listed = []
    for entry in value:
        if isinstance(entry, dict) and set(entry) <= {"token", "name"} and isinstance(entry.get("token"), str) \
                and isinstance(entry.get("name", ""), str):
            listed.append((entry["token"], entry.get("name", "")))
        elif isinstance(entry, str):
            listed.append((entry, ""))
        else:
            raise UsageError(f"invalid merchants {where}: {how}; got {str(entry)[:60]!r}")
    tokens = tuple(check_merchant_token(token, f"merchants {where}") for token, _ in listed)
    return tokens, tuple((token, merchant_name(name, token)) for token, (_, name) in zip(tokens, listed, strict=True)
                         if name.strip())


def request_from_file(values: dict[str, Any], path: Path) -> JobRequest:
    """The job keys of a config file (settings.JOB_KEYS), checked; file names in it are relative to the file."""
    given = {key.name: _from_file(key, values[key.name], path) for key in JOB_KEYS if key.name in values}
    merchants, names = given.pop("merchants", ((), ()))
    return JobRequest(merchants=merchants or None, merchant_names=names or None, **given)


def _from_file(key: JobKey, value: Any, path: Path) -> Any:
    """One job key's value in a config file, as JobRequest holds it; the file may write some keys
    as its flag cannot (a list of merchants or charts, a TOML date)."""
    where = f"in {path}"
    if key.name == "merchants":
        return _job_merchants(value, where)
    if key.name == "today":
        return parse_today(value.isoformat() if isinstance(value, date) else value, where)  # today = 2026-03-05
    if key.name == "charts" and isinstance(value, list) and all(isinstance(c, str) for c in value):
        value = ",".join(value)
    elif key.name == "charts" and not isinstance(value, str):
        raise UsageError(f"invalid charts {where}: expected a list of chart ids")
    if not isinstance(value, key.python_type):
        expected = "true or false" if key.python_type is bool else "a string"
        raise UsageError(f"invalid {key.name} {where}: expected {expected}, got {value!r}")
    if key.name == "shard":
        return str(Shard.parse(value, f"shard {where}"))
    if isinstance(value, str) and key.name in ("merchants_file", "pack"):
        if key.name == "merchants_file" or "/" in value or value.endswith((".toml", ".json")):  # not a built-in pack
            return str(path.parent / Path(value).expanduser())  # relative to the config file
    return value


def parse_today(value: object, where: str = "") -> str:
    """The job's `today`, as YYYY-MM-DD."""
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    place = f" {where}" if where else ""
    raise UsageError(f"invalid today{place}: expected a calendar date as YYYY-MM-DD, got {value!r}")


def job_inputs(request: JobRequest, today: date, demo_server_args: tuple[str, ...] = ()) -> JobInputs:
    """The job to run, with its dates resolved and its files read."""
    shard = Shard.parse(request.shard) if request.shard is not None else None
    tokens = [check_merchant_token(m, "--merchant") for m in request.merchants or ()]
    names = dict(request.merchant_names or ())
    loaded = load_pack(request.pack or BUILTIN_PACK_NAMES[0])
    charts = select_charts(loaded.charts, request.charts)
    given = tuple((key, value) for key, value in (("start_date", request.start_date), ("end_date", request.end_date))
                  if value is not None and not _DATE.fullmatch(value.strip()))
    if request.today:  # the day relative dates count from, fixed by the job (a replayed night, a test)
        today = date.fromisoformat(parse_today(request.today))
        given += (("today", request.today),)
    start = resolve_date(request.start_date, today, "start_date") if request.start_date else DEFAULT_START
    end = resolve_date(request.end_date, today, "end_date", end=True) if request.end_date else DEFAULT_END
    check_dates(start, end)
    pack = request.pack or DEFAULT_PACK
    if pack not in BUILTIN_PACK_NAMES:
        pack = str(Path(pack).expanduser().resolve())
    merchants = tuple(dict.fromkeys(tokens))
    inputs = JobInputs(merchants=merchants, charts=charts, start_date=start, end_date=end,
                       write_csv=bool(request.csv), demo_server_args=demo_server_args, dates_given=given, pack=pack,
                       figures=loaded.figures, merchants_sql=loaded.merchants_sql,
                       merchant_names=tuple((token, names[token]) for token in merchants if names.get(token)),
                       shard=None if shard is None else str(shard),
                       merchants_file=str(Path(request.merchants_file).expanduser().absolute())
                       if request.merchants_file else None)
    if inputs.merchants_given:
        _check_merchants(inputs)
    return inputs


def _check_merchants(inputs: JobInputs) -> None:
    """Read the merchants through once before any work: a bad line is one line now, not an error
    in the middle of a run. A shard holding none of them is refused: no merchants would mean the
    server's first few (discovery), which are not this shard's."""
    everyone = replace(inputs, shard=None)
    if sum(1 for _ in job_merchants(inputs)) == 0:
        given = sum(1 for _ in job_merchants(everyone))
        raise UsageError(f"--shard {inputs.shard} holds none of the {given} merchant(s) given (each token's "
                         "hash decides its shard): give fewer shards or more merchants")
