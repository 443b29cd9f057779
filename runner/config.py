"""RunnerConfig: defaults < config file (TOML) < environment (SCALAPAY_*) < CLI flags.

Every setting is one field of RunnerConfig: its type, its default and a Declaration (help,
bounds, choices, secrecy), from which the environment variable, the CLI flag, the config-file
key, `python -m runner config`, the report and the README's table all derive (runner/settings.py
says what a setting is). Kept free of heavy imports: `--help` and `config` load this.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from runner.errors import UsageError
from runner.redaction import EXPANSION, Secrets, address_credentials, credentials_in, header_credentials, redact
from runner.settings import ENV_PREFIX, JOB_KEYS, Declaration, Secret, Setting, ValueKind
from runner.status import DeckFormat, PartialDecks, PdfEngine

_DECLARED = "declared"  # the key of a setting's Declaration in its field's metadata
MAX_AUTHOR_CHARS = 200  # deck_author


def _setting(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    comma_separated: bool = False,
    secret: Secret = Secret.NONE,
    env: str | None = None,
    aliases: tuple[str, ...] = (),
) -> Any:
    """One setting; the field's type says how a value is written (see settings.Declaration)."""
    declared = Declaration(help=help, choices=choices, comma_separated=comma_separated, minimum=minimum,
                           above=above, maximum=maximum, secret=secret, env=env, aliases=aliases)
    return field(default=default, metadata={_DECLARED: declared})


@dataclass(frozen=True)
class RunnerConfig:
    # The first eleven are the settings users had before this runner: their names, environment
    # variables and defaults stay as they were (tests/test_config.py, INHERITED_VARIABLES).
    enable_concurrent_data_retrieval: bool = _setting(True, "Retrieve batches in a thread pool.")
    max_concurrent_batches: int = _setting(2, "Retrieval batches run at once.", minimum=1)
    batch_size: int = _setting(3, "Charts per retrieval batch.", minimum=1)
    data_retrieval_max_steps: int = _setting(15, "Agent mode: model calls per batch.", minimum=1)
    enable_concurrent_chart_generation: bool = _setting(True, "Render charts in worker processes.")
    max_concurrent_charts: int = _setting(4, "Render worker processes (capped at CPUs).", minimum=1)
    use_simplified_schemas: bool = _setting(True, "Agent mode: send compact tool schemas.")
    verbose_logging: bool = _setting(False, "Log every tool call.", aliases=("--verbose", "-v"))
    retry_attempts: int = _setting(2, "Retries of a failed tool call.", minimum=0, maximum=20)
    retry_delay_seconds: float = _setting(1.0, "First retry delay; doubles each try.", minimum=0)
    enable_fallback_to_sequential: bool = _setting(True, "Retry a failed batch's charts one by one before "
                                                         "failing them.")
    # Settings this project adds, following the same pattern.
    retrieval_mode: str = _setting("direct", "direct tool calls, or a Claude agent.", choices=("direct", "agent"),
                                   aliases=("--retrieval",))
    tool_timeout_seconds: float = _setting(30.0, "Timeout of one MCP tool call.", above=0)
    server_failure_limit: int = _setting(3, "Transport failures or timeouts in a row (any answer resets the "
                                            "count) after which the server is taken to be down.", minimum=1)
    render_timeout_seconds: float = _setting(60.0, "Timeout of one chart's render.", above=0)
    oversubscribe_workers: bool = _setting(False, "Allow more render workers than CPUs.")
    render_worker_max_charts: int = _setting(200, "Replace the render pool after this many charts per worker, "
                                                  "so memory stays flat.", minimum=1)
    executor: str = _setting("local", "Where charts render: local worker processes, or a Dask cluster "
                                      "(pip install -e '.[dask]').", choices=("local", "dask"))
    dask_scheduler: str | None = _setting(None, "With --executor dask: the scheduler's address, such as "
                                                "tcp://10.0.0.5:8786.", secret=Secret.URL)
    png_compress_level: int = _setting(1, "zlib level of the PNGs (0-9; 1 is fastest, 9 smallest).",
                                       minimum=0, maximum=9)
    output_dir: str = _setting("./runner-output", "Where run folders are written.")
    cache: bool = _setting(True, "Reuse a chart's PNG (and a deck) from the render cache when everything that "
                                 "decides it is unchanged.")
    cache_dir: str | None = _setting(None, "The render cache's folder (default: .cache in the output folder); "
                                           "runs may share one.")
    cache_max_mb: int = _setting(500, "The render cache's size; least recently used entries go first.",
                                 minimum=1)
    junit_xml: str | None = _setting(None, "Also write the run as JUnit XML to this file, for CI.")
    keep_runs: int | None = _setting(None, "Keep only the newest N finished runs in the output folder (never "
                                           "the one `latest` names).", minimum=1)
    server_url: str | None = _setting(None, "MCP server over streamable HTTP.", secret=Secret.URL)
    server_command: str | None = _setting(None, "MCP server command over stdio.", secret=Secret.URL)
    server_env: tuple[str, ...] = _setting((), "Environment for a stdio server: NAME (inherited, globs like "
                                               "SNOWFLAKE_* allowed) or NAME=VALUE; repeatable.",
                                           secret=Secret.ITEMS)
    server_headers: tuple[str, ...] = _setting((), "HTTP header for the server, 'Name: value' with ${VAR} taken "
                                                   "from the environment; repeatable.", secret=Secret.ITEMS,
                                               aliases=("--server-header",))
    query_tool: str | None = _setting(None, "The server's tool that runs a SQL chart's query (default: the one "
                                            "tool that takes SQL).")
    query_argument: str | None = _setting(None, "The query tool's argument that takes the SQL (default: query, "
                                                "sql or statement).")
    deck: str = _setting(",".join(DeckFormat), "Deck formats per merchant: pdf, pptx, pdf,pptx, or none.",
                         choices=tuple(fmt.value for fmt in DeckFormat), comma_separated=True)
    deck_template: str | None = _setting(None, "A .pptx template: a chart slide with {{title}}, {{chart}} and "
                                               "{{paragraph}} (repeated per chart), and {{merchant}}, {{period}}, "
                                               "{{kpi_<figure_id>}} anywhere (see Decks).")
    deck_author: str = _setting("runner", "The author named in each deck's document properties (PPTX and PDF).")
    partial_decks: str = _setting("placeholder", "A deck missing some charts: their slides say 'not available' "
                                  "(placeholder), are left out (omit), or no deck at all (skip).",
                                  choices=tuple(choice.value for choice in PartialDecks))
    pdf_engine: str = _setting("builtin", "What makes the PDF deck: the built-in writer, or LibreOffice from the "
                                          "filled PPTX, so the PDF follows --deck-template (needs soffice: Debian's "
                                          "libreoffice-impress).", choices=tuple(engine.value for engine in PdfEngine))
    pdf_timeout_seconds: float = _setting(30.0, "With --pdf-engine libreoffice: one deck's conversion is stopped "
                                                "after this long and the deck fails (keep it under "
                                                "--render-timeout-seconds).", above=0)
    log_format: str = _setting("human", "Log line format.", choices=("human", "json"))
    max_run_seconds: float | None = _setting(None, "Stop the whole run (as on SIGTERM) after this many seconds; "
                                                   "the report names the deadline.", above=0)
    progress_interval_seconds: float = _setting(5.0, "Off a terminal: seconds between progress lines.", above=0)
    # Agent mode.
    context_token_budget: int = _setting(100_000, "Agent mode: context tokens one batch may use.", minimum=1000)
    tool_result_max_chars: int = _setting(20_000, "Agent mode: tool results are cut to this size.", minimum=200)
    anthropic_model: str = _setting("claude-sonnet-4-5", "Agent mode: the Claude model.")
    max_output_tokens: int = _setting(4096, "Agent mode: max tokens per model response.",
                                      minimum=256, maximum=64_000)
    llm_retry_max_wait_seconds: float = _setting(30.0, "Agent mode: longest retry-after honoured.", minimum=0)
    llm_timeout_seconds: float = _setting(25.0, "Agent mode: timeout of one model call (raise it with "
                                                "--max-output-tokens: a long answer takes longer).", above=0)
    llm_failure_limit: int = _setting(3, "Agent mode: failed model calls in a row (rate limited, 5xx, timeout, "
                                         "no connection; any batch; an answer resets the count) after which the "
                                         "API is taken to be down.", minimum=1)
    llm_batch_seconds: float = _setting(300.0, "Agent mode: time one batch's conversation may take, model and "
                                               "tool calls together.", above=0)
    anthropic_api_key: str | None = _setting(None, "Agent mode: API key.", secret=Secret.HIDE,
                                             env="ANTHROPIC_API_KEY")
    anthropic_base_url: str | None = _setting(None, "Agent mode: Messages API base URL.", secret=Secret.URL,
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
        for s in settings():
            value = getattr(self, s.name)
            if s.secret is Secret.HIDE and value is not None:
                value = "***"
            elif s.secret is Secret.ITEMS:
                value = [redact_item(item) for item in value]
            elif s.secret is Secret.URL and value is not None:
                value = redact(value)
            out[s.name] = {"value": value, "source": self.source_of(s.name)}
        return out


def _python_type(hint: Any) -> type:
    """A field's annotation as the type of its values: `str | None` -> str, `tuple[str, ...]` -> tuple."""
    if isinstance(hint, types.UnionType):
        (hint,) = (arg for arg in get_args(hint) if arg is not type(None))
    return get_origin(hint) or hint


@cache
def settings() -> tuple[Setting, ...]:
    """Every setting, in RunnerConfig's order."""
    hints = get_type_hints(RunnerConfig)
    return tuple(Setting.of(f.name, _python_type(hints[f.name]), f.default, f.metadata[_DECLARED])
                 for f in fields(RunnerConfig) if _DECLARED in f.metadata)


def setting(name: str) -> Setting:
    """The setting of this name (KeyError for none)."""
    return {s.name: s for s in settings()}[name]


def settings_table() -> str:
    """The README's configuration table (tests/test_settings.py checks the README holds this)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def default(s: Setting) -> str:
        if s.default is None or s.default == ():
            return "none"
        if s.kind is ValueKind.BOOL:
            return "true" if s.default else "false"
        return f"`{s.default}`" if s.python_type is str else str(s.default)

    def flags(s: Setting) -> str:
        flag = f"{s.flag}/--no-{s.flag[2:]}" if s.kind is ValueKind.BOOL else s.flag
        if s.kind is ValueKind.CHOICE:
            flag += " " + "|".join(s.choices)
        shown = ", ".join(f"`{cell(name)}`" for name in (flag, *s.aliases))
        return shown + (" (repeatable)" if s.kind is ValueKind.LIST else "")

    rows = ["| setting | flag | environment variable | default | what it sets |", "|---|---|---|---|---|"]
    rows += [f"| `{s.name}` | {flags(s)} | `{s.env}` | {default(s)} | {cell(s.help)} |" for s in settings()]
    return "\n".join(rows) + "\n"


MAX_CONFIG_BYTES = 1_000_000
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG"  # names the config file when --config does not
# Keys a config file may hold besides the settings: the job itself (settings.JOB_KEYS, read by request.py).
JOB_KEY_NAMES = tuple(key.name for key in JOB_KEYS)


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
    known = {s.name: s for s in settings()}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    if config_file is not None:
        path = Path(config_file)
        for key, raw in read_config_file(path).items():
            if key in JOB_KEY_NAMES:
                continue
            s = known.get(key)
            if s is None:
                close = difflib.get_close_matches(key, [*known, *JOB_KEY_NAMES], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (see `python -m runner config`)"
                raise UsageError(f"config file {path}: unknown key {key!r}{hint}")
            values[key] = s.parse(raw, f"{key} in {path}")
            sources[key] = f"file:{path}"

    for name, s in known.items():
        if s.env in env:
            values[name] = s.parse(env[s.env], s.env)
            sources[name] = f"env:{s.env}"

    for name, raw in cli.items():
        if raw is None:
            continue
        s = known.get(name)
        if s is None:
            raise ValueError(f"CLI passed unknown setting {name!r}")  # a programming error, not a user one
        values[name] = s.parse(raw, s.flag)
        sources[name] = f"cli:{s.flag}"

    if values.get("server_url") and values.get("server_command"):
        raise UsageError("give either a server URL or a server command, not both "
                         f"(server_url from {sources['server_url']}, server_command from {sources['server_command']})")
    author = values.get("deck_author")
    if author is not None and not is_author(author):
        raise UsageError(f"invalid deck_author={author!r} (from {sources['deck_author']}): expected a name of 1 to "
                         f"{MAX_AUTHOR_CHARS} printable characters")
    config = replace(RunnerConfig(), **values)
    return replace(config, sources=tuple(sorted(sources.items())))


def is_author(value: object) -> bool:
    """A deck_author that every deck's properties can hold: XML takes no control characters."""
    return isinstance(value, str) and 0 < len(value) <= MAX_AUTHOR_CHARS and value.isprintable()


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
