"""--rerun-failed and --merge with a report, a run folder and a user's files an adversary could
have edited: the report is input like a flag, paths come from the folder it is in, nothing is
written through a link, and --keep-runs spares every run the rerun reads or merges into."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from runner.errors import UsageError
from runner.merchants import check_merchant_token
from runner.rerun import read_rerun
from tests.helpers import check_report, run_cli, server_args
from tests.userfiles import assert_untouched, plant_user_files, tree_digest

pytestmark = pytest.mark.timeout(180)

CHARTS = ["aov_by_month", "user_demographics"]  # the second fails in the original run
FAULTS = server_args("--malformed=nan", "--fault-tool=get_user_demographics")


@pytest.fixture(scope="module")
def original(tmp_path_factory, demo_tokens) -> Path:
    """One finished run of two merchants whose user_demographics failed: copied by each test."""
    root = tmp_path_factory.mktemp("original")
    first = run_cli([*FAULTS, "--merchant", demo_tokens[0], "--merchant", demo_tokens[1], "--charts", ",".join(CHARTS)],
                    root, in_process=True)
    assert first.returncode == 1, first.stderr[-2000:]
    assert {(c["chart_id"], c["status"]) for c in first.report["charts"]} == {("aov_by_month", "ok"),
                                                                            ("user_demographics", "failed")}
    return first.report_path.parent


class Setup:
    """A user's project in tmp_path, the original run copied into its output folder."""

    def __init__(self, tmp_path: Path, original: Path, where: Path | None = None) -> None:
        self.root = plant_user_files(tmp_path)
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.run = (where or self.out) / original.name
        shutil.copytree(original, self.run, symlinks=True)
        self.report_path = self.run / "report.json"
        self.report = json.loads(self.report_path.read_text())
        self.original = original
        self.original_digest = tree_digest(original)
        self.before = tree_digest(self.root, skip=(self.out, self.run))

    def rewrite(self, change) -> None:
        change(self.report)
        self.report_path.write_text(json.dumps(self.report))

    def rows(self, chart_id: str) -> list[dict]:
        return [c for c in self.report["charts"] if c["chart_id"] == chart_id]

    def merge(self, *extra: str):
        """--merge against the run's own server: the embedded demo server, without its faults now."""
        return run_cli(["--rerun-failed", str(self.report_path), "--merge", *extra], self.root, in_process=True)

    def runs(self) -> list[str]:
        return sorted(p.name for p in self.out.iterdir())

    def assert_untouched(self) -> None:
        """No byte outside the output folder and the merged-into run changed, nor in the run it was copied from."""
        assert_untouched(self.before, tree_digest(self.root, skip=(self.out, self.run)))
        assert_untouched(self.original_digest, tree_digest(self.original))


def _one_line_usage_error(result, *expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _pdf_text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(path).pages)


def _all_ok_in_place(setup: Setup, result) -> dict:
    """The merge succeeded into the run's own folder: every chart and deck ok, every path inside it."""
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report_path == setup.report_path
    report = check_report(result, chart_ids=CHARTS)
    assert {c["status"] for c in report["charts"]} == {"ok"}
    assert {(d["status"], d["charts_missing"]) for d in report["decks"]} == {("ok", 0)}
    for path in [c["output"] for c in report["charts"]] + [c["data_output"] for c in report["charts"]] + [
            d["output"] for d in report["decks"]]:
        assert Path(path).parent.parent == setup.run and not Path(path).is_symlink(), path
    assert report["run"]["output_dir"] == str(setup.run)
    return report


# -- --keep-runs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("merge", [True, False])
def test_keep_runs_spares_the_run_a_rerun_reads_and_merges_into(tmp_path, original, merge):
    setup = Setup(tmp_path, original)
    older = setup.out / "20000101T000000Z-abcdef"  # a finished run older than the original: the one to prune
    shutil.copytree(original, older, symlinks=True)
    files = sorted(str(p.relative_to(setup.run)) for p in setup.run.rglob("*.png"))
    result = run_cli(["--rerun-failed", str(setup.report_path), "--keep-runs", "1",
                      *(["--merge"] if merge else [])], setup.root, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not older.exists()  # pruning still happens, after the merge
    assert setup.run.exists()
    if merge:  # the rerun's folder is merged into the run, and removed: one folder for the night
        assert not (setup.out / result.report["run"]["merged"][-1]["rerun_run_id"]).exists()
        assert setup.runs() == sorted([setup.run.name, ".cache", "latest"])
    else:  # kept, as part of the run's night (keep 1 counts nights, not folders)
        rerun_dir = result.report_path.parent
        assert (rerun_dir / "RERUN_OF").read_text().strip() == setup.run.name
        assert setup.runs() == sorted([setup.run.name, rerun_dir.name, ".cache"])  # a rerun moves no `latest`
    assert sorted(str(p.relative_to(setup.run)) for p in setup.run.rglob("*.png")) == sorted(
        {*files, *(f"{m}/user_demographics.png" for m in {c["merchant"] for c in setup.report["charts"]})}
        if merge else files)
    if merge:
        _all_ok_in_place(setup, result)
        assert (setup.out / "latest").resolve() == setup.run
    setup.assert_untouched()


# -- paths come from the folder the report is in --------------------------------------------------------


@pytest.mark.parametrize("forged", ["outside", "/etc/passwd"])
def test_paths_in_the_report_are_never_used(tmp_path, original, forged):
    setup = Setup(tmp_path, original)
    outside = tmp_path / "userdir" / "forged"
    outside.mkdir()
    row = setup.rows("aov_by_month")[0]
    document = json.loads(Path(row["data_output"]).read_text())
    (outside / "aov_by_month.json").write_text(json.dumps({**document, "paragraph": "FORGED-PARAGRAPH-123"}))
    (outside / "aov_by_month.png").write_bytes(b"not a png")

    def forge(report):
        for chart in report["charts"]:
            chart["output"] = str(outside / f"{chart['chart_id']}.png") if forged == "outside" else forged
            chart["data_output"] = str(outside / f"{chart['chart_id']}.json") if forged == "outside" else forged
        for deck in report["decks"]:
            deck["output"] = str(outside / f"evil.{deck['format']}") if forged == "outside" else forged

    setup.before = tree_digest(setup.root, skip=(setup.out,))
    setup.rewrite(forge)
    result = setup.merge()
    _all_ok_in_place(setup, result)
    pdf = setup.run / row["merchant"] / "business-review.pdf"
    assert "FORGED-PARAGRAPH-123" not in _pdf_text(pdf) and "root:" not in _pdf_text(pdf)
    assert not list(outside.glob("evil.*"))
    setup.assert_untouched()


def test_a_moved_run_merges_into_where_it_is_now(tmp_path, original):
    setup = Setup(tmp_path, original, where=tmp_path / "archive")
    text = setup.report_path.read_text().replace(str(original), str(tmp_path / "gone" / original.name))
    setup.report_path.write_text(text)  # what a moved run's report says: its files where they were
    setup.report = json.loads(text)
    result = setup.merge()
    report = _all_ok_in_place(setup, result)
    assert report["run"]["output_dir"] == str(setup.run)
    assert not (tmp_path / "gone").exists() and not (tmp_path / "archive" / "latest").exists()
    # The rerun's folder stays where it was made; a rerun is no night of its own, so no `latest` names it.
    assert (setup.out / report["run"]["merged"][-1]["rerun_run_id"]).is_dir()
    assert not (setup.out / "latest").exists()
    setup.assert_untouched()


def test_a_copied_run_reads_and_writes_only_its_own_files(tmp_path, original):
    setup = Setup(tmp_path, original)  # its report names the files of the run it was copied from
    row = setup.rows("aov_by_month")[0]
    own = setup.run / row["merchant"] / "aov_by_month.json"
    document = json.loads(own.read_text())
    series = [{**s, "values": [4321.0 for _ in s["values"]]} for s in document["series"]]
    own.write_text(json.dumps({**document, "series": series}))  # the deck's sentence tells which file it read
    result = setup.merge()
    _all_ok_in_place(setup, result)
    assert "€4,321" in _pdf_text(setup.run / row["merchant"] / "business-review.pdf")
    setup.assert_untouched()  # the run it was copied from included


# -- never through a link ------------------------------------------------------------------------------


def test_a_merchant_folder_that_is_a_link_is_refused_before_any_work(tmp_path, original):
    setup = Setup(tmp_path, original)
    merchant = setup.report["charts"][0]["merchant"]
    outside = tmp_path / "userdir" / merchant
    shutil.move(setup.run / merchant, outside)
    (setup.run / merchant).symlink_to(outside, target_is_directory=True)
    setup.before = tree_digest(setup.root, skip=(setup.out,))
    runs = setup.runs()
    result = setup.merge()
    _one_line_usage_error(result, str(setup.run / merchant), "link")
    assert setup.runs() == runs  # no run folder left
    setup.assert_untouched()


def test_a_report_that_is_a_link_is_refused_before_any_work(tmp_path, original):
    """The run is the report's folder: a report.json that links elsewhere would make that folder
    the run, and the merge would write its charts and decks there."""
    setup = Setup(tmp_path, original)
    elsewhere = tmp_path / "userdir" / "report.json"
    shutil.move(setup.report_path, elsewhere)
    setup.report_path.symlink_to(elsewhere)
    setup.before = tree_digest(setup.root, skip=(setup.out,))
    runs = setup.runs()
    result = setup.merge()
    _one_line_usage_error(result, str(setup.report_path), "is a link")
    assert setup.runs() == runs
    setup.assert_untouched()  # nothing written beside the linked report


def test_files_that_are_links_are_replaced_or_refused_never_followed(tmp_path, original):
    setup = Setup(tmp_path, original)
    first, second = sorted({c["merchant"] for c in setup.report["charts"]})
    precious = tmp_path / "userdir" / "thesis-0.docx"
    # Where the rerun's PNG goes: the link is replaced, the file it names untouched.
    (setup.run / first / "user_demographics.png").symlink_to(precious)
    # An ok chart's data file that is a link: never read; that chart fails, its deck says so.
    data = setup.run / second / "aov_by_month.json"
    data.unlink()
    data.symlink_to(precious)
    result = setup.merge()
    assert result.returncode == 1, result.stderr[-2000:]
    report = check_report(result, chart_ids=CHARTS)
    statuses = {(c["merchant"], c["chart_id"]): (c["status"], c["error_type"]) for c in report["charts"]}
    assert statuses == {(first, "aov_by_month"): ("ok", None), (first, "user_demographics"): ("ok", None),
                        (second, "aov_by_month"): ("failed", "bad_data"),
                        (second, "user_demographics"): ("ok", None)}
    assert not (setup.run / first / "user_demographics.png").is_symlink()
    assert {(d["merchant"], d["status"]) for d in report["decks"]} == {(first, "ok"), (second, "partial")}
    assert "Traceback" not in result.stderr
    setup.assert_untouched()


# -- the report is input like a flag ---------------------------------------------------------------------


def _duplicate_failed(report):
    report["charts"].append(dict(next(c for c in report["charts"] if c["status"] == "failed")))


def _token(value):
    def change(report):
        for chart in report["charts"]:
            chart["merchant"] = value
    return change


def _field(key, value, section="charts"):
    def change(report):
        if section == "run":
            report["run"][key] = value
        else:
            report[section][0][key] = value
    return change


@pytest.mark.parametrize(("change", "expected"), [
    (_duplicate_failed, "listed twice"),
    (_token("ABC\x1b[2J\nERROR forged line"), "merchant token"),
    (_token("X' OR '1'='1"), "merchant token"),
    (_token(" ABC"), "merchant token"),
    (_field("chart_id", "../../etc/passwd"), "no chart"),
    (_field("status", "exploded"), "not a runner report"),
    (_field("format", "x/../../../../victim/evil", "decks"), "not a runner report"),
    (_field("run_id", "../x", "run"), "not a runner report"),
    (_field("exit_code", 77, "run"), "not a runner report"),
    (_field("start_date", "yesterday", "run"), "not a runner report"),
    (lambda report: report.update(decks=[1]), "not a runner report"),
    (lambda report: report["charts"][0].update(title={"nested": 1}), "not a runner report"),
])
def test_a_report_edited_by_hand_is_refused_in_one_line(tmp_path, original, change, expected):
    setup = Setup(tmp_path, original)
    setup.rewrite(change)
    runs = setup.runs()
    result = run_cli(["--server-url", "http://127.0.0.1:9/mcp", "--rerun-failed", str(setup.report_path), "--merge"],
                     setup.root, in_process=True)  # a server nobody answers on: nothing may get that far
    _one_line_usage_error(result, expected)
    assert setup.runs() == runs
    setup.assert_untouched()


@pytest.mark.parametrize("text", ["[" * 100_000, "\xff\xfe garbage"])
def test_a_report_that_is_not_json_is_refused_in_one_line(tmp_path, original, text):
    setup = Setup(tmp_path, original)
    setup.report_path.write_bytes(text.encode("latin-1"))
    result = run_cli(["--rerun-failed", str(setup.report_path), "--merge"], setup.root, in_process=True)
    _one_line_usage_error(result, "not a runner report")


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["run", "charts", "decks"]), key=st.sampled_from(
    ["merchant", "chart_id", "status", "error_type", "error", "format", "run_id", "start_date", "end_date",
     "started_at", "exit_code", "pack", "merged", "server", "sha256", "output"]), value=_JSON | st.text())
def test_whatever_a_report_field_holds_reading_it_is_a_rerun_or_one_usage_line(original, section, key, value):
    """A unit: read_rerun on the original report with one field replaced by any JSON value."""
    report = json.loads((original / "report.json").read_text())
    record = report["run"] if section == "run" else report[section][-1]
    record[key] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        path.write_text(json.dumps(report))
        try:
            rerun = read_rerun(str(path))
        except UsageError as exc:
            message = str(exc)
            assert "\n" not in message and "\x1b" not in message and message.isprintable(), message
            return
        with rerun.file:  # the report is read a row at a time, from the file opened at the start
            rows = [row for group in rerun.groups() for row in group.charts]
    for merchant, chart in rerun.pairs:
        assert check_merchant_token(merchant, "test") == merchant and chart in rerun.specs
    assert len(set(rerun.pairs)) == len(rerun.pairs)
    for row in rows:
        assert all(not isinstance(v, dict | list) for v in row.values())


# -- bad files read back ----------------------------------------------------------------------------------


def _not_json(data, png):
    data.write_text("{not json")


def _swapped(data, png):  # another chart's data under this chart's name
    data.write_text(json.dumps({**json.loads(data.read_text()), "chart_id": "aov_by_product_type"}))


def _not_its_shape(data, png):
    data.write_text(json.dumps({**json.loads(data.read_text()), "labels": "x"}))


def _oversized(data, png):
    data.write_bytes(b" " * 10_000_001)


def _truncated_png(data, png):
    png.write_bytes(png.read_bytes()[:100])


def _no_png(data, png):
    png.unlink()


@pytest.mark.parametrize("damages", [((_not_json, "bad_data"), (_truncated_png, "render_error")),
                                     ((_swapped, "bad_data"), (_no_png, "render_error")),
                                     ((_oversized, "bad_data"), (_not_its_shape, "bad_data"))])
def test_a_bad_file_in_the_run_fails_its_chart_not_the_merge(tmp_path, original, damages):
    """Each merchant's ok chart damaged one way: that chart fails, its deck is partial, the rest merges."""
    setup = Setup(tmp_path, original)
    merchants = [row["merchant"] for row in setup.rows("aov_by_month")]
    for merchant, (damage, _) in zip(merchants, damages, strict=True):
        damage(setup.run / merchant / "aov_by_month.json", setup.run / merchant / "aov_by_month.png")
    result = setup.merge()
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    report = check_report(result, chart_ids=CHARTS)
    failed = {(c["merchant"], c["chart_id"], c["error_type"]) for c in report["charts"] if c["status"] != "ok"}
    assert failed == {(merchant, "aov_by_month", error_type) for merchant, (_, error_type) in
                      zip(merchants, damages, strict=True)}
    assert {(d["status"], d["charts_missing"]) for d in report["decks"]} == {("partial", 1)}
    setup.assert_untouched()


# -- where the merge cannot write ------------------------------------------------------------------------


@contextmanager
def _read_only(folder: Path):
    """The folder cannot be written, even by root (who ignores permission bits: then it is made immutable)."""
    folder.chmod(0o555)
    immutable = os.geteuid() == 0 and shutil.which("chattr") is not None
    if immutable:
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        try:
            (folder / ".probe").touch()
        except OSError:
            pass
        else:
            (folder / ".probe").unlink()
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_merging_into_a_read_only_run_is_one_line_before_any_work(tmp_path, original):
    setup = Setup(tmp_path, original)
    runs = setup.runs()
    with _read_only(setup.run):
        result = setup.merge()
    _one_line_usage_error(result, str(setup.run), "cannot write")
    assert setup.runs() == runs
    setup.assert_untouched()


def test_a_recorded_template_that_is_gone_is_one_line_naming_it(tmp_path, original):
    setup = Setup(tmp_path, original)
    missing = tmp_path / "templates" / "brand.pptx"
    runs = setup.runs()
    setup.rewrite(lambda report: report["config"].update(deck_template={"value": str(missing), "source": "cli"}))
    _one_line_usage_error(setup.merge(), str(missing), "--deck-template")
    setup.rewrite(lambda report: report["config"].update(deck_template={"value": "/etc/passwd", "source": "cli"}))
    _one_line_usage_error(setup.merge(), "/etc/passwd", "not a PowerPoint file")
    assert setup.runs() == runs
    setup.assert_untouched()


# -- the server the run read ----------------------------------------------------------------------------


def test_a_report_that_does_not_record_its_server_needs_the_flag(tmp_path, original):
    """A report from before run.server: refused in one line, no folder; with --rerun-server-anyway the
    rerun reads the server it is given (here none: the embedded demo server)."""
    setup = Setup(tmp_path, original)
    setup.rewrite(lambda report: report["run"].pop("server"))
    runs = setup.runs()
    _one_line_usage_error(setup.merge(), "does not say which MCP server it read", "--rerun-server-anyway")
    assert setup.runs() == runs
    report = _all_ok_in_place(setup, setup.merge("--rerun-server-anyway"))
    assert "server" not in report["run"]  # still unknown; the merge records the server the rerun read
    assert report["run"]["merged"][-1]["server"]["kind"] == "embedded"
    setup.assert_untouched()


@pytest.mark.parametrize(("server", "expected"), [
    ({"kind": "url", "target": "http://127.0.0.1:9/mcp", "fingerprint": "0" * 64},
     "read the MCP server at http://127.0.0.1:9/mcp, and this rerun is given no server"),
    ({"kind": "embedded", "target": "the embedded demo server", "fingerprint": "0" * 64},
     "refusing to merge numbers from another source"),
    ({"kind": "ftp", "target": "x", "fingerprint": "0" * 64}, "not a runner report"),
    ({"kind": "url", "target": "x\x1b[2J", "fingerprint": "0" * 64}, "not a runner report"),
    ("http://127.0.0.1:9/mcp", "not a runner report"),
])
def test_a_recorded_server_that_is_not_this_one_is_refused_before_any_work(tmp_path, original, server, expected):
    setup = Setup(tmp_path, original)
    setup.rewrite(lambda report: report["run"].update(server=server))
    runs = setup.runs()
    _one_line_usage_error(setup.merge(), expected)
    assert setup.runs() == runs
    setup.assert_untouched()


def test_a_pack_file_changed_since_the_run_is_another_source(tmp_path):
    """A unit: the fingerprint holds a pack file's content, so the same server with an edited pack
    is refused, naming the pack."""
    from runner.rerun import Rerun, check_server
    from runner.server_record import server_record

    pack = tmp_path / "pack.toml"
    pack.write_bytes((Path(__file__).parents[1] / "runner" / "packs" / "business-review-sql.toml").read_bytes())
    recorded = server_record("http://127.0.0.1:9/mcp", None, str(pack))
    rerun = Rerun(tmp_path / "report.json", b"", {"run": {"run_id": "20260101T000000Z-abcdef", "pack": str(pack)}},
                  {}, (), recorded)
    check_server(rerun, "http://127.0.0.1:9/mcp", None, anyway=False)  # the same: no error
    with pytest.raises(UsageError, match="with its credentials"):
        check_server(rerun, None, None, anyway=True)  # never the demo server for a run that read another
    pack.write_text(pack.read_text() + "\n# edited\n")
    with pytest.raises(UsageError, match=f"pack {pack} as it was then, and that pack has changed since"):
        check_server(rerun, "http://127.0.0.1:9/mcp", None, anyway=False)
    check_server(rerun, "http://127.0.0.1:9/mcp", None, anyway=True)  # told to: a WARNING, no error
    assert server_record("http://user:pa55word-x@127.0.0.1:9/mcp", None, str(pack)).fingerprint == server_record(
        "http://user:other-secret@127.0.0.1:9/mcp", None, str(pack)).fingerprint  # credentials are not in it


# -- the run's JUnit file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["ours", "link", "another run's", "gone"])
def test_the_runs_junit_file_is_rewritten_only_while_it_holds_the_runs_results(tmp_path, original, state):
    from junitparser import JUnitXml

    from runner.junit import junit_xml

    setup = Setup(tmp_path, original)
    junit = setup.root / "ci" / "results.xml"
    junit.parent.mkdir()
    other = {**setup.report, "run": {**setup.report["run"], "run_id": "20000101T000000Z-ffffff"}}
    if state == "link":
        junit.symlink_to(tmp_path / "userdir" / "thesis-0.docx")
    elif state != "gone":
        junit.write_bytes(junit_xml(setup.report if state == "ours" else other))
    setup.rewrite(lambda report: report["run"].update(junit_xml=str(junit)))
    before = tree_digest(setup.root, skip=(setup.out, setup.run, tmp_path / "given"))
    result = setup.merge("--junit-xml", str(tmp_path / "given" / "results.xml"))
    _all_ok_in_place(setup, result)
    (given,) = list(JUnitXml.fromfile(str(tmp_path / "given" / "results.xml")))  # merged, not the rerun's 2 cases
    assert (given.tests, given.failures, given.skipped) == (8, 0, 0)
    if state == "ours":
        (suite,) = list(JUnitXml.fromfile(str(junit)))
        assert (suite.tests, suite.failures, suite.name) == (8, 0, f"runner {setup.run.name}")
        before.pop("ci/results.xml")
    else:
        assert "not rewritten" in result.stderr
    after = tree_digest(setup.root, skip=(setup.out, setup.run, tmp_path / "given"))
    if state == "ours":
        after.pop("ci/results.xml")
    assert_untouched(before, after)


@pytest.mark.parametrize(("recorded", "expected"), [
    ({"partial_decks": {"value": "omit", "source": "flag"}}, "omit"),
    ({"partial_decks": {"value": "skip", "source": "env"}}, "skip"),
    ({"partial_decks": {"value": "../../etc/passwd"}}, "placeholder"),
    ({"partial_decks": {"value": ["omit"]}}, "placeholder"),
    ({"partial_decks": "omit"}, "placeholder"),
    ("not a table", "placeholder"),
])
def test_a_merge_reads_the_runs_partial_decks_setting_as_untrusted(recorded, expected):
    """The rebuilt decks follow the run's own setting; a tampered or odd value is the default."""
    from runner.merge import _recorded_partial_decks

    assert _recorded_partial_decks({"config": recorded}) == expected
