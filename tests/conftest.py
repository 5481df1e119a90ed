"""Shared fixtures: a private store per test, and helpers to run the `flux` command."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flux._engine import faults
from tests import pg
from tests.pg import PgServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty store directory, also set as FLUX_HOME."""
    path = tmp_path / "store"
    monkeypatch.setenv("FLUX_HOME", str(path))
    return path


@pytest.fixture
def armed_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The file store's fault hooks (engine/faults.py) armed in this process with no rules:
    `faults.configure(...)` sets the faults of the test, and `faults._counts` tells which points
    were reached."""
    from flux._engine.stores import files

    monkeypatch.setattr(files, "_FAULTS", True)
    monkeypatch.setattr(files, "_WRITE", faults.write)
    faults.configure("none")
    yield
    faults.configure("none")


def flux_cmd(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Runs `python -m flux ARGS` the way a user runs `flux ARGS`."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "flux", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def flux_popen(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "flux", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- PostgreSQL (tests/pg.py) ------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session, on a Unix socket, with a migrated template
    database `flux_tpl`. Skips when the server binaries or the driver are missing."""
    pg.skip_unless_available()
    server = PgServer()
    try:
        server.start()
        url = server.create_database("flux_tpl")
        import psycopg

        from flux._engine.stores import pg_schema

        with psycopg.connect(url, autocommit=True) as conn:
            pg_schema.migrate(conn)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def pg_url(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    """A database of its own for the test module, copied from the migrated template."""
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.module.__name__.rsplit(".", 1)[-1].lower())[:50]
    name += f"_{next(_databases)}"
    return pg_server.create_database(name, template="flux_tpl")


_databases = itertools.count()


def empty_pg(url: str) -> None:
    """Deletes every execution of the database (between tests of one module)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE flux.executions, flux.records, flux.snapshots, flux.blobs, flux.cache, flux.workers, "
            "flux.schedules, flux.queues, flux.queue_starts "
            "RESTART IDENTITY"
        )
