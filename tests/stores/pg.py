"""A throw-away PostgreSQL cluster for the tests, started from the installed server binaries.

As pytest-postgresql does it: ``initdb`` into a fresh temporary directory, ``pg_ctl start`` on a free loopback
port (``listen_addresses=127.0.0.1``, the unix socket in the same directory, fsync off: nothing here must
survive the machine), ``pg_ctl stop -m immediate`` and the directory removed in ``finally``. ``initdb`` refuses
to run as root, so as root the cluster runs as the ``postgres`` user (``runuser``), which Debian's ``postgresql``
package creates, in a directory that user owns.

``postgres_cluster`` (session-scoped) is the cluster; ``postgres_dsn`` (per test) a fresh database in it, so the
tests share one cluster but never a table. Without the binaries every test that needs them is skipped, naming
the install step (``.ci/run`` installs them, and CI fails on any skip).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SKIP_REASON = "PostgreSQL is not installed: apt-get install postgresql"
CLUSTER_USER = "postgres"  # the superuser initdb creates, and (as root) the system user the cluster runs as


def server_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's newest version), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).parent)):
        return Path(found).parent

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parents[1].name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    for initdb in reversed(candidates):
        if (Path(initdb).parent / "pg_ctl").exists():
            return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A running throw-away cluster: ``dsn`` reaches its ``postgres`` database; :meth:`new_database` makes another."""

    def __init__(self, port: int, root: Path) -> None:
        self.port = port
        self.root = root
        self.dsn = self.dsn_of("postgres")
        self._names = itertools.count(1)

    def dsn_of(self, database: str) -> str:
        return f"postgresql://{CLUSTER_USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_of(name)


def _as_cluster_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", CLUSTER_USER, "--", *argv]


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """Start a cluster; stop it and remove its directory however the block ends. Skips when PostgreSQL is absent."""
    bindir = server_bin()
    if bindir is None:
        pytest.skip(SKIP_REASON)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(CLUSTER_USER)
        except KeyError:
            pytest.skip(f"{SKIP_REASON} (it creates the {CLUSTER_USER} user initdb needs when run as root)")
    root = Path(tempfile.mkdtemp(prefix="workstate-pg-"))
    started = False
    try:
        if os.geteuid() == 0:
            os.chown(root, user.pw_uid, user.pw_gid)
        data = root / "data"
        subprocess.run(
            _as_cluster_user(
                [str(bindir / "initdb"), "-D", str(data), "-U", CLUSTER_USER, "--auth=trust", "-E", "UTF8", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        started = True
        subprocess.run(
            _as_cluster_user(
                [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=90,
        )
        yield Cluster(port, root)
    finally:
        if started:
            subprocess.run(
                _as_cluster_user([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_dsn(postgres_cluster: Cluster) -> str:
    """A fresh database of the session's cluster."""
    return postgres_cluster.new_database()
