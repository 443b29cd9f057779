"""The demo MCP server over stdio, except that it echoes a secret it was given, as careless
servers do: in two tools' answers and on its stderr, verbatim, URL-encoded and in Basic auth.

    python tests/secret_echo_server.py VARIABLE

VARIABLE names the environment variable holding the secret (given with --server-env).
get_aov_by_month fails with an error that quotes it; get_aov_by_product_type answers text that
is no data and quotes it; the other charts answer as the demo server does.
"""

from __future__ import annotations

import base64
import os
import sys
from urllib.parse import quote

from mcp.server.mcpserver.exceptions import ToolError

from runner.demo.server import DemoOptions, build_server


def echoes(secret: str) -> str:
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    return f"{secret} (url {quote(secret, safe='')}, Authorization: Basic {basic})"


def main() -> None:
    secret = os.environ[sys.argv[1]]
    print(f"starting; connecting to the warehouse with password {echoes(secret)}", file=sys.stderr, flush=True)
    app = build_server(DemoOptions())
    app.remove_tool("get_aov_by_month")
    app.remove_tool("get_aov_by_product_type")

    @app.tool(name="get_aov_by_month", description="Average order value per month.")
    def aov_by_month(merchant_token: str, start_date: str, end_date: str) -> str:
        print(f"login refused for password {echoes(secret)}", file=sys.stderr, flush=True)
        raise ToolError(f"warehouse login failed: password {echoes(secret)} was refused")

    @app.tool(name="get_aov_by_product_type", description="Average order value by product type.")
    def aov_by_product_type(merchant_token: str, start_date: str, end_date: str) -> str:
        return f"<html>session {echoes(secret)} expired</html>"

    app.run("stdio")


if __name__ == "__main__":
    main()
