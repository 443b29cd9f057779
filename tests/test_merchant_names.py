"""The merchant's name, through the real CLI: from the server's list_merchants, a merchants file,
the job file or a SQL pack's merchants query, on the decks' title slides and footers, in every row
of the report and the CSV, and in a template's {{merchant}}. The token stays the folder, the JUnit
class name and the tool argument; a name is untrusted text, cleaned and never part of a path.

Where the token still shows in a deck: on no slide. The PDF's document title (its metadata, no
page) still holds it: runner.decks.pdf_deck, outside this change."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pptx import Presentation
from pptx.util import Inches
from pypdf import PdfReader

from runner.merchants import MAX_NAME_CHARS, merchant_name
from tests.helpers import REPO, run_cli, run_in_process, server_args, validate_report

pytestmark = pytest.mark.timeout(240)

SQL_SERVER = REPO / "tests" / "sql_server.py"
ROW_SECTIONS = ("charts", "decks", "batches", "merchants")
ONE_CHART = ["--charts", "aov_by_month"]

# A server whose list_merchants gives the demo's first merchants untrusted names (argv[1]: a JSON
# list of names, null for none); its chart tools answer as the demo server's do.
HOSTILE_SERVER = '''
import json, sys
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from runner.demo.data import build_database
from runner.demo.server import CHART_TOOLS, Warehouse

names = json.loads(sys.argv[1])
warehouse = Warehouse(build_database())
app = MCPServer("hostile-names", log_level="ERROR")

@app.tool(description="List the merchants: token, name and category.")
def list_merchants() -> dict:
    merchants = warehouse.merchants()[:len(names)]
    return {"merchants": [{**m, "name": name} for m, name in zip(merchants, names)]}

def add(tool_name, method_name):
    method = getattr(warehouse, method_name)
    def chart_tool(merchant_token: str, start_date: str, end_date: str) -> CallToolResult:
        answer = method(merchant_token, start_date, end_date)
        return CallToolResult(content=[TextContent(type="text", text=json.dumps(answer))], structured_content=answer)
    app.add_tool(chart_tool, name=tool_name, description=method_name)

for tool_name, (method_name, _) in CHART_TOOLS.items():
    add(tool_name, method_name)
app.run("stdio")
'''

# (as the server or the file gives it, as every output shows it). No line break: a merchants
# file's line is one merchant (the server's gets them).
HOSTILE = [("\x1b[31mBottega\x1b[0m\tVerde\x07\x00\u202e\x7f", "Bottega Verde"),
           ("../../x", "../../x"),
           ("N" * 10_000, "N" * MAX_NAME_CHARS)]


def _pdf_pages(path: Path) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


def _pptx_slides(path: Path) -> list[str]:
    return [" ".join(shape.text_frame.text for shape in slide.shapes if shape.has_text_frame)
            for slide in Presentation(str(path)).slides]


def _deck(report: dict[str, Any], token: str, fmt: str) -> Path:
    (row,) = [d for d in report["decks"] if (d["merchant"], d["format"]) == (token, fmt)]
    assert row["status"] == "ok", row
    return Path(row["output"])


def _assert_named(report: dict[str, Any], names: dict[str, str]) -> None:
    """Every row of every section names its merchant as `names` says."""
    validate_report(report)
    for section in ROW_SECTIONS:
        assert report[section], section
        for row in report[section]:
            assert row["merchant_name"] == names[row["merchant"]], (section, row)


def _assert_deck_names(report: dict[str, Any], names: dict[str, str], formats: tuple[str, ...]) -> None:
    """The title slide and every footer name the merchant; no slide's text holds its token (unless
    the token is all the run knows it by)."""
    for token, name in names.items():
        for fmt in formats:
            pages = _pdf_pages(_deck(report, token, fmt)) if fmt == "pdf" else _pptx_slides(_deck(report, token, fmt))
            assert name[:20] in pages[0], (fmt, pages[0])  # a long name wraps, or is cut, on the title slide
            for page in pages[1:]:
                assert f"{name} · business review ·" in page, (fmt, page)
            assert name == token or not any(token in page for page in pages), fmt


def _merchants_file(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def first(warehouse) -> list[dict[str, str]]:
    return warehouse.merchants()[:3]


def test_the_servers_names_go_on_the_decks_and_in_every_row_the_token_stays_the_junit_class(tmp_path, demo_url,
                                                                                            first):
    names = {m["token"]: m["name"] for m in first}
    junit = tmp_path / "results.xml"
    result = run_cli(["--server-url", demo_url, "--charts", "aov_by_month,user_demographics", "--csv",
                      "--junit-xml", str(junit)], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["merchant"] for row in result.report["merchants"]] == list(names)  # the server's first three
    _assert_named(result.report, names)
    _assert_deck_names(result.report, names, ("pdf", "pptx"))
    with open(result.report_path.parent / "charts.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["merchant"], row["merchant_name"]) for row in rows} == set(names.items())
    classes = {case.get("classname") for case in ElementTree.parse(junit).getroot().iter("testcase")}
    assert classes == set(names)  # CI keeps each test's history under the token
    folders = {path.name for path in result.report_path.parent.iterdir() if path.is_dir()}
    assert folders == set(names)


@pytest.mark.parametrize("form", ["token-comma-name", "csv-header"])
def test_a_merchants_file_names_its_merchants(tmp_path, demo_url, first, form):
    (a, b, c) = (m["token"] for m in first)
    names = {a: "Bottega, Verde & Co.", b: "Casa #1 Lume", c: c}  # c is given no name: its token shows
    merchants = tmp_path / "merchants.csv"
    if form == "token-comma-name":
        merchants.write_text(f'# our merchants\n{a},"Bottega, Verde & Co."\n{b}, Casa #1 Lume\n{c}  # no name\n')
    else:
        _merchants_file(merchants, [[a, names[a], "home"], [b, names[b], "beauty"], [c, "", "beauty"]],
                        header=["merchant_token", "name", "category"])
    result = run_cli(["--server-url", demo_url, "--merchants-file", str(merchants), *ONE_CHART, "--deck", "pdf"],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_named(result.report, names)
    _assert_deck_names(result.report, {a: names[a], b: names[b]}, ("pdf",))
    assert c in _pdf_pages(_deck(result.report, c, "pdf"))[0]


def test_a_token_per_line_file_still_works_and_a_name_with_an_unquoted_comma_is_refused(tmp_path, demo_url, first):
    (a, b, _) = (m["token"] for m in first)
    plain = tmp_path / "plain.txt"
    plain.write_text(f"{a}\n# a comment\n{b}  # and another\n")
    result = run_cli(["--server-url", demo_url, "--merchants-file", str(plain), *ONE_CHART, "--deck", "none"],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {row["merchant"]: row["merchant_name"] for row in result.report["merchants"]} == {a: a, b: b}
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{a},Bottega, Verde\n")
    refused = run_cli(["--server-url", demo_url, "--merchants-file", str(bad), *ONE_CHART], tmp_path, in_process=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert f"{bad}:1" in line and "quote a name" in line


@pytest.mark.parametrize("source", ["server", "merchants-file"])
def test_a_hostile_name_is_cleaned_bounded_and_never_a_path(tmp_path, demo_url, first, source):
    tokens = [m["token"] for m in first]
    expected = dict(zip(tokens, (shown for _, shown in HOSTILE), strict=True))
    if source == "server":
        script = tmp_path / "hostile_names.py"
        script.write_text(HOSTILE_SERVER)
        command = shlex.join([sys.executable, str(script), json.dumps([given for given, _ in HOSTILE])])
        args = ["--server-command", command]
    else:
        rows = [[token, given] for token, (given, _) in zip(tokens, HOSTILE, strict=True)]
        args = ["--server-url", demo_url, "--merchants-file", str(_merchants_file(tmp_path / "m.csv", rows))]
    result = run_cli([*args, *ONE_CHART, "--csv"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_named(result.report, expected)
    _assert_deck_names(result.report, expected, ("pdf", "pptx"))
    assert "\x1b" not in result.stderr and "\x1b" not in (result.report_path.parent / "charts.csv").read_text()
    run_dir = result.report_path.parent
    assert {path.name for path in run_dir.iterdir() if path.is_dir()} == set(tokens)
    assert not [path for path in tmp_path.rglob("x")], "a name became a path"
    assert all(path.resolve().is_relative_to(tmp_path.resolve()) for path in tmp_path.rglob("*"))


@given(st.text(), st.sampled_from(["LIICIEWKV6BK", "A", "x" * 128]))
def test_any_name_becomes_one_printable_bounded_line(text, token):
    name = merchant_name(text, token)
    assert name and name.isprintable() and name == name.strip() and "  " not in name
    assert len(name) <= MAX_NAME_CHARS or name == token
    assert merchant_name(name, token) == name  # a report read back keeps its names


@pytest.mark.parametrize("form", ["list", "table"])
def test_the_job_file_names_merchants(tmp_path, demo_url, first, form):
    (a, b, _) = (m["token"] for m in first)
    job = tmp_path / "job.toml"
    if form == "list":
        job.write_text(f'merchants = [{{ token = "{a}", name = "Casa Nostra" }}, "{b}"]\n')
        names = {a: "Casa Nostra", b: b}
    else:
        job.write_text(f'charts = ["aov_by_month"]\n\n[merchants]\n{a} = "Casa Nostra"\n{b} = "Vino Vero"\n')
        names = {a: "Casa Nostra", b: "Vino Vero"}
    result = run_cli(["--config", str(job), "--server-url", demo_url, *ONE_CHART, "--deck", "pdf"], tmp_path,
                     in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_named(result.report, names)
    assert names[a] in _pdf_pages(_deck(result.report, a, "pdf"))[0]
    job.write_text(f'merchants = [{{ token = "{a}", label = "Casa Nostra" }}]\n')
    refused = run_cli(["--config", str(job), "--server-url", demo_url], tmp_path, in_process=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "invalid merchants" in line and str(job) in line


@pytest.fixture(scope="module")
def sqlite_warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("warehouse") / "demo.db"
    written = run_in_process(["demo-data", "--sqlite", str(path)], path.parent)
    assert written.returncode == 0, written.stderr
    return path


@pytest.mark.parametrize("fmt", ["json-rows", "python-tuples"])  # rows by column name, and bare tuples
def test_a_sql_run_without_merchants_takes_them_and_their_names_from_the_packs_query(tmp_path, warehouse,
                                                                                     sqlite_warehouse, fmt):
    by_name = sorted(warehouse.merchants(), key=lambda m: (m["name"], m["token"]))[:3]  # the pack's ORDER BY
    names = {m["token"]: m["name"] for m in by_name}
    server = shlex.join([sys.executable, str(SQL_SERVER), "--db", str(sqlite_warehouse), "--format", fmt])
    result = run_cli(["--pack", "business-review-sql", *ONE_CHART, "--deck", "pdf", "--server-command", server],
                     tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["merchant"] for row in result.report["merchants"]] == list(names)
    _assert_named(result.report, names)
    _assert_deck_names(result.report, names, ("pdf",))
    queries = (result.report_path.parent / "server-stderr.log").read_text()
    assert queries.count("FROM merchants") == 1
    assert result.stderr.count("SQL charts run through tool read_query") == 1  # the tool is found once


def test_a_merchants_query_that_fails_or_names_a_merchant_is_a_usage_error(tmp_path, sqlite_warehouse):
    orders_only = tmp_path / "orders-only.db"
    shutil.copy(sqlite_warehouse, orders_only)
    with sqlite3.connect(orders_only) as db:
        db.execute("DROP TABLE merchants")
    server = shlex.join([sys.executable, str(SQL_SERVER), "--db", str(orders_only)])
    failed = run_cli(["--pack", "business-review-sql", *ONE_CHART, "--server-command", server], tmp_path,
                     in_process=True)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    line = failed.stderr.strip().splitlines()[-1]
    assert "merchants query" in line and "no such table: merchants" in line and "--merchant" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    pack = tmp_path / "pack.toml"
    pack.write_text('merchants = "SELECT merchant_token, name FROM merchants WHERE merchant_token = :merchant_token"'
                    '\n\n[[chart]]\nid = "aov"\ntitle = "AOV"\nkind = "bars"\nlabel = "l"\nvalue = "v"\n'
                    'sql = "SELECT l, v FROM t WHERE m = :merchant_token"\n')
    refused = run_cli(["charts", "--pack", str(pack)], tmp_path, output_dir=False, in_process=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert ":merchant_token" in refused.stderr and "merchants" in refused.stderr


def test_a_template_gets_the_name_as_merchant_and_the_token_as_merchant_token(tmp_path, demo_url, first):
    token, name = first[0]["token"], first[0]["name"]
    template = Presentation()
    template.slide_width, template.slide_height = Inches(13.333), Inches(7.5)
    blank = template.slide_layouts[6]
    cover = template.slides.add_slide(blank)
    cover.shapes.add_textbox(Inches(1), Inches(1), Inches(10), Inches(1)).text_frame.text = \
        "Review of {{merchant}} ({{merchant_token}})"
    chart = template.slides.add_slide(blank)
    for role, top in (("title", 0.3), ("chart", 1.2), ("paragraph", 6.0)):
        chart.shapes.add_textbox(Inches(0.5), Inches(top), Inches(12), Inches(1)).text_frame.text = f"{{{{{role}}}}}"
    template.save(str(tmp_path / "template.pptx"))
    merchants = _merchants_file(tmp_path / "merchants.csv", [[token, name]])
    result = run_cli(["--server-url", demo_url, "--merchants-file", str(merchants), *ONE_CHART, "--deck", "pptx",
                      "--deck-template", str(tmp_path / "template.pptx")], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-3000:]
    slides = _pptx_slides(_deck(result.report, token, "pptx"))
    assert slides[0] == f"Review of {name} ({token})"


FAULTS = server_args("--malformed=nan", "--fault-tool=get_user_demographics")


@pytest.fixture(scope="module")
def named_run(tmp_path_factory, first) -> Path:
    """A finished run of two named merchants whose user_demographics failed: copied by each test."""
    root = tmp_path_factory.mktemp("named-run")
    merchants = _merchants_file(root / "merchants.csv", [[m["token"], m["name"]] for m in first[:2]])
    result = run_cli([*FAULTS, "--merchants-file", str(merchants), "--charts", "aov_by_month,user_demographics",
                      "--deck", "pdf"], root, in_process=True)
    assert result.returncode == 1, result.stderr[-2000:]
    return result.report_path.parent


@pytest.mark.parametrize("edit", ["as-written", "older-without-names", "hostile-names"])
def test_a_rerun_merges_reports_with_names_without_them_and_with_hostile_ones(tmp_path, named_run, first, edit):
    run = tmp_path / "out" / named_run.name
    shutil.copytree(named_run, run)
    report_path = run / "report.json"
    report = json.loads(report_path.read_text())
    names = {m["token"]: m["name"] for m in first[:2]}
    if edit == "older-without-names":
        for section in ROW_SECTIONS:
            for row in report[section]:
                del row["merchant_name"]
        names = {token: token for token in names}
    elif edit == "hostile-names":
        for row in report["charts"]:
            row["merchant_name"] = "\x1b[2J\x1b[31mEvil\x1b[0m\x00 " + "E" * 5000
        names = {token: ("Evil " + "E" * 5000)[:MAX_NAME_CHARS] for token in names}
    report_path.write_text(json.dumps(report))
    merged = run_cli(["--rerun-failed", str(report_path), "--merge"], tmp_path, in_process=True)
    assert merged.returncode == 0, merged.stderr[-3000:]
    merged_report = json.loads(report_path.read_text())
    assert merged_report["run"]["charts_ok"] == 4
    _assert_named(merged_report, names)
    _assert_deck_names(merged_report, names, ("pdf",))  # the rebuilt decks
    assert "\x1b" not in merged.stderr
