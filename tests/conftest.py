"""Shared fixtures: a real demo MCP server over HTTP, and running the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.demo.launch import embedded_server

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "runner" / "report.schema.json").read_text())

# Fast retries keep failure paths quick; every other setting is the product default.
FAST_ENV = {"SCALAPAY_RETRY_DELAY_SECONDS": "0.01"}


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    report_path: Path | None


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCALAPAY_") and k != "ANTHROPIC_API_KEY"}
    env.update(FAST_ENV)
    env.update(extra or {})
    return env


def run_cli(args: list[str], tmp_path: Path, env: dict[str, str] | None = None, timeout: float = 180,
            output_dir: bool = True) -> CliRun:
    command = [sys.executable, "-m", "runner", *args]
    if output_dir:
        command += ["--output-dir", str(tmp_path / "out")]
    proc = subprocess.run(command, capture_output=True, text=True, env=_clean_env(env), timeout=timeout,
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    return cli_result(proc.returncode, proc.stdout, proc.stderr)


def cli_result(returncode: int, stdout: str, stderr: str) -> CliRun:
    """A finished run, with its report read from the path on stdout's last line."""
    lines = stdout.strip().splitlines()
    report = path = None
    if lines and lines[-1].endswith("report.json"):
        path = Path(lines[-1])
        report = json.loads(path.read_text())
    return CliRun(returncode, stdout, stderr, report, path)


@pytest.fixture(scope="session")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real demo server over streamable HTTP on a free loopback port, for the whole session."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with embedded_server(log) as (url, _pid):
        yield url


@pytest.fixture(scope="session")
def demo_tokens(demo_url: str) -> list[str]:
    import asyncio

    from mcp import Client

    from runner.demo.data import DORMANT_INDEX, MERCHANT_COUNT  # noqa: F401 - documents the layout

    async def fetch() -> list[str]:
        async with Client(demo_url) as client:
            result = await client.call_tool("list_merchants", {})
            return [m["token"] for m in result.structured_content["merchants"]]

    return asyncio.run(fetch())


def validate_report(report: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(report, SCHEMA, cls=jsonschema.Draft202012Validator)
