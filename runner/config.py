"""RunnerConfig: defaults < config file (TOML) < environment (SCALAPAY_*) < CLI flags.

Every setting is one dataclass field whose metadata says how to parse and check it, so
the environment variable, the CLI flag, the config-file key and the report all derive
from a single definition. Kept free of heavy imports: `--help` and `config` load this.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.redaction import EXPANSION, Secrets, address_credentials, credentials_in, header_credentials, redact
from runner.status import PartialDecks

ENV_PREFIX = "SCALAPAY_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _setting(
    default: Any,
    kind: str,
    help: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    secret: str = "",
    env: str | None = None,
) -> Any:
    """One setting. secret="url" redacts credentials inside the value, "hide" hides it all,
    "items" hides the value part of each NAME=value or Name: value item; env overrides the
    variable name where users already have one (ANTHROPIC_API_KEY). A "list" setting is a
    TOML array, a repeated flag, or in the environment a JSON array (or one item)."""
    meta = {
        "kind": kind,
        "help": help,
        "minimum": minimum,
        "above": above,
        "maximum": maximum,
        "choices": choices,
        "secret": secret,
        "env": env,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunnerConfig:
    # Names and defaults of the first eleven are fixed by DESIGN.md.
    enable_concurrent_data_retrieval: bool = _setting(True, "bool", "Retrieve batches in a thread pool.")
    max_concurrent_batches: int = _setting(2, "int", "Retrieval batches run at once.", minimum=1)
    batch_size: int = _setting(3, "int", "Charts per retrieval batch.", minimum=1)
    data_retrieval_max_steps: int = _setting(15, "int", "Agent mode: model calls per batch.", minimum=1)
    enable_concurrent_chart_generation: bool = _setting(True, "bool", "Render charts in worker processes.")
    max_concurrent_charts: int = _setting(4, "int", "Render worker processes (capped at CPUs).", minimum=1)
    use_simplified_schemas: bool = _setting(True, "bool", "Agent mode: send compact tool schemas.")
    verbose_logging: bool = _setting(False, "bool", "Log every tool call.")
    retry_attempts: int = _setting(2, "int", "Retries of a failed tool call.", minimum=0, maximum=20)
    retry_delay_seconds: float = _setting(1.0, "float", "First retry delay; doubles each try.", minimum=0)
    enable_fallback_to_sequential: bool = _setting(
        True, "bool", "Retry a failed batch's charts one by one before failing them."
    )
    # Settings this project adds, following the same pattern.
    retrieval_mode: str = _setting("direct", "choice", "direct tool calls, or a Claude agent.",
                                   choices=("direct", "agent"))
    tool_timeout_seconds: float = _setting(30.0, "float", "Timeout of one MCP tool call.", above=0)
    server_failure_limit: int = _setting(3, "int", "Transport failures or timeouts in a row (any answer resets "
                                                   "the count) after which the server is taken to be down.",
                                         minimum=1)
    render_timeout_seconds: float = _setting(60.0, "float", "Timeout of one chart's render.", above=0)
    oversubscribe_workers: bool = _setting(False, "bool", "Allow more render workers than CPUs.")
    render_worker_max_charts: int = _setting(200, "int", "Replace the render pool after this many charts "
                                                         "per worker, so memory stays flat.", minimum=1)
    executor: str = _setting("local", "choice", "Where charts render: local worker processes, or a Dask "
                                                "cluster (pip install -e '.[dask]').", choices=("local", "dask"))
    dask_scheduler: str | None = _setting(None, "str", "With --executor dask: the scheduler's address, such as "
                                                       "tcp://10.0.0.5:8786.", secret="url")
    png_compress_level: int = _setting(1, "int", "zlib level of the PNGs (0-9; 1 is fastest, 9 smallest).",
                                       minimum=0, maximum=9)
    output_dir: str = _setting("./runner-output", "str", "Where run folders are written.")
    cache: bool = _setting(True, "bool", "Reuse a chart's PNG (and a deck) from the render cache when "
                                         "everything that decides it is unchanged.")
    cache_dir: str | None = _setting(None, "str", "The render cache's folder (default: .cache in the output "
                                                  "folder); runs may share one.")
    cache_max_mb: int = _setting(500, "int", "The render cache's size; least recently used entries go first.",
                                 minimum=1)
    junit_xml: str | None = _setting(None, "str", "Also write the run as JUnit XML to this file, for CI.")
    keep_runs: int | None = _setting(None, "int", "Keep only the newest N finished runs in the output folder "
                                                  "(never the one `latest` names).", minimum=1)
    server_url: str | None = _setting(None, "str", "MCP server over streamable HTTP.", secret="url")
    server_command: str | None = _setting(None, "str", "MCP server command over stdio.", secret="url")
    server_env: tuple[str, ...] = _setting((), "list", "Environment for a stdio server: NAME (inherited, globs "
                                           "like SNOWFLAKE_* allowed) or NAME=VALUE; repeatable.", secret="items")
    server_headers: tuple[str, ...] = _setting((), "list", "HTTP header for the server, 'Name: value' with ${VAR} "
                                               "taken from the environment; repeatable.", secret="items")
    query_tool: str | None = _setting(None, "str", "The server's tool that runs a SQL chart's query "
                                                   "(default: the one tool that takes SQL).")
    query_argument: str | None = _setting(None, "str", "The query tool's argument that takes the SQL "
                                                       "(default: query, sql or statement).")
    deck: str = _setting("pdf,pptx", "formats", "Deck formats per merchant: pdf, pptx, both, or none.",
                         choices=("pdf", "pptx"))
    deck_template: str | None = _setting(None, "str", "A .pptx template whose slides carry {{title}}, "
                                                      "{{paragraph}} and {{chart}} placeholders.")
    partial_decks: str = _setting("placeholder", "choice", "A deck missing some charts: their slides say 'not "
                                  "available' (placeholder), are left out (omit), or no deck at all (skip).",
                                  choices=tuple(choice.value for choice in PartialDecks))
    log_format: str = _setting("human", "choice", "Log line format.", choices=("human", "json"))
    max_run_seconds: float | None = _setting(None, "float", "Stop the whole run (as on SIGTERM) after this many "
                                                            "seconds; the report names the deadline.", above=0)
    progress_interval_seconds: float = _setting(5.0, "float", "Off a terminal: seconds between progress lines.",
                                                above=0)
    # Agent mode.
    context_token_budget: int = _setting(100_000, "int", "Agent mode: context tokens one batch may use.",
                                         minimum=1000)
    tool_result_max_chars: int = _setting(20_000, "int", "Agent mode: tool results are cut to this size.",
                                          minimum=200)
    anthropic_model: str = _setting("claude-sonnet-4-5", "str", "Agent mode: the Claude model.")
    max_output_tokens: int = _setting(4096, "int", "Agent mode: max tokens per model response.",
                                      minimum=256, maximum=64_000)
    llm_retry_max_wait_seconds: float = _setting(30.0, "float", "Agent mode: longest retry-after honoured.",
                                                 minimum=0)
    llm_timeout_seconds: float = _setting(25.0, "float", "Agent mode: timeout of one model call (raise it with "
                                                         "--max-output-tokens: a long answer takes longer).", above=0)
    llm_failure_limit: int = _setting(3, "int", "Agent mode: failed model calls in a row (rate limited, 5xx, "
                                                "timeout, no connection; any batch; an answer resets the count) "
                                                "after which the API is taken to be down.", minimum=1)
    llm_batch_seconds: float = _setting(300.0, "float", "Agent mode: time one batch's conversation may take, "
                                                        "model and tool calls together.", above=0)
    anthropic_api_key: str | None = _setting(None, "str", "Agent mode: API key.", secret="hide",
                                             env="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = _setting(None, "str", "Agent mode: Messages API base URL.", secret="url",
                                              env="ANTHROPIC_BASE_URL")

    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    @property
    def deck_formats(self) -> tuple[str, ...]:
        return () if self.deck == "none" else tuple(self.deck.split(","))

    def source_of(self, name: str) -> str:
        return dict(self.sources).get(name, "default")

    def effective(self) -> dict[str, dict[str, Any]]:
        """Each setting's value (secrets redacted) and where it came from, for `config` and the report."""
        out = {}
        for f in settings():
            value = getattr(self, f.name)
            if f.metadata["secret"] == "hide" and value is not None:
                value = "***"
            elif f.metadata["secret"] == "items":
                value = [redact_item(item) for item in value]
            elif f.metadata["secret"] and value is not None:
                value = redact(value)
            out[f.name] = {"value": value, "source": self.source_of(f.name)}
        return out


def settings() -> tuple[Any, ...]:
    return tuple(f for f in fields(RunnerConfig) if f.name != "sources")


def env_name(f: Any) -> str:
    """The environment variable of a setting (a field of RunnerConfig)."""
    return f.metadata["env"] or ENV_PREFIX + f.name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(f: Any, raw: Any, where: str) -> Any:
    """Turn one raw value (a string from env/CLI, or a TOML value) into the setting's type."""
    meta = f.metadata
    kind = meta["kind"]

    def bad(expected: str) -> UsageError:
        if meta["secret"] in ("items", "hide"):  # it may hold a credential, in a shape too broken to redact
            return UsageError(f"invalid {where} (value not shown): expected {expected}")
        if meta["secret"] == "url":
            return UsageError(f"invalid {where}={redact(str(raw))!r}: expected {expected}")
        return UsageError(f"invalid {where}={raw!r}: expected {expected}")

    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad("true or false")
    if kind in ("int", "float"):
        if isinstance(raw, bool):
            raise bad("a number")
        try:
            if kind == "int":
                value: float = raw if isinstance(raw, int) else int(str(raw).strip())
            else:
                value = float(raw) if isinstance(raw, int | float) else float(str(raw).strip())
        except ValueError:
            raise bad("a whole number" if kind == "int" else "a number") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise bad("a finite number")
        bounds = []
        if meta["minimum"] is not None and value < meta["minimum"]:
            bounds.append(f"a number >= {meta['minimum']:g}")
        if meta["above"] is not None and value <= meta["above"]:
            bounds.append(f"a number > {meta['above']:g}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            bounds.append(f"a number <= {meta['maximum']:g}")
        if bounds:
            raise bad(" and ".join(bounds))
        return value
    if kind == "list":
        return _parse_list(raw, bad)
    if not isinstance(raw, str):
        raise bad("a string")
    if kind == "formats":  # a comma-separated subset of the choices, or "none"
        parts = [part.strip() for part in raw.lower().split(",") if part.strip()]
        if parts == ["none"]:
            return "none"
        if not parts or any(part not in meta["choices"] for part in parts):
            raise bad(f"a comma-separated list of {', '.join(meta['choices'])}, or none")
        return ",".join(dict.fromkeys(parts))
    if kind == "choice":
        text = raw.strip().lower()
        if text not in meta["choices"]:
            raise bad("one of " + ", ".join(meta["choices"]))
        return text
    text = raw.strip()
    if "\x00" in text:
        raise bad("text without NUL characters")
    return text or None if f.default is None else text


def _parse_list(raw: Any, bad: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                raise bad("a JSON array of strings, or one item") from None
        else:
            raw = [text] if text else []
    if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
        raise bad("a list of strings")
    items = tuple(item.strip() for item in raw if item.strip())
    if any("\x00" in item or "\n" in item for item in items):
        raise bad("items without NUL or newline characters")
    return items


MAX_CONFIG_BYTES = 1_000_000
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG"  # names the config file when --config does not
# Keys a config file may hold besides the settings: the job itself (runner/job.py).
JOB_KEYS = ("merchants", "merchants_file", "start_date", "end_date", "pack", "charts", "csv", "today")


def read_config_file(path: Path) -> dict[str, Any]:
    from runner.files import read_input_text

    try:
        data = tomllib.loads(read_input_text(path, "config file", MAX_CONFIG_BYTES))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UsageError(f"config file {path} nests too deeply to be a config file") from None
    # Allow the settings either at the top level or under a [runner] table.
    if isinstance(data.get("runner"), dict) and len(data) == 1:
        data = data["runner"]
    return data


def load_config(
    *,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> RunnerConfig:
    """Build the effective configuration; raises UsageError naming the first bad value."""
    env = os.environ if env is None else env
    cli = cli or {}
    known = {f.name: f for f in settings()}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    if config_file is not None:
        path = Path(config_file)
        for key, raw in read_config_file(path).items():
            if key in JOB_KEYS:
                continue
            f = known.get(key)
            if f is None:
                close = difflib.get_close_matches(key, [*known, *JOB_KEYS], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (see `python -m runner config`)"
                raise UsageError(f"config file {path}: unknown key {key!r}{hint}")
            values[key] = _parse(f, raw, f"{key} in {path}")
            sources[key] = f"file:{path}"

    for name, f in known.items():
        var = env_name(f)
        if var in env:
            values[name] = _parse(f, env[var], var)
            sources[name] = f"env:{var}"

    for name, raw in cli.items():
        if raw is None:
            continue
        f = known.get(name)
        if f is None:
            raise ValueError(f"CLI passed unknown setting {name!r}")  # a programming error, not a user one
        values[name] = _parse(f, raw, flag_name(name))
        sources[name] = f"cli:{flag_name(name)}"

    if values.get("server_url") and values.get("server_command"):
        raise UsageError("give either a server URL or a server command, not both "
                         f"(server_url from {sources['server_url']}, server_command from {sources['server_command']})")
    config = replace(RunnerConfig(), **values)
    return replace(config, sources=tuple(sorted(sources.items())))


def redact_item(item: str) -> str:
    """NAME=value -> NAME=***, 'Name: value' -> 'Name: ***'; a bare NAME stays as it is."""
    for separator in ("=", ":"):
        name, found, _ = item.partition(separator)
        if found and re.fullmatch(r"[\w*?\[\]!#$%&'+.^`|~-]+", name.strip()):
            return f"{name}{separator}{' ' if separator == ':' else ''}***"
    return item


def given_secrets(config: RunnerConfig, environ: Mapping[str, str] | None = None) -> Secrets:
    """Every value the configuration gives as a secret, or names for a server to inherit."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for text in (config.server_url, config.server_command, config.anthropic_base_url):
        values += credentials_in(text) if text else []
    values += address_credentials(config.dask_scheduler) if config.dask_scheduler else []
    if config.anthropic_api_key:
        values.append(config.anthropic_api_key)
    for item in config.server_env:
        name, assigned, value = item.partition("=")
        given = [value] if assigned else [v for k, v in environ.items() if fnmatch.fnmatchcase(k, name.strip())]
        for one in given:
            values += [one, *credentials_in(one)]
    for item in config.server_headers:
        value = item.partition(":")[2]
        values += [environ.get(variable, "") for variable in EXPANSION.findall(value)]
        values += header_credentials(EXPANSION.sub(lambda match: environ.get(match[1], ""), value))
    return Secrets.of(values)
