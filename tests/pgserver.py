"""A throwaway PostgreSQL server for the tests of the index's PostgreSQL store:
Debian's server binaries (`make test` installs them: scripts/install_postgres.sh),
a cluster in a temporary folder, listening on a Unix socket only, run as the
`postgres` user when the tests run as root (the server refuses root), stopped at
the end of the session."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path


def server_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl` (Debian keeps them out of PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(versions[-1]).parent if versions else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A cluster in `folder`; `url(db)` the URL of one of its databases."""

    def __init__(self, folder: Path, bindir: Path) -> None:
        self.folder, self.bin = folder, bindir
        self.data, self.socket_dir = folder / "data", folder / "sock"
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.socket_dir.mkdir(parents=True)
        if self.user:
            shutil.chown(folder, self.user)
            shutil.chown(self.socket_dir, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        opts = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", opts, "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd="/")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@/{db}?host={self.socket_dir}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")
