"""Third-party MCP servers whose pins clash with ours, each in its own venv under .venvs/.

mcp-alchemy pins mcp==2.3.0 and sqlalchemy==2.0.36; the reference SQLite server and
postgres-mcp need mcp<2 (postgres-mcp also Python >= 3.12). None of that may touch the runner's
own environment, so each server gets a venv made once with `python -m venv` and pip (the
machine's registries, as configured for pip), reused by later runs and by every xdist worker:
a file lock makes one worker build while the others wait, and a marker written last says the
venv is complete for exactly this recipe. A server that cannot be installed skips its tests
with pip's last lines as the reason.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO

VENVS = REPO / ".venvs"  # git-ignored


@dataclass(frozen=True)
class Recipe:
    name: str
    command: str  # the server's console script in the venv's bin folder
    installs: tuple[tuple[str, ...], ...]  # pip install arguments, one install per entry, in order
    min_python: tuple[int, int] = (3, 11)


RECIPES = {recipe.name: recipe for recipe in (
    Recipe("mcp-alchemy", "mcp-alchemy", (("mcp-alchemy==2026.10.15.202659", "psycopg2-binary>=2.9,<3"),)),
    Recipe("mcp-server-sqlite", "mcp-server-sqlite", (("mcp-server-sqlite==2025.4.25", "mcp>=1.5,<2"),)),
    # postgres-mcp 0.3.0 pins pglast==7.2.0, which the registry here does not carry: its other
    # requirements are installed as it states them (with pglast 7.x, mcp<2), then it without them.
    Recipe("postgres-mcp", "postgres-mcp", (
        ("attrs>=25.3.0", "humanize>=4.8.0", "instructor>=1.7.9", "mcp[cli]>=1.5.0,<2", "pglast>=7.2,<8",
         "psycopg-pool>=3.2.6", "psycopg[binary]>=3.2.6"),
        ("--no-deps", "postgres-mcp==0.3.0"),
    ), min_python=(3, 12)),
)}


def _python(minimum: tuple[int, int]) -> str | None:
    """An interpreter of at least `minimum`: this one, else pyenv's, else one on PATH."""
    if sys.version_info >= minimum:
        return sys.executable
    found = sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.*" / "bin" / "python3")))
    found += [p for v in range(minimum[1], 20) if (p := shutil.which(f"python3.{v}"))]
    for candidate in found:
        probe = subprocess.run([candidate, "-c", f"import sys; sys.exit(sys.version_info < {minimum})"],
                               capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


def _marker(recipe: Recipe, python: str) -> str:
    return hashlib.sha256(json.dumps([recipe.installs, python]).encode()).hexdigest()


def _build(recipe: Recipe, python: str, folder: Path) -> str | None:
    """Make the venv; None when done, else why not (pip's last lines)."""
    shutil.rmtree(folder, ignore_errors=True)
    steps = [[python, "-m", "venv", str(folder)]]
    steps += [[str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", *args] for args in recipe.installs]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            lines = [line for line in (done.stdout + done.stderr).splitlines() if "WARNING: Location" not in line]
            return " | ".join(lines[-4:]) or f"exit {done.returncode}"
    return None


@dataclass(frozen=True)
class Installed:
    command: Path  # the server's executable
    built_seconds: float | None  # None when an earlier run's venv was reused


def server(name: str) -> Installed:
    """The named server's executable, installing its venv first if no complete one exists;
    skips the calling test when it cannot be installed."""
    recipe = RECIPES[name]
    python = _python(recipe.min_python)
    if python is None:
        pytest.skip(f"{name} needs Python >= {'.'.join(map(str, recipe.min_python))}, and none was found "
                    "(pyenv or PATH)")
    VENVS.mkdir(exist_ok=True)
    folder, ready = VENVS / name, VENVS / f"{name}.ready"
    wanted = _marker(recipe, python)
    with open(VENVS / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers wait here while one builds
        built = None
        if not ready.exists() or ready.read_text() != wanted or not (folder / "bin" / recipe.command).exists():
            ready.unlink(missing_ok=True)
            started = time.perf_counter()
            failure = _build(recipe, python, folder)
            if failure:
                pytest.skip(f"{name} could not be installed into {folder}: {failure}")
            ready.write_text(wanted)
            built = time.perf_counter() - started
    return Installed(folder / "bin" / recipe.command, built)
