"""What a setting and a job key are: the descriptors the CLI, the environment, the config file,
`python -m runner config` and the README's configuration table all read.

A setting is declared once, as a field of config.RunnerConfig (its type, default and the
Declaration beside it); `config.settings()` turns each field into a Setting. The job (which
merchants, charts and dates) is declared once here, in JOB_KEYS: each key is a flag of `run`,
a key of the config file and a field of request.JobRequest. Kept free of heavy imports:
`--help` and `config` load this.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

from runner.errors import UsageError
from runner.redaction import redact

ENV_PREFIX = "SCALAPAY_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ValueKind(StrEnum):
    """How a setting's value is written and checked (its value is the flag's metavar in `--help`)."""

    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    TEXT = "str"
    CHOICE = "choice"  # one of the choices
    FORMATS = "formats"  # a comma-separated subset of the choices, or "none"
    LIST = "list"  # a TOML array, a repeated flag, or in the environment a JSON array (or one item)


class Secret(StrEnum):
    """How much of a setting's value may be shown in messages, `config` and the report."""

    NONE = "none"
    URL = "url"  # credentials inside the value are redacted
    HIDE = "hide"  # the whole value is hidden
    ITEMS = "items"  # the value part of each NAME=value or 'Name: value' item is hidden


@dataclass(frozen=True)
class Declaration:
    """What RunnerConfig writes beside a setting's type and default (config._setting)."""

    help: str
    choices: tuple[str, ...] = ()
    comma_separated: bool = False  # several of the choices at once ("pdf,pptx"), or none
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    secret: Secret = Secret.NONE
    env: str | None = None  # a variable users already have (ANTHROPIC_API_KEY); else SCALAPAY_<NAME>
    aliases: tuple[str, ...] = ()  # more flags for it (--verbose, -v)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kind_of(python_type: type, declared: Declaration) -> ValueKind:
    if python_type is tuple:
        return ValueKind.LIST
    if python_type is str and declared.choices:
        return ValueKind.FORMATS if declared.comma_separated else ValueKind.CHOICE
    return {bool: ValueKind.BOOL, int: ValueKind.INT, float: ValueKind.FLOAT, str: ValueKind.TEXT}[python_type]


@dataclass(frozen=True)
class Setting:
    """One setting of RunnerConfig: its flag, environment variable and config-file key, and how a
    value of it is parsed, checked and shown."""

    name: str  # the config file's key and RunnerConfig's field
    python_type: type  # bool, int, float, str, or tuple (of str); a default of None means unset
    kind: ValueKind
    default: Any
    help: str
    flag: str
    env: str
    aliases: tuple[str, ...] = ()
    secret: Secret = Secret.NONE
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None

    @classmethod
    def of(cls, name: str, python_type: type, default: Any, declared: Declaration) -> Setting:
        return cls(name=name, python_type=python_type, kind=_kind_of(python_type, declared), default=default,
                   help=declared.help, flag=flag_name(name), env=declared.env or ENV_PREFIX + name.upper(),
                   aliases=declared.aliases, secret=declared.secret, choices=declared.choices,
                   minimum=declared.minimum, above=declared.above, maximum=declared.maximum)

    def parse(self, raw: Any, where: str) -> Any:
        """One raw value (a string from the environment or a flag, or a TOML value) as the setting's
        type; UsageError naming `where` and the value (or not the value, for a secret)."""
        if self.kind is ValueKind.BOOL:
            return self._bool(raw, where)
        if self.kind in (ValueKind.INT, ValueKind.FLOAT):
            return self._number(raw, where)
        if self.kind is ValueKind.LIST:
            return self._list(raw, where)
        if not isinstance(raw, str):
            self._bad(raw, where, "a string")
        if self.kind is ValueKind.FORMATS:
            parts = [part.strip() for part in raw.lower().split(",") if part.strip()]
            if parts == ["none"]:
                return "none"
            if not parts or any(part not in self.choices for part in parts):
                self._bad(raw, where, f"a comma-separated list of {', '.join(self.choices)}, or none")
            return ",".join(dict.fromkeys(parts))
        if self.kind is ValueKind.CHOICE:
            text = raw.strip().lower()
            if text not in self.choices:
                self._bad(raw, where, "one of " + ", ".join(self.choices))
            return text
        text = raw.strip()
        if "\x00" in text:
            self._bad(raw, where, "text without NUL characters")
        return (text or None) if self.default is None else text

    def _bad(self, raw: Any, where: str, expected: str) -> NoReturn:
        if self.secret in (Secret.ITEMS, Secret.HIDE):  # it may hold a credential, in a shape too broken to redact
            raise UsageError(f"invalid {where} (value not shown): expected {expected}")
        if self.secret is Secret.URL:
            raise UsageError(f"invalid {where}={redact(str(raw))!r}: expected {expected}")
        raise UsageError(f"invalid {where}={raw!r}: expected {expected}")

    def _bool(self, raw: Any, where: str) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        self._bad(raw, where, "true or false")

    def _number(self, raw: Any, where: str) -> float:
        if isinstance(raw, bool):
            self._bad(raw, where, "a number")
        try:
            if self.kind is ValueKind.INT:
                value: float = raw if isinstance(raw, int) else int(str(raw).strip())
            else:
                value = float(raw) if isinstance(raw, int | float) else float(str(raw).strip())
        except ValueError:
            self._bad(raw, where, "a whole number" if self.kind is ValueKind.INT else "a number")
        if isinstance(value, float) and not math.isfinite(value):
            self._bad(raw, where, "a finite number")
        bounds = []
        if self.minimum is not None and value < self.minimum:
            bounds.append(f"a number >= {self.minimum:g}")
        if self.above is not None and value <= self.above:
            bounds.append(f"a number > {self.above:g}")
        if self.maximum is not None and value > self.maximum:
            bounds.append(f"a number <= {self.maximum:g}")
        if bounds:
            self._bad(raw, where, " and ".join(bounds))
        return value

    def _list(self, raw: Any, where: str) -> tuple[str, ...]:
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith("["):
                try:
                    raw = json.loads(text)
                except ValueError:
                    self._bad(raw, where, "a JSON array of strings, or one item")
            else:
                raw = [text] if text else []
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            self._bad(raw, where, "a list of strings")
        items = tuple(item.strip() for item in raw if item.strip())
        if any("\x00" in item or "\n" in item for item in items):
            self._bad(raw, where, "items without NUL or newline characters")
        return items


# -- the job ---------------------------------------------------------------------------------------

DEFAULT_START, DEFAULT_END = "2024-01-01", "2025-12-31"  # the demo data's last 24 months


@dataclass(frozen=True)
class JobKey:
    """One key of the job: a flag of `run` (where it has one), a key of the config file and a
    field of request.JobRequest, all three named after it. A flag given wins over the file's key."""

    name: str  # the config file's key and JobRequest's field
    python_type: type  # str; bool: a flag without a value; tuple: a repeatable flag (a list in the file)
    help: str
    flag: str | None  # None: only the config file sets it
    metavar: str | None = None


JOB_KEYS: tuple[JobKey, ...] = (
    JobKey("merchants", tuple, "A merchant token (repeatable).", "--merchant", "TOKEN"),
    JobKey("merchants_file", str, "File of merchants: a token per line, or TOKEN,Name; or a CSV with a "
                                  "merchant_token,name header. # starts a comment.", "--merchants-file"),
    JobKey("shard", str, "Only shard K of N of the merchants (each token's hash decides its shard), for a CI "
                         "matrix of N jobs; merge-reports folds their reports into one.", "--shard", "K/N"),
    JobKey("start_date", str, "First day: YYYY-MM-DD, or relative such as '-24 months' "
                              f"[default {DEFAULT_START}].", "--start-date"),
    JobKey("end_date", str, "Last day: YYYY-MM-DD, or relative such as 'last month end' "
                            f"[default {DEFAULT_END}].", "--end-date"),
    JobKey("charts", str, "A subset of the pack's charts.", "--charts", "ID,ID"),
    JobKey("pack", str, "A built-in pack (business-review, business-review-sql) or a pack file (TOML or JSON).",
           "--pack"),
    JobKey("csv", bool, "Also write charts.csv beside report.json.", "--csv"),
    JobKey("today", str, "The day relative dates count from, YYYY-MM-DD (default: the real today).", None),
)
