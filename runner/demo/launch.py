"""Start the embedded demo server as a child process for one run, and stop it after."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from loguru import logger

from runner.errors import ServerStartError
from runner.signals import sigint_blocked

READY_TIMEOUT_SECONDS = 60.0


def _read_ready_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    line: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        line.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return line[0] if line else None


@contextmanager
def embedded_server(log_path: Path, extra_args: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """Yield (url, pid) of a demo server over HTTP on a free loopback port."""
    command = [sys.executable, "-m", "runner", "demo-server", "--transport", "http", "--port", "0",
               "--exit-with-parent", *extra_args]
    with open(log_path, "a", encoding="utf-8") as log:
        # Own session: a Ctrl-C at the terminal reaches the runner, which then stops the
        # server itself, after the last session is closed.
        with sigint_blocked():
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    text=True, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            line = _read_ready_line(proc, READY_TIMEOUT_SECONDS)
            if not line or not line.startswith("READY "):
                raise ServerStartError(f"the embedded demo server did not start (see {log_path})")
            url = line.split()[1]
            logger.debug("embedded demo server pid {} at {}", proc.pid, url)
            yield url, proc.pid
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
