"""Shared fixtures: a real demo MCP server over HTTP for the whole session, and its merchants."""

from __future__ import annotations

from typing import Any

import pytest

from runner.demo.data import build_database
from runner.demo.launch import embedded_server
from runner.demo.server import Warehouse


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of an xdist group run one after another on one worker (they share something
    costly to start: a cluster, a run): they are handed out first, so that a run does not end
    waiting on a group begun last while the other workers are idle. The rest keep their order."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)


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

    async def fetch() -> list[str]:
        async with Client(demo_url) as client:
            result = await client.call_tool("list_merchants", {})
            return [m["token"] for m in result.structured_content["merchants"]]

    return asyncio.run(fetch())


@pytest.fixture(scope="session")
def warehouse() -> Warehouse:
    """The demo data set in-process, for tests that need chart data without a server."""
    return Warehouse(build_database())
