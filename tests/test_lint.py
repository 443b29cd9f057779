"""The code passes the project's ruff settings (pyproject.toml)."""

import subprocess
import sys

from tests.conftest import REPO


def test_ruff_check_passes():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
