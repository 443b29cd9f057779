"""A stdio MCP server with the demo's chart tools, of which the first few sessions are lost with
a whole batch of calls in flight.

    python tests/session_losing_server.py --losses N --in-flight K --tickets DIR

Each stdio session is a process of its own. The first N processes to be asked for a chart each
take a ticket (a file made in DIR, which the processes share) and hold their chart calls
unanswered until K are in flight; then the process exits, and the session is lost with all K.
Every other process answers as the demo server does. Run as a script, so a stdio child needs
no PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult

from runner.demo.data import build_database
from runner.demo.server import CHART_TOOLS, DemoOptions, Warehouse, build_server


def take_ticket(tickets: Path, losses: int) -> bool:
    """Whether this process is one of the first `losses` to ask: O_EXCL makes each ticket one process's."""
    for number in range(losses):
        try:
            os.close(os.open(tickets / f"lost-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return True
    return False


class Session:
    """This process's one session: whether it is to be lost, and the chart calls it holds meanwhile."""

    def __init__(self, losses: int, in_flight: int, tickets: Path) -> None:
        self._losses, self._in_flight, self._tickets = losses, in_flight, tickets
        self._doomed: bool | None = None  # decided by the first chart call
        self._held = 0

    async def before_answering(self) -> None:
        if self._doomed is None:
            self._doomed = take_ticket(self._tickets, self._losses)
        if not self._doomed:
            return
        self._held += 1
        if self._held >= self._in_flight:
            os._exit(3)  # the session ends with every call it holds
        await anyio.sleep_forever()


def build(session: Session) -> MCPServer:
    """The demo server, whose chart tools first ask `session` and then answer as the demo's own."""
    warehouse = Warehouse(build_database())
    demo = build_server(DemoOptions(), warehouse)
    app = build_server(DemoOptions(), warehouse)

    def held(tool_name: str) -> Callable[[str, str, str], Awaitable[CallToolResult]]:
        async def chart_tool(merchant_token: str, start_date: str, end_date: str) -> CallToolResult:
            await session.before_answering()
            answer = await demo.call_tool(tool_name, {"merchant_token": merchant_token, "start_date": start_date,
                                                      "end_date": end_date})
            assert isinstance(answer, CallToolResult)  # the demo's chart tools ask nothing back
            return answer
        return chart_tool

    for tool_name, (_method, description) in CHART_TOOLS.items():
        app.remove_tool(tool_name)
        app.add_tool(held(tool_name), name=tool_name, description=description)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--losses", type=int, required=True, help="how many sessions are lost")
    parser.add_argument("--in-flight", type=int, required=True, help="chart calls a lost session holds when it ends")
    parser.add_argument("--tickets", type=Path, required=True, help="a folder the server's processes share")
    options = parser.parse_args()
    build(Session(options.losses, options.in_flight, options.tickets)).run("stdio")


if __name__ == "__main__":
    main()
