"""The real CLI as a live process: start it, wait for a line on its stderr, signal it, and check
that nothing it started is left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

from tests.helpers import REPO, CliRun, clean_env, cli_command, cli_result


def start_cli(args: list[str], tmp_path: Path, render_faults: str | None = None):
    stderr_path = tmp_path / "stderr.log"
    command = [*cli_command(args, render_faults), "--output-dir", str(tmp_path / "out"), "--verbose"]
    # Its own process group, like a terminal job: Ctrl-C there reaches every process in the group.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(stderr_path, "w"), text=True,
                            env=clean_env({"PYTHONPATH": str(REPO)}), cwd=REPO, stdin=subprocess.DEVNULL,
                            process_group=0)
    return proc, stderr_path


def wait_for(proc, stderr_path: Path, text: str, timeout: float = 60, count: int = 1) -> set[int]:
    """Wait until stderr shows `text` (on `count` lines); returns every descendant pid seen meanwhile."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.update(p.pid for p in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            break
        if stderr_path.read_text().count(text) >= count:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared {count} time(s):\n{stderr_path.read_text()[-3000:]}")


def still_running(pids: set[int], grace: float = 5.0) -> list[str]:
    """Command lines of `pids` still alive after `grace` seconds (helpers like the resource
    tracker exit a moment after the runner does)."""
    deadline = time.monotonic() + grace
    while True:
        alive = []
        for pid in pids:
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(process.cmdline())[:200])
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def finish(proc, stderr_path: Path, seen: set[int]) -> CliRun:
    try:
        stdout, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a failed test must not leave the run (and its server) behind
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        raise AssertionError(f"the run did not end:\n{stderr_path.read_text()[-3000:]}") from None
    assert not still_running(seen), f"processes left: {still_running(seen)}"
    result = cli_result(proc.returncode, stdout, stderr_path.read_text())
    assert result.report is not None, result.stderr[-3000:]
    return result



def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




def wait_until_it_handles(proc: subprocess.Popen[str], signum: int, timeout: float = 60) -> None:
    """Wait until the process catches `signum` (its SigCgt mask in /proc): before that, Python
    itself is still starting, and a signal gets Python's default behaviour."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & (1 << (signum - 1)):
            return
        time.sleep(0.005)
    raise AssertionError(f"the process never caught signal {signum}")
