"""runner: builds the charts of merchant business reviews from MCP servers."""

__version__ = "0.1.0"
