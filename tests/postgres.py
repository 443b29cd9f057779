"""A throwaway PostgreSQL cluster for the tests: initdb and pg_ctl on a free loopback port.

Debian's `postgresql` package (installed by .ci/run where missing) puts its programs in
/usr/lib/postgresql/<version>/bin, off PATH. PostgreSQL refuses to run as root, so as root the
cluster belongs to the `postgres` user the package creates (else `nobody`); its folder is a
fresh one under the system temp folder, which that user can reach. Clients connect over TCP
with trust authentication, which only the loopback address can use.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "chartreader"  # not a word the run writes: a URL's user name is scrubbed from its output


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs, or wherever initdb is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).resolve().parent if on_path else None


def _owner() -> str | None:
    """The user the server runs as: None (ourselves) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    bin: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, *args: str, cwd: Path | None = None) -> str:
        """psql with ON_ERROR_STOP, as a user would run it; its output."""
        done = subprocess.run([str(self.bin / "psql"), self.url(database), "-v", "ON_ERROR_STOP=1", "-q", *args],
                              capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"psql {' '.join(args)[:200]} failed: {done.stderr[-1000:]}")
        return done.stdout

    def create_database(self, name: str) -> str:
        self.psql("postgres", "-c", f"CREATE DATABASE {name}")
        return self.url(name)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running cluster, stopped and deleted on exit."""
    programs = bin_dir()
    if programs is None:
        raise FileNotFoundError("PostgreSQL is not installed (initdb not found): apt-get install postgresql")
    owner = _owner()
    folder = Path(tempfile.mkdtemp(prefix="runner-pg-"))
    data, log = folder / "data", folder / "server.log"
    if owner:
        shutil.chown(folder, owner)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(programs / args[0]), *args[1:]], capture_output=True, text=True, user=owner,
                              cwd=folder, stdin=subprocess.DEVNULL, timeout=300)

    try:
        done = run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-1000:]}")
        for _ in range(5):  # another process may take the port between our probe and the server's bind
            port = _free_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off"
            done = run("pg_ctl", "start", "-D", str(data), "-l", str(log), "-w", "-t", "300", "-o", options)
            if done.returncode == 0:
                break
        else:
            server_log = log.read_text(errors="replace")[-1000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-500:]} {server_log}")
        try:
            yield Cluster(programs, port)
        finally:
            run("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "300")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", name="postgres")
def postgres_cluster() -> Iterator[Cluster]:
    """A cluster for this test session (per xdist worker: keep its tests in one xdist_group)."""
    if bin_dir() is None:
        message = "PostgreSQL is not installed (initdb not found); .ci/run installs it with apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must have it: a skip there would hide a missing install step
        pytest.skip(message)
    with cluster() as running:
        yield running
