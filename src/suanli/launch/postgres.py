"""A private PostgreSQL cluster for one machine: `initdb` into a folder, a server on a loopback
port (and a Unix socket in the folder), password authentication, no system service.

The test suite runs its PostgreSQL leg on one of these, and `suanli up --postgres` starts one for
a demo of several front-desk replicas. Production runs a managed PostgreSQL or Patroni instead
(docs/operators.md).

PostgreSQL refuses to run as root, so a root caller runs the server as the `postgres` system user
that Debian's package creates (else `nobody`); the cluster's folder is handed to that user.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_PACKAGE = "postgresql"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are not on this machine, or the cluster did not start."""


def find_bindir() -> Path:
    """The folder holding initdb and pg_ctl: $SUANLI_PG_BINDIR, the PATH, else Debian's newest
    /usr/lib/postgresql/<major>/bin."""
    explicit = os.environ.get("SUANLI_PG_BINDIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates.extend(p / "bin" for p in majors)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise PostgresUnavailable(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
        f"as root run `apt-get install -y {DEBIAN_PACKAGE}` (or set SUANLI_PG_BINDIR)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> tuple[int, int] | None:
    """The (uid, gid) the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PostgresUnavailable("running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@dataclass
class LocalPostgres:
    """One cluster in `folder` (created when missing). `start()` returns once it accepts connections."""

    folder: Path
    port: int = field(default_factory=free_port)
    user: str = "suanli"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    bindir: Path = field(default_factory=find_bindir)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, database: str = "suanli") -> str:
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        owner = _server_user()
        prefix: list[str] = []
        if owner is not None:
            prefix = ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", "--"]
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed (exit {done.returncode}): " + " | ".join(tail))

    def init(self) -> None:
        """initdb with a password-protected superuser (`user`), unless the cluster exists."""
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = _server_user()
        if owner is not None:
            os.chown(self.folder, *owner)
            for parent in self.folder.resolve().parents:
                if not parent.stat().st_mode & 0o001:
                    raise PostgresUnavailable(
                        f"PostgreSQL runs as another user here, who cannot pass through {parent} "
                        f"(mode {parent.stat().st_mode & 0o777:o}): put the cluster elsewhere, or chmod o+x it"
                    )
        self.folder.chmod(0o700)
        if (self.data / "PG_VERSION").exists():
            return
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if owner is not None:
            os.chown(pwfile, *owner)
        try:
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, *, durable: bool = True) -> None:
        """Start the server on 127.0.0.1:`port` (socket in `folder`). `durable=False` turns fsync
        off, for throw-away test clusters only."""
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.folder}", "-c max_connections=300"]
        if not durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """CREATE DATABASE `name` (from `template` when given); returns its URL."""
        from suanli.adaptors import psycopg_module

        psycopg = psycopg_module()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            clause = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return self.url(name)

    def dsn(self, database: str) -> str:
        """A libpq connection string for psycopg itself (no SQLAlchemy dialect prefix)."""
        return f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname={database}"
