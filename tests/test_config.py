"""Configuration: precedence, every validation error, and the CLI's handling of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import RunnerConfig, load_config, redact, settings
from runner.errors import UsageError
from tests.helpers import run_cli

# The variables users set before this runner existed: their names and defaults must not change.
INHERITED_VARIABLES = {
    "SCALAPAY_ENABLE_CONCURRENT_DATA_RETRIEVAL": True,
    "SCALAPAY_MAX_CONCURRENT_BATCHES": 2,
    "SCALAPAY_BATCH_SIZE": 3,
    "SCALAPAY_DATA_RETRIEVAL_MAX_STEPS": 15,
    "SCALAPAY_ENABLE_CONCURRENT_CHART_GENERATION": True,
    "SCALAPAY_MAX_CONCURRENT_CHARTS": 4,
    "SCALAPAY_USE_SIMPLIFIED_SCHEMAS": True,
    "SCALAPAY_VERBOSE_LOGGING": False,
    "SCALAPAY_RETRY_ATTEMPTS": 2,
    "SCALAPAY_RETRY_DELAY_SECONDS": 1.0,
    "SCALAPAY_ENABLE_FALLBACK_TO_SEQUENTIAL": True,
}


def test_inherited_variables_keep_their_names_and_defaults() -> None:
    config = load_config(env={})
    by_env = {s.env: getattr(config, s.name) for s in settings()}
    for variable, default in INHERITED_VARIABLES.items():
        assert by_env[variable] == default, variable


def test_precedence_default_file_env_cli(tmp_path: Path) -> None:
    file = tmp_path / "runner.toml"
    file.write_text("batch_size = 5\nmax_concurrent_batches = 3\nretry_attempts = 4\n")
    env = {"SCALAPAY_MAX_CONCURRENT_BATCHES": "6", "SCALAPAY_RETRY_ATTEMPTS": "7"}
    config = load_config(env=env, config_file=file, cli={"retry_attempts": "9"})
    assert config.batch_size == 5 and config.source_of("batch_size") == f"file:{file}"
    assert config.max_concurrent_batches == 6
    assert config.source_of("max_concurrent_batches") == "env:SCALAPAY_MAX_CONCURRENT_BATCHES"
    assert config.retry_attempts == 9 and config.source_of("retry_attempts") == "cli:--retry-attempts"
    assert config.data_retrieval_max_steps == 15 and config.source_of("data_retrieval_max_steps") == "default"


def test_config_file_may_use_a_runner_table(tmp_path: Path) -> None:
    file = tmp_path / "runner.toml"
    file.write_text("[runner]\nbatch_size = 4\nenable_concurrent_chart_generation = false\n")
    config = load_config(env={}, config_file=file)
    assert config.batch_size == 4 and config.enable_concurrent_chart_generation is False


@pytest.mark.parametrize("value", ["yes", "on", "1", "TRUE"])
def test_boolean_spellings(value: str) -> None:
    assert load_config(env={"SCALAPAY_VERBOSE_LOGGING": value}).verbose_logging is True


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SCALAPAY_BATCH_SIZE", "abc", "a whole number"),
        ("SCALAPAY_BATCH_SIZE", "0", ">= 1"),
        ("SCALAPAY_BATCH_SIZE", "-1", ">= 1"),
        ("SCALAPAY_BATCH_SIZE", "2.5", "a whole number"),
        ("SCALAPAY_MAX_CONCURRENT_BATCHES", "0", ">= 1"),
        ("SCALAPAY_MAX_CONCURRENT_CHARTS", "-3", ">= 1"),
        ("SCALAPAY_DATA_RETRIEVAL_MAX_STEPS", "", "a whole number"),
        ("SCALAPAY_RETRY_ATTEMPTS", "-1", ">= 0"),
        ("SCALAPAY_RETRY_DELAY_SECONDS", "soon", "a number"),
        ("SCALAPAY_RETRY_DELAY_SECONDS", "-0.5", ">= 0"),
        ("SCALAPAY_RETRY_DELAY_SECONDS", "inf", "finite"),
        ("SCALAPAY_RETRY_DELAY_SECONDS", "nan", "finite"),
        ("SCALAPAY_TOOL_TIMEOUT_SECONDS", "0", "> 0"),
        ("SCALAPAY_ENABLE_CONCURRENT_DATA_RETRIEVAL", "maybe", "true or false"),
        ("SCALAPAY_ENABLE_CONCURRENT_CHART_GENERATION", "2", "true or false"),
        ("SCALAPAY_USE_SIMPLIFIED_SCHEMAS", "", "true or false"),
        ("SCALAPAY_VERBOSE_LOGGING", "verbose", "true or false"),
        ("SCALAPAY_ENABLE_FALLBACK_TO_SEQUENTIAL", "nope", "true or false"),
        ("SCALAPAY_RETRIEVAL_MODE", "magic", "one of direct, agent"),
        ("SCALAPAY_PNG_COMPRESS_LEVEL", "10", "<= 9"),
    ],
)
def test_invalid_environment_values_name_variable_and_value(variable: str, value: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        load_config(env={variable: value})
    message = str(info.value)
    assert variable in message and repr(value) in message and expected in message
    assert "\n" not in message


def test_invalid_cli_value_names_the_flag() -> None:
    with pytest.raises(UsageError, match=r"--batch-size='x'"):
        load_config(env={}, cli={"batch_size": "x"})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("batch_size = [", "not valid TOML"),
        ("bach_size = 3", "unknown key 'bach_size'; did you mean 'batch_size'?"),
        ("batch_size = 0", "batch_size in"),
        ("batch_size = true", "a number"),
        ("enable_concurrent_data_retrieval = 'perhaps'", "true or false"),
        ("retrieval_mode = 3", "a string"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: str, expected: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(UsageError, match=expected):
        load_config(env={}, config_file=file)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_config(env={}, config_file=tmp_path / "nope.toml")


def test_server_url_and_command_are_exclusive() -> None:
    with pytest.raises(UsageError, match="not both"):
        load_config(env={"SCALAPAY_SERVER_URL": "http://x/mcp", "SCALAPAY_SERVER_COMMAND": "srv"})


def test_secrets_are_redacted_in_effective_settings() -> None:
    config = load_config(env={"SCALAPAY_SERVER_URL": "https://bob:hunter2@example.test/mcp?api_key=s3cret&x=1"})
    shown = str(config.effective())
    assert "hunter2" not in shown and "s3cret" not in shown and "x=1" in shown
    assert redact("server --api-key abc123 --port 3") == "server --api-key *** --port 3"


@pytest.mark.parametrize(("command", "shown"), [
    ("env WAREHOUSE_PASSWORD=hunter2 srv", "env WAREHOUSE_PASSWORD=*** srv"),
    ("srv --token=hunter2 --db '/data/my shop.db'", "srv --token=*** --db '/data/my shop.db'"),
    ("npx server-postgres postgresql://me:hunter2@db/shop", "npx server-postgres postgresql://***@db/shop"),
    ("mcp-server-motherduck --db-path md:shop?motherduck_token=hunter2", "mcp-server-motherduck --db-path "
                                                                          "md:shop?motherduck_token=***"),
    ("srv 'unbalanced DB_SECRET=hunter2", "srv 'unbalanced DB_SECRET=***"),
    ("mysql-mcp -u me -phunter2 --db shop", "mysql-mcp -u me -p*** --db shop"),
    ("srv -p hunter2 --bearer hunter2 --passwd hunter2", "srv -p *** --bearer *** --passwd ***"),
    ("srv --db-url postgres://u:hunter2@db/x --cb https://h/cb?code=hunter2",
     "srv --db-url postgres://***@db/x --cb https://h/cb?code=***"),
])
def test_secrets_in_a_server_command_are_redacted(command: str, shown: str) -> None:
    assert redact(command) == shown


def test_credential_settings_show_names_only() -> None:
    config = load_config(cli={"server_env": ("WAREHOUSE_*", "DB_PASSWORD=hunter2"),
                              "server_headers": ("Authorization: Bearer hunter2",)},
                         env={"SCALAPAY_SERVER_ENV": '["X=hunter2"]'})
    shown = config.effective()
    assert shown["server_env"]["value"] == ["WAREHOUSE_*", "DB_PASSWORD=***"]
    assert shown["server_headers"]["value"] == ["Authorization: ***"]
    with pytest.raises(UsageError) as info:
        load_config(env={"SCALAPAY_SERVER_HEADERS": '["Authorization: hunter2", 5]'})
    assert "hunter2" not in str(info.value)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RunnerConfig().batch_size = 9  # type: ignore[misc]


# -- through the real CLI ------------------------------------------------------------------------------


def test_cli_bad_env_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_cli([], tmp_path, env={"SCALAPAY_BATCH_SIZE": "abc"}, in_process=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SCALAPAY_BATCH_SIZE" in lines[0] and "'abc'" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists(), "no work may start before validation"


def test_cli_bad_flag_exits_2(tmp_path: Path) -> None:
    result = run_cli(["--max-concurrent-charts", "0"], tmp_path, in_process=True)
    assert result.returncode == 2
    assert "--max-concurrent-charts" in result.stderr and "'0'" in result.stderr


def test_cli_config_command_shows_sources(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("batch_size = 4\n")
    result = run_cli(["config", "--config", str(file), "--retry-attempts", "5", "--no-enable-fallback-to-sequential",
                      "--server-env", "A", "--server-env", "B"], tmp_path,
                     env={"SCALAPAY_MAX_CONCURRENT_BATCHES": "3"}, output_dir=False)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["batch_size"][1:] == ["4", f"file:{file}"]
    assert rows["max_concurrent_batches"][1:] == ["3", "env:SCALAPAY_MAX_CONCURRENT_BATCHES"]
    assert rows["retry_attempts"][1:] == ["5", "cli:--retry-attempts"]
    assert rows["enable_concurrent_data_retrieval"][1:] == ["True", "default"]
    # a flag that turns a setting off is a value like any other
    assert rows["enable_fallback_to_sequential"][1:] == ["False", "cli:--enable-fallback-to-sequential"]
    assert rows["server_env"][1:] == ["['A',", "'B']", "cli:--server-env"]
    assert rows["server_headers"][1:] == ["[]", "default"]


def test_input_files_lose_a_byte_order_mark(tmp_path: Path) -> None:
    from runner.request import iter_merchants

    merchants = tmp_path / "merchants.txt"
    merchants.write_bytes("\ufeffLIICIEWKV6BK\n# a comment\nUVQ455UK5O7B\n".encode())
    assert [token for token, _ in iter_merchants(str(merchants))] == ["LIICIEWKV6BK", "UVQ455UK5O7B"]
    config = tmp_path / "c.toml"
    config.write_bytes("\ufeffbatch_size = 5\n".encode())
    assert load_config(env={}, config_file=config).batch_size == 5
