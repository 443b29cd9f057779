"""Fetching chart data from MCP servers: pooled sessions, direct tool calls, the agent loop."""
