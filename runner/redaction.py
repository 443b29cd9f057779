"""Secrets kept out of everything the runner writes, whoever echoes them.

`credentials_in(text)` finds the credentials a URL or a command line carries itself: URL user
info, key-like query values, key-like options and assignments (`--token X`, `--password=X`,
`DB_PASSWORD=X`, `-pX`) and `Authorization: Bearer X`-style headers. `Secrets` scrubs given
values from any text, as the exact value and in the encodings servers and libraries echo them
in: URL-encoded, JSON- or repr-escaped, and base64 at any alignment (so Basic auth's base64 of
`user:password` is caught knowing only the password).

One `Secrets`, built from the configuration when a run starts (`given_secrets`), is installed
for the whole process; `scrub()` is what every place that takes text from outside calls
(ChartError and one_line, the log sink, the server's stderr log, the report writer).

A value shorter than MIN_CHARS is never scrubbed: three characters cannot be told from
ordinary text, and masking them would mask every word that holds them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote

MIN_CHARS = 4
MARK = "***"
TOKEN_AS_USER = 20  # a URL's user part this long, with no password, is taken for a token
# A message that quotes outside text cuts it only after scrubbing (errors.one_line), so a secret
# is never cut in two before it can be found: no part of a secret is looked for, only the whole,
# which keeps ordinary words (`postgres` in a path) from being masked by a password's start.

_KEY_WORDS = re.compile(r"key|token|secret|pass|pwd|credential|auth|bearer", re.IGNORECASE)
_QUERY_WORDS = re.compile(r"key|token|secret|pass|pwd|auth|sig|code|bearer|credential", re.IGNORECASE)
# Each starts only where a name or scheme starts, so no pattern is quadratic in a long word.
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_QUERY = re.compile(r"\?([^\s#'\"<>]+)")
_PAIR = re.compile(r"(?<![\w.-])([\w.-]+)=([^&;\s'\"]+)")
_HEADER = re.compile(r"(?<![\w-])([\w-]+)\s*:\s*((?:(?:bearer|basic|digest)\s+)?[^\s'\"]+)", re.IGNORECASE)
_SCHEME_TOKEN = re.compile(r"\b(?:bearer|basic)\s+([^\s'\"]+)", re.IGNORECASE)
EXPANSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${VAR} in a header value
_URLSAFE = str.maketrans("+/", "-_")


def _bytes(text: str) -> bytes:
    """The bytes a value stands for (an environment value may hold undecodable bytes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64_cores(data: bytes) -> Iterator[str]:
    """The part of any base64 text holding `data` that depends on `data` alone, at each of the
    three byte alignments it may start at (Basic auth puts `user:` before the password)."""
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + data).decode("ascii")
        core = encoded[-(-8 * shift // 6):8 * (shift + len(data)) // 6]
        yield core
        yield core.translate(_URLSAFE)


def _encodings(value: str) -> Iterator[str]:
    data = _bytes(value)
    yield value
    for encoded in (quote(data, safe=""), quote(data, safe="/"), quote_plus(data, safe="")):
        yield encoded
        yield re.sub(r"%[0-9A-F]{2}", lambda hexa: hexa[0].lower(), encoded)
    yield json.dumps(value)[1:-1]
    yield json.dumps(value, ensure_ascii=False)[1:-1]
    yield repr(value)[1:-1]
    yield from _base64_cores(data)


@dataclass(frozen=True)
class Secrets:
    """Values to scrub from text, in every form they are looked for (longest first)."""

    forms: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.forms:
            object.__setattr__(self, "_pattern", re.compile("|".join(map(re.escape, self.forms))))

    @classmethod
    def of(cls, values: Iterable[str]) -> Secrets:
        forms = {form for value in values if len(value) >= MIN_CHARS for form in _encodings(value)}
        return cls(tuple(sorted((form for form in forms if len(form) >= MIN_CHARS), key=lambda f: (-len(f), f))))

    @property
    def longest(self) -> int:
        return len(self.forms[0]) if self.forms else 0

    @cached_property
    def within_lines(self) -> bool:
        """No secret holds a line break: each line can be scrubbed on its own."""
        return not any("\n" in form for form in self.forms)

    def __call__(self, text: str) -> str:
        """`text` with every form of every secret replaced by MARK. Repeated until none is left,
        since a replacement may join its neighbours into another secret; it ends, as each
        replacement (MARK is shorter than any form) shortens the text."""
        if self._pattern is None or len(text) < MIN_CHARS:
            return text
        while True:
            text, replaced = self._pattern.subn(MARK, text)
            if not replaced:
                return text


def _url_credentials(url: str) -> Iterator[str]:
    """A URL's user info; parsed by hand, since urlsplit raises on some malformed URLs and a
    URL here may be as broken as a user can type it."""
    rest = url.partition("://")[2]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        user, has_password, password = userinfo.partition(":")
        if has_password:
            yield from (userinfo, password, unquote(password))
        elif len(user) >= TOKEN_AS_USER:  # https://TOKEN@host: a token in the user's place
            yield from (user, unquote(user))
        # A user name alone is no secret: masking `runner` or `postgres` would mask every path
        # and word that holds it.


def header_credentials(value: str) -> list[str]:
    """A header's value, the token after its scheme, and what a Basic token decodes to."""
    value = value.strip()
    scheme, _, token = value.partition(" ")
    found = [value, token.strip()]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            decoded = ""
        found += [decoded, decoded.partition(":")[2]]
    return found


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # unbalanced quotes: the words as typed
        return [word.strip("'\"") for word in text.split()]


def _secret_option(word: str) -> bool:
    """--password, --api-key, -p: an option whose next word is a secret."""
    return word == "-p" or (word.startswith("-") and re.fullmatch(r"--?[\w-]+", word) is not None
                            and _KEY_WORDS.search(word) is not None)


def credentials_in(text: str) -> list[str]:
    """The credentials a URL or a command line (or a library's log line) carries itself."""
    found: list[str] = []
    words = _words(text)
    for before, word in zip(["", *words[:-1]], words, strict=True):
        if _secret_option(before):  # --password X, -p X
            found.append(word)
        elif not _secret_option(word) and (short := re.fullmatch(r"-p(\S+)", word)):  # mysql's -pX
            found.append(short[1])
    for piece in (text, *words):
        found += [url for match in _URL.findall(piece) for url in _url_credentials(match)]
        found += [secret for query in _QUERY.findall(piece) for name, value in _PAIR.findall(query)
                  if _QUERY_WORDS.search(name) for secret in (value, unquote(value))]
        found += [value for name, value in _PAIR.findall(piece) if _KEY_WORDS.search(name)]
        found += [secret for name, value in _HEADER.findall(piece) if _KEY_WORDS.search(name)
                  for secret in header_credentials(value)]
        found += _SCHEME_TOKEN.findall(piece)
    return list(dict.fromkeys(found))


def redact(text: str) -> str:
    """A URL or a command line fit to show: the credentials it carries replaced by MARK."""
    return Secrets.of(credentials_in(text))(text)


def address_credentials(address: str) -> list[str]:
    """The credentials in a Dask scheduler's address, which may come without a scheme."""
    return credentials_in(address if "://" in address else f"tcp://{address}")


def redact_address(address: str) -> str:
    return Secrets.of(address_credentials(address))(address)


_installed = Secrets()


def install(secrets: Secrets) -> None:
    """The secrets of this process's run, for every `scrub` from now on."""
    global _installed
    _installed = secrets


def scrub(text: str) -> str:
    """Text from outside (a server, a tool, a library) without any installed secret."""
    return _installed(text)


def scrubbed(value: Any) -> Any:
    """A JSON-like value (the report) with every string in it scrubbed."""
    if isinstance(value, str):
        return _installed(value)
    if isinstance(value, dict):
        return {key: scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(item) for item in value]
    return value


class ScrubbingWriter:
    """Writes text to `target` without the installed secrets, also one split across writes.
    Whole lines go out as they end (no secret spans lines, as a rule); a line still open waits
    for the next write or close. Past LINE_LIMIT, or when a secret spans lines, all but the
    few last characters that could still start a secret go out."""

    LINE_LIMIT = 65_536
    _lock = threading.Lock()  # several servers' stderr may go to one file

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._pending = ""

    def write(self, text: str) -> None:
        secrets = _installed
        pending = self._pending + text
        cut = pending.rfind("\n") + 1
        if secrets.within_lines and len(pending) - cut <= self.LINE_LIMIT:
            self._pending = pending[cut:]
            self._put(secrets(pending[:cut]))
            return
        pending = secrets(pending)
        cut = max(0, len(pending) - max(0, secrets.longest - 1))
        self._pending = pending[cut:]
        self._put(pending[:cut])

    def close(self) -> None:
        rest, self._pending = _installed(self._pending), ""
        self._put(rest)

    def _put(self, text: str) -> None:
        if text:
            with self._lock:
                self._target.write(text)
                self._target.flush()
