"""The render cache touches only what is its own and trusts nothing it reads back.

Each test lays out a user's project around the output folder and the cache, tampers with the
cache as a hand (or an adversary) might, runs the real CLI, and checks that no byte outside the
output folder and the cache changed, and that what the run wrote is right.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cache.entries import ENTRY_FORMATS, MAX_ENTRY_BYTES, EntryKind, parse_record, record_of
from runner.cache.folder import INDEX, MARKER, MARKER_TEXT
from runner.files import write_atomically
from tests.helpers import check_report, clean_env, cli_command, cli_result, run_cli
from tests.userfiles import assert_untouched, plant_user_files, tree_digest

pytestmark = pytest.mark.timeout(180)

CHART = "aov_by_month"
NOT_SERVED = "not served"


def _args(demo_url: str, tokens: list[str], cache: Path | None, *extra: str) -> list[str]:
    merchants = [a for t in tokens for a in ("--merchant", t)]
    where = ["--cache-dir", str(cache)] if cache is not None else []
    return ["--server-url", demo_url, *merchants, "--charts", CHART, "--deck", "pdf", *where, *extra]


def _records(cache: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_bytes()) for p in (cache / INDEX).iterdir()
            if p.suffix == ".json" and not p.is_symlink()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_whole(cache: Path) -> None:
    """Every record's files are there, regular, and what the record says."""
    for key, record in _records(cache).items():
        for file in record["files"]:
            path = cache / key[:2] / f"{key}.{file['format']}"
            assert not path.is_symlink() and path.is_file(), path
            assert (path.stat().st_size, _sha(path)) == (file["size"], file["sha256"]), path


class Filled:
    """A cache filled by one run over two merchants (one chart and a PDF deck each), its keys by
    merchant, and the files that run wrote."""

    def __init__(self, folder: Path, report: dict[str, Any]) -> None:
        self.folder = folder
        self.tokens = sorted({c["merchant"] for c in report["charts"]})
        by_sha = {f["sha256"]: key for key, r in _records(folder).items() for f in r["files"]}
        self.chart = {c["merchant"]: by_sha[c["sha256"]] for c in report["charts"]}
        self.deck = {d["merchant"]: by_sha[d["sha256"]] for d in report["decks"]}
        self.outputs = {(c["merchant"], "png"): Path(c["output"]).read_bytes() for c in report["charts"]}
        self.outputs |= {(d["merchant"], "pdf"): Path(d["output"]).read_bytes() for d in report["decks"]}


# Decks say when they were made: the runs whose decks are compared byte for byte say the same moment.
SAME_MOMENT = {"SOURCE_DATE_EPOCH": "1767225600"}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory, demo_url: str, demo_tokens: list[str]) -> Filled:
    home = tmp_path_factory.mktemp("filled")
    result = run_cli(_args(demo_url, demo_tokens[:2], home / "cache"), home, env=SAME_MOMENT, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report is not None
    assert len(_records(home / "cache")) == 4
    return Filled(home / "cache", result.report)


@pytest.fixture
def project(tmp_path: Path, filled: Filled) -> Path:
    """A user's project with a copy of the filled cache in it (links kept as links)."""
    plant_user_files(tmp_path)
    (tmp_path / "precious.txt").write_text("the user's own words\n")
    shutil.copytree(filled.folder, tmp_path / "cache", symlinks=True)
    return tmp_path


# -- a folder that is not the runner's ------------------------------------------------------------


@pytest.mark.parametrize("cache_dir", [".", "docs", "out/.cache"])
def test_a_folder_of_the_users_is_refused_as_a_cache_and_keeps_every_file(tmp_path, demo_url, demo_tokens,
                                                                          cache_dir):
    plant_user_files(tmp_path)
    if cache_dir == "out/.cache":  # the default place, holding something the cache would never write
        (tmp_path / "out" / ".cache").mkdir(parents=True)
        (tmp_path / "out" / ".cache" / "notes.txt").write_text("mine\n")
    before = tree_digest(tmp_path)
    args = _args(demo_url, demo_tokens[:1], None, "--cache-max-mb", "1")
    result = run_cli([*args, *(["--cache-dir", cache_dir] if cache_dir != "out/.cache" else [])], tmp_path,
                     in_process=True)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    shown = str(tmp_path / cache_dir) if cache_dir == "out/.cache" else cache_dir
    assert len(lines) == 1 and f"cache folder {shown} is not empty" in lines[0], lines
    assert_untouched(before, tree_digest(tmp_path))
    assert not (tmp_path / "out").exists() or [p.name for p in (tmp_path / "out").iterdir()] == [".cache"]


def _earlier_layout(folder: Path) -> list[Path]:
    """A cache as the runner wrote it before the marker: shard folders of entries, a deck index."""
    key = "ab" + "0" * 62
    files = [folder / "ab" / f"{key}.png", folder / "ab" / f"{key}.deck.json", folder / "ab" / f".{key}.pdf.4242.tmp"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"earlier layout")
    return files


def test_an_empty_folder_is_claimed_and_an_earlier_cache_is_adopted_only_at_the_default_place(
        tmp_path, demo_url, demo_tokens):
    plant_user_files(tmp_path)
    (tmp_path / "empty").mkdir()
    before = tree_digest(tmp_path, skip=(tmp_path / "out", tmp_path / "empty"))
    claimed = run_cli(_args(demo_url, demo_tokens[:1], tmp_path / "empty"), tmp_path, in_process=True)
    assert claimed.returncode == 0, claimed.stderr[-2000:]
    assert (tmp_path / "empty" / MARKER).read_bytes() == MARKER_TEXT and len(_records(tmp_path / "empty")) == 2
    assert_untouched(before, tree_digest(tmp_path, skip=(tmp_path / "out", tmp_path / "empty")))

    elsewhere = _earlier_layout(tmp_path / "old")
    refused = run_cli(_args(demo_url, demo_tokens[:1], tmp_path / "old"), tmp_path, in_process=True)
    assert refused.returncode == 2 and all(p.read_bytes() == b"earlier layout" for p in elsewhere)

    default = tmp_path / "out2" / ".cache"
    old = _earlier_layout(default)
    adopted = run_cli(_args(demo_url, demo_tokens[:1], None, "--output-dir", str(tmp_path / "out2")), tmp_path,
                      output_dir=False, in_process=True)
    assert adopted.returncode == 0, adopted.stderr[-2000:]
    assert "adopted" in adopted.stderr and not any(p.exists() for p in old)
    assert (default / MARKER).read_bytes() == MARKER_TEXT
    _assert_whole(default)


# -- links in the cache ---------------------------------------------------------------------------


def test_a_shard_folder_that_is_a_link_is_never_followed_nor_trimmed_through(project, filled, demo_url):
    cache = project / "cache"
    key = filled.chart[filled.tokens[0]]
    shutil.rmtree(cache / key[:2])
    (cache / key[:2]).symlink_to(project / "userdir", target_is_directory=True)
    (project / "userdir" / f"{key}.png").write_bytes(b"a user's file with the cache's name")
    before = tree_digest(project, skip=(project / "out", cache))
    result = run_cli(_args(demo_url, filled.tokens, cache, "--cache-max-mb", "1"), project, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = check_report(result, filled.tokens, [CHART])
    assert {(c["merchant"], c["cached"]) for c in report["charts"]} == {
        (m, filled.chart[m][:2] != key[:2]) for m in filled.tokens}
    for chart in report["charts"]:
        assert Path(chart["output"]).read_bytes() == filled.outputs[(chart["merchant"], "png")]
    assert_untouched(before, tree_digest(project, skip=(project / "out", cache)))
    assert (cache / key[:2]).is_symlink()  # not the runner's to remove
    behind = [k for k in (*filled.chart.values(), *filled.deck.values()) if k[:2] == key[:2]]
    assert sum(NOT_SERVED in line for line in result.stderr.splitlines()) == len(behind)


def test_an_index_that_is_a_link_refuses_the_cache_before_any_work(project, filled, demo_url):
    cache = project / "cache"
    shutil.rmtree(cache / INDEX)
    (cache / INDEX).symlink_to(project / "userdir", target_is_directory=True)
    before = tree_digest(project, skip=(cache,))
    result = run_cli(_args(demo_url, filled.tokens, cache, "--cache-max-mb", "1"), project, in_process=True)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert f"cache folder {cache} has an index that is not a folder" in line
    assert_untouched(before, tree_digest(project, skip=(cache,)))
    assert not (project / "out").exists()


def test_links_planted_at_every_name_a_write_could_use_are_never_written_through(project, filled, demo_url):
    """The earlier temporary name was `.<name>.<pid>.tmp`: predictable. The runner is started
    held, so its pid is known, and a link to a user's file is planted at each such name."""
    cache = project / "cache"
    target = project / "docs" / "file0.bin"
    records = _records(cache)
    for key, record in records.items():  # every entry a miss, so the run writes each one again
        for file in record["files"]:
            (cache / key[:2] / f"{key}.{file['format']}").unlink()
        (cache / INDEX / f"{key}.json").unlink()
    args = _args(demo_url, filled.tokens, cache)
    held = subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh", *cli_command(args), "--output-dir",
                             str(project / "out")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=project)
    pid = held.pid  # the runner's, once `exec` replaces the shell
    planted = []
    for key, record in records.items():
        names = [(key[:2], f"{key}.{fmt}") for fmt in (*(f["format"] for f in record["files"]), "deck.json")]
        for folder, name in [*names, (INDEX, f"{key}.json")]:
            link = cache / folder / f".{name}.{pid}.tmp"
            link.symlink_to(target)
            planted.append(link)
    before = tree_digest(project, skip=(project / "out", cache))
    stdout, stderr = held.communicate("go\n", timeout=170)
    result = cli_result(held.returncode, stdout, stderr)
    assert result.returncode == 0, stderr[-2000:]
    check_report(result, filled.tokens, [CHART])
    assert_untouched(before, tree_digest(project, skip=(project / "out", cache)))
    assert all(link.is_symlink() for link in planted)
    assert set(_records(cache)) == set(records)
    _assert_whole(cache)


# -- entries that are not what was written --------------------------------------------------------


def _swap(a: Path, b: Path) -> None:
    a.rename(a.with_name("swap"))
    b.rename(a)
    a.with_name("swap").rename(b)


def _png(cache: Path, key: str) -> Path:
    return cache / key[:2] / f"{key}.png"


def _edit_record(cache: Path, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
    path = cache / INDEX / f"{key}.json"
    record = json.loads(path.read_bytes())
    edit(record)
    path.write_text(json.dumps(record))


def _link_to_precious(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.parents[2] / "precious.txt")


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _swap_with_records(cache: Path, filled: Filled) -> None:
    first, second = (filled.chart[token] for token in filled.tokens)
    _swap(_png(cache, first), _png(cache, second))
    _swap(cache / INDEX / f"{first}.json", cache / INDEX / f"{second}.json")


# name → (tamper(cache, filled), the (kind, merchant index) pairs that must miss)
TAMPERING: dict[str, tuple[Callable[[Path, Filled], None], set[tuple[str, int]]]] = {
    "png is a link": (lambda c, f: _link_to_precious(_png(c, f.chart[f.tokens[0]])), {("png", 0)}),
    "png truncated": (lambda c, f: _png(c, f.chart[f.tokens[0]]).write_bytes(
        _png(c, f.chart[f.tokens[0]]).read_bytes()[:1000]), {("png", 0)}),
    "png empty": (lambda c, f: _png(c, f.chart[f.tokens[0]]).write_bytes(b""), {("png", 0)}),
    "png a FIFO": (lambda c, f: _fifo(_png(c, f.chart[f.tokens[0]])), {("png", 0)}),
    "pngs swapped": (lambda c, f: _swap(_png(c, f.chart[f.tokens[0]]), _png(c, f.chart[f.tokens[1]])),
                     {("png", 0), ("png", 1)}),
    "pngs swapped with their records": (_swap_with_records, {("png", 0), ("png", 1)}),
    "record is a link": (lambda c, f: _link_to_precious(c / INDEX / f"{f.chart[f.tokens[0]]}.json"), {("png", 0)}),
    "garbage pdf": (lambda c, f: (c / f.deck[f.tokens[0]][:2] / f"{f.deck[f.tokens[0]]}.pdf").write_bytes(
        b"%PDF-1.4 garbage\n" * 100), {("pdf", 0)}),
    "deck format leaves the folder": (lambda c, f: _edit_record(
        c, f.deck[f.tokens[0]], lambda r: r["files"][0].update(format="x/../../../../victim/evil")), {("pdf", 0)}),
    "deck record not JSON": (lambda c, f: (c / INDEX / f"{f.deck[f.tokens[0]]}.json").write_bytes(b"\x00{not json"),
                             {("pdf", 0)}),
    "deck record of a chart": (lambda c, f: _edit_record(c, f.deck[f.tokens[0]], lambda r: r.update(kind="chart")),
                               {("pdf", 0)}),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_an_entry_that_is_not_what_was_written_is_a_miss_logged_once_and_rendered_again(project, filled, demo_url,
                                                                                         case):
    cache = project / "cache"
    tamper, misses = TAMPERING[case]
    tamper(cache, filled)
    precious = project / "precious.txt"
    precious_mtime = precious.stat().st_mtime_ns
    before = tree_digest(project, skip=(project / "out", cache))
    result = run_cli(_args(demo_url, filled.tokens, cache), project, env=SAME_MOMENT, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = check_report(result, filled.tokens, [CHART])
    missed = {("png", filled.tokens.index(c["merchant"])) for c in report["charts"] if not c["cached"]}
    missed |= {("pdf", filled.tokens.index(d["merchant"])) for d in report["decks"] if not d["cached"]}
    assert missed == misses
    for row in [*report["charts"], *report["decks"]]:  # what was written is what the first run wrote
        fmt = row.get("format", "png")
        assert Path(row["output"]).read_bytes() == filled.outputs[(row["merchant"], fmt)], (row["merchant"], fmt)
    warnings = [line for line in result.stderr.splitlines() if NOT_SERVED in line]
    assert len(warnings) == len(misses), warnings  # logged once each
    assert "Traceback" not in result.stderr
    assert_untouched(before, tree_digest(project, skip=(project / "out", cache)))
    assert precious.stat().st_mtime_ns == precious_mtime  # not even touched
    assert not list(project.rglob("evil"))
    assert len(_records(cache)) == 4  # the bad entries were replaced by good ones
    _assert_whole(cache)


# -- trimming -------------------------------------------------------------------------------------


def test_trim_removes_only_entries_its_index_lists(tmp_path, demo_url, demo_tokens):
    plant_user_files(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / MARKER).write_bytes(MARKER_TEXT)
    theirs = "cd" + "1" * 62
    planted = {cache / "big.bin": b"x" * 2_000_000, cache / "ab" / f"{'ab' * 32}.png": b"y" * 1_500_000,
               tmp_path / "userdir" / f"{theirs}.png": b"a user's file named like an entry"}
    for path, content in planted.items():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
    (cache / "cd").symlink_to(tmp_path / "userdir", target_is_directory=True)
    (cache / INDEX).mkdir()
    (cache / INDEX / f"{theirs}.json").symlink_to(tmp_path / "notes.txt")  # not a record: removed, not followed
    before = tree_digest(tmp_path, skip=(tmp_path / "out", cache))
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--merchant", demo_tokens[1],
                      "--deck", "none", "--cache-dir", str(cache), "--cache-max-mb", "1"], tmp_path, in_process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    check_report(result, demo_tokens[:2])
    assert "least recently used" in result.stderr
    assert_untouched(before, tree_digest(tmp_path, skip=(tmp_path / "out", cache)))
    assert all(path.read_bytes() == content for path, content in planted.items())
    assert (cache / "cd").is_symlink() and not (cache / INDEX / f"{theirs}.json").exists()
    records = _records(cache)
    assert 0 < len(records) < 14
    kept = sum(f["size"] for r in records.values() for f in r["files"])
    kept += sum((cache / INDEX / f"{key}.json").stat().st_size for key in records)
    assert kept + len(MARKER_TEXT) <= 1_000_000
    _assert_whole(cache)
    ours = {p for p in cache.glob("[0-9a-f][0-9a-f]/*.png") if not p.parent.is_symlink()} - set(planted)
    assert ours == {cache / key[:2] / f"{key}.png" for key in records}  # what trim removed, it removed whole


# -- units: the index record and the temporary name -----------------------------------------------


KEY = "ef" * 32
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=5), max_leaves=20)
_file = st.fixed_dictionaries({"format": st.sampled_from(["png", "pdf", "pptx", "../x", "", "json"]) | st.text(),
                               "sha256": st.sampled_from(["a" * 64, "A" * 64, "a" * 63]) | _json,
                               "size": st.integers(-5, MAX_ENTRY_BYTES + 5) | _json})
_record = st.fixed_dictionaries({"key": st.sampled_from([KEY, "ab" * 32]) | _json,
                                 "kind": st.sampled_from(["chart", "deck", "x"]) | _json,
                                 "files": st.lists(_file, max_size=3) | _json,
                                 "slides": st.integers(-2, 200_000) | _json})


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.binary(max_size=300), _json.map(lambda v: json.dumps(v).encode()),
                 _record.map(lambda v: json.dumps(v).encode())))
def test_a_record_read_back_is_valid_or_refused_never_a_crash(content):
    try:
        record = parse_record(KEY, content)
    except ValueError:
        return
    assert record.key == KEY and record.kind in tuple(EntryKind)
    assert len({f.format for f in record.files}) == len(record.files)
    assert all(f.format in ENTRY_FORMATS[record.kind] and 0 <= f.size <= MAX_ENTRY_BYTES for f in record.files)
    assert parse_record(KEY, record.encode()) == record


@given(st.sampled_from(list(EntryKind)), st.lists(st.binary(max_size=50), min_size=1, max_size=2))
def test_a_record_written_reads_back_the_same(kind, contents):
    documents = list(zip(ENTRY_FORMATS[kind], contents, strict=False))
    record = record_of(KEY, kind, documents, 3)
    assert parse_record(KEY, record.encode()) == record
    with pytest.raises(ValueError, match="another key"):  # a record moved to another key's name
        parse_record("ab" * 32, record.encode())


def test_a_link_at_the_temporary_name_is_never_written_through(tmp_path, monkeypatch):
    """The name is random; this pins it to a planted link to show the create is exclusive."""
    import secrets

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    names = iter(["0" * 16, "1" * 16])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(names))
    (tmp_path / f".report.json.{'0' * 16}.tmp").symlink_to(victim)
    write_atomically(tmp_path / "report.json", b"{}")
    assert victim.read_text() == "keep" and (tmp_path / "report.json").read_bytes() == b"{}"
    assert (tmp_path / f".report.json.{'0' * 16}.tmp").is_symlink()
    assert not (tmp_path / f".report.json.{'1' * 16}.tmp").exists()
