"""--pdf-engine libreoffice through the real CLI: a branded template's PDF made by LibreOffice (read
with pypdf), and what happens around the conversion (a missing soffice, a conversion that hangs,
untrusted output, a stopped run) with a stand-in soffice on PATH, checked with ps: no process and
no profile folder is left behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pptx import Presentation
from pptx.dml.color import RGBColor
from pptx.util import Inches, Pt
from pypdf import PdfReader

from tests.helpers import CHART_IDS, REPO, clean_env, cli_command, run_cli
from tests.processes import finish, still_running

CHARTS = CHART_IDS[:2]
BRAND = "ACME Quarterly"


def _template(path: Path) -> Path:
    """A branded template as a user makes one: a coloured background, a band and the brand's
    name on the slide master (every slide shows them), a cover and one slide per chart."""
    deck = Presentation()
    deck.slide_width, deck.slide_height = Inches(13.333), Inches(7.5)
    master = deck.slide_master
    master.background.fill.solid()
    master.background.fill.fore_color.rgb = RGBColor(0xF3, 0xEE, 0xE4)
    blank = deck.slide_layouts[6]
    cover = deck.slides.add_slide(blank)
    band = cover.shapes.add_shape(1, 0, Inches(6.9), deck.slide_width, Inches(0.6))  # 1: a rectangle
    band.fill.solid()
    band.fill.fore_color.rgb = RGBColor(0x1F, 0x3A, 0x68)
    brand = cover.shapes.add_textbox(Inches(0.4), Inches(6.95), Inches(6), Inches(0.5)).text_frame
    brand.text, brand.word_wrap = BRAND, True  # wrapped, as PowerPoint makes boxes (LibreOffice centres unwrapped text)
    brand.paragraphs[0].runs[0].font.size = Pt(18)
    brand.paragraphs[0].runs[0].font.color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
    for number, shape in enumerate((band, brand._parent), 100):  # drawn on the cover, moved to the master
        shape._element.xpath("./*/p:cNvPr")[0].set("id", str(number))
        master.shapes._spTree.append(shape._element)
    for top, text in ((2, "Review of {{merchant}}"), (3, "{{period}}")):
        _box(cover, 1, top, 11, 1, text)
    for _ in CHARTS:
        slide = deck.slides.add_slide(blank)
        for role, top, height in (("title", 0.3, 0.8), ("chart", 1.2, 4.3), ("paragraph", 5.6, 1.2)):
            _box(slide, 0.5, top, 12.3, height, "{{" + role + "}}")
    deck.save(str(path))
    return path


@pytest.fixture
def temp() -> Iterator[Path]:
    """The run's TMPDIR, where conversions make their folders: short, as the forkserver's socket
    goes there too (an AF_UNIX path has at most 107 bytes, and pytest's tmp_path can be longer)."""
    folder = Path(tempfile.mkdtemp(prefix="lo-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _box(slide: Any, left: float, top: float, width: float, height: float, text: str) -> None:
    frame = slide.shapes.add_textbox(Inches(left), Inches(top), Inches(width), Inches(height)).text_frame
    frame.text, frame.word_wrap = text, True


def _left_behind(temp: Path) -> tuple[list[str], list[str]]:
    """Conversion folders still in `temp`, and processes still running whose command names it."""
    folders = [entry.name for entry in temp.iterdir() if entry.name.startswith("runner-libreoffice-")]
    running = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(temp) in cmdline:
            running.append(cmdline[:200])
    return folders, running


def test_a_branded_template_makes_a_branded_pdf(tmp_path, temp, demo_url, demo_tokens):
    assert shutil.which("soffice"), "LibreOffice is needed (soffice on PATH): .ci/run installs libreoffice-impress"
    template = _template(tmp_path / "brand.pptx")
    result = run_cli(["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", ",".join(CHARTS),
                      "--deck", "pdf", "--pdf-engine", "libreoffice", "--deck-template", str(template)], tmp_path,
                     env={"TMPDIR": str(temp)})
    assert result.returncode == 0, result.stderr[-3000:]
    (deck,) = result.report["decks"]
    assert (deck["format"], deck["status"]) == ("pdf", "ok")
    pages = PdfReader(deck["output"]).pages
    assert len(pages) == len(Presentation(str(template)).slides)  # only the PDF was asked for: one page a slide
    texts = [" ".join(page.extract_text().split()) for page in pages]
    assert all(BRAND in text for text in texts), texts  # the master's text on every page
    assert not any("{{" in text for text in texts), texts
    assert deck["merchant_name"] and f"Review of {deck['merchant_name']}" in texts[0]
    for text, chart in zip(texts[1:], result.report["charts"], strict=True):
        assert chart["title"] in text, (chart["title"], text)
    assert _left_behind(temp) == ([], [])


def test_without_soffice_the_setting_is_a_usage_error(tmp_path):
    result = run_cli(["--deck", "pdf", "--pdf-engine", "libreoffice"], tmp_path, in_process=True,
                     env={"PATH": str(tmp_path)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "soffice" in line and "libreoffice-impress" in line
    assert not (tmp_path / "out").exists()  # no run folder


def _stand_in(folder: Path, state: Path, hang: str, temp: Path) -> dict[str, str]:
    """A soffice on PATH in place of LibreOffice. Its conversions are numbered as they start; those
    that `hang` names ("1", or "*" for all) write their pid and a child's, and wait; number 2
    writes something that is not a PDF; the rest a small PDF. Returns the run's environment."""
    folder.mkdir()
    state.mkdir()
    script = folder / "soffice"
    script.write_text(f"""#!/bin/sh
n=1
while ! mkdir "{state}/$n" 2>/dev/null; do n=$((n + 1)); done
outdir=""; previous=""
for arg in "$@"; do [ "$previous" = "--outdir" ] && outdir="$arg"; previous="$arg"; done
case "$n" in
{hang}) sleep 600 & echo "$$ $!" > "{state}/pids.tmp"; mv "{state}/pids.tmp" "{state}/pids.$n"; wait ;;
2) mkdir -p "$outdir"; echo "this is not a PDF" > "$outdir/deck.pdf" ;;
*) mkdir -p "$outdir"; printf '%%PDF-1.4\\n%%stand-in\\n' > "$outdir/deck.pdf" ;;
esac
""")
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "TMPDIR": str(temp)}


def _pids(state: Path) -> set[int]:
    return {int(pid) for path in state.glob("pids.*") for pid in path.read_text().split()}


def test_a_hung_conversion_is_killed_and_the_other_decks_are_built(tmp_path, temp, demo_url, demo_tokens):
    state = tmp_path / "state"
    env = _stand_in(tmp_path / "bin", state, "1", temp)
    merchants = demo_tokens[:3]
    result = run_cli(["--server-url", demo_url, *[a for m in merchants for a in ("--merchant", m)],
                      "--charts", CHARTS[0], "--deck", "pdf", "--pdf-engine", "libreoffice",
                      "--pdf-timeout-seconds", "3"], tmp_path, env=env)
    assert result.returncode == 1, result.stderr[-3000:]
    rows = {row["error"]: row for row in result.report["decks"]}
    assert {(row["status"], row["error_type"]) for row in rows.values()} == {("ok", None), ("failed", "deck_error")}
    assert set(rows) == {None, "LibreOffice's output for the deck is not a PDF",
                         "LibreOffice did not convert the deck to PDF within 3s (pdf_timeout_seconds); it was stopped"}
    assert Path(rows[None]["output"]).read_bytes().startswith(b"%PDF-1.4\n%stand-in")
    pids = _pids(state)
    assert len(pids) == 2 and not still_running(pids, grace=0)  # the stand-in and its child: its group
    assert _left_behind(temp) == ([], [])


def test_a_stopped_run_ends_the_conversion(tmp_path, temp, demo_url, demo_tokens):
    state = tmp_path / "state"
    env = _stand_in(tmp_path / "bin", state, "*", temp)
    stderr_path = tmp_path / "stderr.log"
    command = [*cli_command(["--server-url", demo_url, "--merchant", demo_tokens[0], "--charts", CHARTS[0],
                             "--deck", "pdf", "--pdf-engine", "libreoffice"]), "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(stderr_path, "w"), text=True,
                            env=clean_env({**env, "PYTHONPATH": str(REPO)}), cwd=REPO, stdin=subprocess.DEVNULL,
                            process_group=0)
    deadline = time.monotonic() + 120
    while not _pids(state) and proc.poll() is None and time.monotonic() < deadline:  # until the conversion hangs
        time.sleep(0.05)
    hung = _pids(state)
    assert hung, stderr_path.read_text()[-3000:]
    seen = {child.pid for child in psutil.Process(proc.pid).children(recursive=True)}
    proc.send_signal(signal.SIGTERM)
    result = finish(proc, stderr_path, seen | hung)  # nothing the run started is left running
    assert result.report["run"]["status"] == "interrupted"
    (deck,) = result.report["decks"]
    assert deck["status"] != "ok"
    assert _left_behind(temp) == ([], [])
