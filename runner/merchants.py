"""A merchant's token (checked: it names folders, tool arguments and SQL values) and its display
name (cleaned: it comes from outside and is shown on slides and in rows)."""

from __future__ import annotations

import re

from runner.errors import UsageError

MAX_TOKEN_LENGTH = 128
MAX_NAME_CHARS = 100  # a merchant's display name, as the decks and the report show it
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?)?")


def check_merchant_token(token: str, where: str) -> str:
    """Tokens are letters, digits, '_' and '-': safe in a file name, a tool argument and SQL."""
    token = token.strip()
    if not token:
        raise UsageError(f"{where}: empty merchant token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise UsageError(f"{where}: merchant token of {len(token)} characters is too long "
                         f"(at most {MAX_TOKEN_LENGTH}): {token[:20]!r}...")
    if not _TOKEN.match(token):
        raise UsageError(f"{where}: merchant token {token!r} may hold only letters, digits, '_' and '-'")
    return token


def merchant_name(text: object, token: str) -> str:
    """A merchant's display name: printable text on one line, stripped, at most MAX_NAME_CHARS;
    the token when there is none. A name comes from outside (a server, a file, an old report):
    it is shown on slides and in rows, and never becomes part of a path (folders are the token's)."""
    if not isinstance(text, str) or text == token:  # a token may be longer than a name: kept whole
        return token
    text = text[:MAX_NAME_CHARS * 10]
    if not text.isprintable():  # most names are: only the others are taken apart
        text = "".join(ch if ch.isprintable() else " " for ch in _ESCAPE.sub("", text))
    name = " ".join(text.split())[:MAX_NAME_CHARS].strip()
    return name or token
