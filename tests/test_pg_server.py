"""The throwaway PostgreSQL server the tests use (tests/pg.py): unprivileged, Unix socket only."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.pg import PgServer


def test_the_server_runs_unprivileged_on_a_socket_only(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # no TCP port at all
        assert conn.execute("SHOW unix_socket_directories").fetchone() == (pg_server.dir,)
        assert conn.execute("SELECT count(*) FROM flux.migrations").fetchone()[0] >= 1  # copied from the template
        data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()[0]
    owner = os.stat(data_dir).st_uid
    if os.geteuid() == 0:
        assert owner != 0  # initdb and pg_ctl refuse root: the server runs as another user
    assert any(name.startswith(".s.PGSQL.") for name in os.listdir(pg_server.dir))


def test_the_server_can_be_stopped_hard_and_started_again(tmp_path: object) -> None:
    from tests import pg

    pg.skip_unless_available()
    server = PgServer()
    try:
        server.start()
        url = server.create_database("again")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        server.stop("immediate")  # a crash, as far as the database is concerned
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
        server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]  # committed survives the crash
    finally:
        server.close()
    assert not os.path.exists(server.dir)
