"""The code passes the project's ruff and mypy settings (pyproject.toml)."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_ruff_check_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


@pytest.mark.timeout(600)
def test_mypy_passes_over_the_package(request, tmp_path):
    # Incremental, with a cache of this checkout's own under pytest's cache folder (never one from
    # elsewhere): mypy checks again each module whose source, dependencies, options or mypy version
    # changed, and reuses the rest (under a second when nothing changed, instead of 10-40 s).
    # SQLite, so that two test sessions at once in this checkout share it safely.
    # With pytest's cache plugin off (-p no:cacheprovider), a cold cache of this test's own.
    cache = request.config.cache.mkdir("mypy") if hasattr(request.config, "cache") else tmp_path / "mypy"
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--sqlite-cache"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "Success" in result.stdout
