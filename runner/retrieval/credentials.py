"""Credentials for the MCP server: environment for a stdio server, headers for an HTTP one.

A stdio server gets only a few safe variables from the MCP client (HOME, PATH, ...), so what
it needs is named with --server-env: NAME inherits the caller's value (globs like
SNOWFLAKE_* inherit every match), NAME=VALUE sets one. --server-header "Name: value" takes
${VAR} from the caller's environment. Values never appear in messages: only names do; and
runner/redaction.py scrubs them from whatever a server or library says back.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from runner.config import setting
from runner.errors import UsageError
from runner.redaction import EXPANSION

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_GLOB = re.compile(r"^[A-Za-z0-9_*?\[\]!]+$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADERS = setting("server_headers")
# Where the credentials sent to an HTTP server are given: its singular flag (one header a flag), key and variable.
HEADER_FLAGS = f"{_HEADERS.aliases[0]} (config {_HEADERS.name}, env {_HEADERS.env})"


def server_environment(items: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, assigned, value = item.partition("=")
        name = name.strip()
        if assigned:
            if not _VAR_NAME.match(name):
                raise UsageError(f"--server-env {name}=...: {name!r} is not a variable name")
            out[name] = value
        elif any(ch in name for ch in "*?["):
            if not _GLOB.match(name):
                raise UsageError(f"--server-env {name!r} is not a variable name or pattern")
            matches = sorted(key for key in environ if fnmatch.fnmatchcase(key, name))
            if not matches:
                raise UsageError(f"--server-env {name}: no variable of the environment matches")
            out.update((key, environ[key]) for key in matches)
        elif not _VAR_NAME.match(name):
            raise UsageError(f"--server-env {name!r} is not a variable name")
        elif name not in environ:
            raise UsageError(f"--server-env {name}: it is not set in the environment")
        else:
            out[name] = environ[name]
    return out


def server_headers(items: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, colon, value = item.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise UsageError(f"--server-header must be 'Name: value'; got one whose name is {name[:40]!r}")

        def expand(match: re.Match[str], header: str = name) -> str:
            variable = match[1]
            if variable not in environ:
                raise UsageError(f"--server-header {header!r}: ${{{variable}}} is not set in the environment")
            return environ[variable]

        out[name] = EXPANSION.sub(expand, value.strip())
        if any(ch in out[name] for ch in "\r\n\x00"):
            raise UsageError(f"--server-header {name!r}: its value holds a line break or NUL")
    return out


def access_denied_message(where: str, status: int) -> str:
    phrase = {401: "Unauthorized", 403: "Forbidden"}.get(status, "")
    return f"MCP server {where} answered HTTP {status} {phrase}: check the credentials sent with {HEADER_FLAGS}"
