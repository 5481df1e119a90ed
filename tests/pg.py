"""A throwaway PostgreSQL server for the tests: initdb into a temporary directory, started on a
Unix socket in that directory (no TCP port), stopped with `-m immediate` at the end.

`initdb` and `pg_ctl` refuse to run as root. When the tests run as root (CI does), the server
runs as an unprivileged user (FLUX_TEST_PG_USER, else `nobody`) that owns the directory; the
tests connect to it through the socket, as the database user `flux`.

The server binaries are found on PATH, else in `pg_config --bindir`, else in
/usr/lib/postgresql/*/bin. Without them `find_bindir()` returns None and the PostgreSQL tests
are skipped, saying so.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PgServer", "find_bindir", "skip_reason", "skip_unless_available"]


def find_bindir() -> str | None:
    """The folder holding initdb, pg_ctl and postgres, or None."""
    candidates: list[str] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            candidates.append(
                subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if find_bindir() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH, "
            "in `pg_config --bindir` or /usr/lib/postgresql/*/bin"
        )
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "the postgresql extra is not installed (pip install -e '.[postgresql]')"
    if os.geteuid() == 0:
        user = os.environ.get("FLUX_TEST_PG_USER", "nobody")
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no user {user!r} to run the server as (set FLUX_TEST_PG_USER)"
    return None


def skip_unless_available() -> None:
    """Skips the calling test when PostgreSQL cannot run here, or fails it when
    FLUX_TEST_REQUIRE_PG is set (CI: the PostgreSQL tests must run)."""
    import pytest

    reason = skip_reason()
    if reason is None:
        return
    if os.environ.get("FLUX_TEST_REQUIRE_PG"):
        pytest.fail(f"FLUX_TEST_REQUIRE_PG is set but the PostgreSQL tests cannot run: {reason}")
    pytest.skip(reason)


class PgServer:
    """One PostgreSQL cluster in a temporary directory, reached through its Unix socket."""

    def __init__(self, *, fsync: bool = True, max_connections: int = 300) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(skip_reason() or "no PostgreSQL")
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="flux-pg-")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.fsync = fsync
        self.max_connections = max_connections
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = os.environ.get("FLUX_TEST_PG_USER", "nobody")
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.dir, 0o755)  # the socket must be reachable by the tests' user
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "flux", "--no-sync", "-E", "UTF8", "--locale=C")

    def _run(self, binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, binary), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.dir,
            user=self.user,
            group=pwd.getpwnam(self.user).pw_gid if self.user else None,
        )
        if result.returncode != 0:
            log = Path(self.log).read_text(errors="replace")[-4000:] if os.path.exists(self.log) else ""
            raise RuntimeError(
                f"{binary} {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )
        return result

    def start(self) -> None:
        options = (
            f"-c listen_addresses='' -k {self.dir} -c max_connections={self.max_connections} "
            f"-c fsync={'on' if self.fsync else 'off'} -c shared_buffers=64MB -c log_min_messages=fatal "
            "-c idle_in_transaction_session_timeout=60s"
        )
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        pid_file = os.path.join(self.data, "postmaster.pid")
        return os.path.exists(pid_file)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://flux@/{database}?host={self.dir}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Runs one statement outside a transaction (CREATE DATABASE and the like)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str, template: str | None = None) -> str:
        """Creates a database (a copy of `template`, when given) and returns its URL."""
        clause = f" TEMPLATE {template}" if template else ""
        for attempt in range(50):
            try:
                self.sql(f"CREATE DATABASE {name}{clause}")
                break
            except Exception as err:  # the template is briefly busy while others copy it
                if "being accessed by other users" not in str(err) or attempt == 49:
                    raise
                time.sleep(0.1)
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
