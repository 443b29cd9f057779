"""The embedded demo MCP server and its synthetic warehouse."""
