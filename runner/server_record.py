"""Which MCP server (and pack) a run read, as its report records it: `run.server`.

A rerun repairs a run with more numbers from the same source, so `--rerun-failed` compares the
server it is given with the one the run recorded and refuses another. The record holds no
credential: the target is the URL or command line with its credentials redacted (headers and
server environment, where credentials usually live, are left out), and the fingerprint is the
sha256 of that text, its kind and the pack (a pack file by its path and content).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from runner.charts import BUILTIN_PACK_NAMES, MAX_PACK_BYTES
from runner.errors import UsageError, one_line
from runner.files import read_input
from runner.redaction import redact

EMBEDDED = "the embedded demo server"  # its data set is built in: its fault flags (tests) are not part of it


class ServerKind(StrEnum):
    URL = "url"
    COMMAND = "command"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class ServerRecord:
    kind: ServerKind
    target: str  # redacted
    fingerprint: str  # sha256 hex of kind, target and pack

    def describe(self) -> str:
        if self.kind is ServerKind.EMBEDDED:
            return EMBEDDED
        return f"the MCP server at {self.target}" if self.kind is ServerKind.URL else \
            f"the MCP server command {self.target}"

    def as_report(self) -> dict[str, str]:
        return {key: str(value) for key, value in asdict(self).items()}


def _pack_identity(pack: str) -> dict[str, str | None]:
    if pack in BUILTIN_PACK_NAMES:
        return {"pack": pack, "pack_sha256": None}
    content = read_input(Path(pack), "chart pack", MAX_PACK_BYTES)
    return {"pack": pack, "pack_sha256": hashlib.sha256(content).hexdigest()}


def server_record(url: str | None, command: str | None, pack: str) -> ServerRecord:
    """The record of a run's server as given by its settings (none given: the embedded demo server)."""
    if url:
        kind, target = ServerKind.URL, redact(url.strip())
    elif command:
        try:
            words = shlex.split(command)
        except ValueError:  # the run itself refuses it; compare it as written
            words = command.split()
        kind, target = ServerKind.COMMAND, redact(shlex.join(words))
    else:
        kind, target = ServerKind.EMBEDDED, EMBEDDED
    canonical = json.dumps({"kind": kind.value, "target": target, **_pack_identity(pack)}, sort_keys=True)
    return ServerRecord(kind, target, hashlib.sha256(canonical.encode()).hexdigest())


def recorded_server(run: dict[str, Any]) -> ServerRecord | None:
    """A report's `run.server`, checked like any input; None when the report has none (one
    written before reports recorded their server). UsageError if it is not a record."""
    raw = run.get("server")
    if raw is None:
        return None
    try:
        if not isinstance(raw, dict):
            raise ValueError
        kind = ServerKind(str(raw.get("kind")))
        target, fingerprint = raw.get("target"), raw.get("fingerprint")
        if not isinstance(target, str) or one_line(target, 2000) != target or not isinstance(fingerprint, str) \
                or len(fingerprint) != 64 or any(ch not in "0123456789abcdef" for ch in fingerprint):
            raise ValueError
    except (ValueError, TypeError):
        raise UsageError(f"run.server is {one_line(repr(raw), 80)}, not a server record") from None
    return ServerRecord(kind, target, fingerprint)
