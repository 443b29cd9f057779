"""The code passes the project's ruff and mypy settings (pyproject.toml)."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_ruff_check_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


@pytest.mark.timeout(600)
def test_mypy_passes_over_the_package():
    # No cache: a stale one from another checkout must not hide an error.
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "Success" in result.stdout
