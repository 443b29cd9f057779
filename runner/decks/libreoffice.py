"""A deck's PDF made by LibreOffice from its filled PPTX (pdf_engine=libreoffice), so the PDF
follows the user's template as the PPTX does.

Each deck is one LibreOffice process of its own (`--headless --convert-to pdf`), started in a
temporary folder this module makes and removes: the deck, the PDF, LibreOffice's user profile
(-env:UserInstallation), its HOME and its TMPDIR. So nothing lands in the user's ~/.config, and
two workers converting at once never share a profile (LibreOffice allows one process per profile).
The process leads a process group of its own and dies with the worker that started it (Linux's
parent-death signal: a worker killed past the render timeout takes it along); past its own
timeout, or on the SIGTERM that ends a pool worker when the run stops, its group is killed and
the folder removed first. A folder that a worker killed outright (SIGKILL) could not remove is
removed by the next conversion on the machine.

Its output is untrusted: a file of at most MAX_PDF_BYTES that starts as a PDF does, or the deck
fails with one line saying why. What a conversion costs is in the README (PDF decks).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from runner.errors import ChartError, ErrorType, UsageError, detail

PACKAGE = "libreoffice-impress"  # Debian's package with soffice and Impress's PDF export
MAX_PDF_BYTES = 200_000_000
FIRST_START = 81  # soffice.bin's exit code after setting up a new profile: start it again
_PREFIX = "runner-libreoffice-"
_FOLDER = re.compile(re.escape(_PREFIX) + r"(\d+)-\w+")  # the pid of the process that made it
PR_SET_PDEATHSIG = 1


def soffice() -> str | None:
    """LibreOffice's program on PATH, or None."""
    return shutil.which("soffice")


def check_libreoffice() -> None:
    """pdf_engine=libreoffice needs soffice: a usage error before any work, naming the package."""
    if soffice() is None:
        raise UsageError(f"--pdf-engine libreoffice needs LibreOffice, and no soffice is on PATH: install the "
                         f"package {PACKAGE} (apt-get install {PACKAGE})")


def _program(found: str) -> str:
    """soffice.bin itself where it sits beside the `soffice` script: the script starts a launcher
    (oosplash) whose child does the work, and the parent-death signal would reach the launcher only."""
    binary = Path(found).resolve().with_name("soffice.bin")
    return str(binary) if os.access(binary, os.X_OK) else found


def pdf_from_pptx(pptx: bytes, timeout: float) -> bytes:
    """The PDF LibreOffice makes of a PPTX; a ChartError (one line) if it makes none in `timeout` seconds."""
    found = soffice()
    if found is None:  # removed since the run began, or a Dask worker's machine lacks it
        raise ChartError(ErrorType.DECK_ERROR, f"LibreOffice (soffice) is not on PATH where this deck was built: "
                                               f"install {PACKAGE}")
    _remove_abandoned(Path(tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    try:
        (folder / "deck.pptx").write_bytes(pptx)
        deadline = time.monotonic() + timeout
        for _ in range(2):  # a new profile's first start only sets it up
            code, said = _convert(_program(found), folder, deadline, timeout)
            if code != FIRST_START:
                break
        return _read_pdf(folder / "out" / "deck.pdf", code, said)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _convert(program: str, folder: Path, deadline: float, timeout: float) -> tuple[int, str]:
    """One LibreOffice process: its exit code and the last line it printed."""
    command = [program, "--headless", "--norestore", "--nologo", "--nodefault", "--nolockcheck",
               f"-env:UserInstallation={(folder / 'profile').as_uri()}",
               "--convert-to", "pdf", "--outdir", str(folder / "out"), str(folder / "deck.pptx")]
    env = {**os.environ, "HOME": str(folder), "TMPDIR": str(folder)}  # nothing of it outside the folder
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=env, cwd=folder, start_new_session=True, preexec_fn=_die_with_parent)
    except OSError as exc:
        raise ChartError(ErrorType.DECK_ERROR, f"LibreOffice could not be started: {exc.strerror or exc}") from None
    try:
        with _ended_on_sigterm(process, folder):
            output, _ = process.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise ChartError(ErrorType.TIMEOUT, f"LibreOffice did not convert the deck to PDF within {timeout:g}s "
                                            "(pdf_timeout_seconds); it was stopped") from None
    finally:
        _kill_group(process)
    lines = output[-2000:].decode(errors="replace").strip().splitlines()
    return process.returncode, lines[-1] if lines else ""


def _read_pdf(path: Path, code: int, said: str) -> bytes:
    """LibreOffice's PDF, read no further than the bound, or why there is none."""
    try:
        with path.open("rb") as file:
            content = file.read(MAX_PDF_BYTES + 1)
    except OSError:
        raise ChartError(ErrorType.DECK_ERROR, detail(f"LibreOffice made no PDF of the deck (exit {code})"
                                                      + (f": {said}" if said else ""))) from None
    if len(content) > MAX_PDF_BYTES:
        raise ChartError(ErrorType.DECK_ERROR, f"LibreOffice's PDF of the deck is over the {MAX_PDF_BYTES:,}-byte "
                                               "limit")
    if not content.startswith(b"%PDF-"):
        raise ChartError(ErrorType.DECK_ERROR, "LibreOffice's output for the deck is not a PDF")
    return content


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Its whole process group (anything it started too), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def _ended_on_sigterm(process: subprocess.Popen[bytes], folder: Path) -> Iterator[None]:
    """A stopped run ends its pool workers with SIGTERM, which kills a worker at once (its default):
    meanwhile, LibreOffice's group is killed and the folder removed first. Only where SIGTERM has
    its default action and this is the main thread: a coordinator's own handler is left alone."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        # No wait() here: the code this interrupts may hold the process's wait lock.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # the worker ends as it would have

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


_libc: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only calls it


def _die_with_parent() -> None:
    """In the child before LibreOffice starts: SIGKILL when the worker that started it dies."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _remove_abandoned(temp: Path) -> None:
    """Folders of conversions whose process is gone (killed outright, no chance to clean up)."""
    with contextlib.suppress(OSError):
        for entry in temp.iterdir():
            match = _FOLDER.fullmatch(entry.name)
            if match is None or _alive(int(match[1])):
                continue
            with contextlib.suppress(OSError):
                info = entry.lstat()  # a folder of ours, not a link to elsewhere
                if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                    shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
