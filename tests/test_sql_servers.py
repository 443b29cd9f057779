"""The SQL chart pack through the real CLI, against real SQL MCP servers over stdio and HTTP.

mcp-server-motherduck (DuckDB, third party, installed by the test extra) over a DuckDB file
built from `demo-data --csv`; mcp-alchemy over SQLite and over a PostgreSQL cluster the tests
start (tests/postgres.py), the reference SQLite server and postgres-mcp, each from its own venv
(tests/thirdparty.py); tests/sql_server.py over `demo-data --sqlite` for every result format
real servers use, bound parameters, credentials in the environment and in headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.charts import BUILTIN_PACK
from tests import thirdparty
from tests.helpers import REPO, assert_every_chart_once, run_cli, run_in_process
from tests.postgres import Cluster, postgres_cluster  # noqa: F401 (the postgres fixture)

SQL_SERVER = REPO / "tests" / "sql_server.py"
TOKENS = ["LIICIEWKV6BK", "UVQ455UK5O7B", "KDR8WQMUUYRF"]  # the demo data's first three merchants
# Three shapes whose SQL selects exactly its chart's columns, so bare tuples can be read too.
FORMAT_CHARTS = "monthly_sales_yoy,sales_by_product_type,aov_by_product_type"
TOOL_OF = {spec.id: spec.tool for spec in BUILTIN_PACK}


@pytest.fixture(scope="session")
def warehouse_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo warehouse as SQLite, CSV and DuckDB files, written the way the README says."""
    import duckdb

    folder = tmp_path_factory.mktemp("warehouse")
    written = run_in_process(["demo-data", "--sqlite", str(folder / "demo.db"), "--csv", str(folder / "csv")], folder)
    assert written.returncode == 0, written.stderr
    with duckdb.connect(str(folder / "demo.duckdb")) as db:
        db.execute(f"CREATE TABLE orders AS FROM read_csv('{folder / 'csv' / 'orders.csv'}')")
    return {"sqlite": folder / "demo.db", "duckdb": folder / "demo.duckdb", "csv": folder / "csv"}


@pytest.fixture(scope="session")
def demo_answers(demo_url: str) -> dict[tuple[str, str], Any]:
    """What the demo server's own chart tools return for TOKENS, by (merchant, chart id)."""
    from mcp import Client

    async def fetch() -> dict[tuple[str, str], Any]:
        async with Client(demo_url) as client:
            out = {}
            for token in TOKENS:
                for spec in BUILTIN_PACK:
                    # What the runner retrieves: a chart that compares from a year before the window.
                    start = spec.retrieval_start("2024-01-01")
                    result = await client.call_tool(spec.tool, {"merchant_token": token, "start_date": start,
                                                                "end_date": "2025-12-31"})
                    out[(token, spec.id)] = result.structured_content
            return out

    return asyncio.run(fetch())


def _close(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Differences between two chart JSONs, numbers within 0.01."""
    if isinstance(theirs, dict):
        return [d for key in theirs if key != "customers" for d in _close(ours.get(key), theirs[key], f"{where}.{key}")]
    if isinstance(theirs, list):
        if not isinstance(ours, list) or len(ours) != len(theirs):
            return [f"{where}: {ours!r} vs {theirs!r}"]
        return [d for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for d in _close(a, b, f"{where}[{i}]")]
    if isinstance(theirs, int | float) and isinstance(ours, int | float):
        return [] if abs(ours - theirs) <= 0.01 else [f"{where}: {ours} vs {theirs}"]
    return [] if ours == theirs else [f"{where}: {ours!r} vs {theirs!r}"]


def assert_data_matches_demo(report: dict[str, Any], answers: dict[tuple[str, str], Any]) -> None:
    for chart in report["charts"]:
        assert chart["status"] == "ok", chart
        document = json.loads(Path(chart["data_output"]).read_text())
        assert (document["merchant"], document["chart_id"]) == (chart["merchant"], chart["chart_id"])
        differences = _close(document, answers[(chart["merchant"], chart["chart_id"])])
        assert not differences, (chart["merchant"], chart["chart_id"], differences[:5])


def sql_server(db: Path, *flags: str) -> str:
    return shlex.join([sys.executable, str(SQL_SERVER), "--db", str(db), *flags])


def merchants(tokens: list[str] = TOKENS) -> list[str]:
    return [arg for token in tokens for arg in ("--merchant", token)]


def test_motherduck_draws_the_seven_charts_with_the_demo_servers_numbers(tmp_path, warehouse_files, demo_answers):
    command = f"mcp-server-motherduck --db-path {warehouse_files['duckdb']}"
    result = run_cli(["--pack", "business-review-sql", "--server-command", command, *merchants()], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, TOKENS)
    assert "SQL charts run through tool execute_query(sql) with values inlined" in result.stderr
    assert_data_matches_demo(result.report, demo_answers)
    assert result.report["metrics"]["retrieval"]["batch_retries"] == 0
    for chart in result.report["charts"]:  # the data file sits beside its PNG
        assert Path(chart["data_output"]) == Path(chart["output"]).with_suffix(".json")


def test_the_demo_server_run_writes_the_same_data_files(tmp_path, demo_url, demo_answers):
    result = run_cli(["--server-url", demo_url, *merchants(TOKENS[:1])], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_data_matches_demo(result.report, demo_answers)


@pytest.mark.parametrize("fmt", ["structured", "json-rows", "columns-rows", "wrapped", "python-dicts",
                                 "python-tuples", "resource"])
def test_every_result_format_is_decoded(tmp_path, warehouse_files, demo_answers, fmt):
    result = run_cli(["--pack", "business-review-sql", "--charts", FORMAT_CHARTS, *merchants(TOKENS[1:2]),
                      "--server-command", sql_server(warehouse_files["sqlite"], "--format", fmt)], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, TOKENS[1:2], FORMAT_CHARTS.split(","))
    assert_data_matches_demo(result.report, demo_answers)


def test_garbage_and_unflagged_errors_fail_their_charts_with_a_reason(tmp_path, warehouse_files):
    pack = tmp_path / "pack.toml"
    pack.write_text('[[chart]]\nid = "broken"\ntitle = "Broken"\nkind = "bars"\nlabel = "l"\nvalue = "v"\n'
                    'sql = "SELECT l, v FROM no_such_table WHERE m = :merchant_token"\n')
    garbage = run_cli(["--pack", "business-review-sql", "--charts", "aov_by_product_type", *merchants(TOKENS[:1]),
                       "--server-command", sql_server(warehouse_files["sqlite"], "--format", "garbage")], tmp_path,
                      in_process=True)
    unflagged = run_cli(["--pack", str(pack), *merchants(TOKENS[:1]),
                         "--server-command", sql_server(warehouse_files["sqlite"])], tmp_path, in_process=True)
    for result, error_type, fragment, tries in ((garbage, "bad_data", "502 Bad Gateway", 1),
                                                (unflagged, "tool_error", "Database error: no such table", 2)):
        assert result.returncode == 4, result.stderr[-3000:]
        (chart,) = result.report["charts"]
        assert (chart["status"], chart["error_type"]) == ("failed", error_type)
        assert fragment in chart["error"] and chart["attempts"] == tries


def test_bound_parameters_reach_a_tool_that_takes_them(tmp_path, warehouse_files, demo_answers):
    result = run_cli(["--pack", "business-review-sql", "--charts", "aov_by_month,user_demographics",
                      *merchants(TOKENS[:1]), "--server-command", sql_server(warehouse_files["sqlite"], "--params")],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "execute_query(query) with parameters bound through 'params'" in result.stderr
    assert_data_matches_demo(result.report, demo_answers)
    queries = (result.report_path.parent / "server-stderr.log").read_text()
    bound = {"merchant_token": TOKENS[0], "start_date": "2024-01-01", "end_date": "2025-12-31"}
    assert f"params={json.dumps(bound)}" in queries
    assert "merchant_token = :merchant_token" in queries and f"'{TOKENS[0]}'" not in queries


def test_the_query_tool_is_named_when_several_or_none_fit(tmp_path, warehouse_files, demo_url, demo_answers):
    two = sql_server(warehouse_files["sqlite"], "--second-query-tool")
    ambiguous = run_cli(["--pack", "business-review-sql", *merchants(TOKENS[:1]), "--server-command", two], tmp_path,
                        in_process=True)
    none = run_cli(["--pack", "business-review-sql", *merchants(TOKENS[:1]), "--server-url", demo_url], tmp_path,
                   in_process=True)
    for result, fragment in ((ambiguous, "several tools could run SQL: read_query, run_sql"),
                             (none, "no tool of the server takes a SQL query")):
        assert result.returncode == 2, result.stderr[-2000:]
        assert fragment in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    picked = run_cli(["--pack", "business-review-sql", "--charts", "aov_by_product_type", *merchants(TOKENS[:1]),
                      "--server-command", two, "--query-tool", "run_sql"], tmp_path, in_process=True)
    assert picked.returncode == 0, picked.stderr[-2000:]
    assert "tool run_sql(sql)" in picked.stderr
    assert_data_matches_demo(picked.report, demo_answers)


def test_tool_arguments_with_placeholders_suit_a_strict_tool(tmp_path, warehouse_files):
    strict = '[[chart]]\nid = "orders"\ntitle = "Orders"\nkind = "share_bars"\ntool = "orders_by_product"\n'
    good, forced = tmp_path / "good.toml", tmp_path / "forced.toml"
    good.write_text(strict + 'arguments = { token = ":merchant_token", since = ":start_date", until = ":end_date" }\n')
    forced.write_text(strict)  # no placeholders: the runner adds merchant_token and the dates
    server = ["--server-command", sql_server(warehouse_files["sqlite"])]
    ok = run_cli(["--pack", str(good), *merchants(TOKENS[:1]), *server], tmp_path, in_process=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    refused = run_cli(["--pack", str(forced), *merchants(TOKENS[:1]), *server], tmp_path, in_process=True)
    (chart,) = refused.report["charts"]
    assert chart["error_type"] == "tool_error" and "merchant_token" in chart["error"]
    assert chart["attempts"] == 2  # an answer, not a fault: tried twice, not 1 + retries + fallback


@pytest.fixture(scope="session")
def postgres_demo(postgres: Cluster, warehouse_files: dict[str, Path]) -> str:
    """The demo warehouse in a Postgres database, loaded with psql the way the README says."""
    url = postgres.create_database("demo")
    postgres.psql("demo", "-f", "csv/schema.sql", "-c", "\\copy orders FROM 'csv/orders.csv' CSV HEADER",
                  "-c", "\\copy merchants FROM 'csv/merchants.csv' CSV HEADER", cwd=warehouse_files["csv"].parent)
    return url


ALCHEMY_PICK = "SQL charts run through tool execute_query(query) with parameters bound through 'params' " \
               "(the only tool that takes SQL; another with --query-tool and --query-argument)"


@pytest.mark.xdist_group("postgres")
def test_mcp_alchemy_over_pg_draws_the_seven_charts_with_the_demo_servers_numbers(tmp_path, postgres_demo,
                                                                                       demo_answers):
    alchemy = thirdparty.server("mcp-alchemy")
    result = run_cli(["--pack", "business-review-sql", "--server-command", str(alchemy.command), "--server-env",
                      "DB_URL", "--server-env", "EXECUTE_QUERY_MAX_CHARS=1000000", *merchants()], tmp_path,
                     env={"DB_URL": postgres_demo}, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, TOKENS)
    assert ALCHEMY_PICK in result.stderr
    assert_data_matches_demo(result.report, demo_answers)


def test_mcp_alchemy_over_sqlite_draws_the_demo_servers_numbers(tmp_path, warehouse_files, demo_answers):
    alchemy = thirdparty.server("mcp-alchemy")
    result = run_cli(["--pack", "business-review-sql", "--server-command", str(alchemy.command), "--server-env",
                      f"DB_URL=sqlite:///{warehouse_files['sqlite']}", "--server-env",
                      "EXECUTE_QUERY_MAX_CHARS=1000000", "--deck", "none", *merchants(TOKENS[2:])], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_every_chart_once(result, TOKENS[2:])
    assert_data_matches_demo(result.report, demo_answers)


def test_a_cut_mcp_alchemy_answer_is_bad_data_naming_its_setting(tmp_path, warehouse_files):
    """Two years of orders by user type is ~4,400 characters, past mcp-alchemy's default 4,000."""
    alchemy = thirdparty.server("mcp-alchemy")
    result = run_cli(["--pack", "business-review-sql", "--charts", "orders_by_user_type,aov_by_product_type",
                      "--server-command", str(alchemy.command), "--server-env",
                      f"DB_URL=sqlite:///{warehouse_files['sqlite']}", "--deck", "none", *merchants(TOKENS[:1])],
                     tmp_path, in_process=True)
    assert result.returncode == 1, result.stderr[-3000:]
    charts = {chart["chart_id"]: chart for chart in result.report["charts"]}
    assert charts["aov_by_product_type"]["status"] == "ok"
    cut = charts["orders_by_user_type"]
    assert (cut["status"], cut["error_type"], cut["attempts"]) == ("failed", "bad_data", 1)
    assert "output truncated" in cut["error"] and "--server-env EXECUTE_QUERY_MAX_CHARS=" in cut["error"]


def test_the_reference_sqlite_server_needs_no_query_tool_flag(tmp_path, warehouse_files, demo_answers):
    sqlite = thirdparty.server("mcp-server-sqlite")
    result = run_cli(["--pack", "business-review-sql", "--server-command",
                      f"{sqlite.command} --db-path {warehouse_files['sqlite']}", "--deck", "none",
                      *merchants(TOKENS[:1])], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("SQL charts run through tool read_query(query) with values inlined (the only one of create_table, "
            "read_query, write_query named for reading") in result.stderr
    assert_every_chart_once(result, TOKENS[:1])
    assert_data_matches_demo(result.report, demo_answers)


@pytest.mark.xdist_group("postgres")
def test_pg_mcp_runs_execute_sql_not_explain_query(tmp_path, postgres_demo, demo_answers):
    server = thirdparty.server("postgres-mcp")
    args = ["--pack", "business-review-sql", "--server-command", f"{server.command} --access-mode=restricted",
            "--server-env", "DATABASE_URI", "--deck", "none", *merchants(TOKENS[:1])]
    result = run_cli(args, tmp_path, env={"DATABASE_URI": postgres_demo}, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("SQL charts run through tool execute_sql(sql) with values inlined (the only one of execute_sql, "
            "explain_query not named for writing, DDL or query plans") in result.stderr
    assert_data_matches_demo(result.report, demo_answers)
    plans = run_cli([*args, "--charts", "aov_by_month", "--query-tool", "explain_query"], tmp_path,
                    env={"DATABASE_URI": postgres_demo}, in_process=True)
    assert plans.returncode == 4, plans.stderr[-3000:]
    (chart,) = plans.report["charts"]
    assert chart["error_type"] == "bad_data"
    assert "tool explain_query answered a query plan, not rows" in chart["error"]
    assert "explain_query(sql) with values inlined (named by --query-tool" in plans.stderr


SECRET = "hunter2-correct-horse"
OTHER_SECRET = "do-not-pass-this-one"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _no_secret_anywhere(result: Any, tmp_path: Path, *secrets: str) -> None:
    texts = [result.stdout, result.stderr]
    texts += [p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file()
              and p.suffix != ".png"]
    for secret in secrets:
        assert not any(secret in text for text in texts), f"{secret} leaked"


@pytest.mark.parametrize(("flags", "caller_has_it"), [
    ([], True),  # the MCP client passes only HOME, PATH and a few more: the server is refused
    (["--server-env", "WAREHOUSE_PASSWORD"], True),
    (["--server-env", f"WAREHOUSE_PASSWORD={SECRET}"], False),
    (["--server-env", "WAREHOUSE_*"], True),
], ids=["not-given", "inherited", "assigned", "glob"])
def test_a_stdio_server_gets_only_the_environment_it_is_given(tmp_path, warehouse_files, flags, caller_has_it):
    server = sql_server(warehouse_files["sqlite"], "--require-env", f"WAREHOUSE_PASSWORD={_digest(SECRET)}")
    env = {"OTHER_PASSWORD": OTHER_SECRET, **({"WAREHOUSE_PASSWORD": SECRET} if caller_has_it else {})}
    result = run_cli(["--pack", "business-review-sql", "--charts", "aov_by_product_type", *merchants(TOKENS[:1]),
                      "--server-command", server, *flags], tmp_path, env=env, in_process=True)
    if not flags:
        assert result.returncode == 4, result.stderr[-2000:]
        assert "WAREHOUSE_PASSWORD is missing or wrong" in result.report["charts"][0]["error"]
        return
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["config"]["server_env"]["value"] == [flags[1].split("=")[0] + ("=***" if "=" in flags[1]
                                                                                         else "")]
    _no_secret_anywhere(result, tmp_path, SECRET, OTHER_SECRET)


def test_only_named_variables_reach_the_server_and_secret_assignments_are_redacted(tmp_path, warehouse_files):
    pack = tmp_path / "env.toml"
    pack.write_text('[[chart]]\nid = "env"\ntitle = "Env"\nkind = "bars"\ntool = "env_names"\n')
    command = f"env DB_PASSWORD={SECRET} {sql_server(warehouse_files['sqlite'])}"
    result = run_cli(["--pack", str(pack), *merchants(TOKENS[:1]), "--server-command", command, "--verbose",
                      "--server-env", "WAREHOUSE_TOKEN"], tmp_path, env={"WAREHOUSE_TOKEN": OTHER_SECRET,
                                                                        "UNRELATED_SECRET": OTHER_SECRET},
                     in_process=True)
    (chart,) = result.report["charts"]  # env_names draws the names of the server's variables
    assert chart["status"] == "ok", result.stderr[-2000:]
    names = json.loads(Path(chart["data_output"]).read_text())["labels"]
    assert {"WAREHOUSE_TOKEN", "DB_PASSWORD", "PATH"} <= set(names) and "UNRELATED_SECRET" not in names
    assert "DB_PASSWORD=***" in result.stderr
    assert "DB_PASSWORD=***" in result.report["config"]["server_command"]["value"]
    _no_secret_anywhere(result, tmp_path, SECRET, OTHER_SECRET)


@pytest.fixture(scope="module")
def guarded_url(warehouse_files) -> Any:
    """tests/sql_server.py over HTTP, answering only requests with the right bearer token."""
    required = f"Authorization: {_digest('Bearer ' + SECRET)}"
    process = subprocess.Popen([sys.executable, str(SQL_SERVER), "--db", str(warehouse_files["sqlite"]),
                                "--transport", "http", "--require-header", required],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("READY "), line
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_an_http_server_behind_a_bearer_token(tmp_path, guarded_url, demo_answers):
    args = ["--pack", "business-review-sql", "--charts", "aov_by_product_type", *merchants(TOKENS[:1]),
            "--server-url", guarded_url]
    refused = run_cli(args, tmp_path, in_process=True)
    assert refused.returncode == 4, refused.stderr[-2000:]
    assert "HTTP 401 Unauthorized" in refused.stderr and "--server-header" in refused.stderr
    assert "Traceback" not in refused.stderr and "retry" not in refused.stderr  # no point asking again
    accepted = run_cli([*args, "--server-header", "Authorization: Bearer ${WAREHOUSE_TOKEN}"], tmp_path,
                       env={"WAREHOUSE_TOKEN": SECRET}, in_process=True)
    assert accepted.returncode == 0, accepted.stderr[-2000:]
    assert accepted.report["config"]["server_headers"]["value"] == ["Authorization: ***"]
    assert_data_matches_demo(accepted.report, demo_answers)
    _no_secret_anywhere(accepted, tmp_path, SECRET)


def test_server_text_never_reaches_the_log_raw(tmp_path, warehouse_files):
    """An error text with a clear-screen escape and a forged log line, as a server sends it back."""
    forged = "\\u001b[2J\\n03:00:00 INFO    status: ok (exit 0)"
    pack = tmp_path / "pack.toml"
    pack.write_text('[[chart]]\nid = "c"\ntitle = "C"\nkind = "bars"\nlabel = "l"\nvalue = "v"\n'
                    f'sql = "SELECT l, v FROM \\"{forged}\\" WHERE m = :merchant_token"\n')
    result = run_cli(["--pack", str(pack), *merchants(TOKENS[:1]), "--server-command",
                      sql_server(warehouse_files["sqlite"])], tmp_path, in_process=True)
    assert result.returncode == 4, result.stderr[-2000:]
    assert "\x1b" not in result.stderr + result.stdout
    assert not any(line.startswith("03:00:00") for line in result.stderr.splitlines())
    (chart,) = result.report["charts"]
    assert "\\x1b[2J\\n03:00:00 INFO" in chart["error"] and "\n" not in chart["error"]


def test_junk_on_a_servers_stdout_costs_no_traceback(tmp_path, warehouse_files):
    command = f"sh -c 'echo junk; echo \"{{not json\"; exec {sql_server(warehouse_files['sqlite'])}'"
    result = run_cli(["--pack", "business-review-sql", "--charts", "aov_by_product_type", *merchants(TOKENS[:1]),
                      "--server-command", command], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Failed to parse" not in result.stderr
