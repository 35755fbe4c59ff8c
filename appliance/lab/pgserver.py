"""A private PostgreSQL 15 server for the lab, the tests and the bench: ``initdb -A trust``
in its own directory (a temp directory unless the lab names one), ``pg_ctl -w start`` on a free port of 127.0.0.1 with the socket in that
directory, run as the unprivileged ``postgres`` user (``runuser`` when we are root).
No system service. :meth:`PgServer.new_database` makes a fresh database from an empty
template (tens of milliseconds), so every test gets its own."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import psycopg

from .asterisk import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
TEMPLATE = "callvault_template"


class PgServer:
    def __init__(self, *, fsync: bool = False, root: Path | None = None) -> None:
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="callvault-pg-"))
        else:
            root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.fsync = fsync
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "data"

    def _run(self, *argv: str) -> None:
        cmd = [str(BIN / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self) -> Self:
        self._run("initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", str(self.data))
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync={'on' if self.fsync else 'off'}"
        self._run("pg_ctl", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.root / "log"), "-o", opts,
                  "start")
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        return self

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url("postgres"), autocommit=True)

    def new_database(self, name: str | None = None) -> str:
        """A fresh empty database (a random name unless given); returns its URL."""
        name = name or f"t_{secrets.token_hex(6)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def stop_at(cls, root: Path) -> None:
        """Stop a server another process started in ``root`` (``callvault lab down``)."""
        server = cls.__new__(cls)
        server.root, server.data, server._as_postgres = root, root / "data", os.geteuid() == 0
        server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
