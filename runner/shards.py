"""`--shard K/N`: a deterministic slice of the merchants, so a CI matrix of N jobs runs one job.

A merchant's shard depends on its own token only (a hash of it), never on the other merchants or
their order: adding a merchant to the list moves no other merchant to another shard, and every
job of the matrix, given the same list, agrees on who is whose without talking to the others.
`python -m runner merge-reports` (runner.merge_reports) folds the N reports back into one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from runner.errors import UsageError, one_line

MAX_SHARDS = 1000
_FORM = re.compile(r" *([0-9]{1,4}) */ *([0-9]{1,4}) *")  # spaces only: no newline, no other digits


def shard_of(token: str, count: int) -> int:
    """The shard (1..count) a merchant's token falls in: the first 8 bytes of its SHA-256, modulo
    `count` (a stable hash: Python's own hash() changes with every process)."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def _not_a_shard(text: object, where: str) -> UsageError:
    return UsageError(f"{where} {one_line(repr(text), 80)} is not a shard: expected K/N with "
                      f"1 <= K <= N <= {MAX_SHARDS}, such as 2/3")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1 <= index <= count <= MAX_SHARDS), written K/N as on the command line."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count <= MAX_SHARDS:
            raise _not_a_shard(f"{self.index}/{self.count}", "--shard")

    @classmethod
    def parse(cls, text: object, where: str = "--shard") -> Shard:
        """K/N as a Shard; UsageError naming `where` and the value."""
        match = _FORM.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise _not_a_shard(text, where)
        index, count = int(match.group(1)), int(match.group(2))
        if not 1 <= index <= count <= MAX_SHARDS:
            raise _not_a_shard(text, where)
        return cls(index, count)

    def holds(self, token: str) -> bool:
        """Whether the merchant with this token is this shard's."""
        return shard_of(token, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
