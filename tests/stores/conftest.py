"""The stores the contract suite runs against, each with the few hooks a contract test needs to
do what only another process (or a crash) could do to that store.

A store joins the suite by adding a `StoreKind` to `KINDS`: every test of tests/stores/ then runs
against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flux._engine.journal import encode_line, seed_for
from flux._engine.store import Store
from flux._engine.stores.files import FileStore
from flux._engine.stores.memory import MemoryStore
from tests.conftest import empty_pg


@dataclass
class StoreKind:
    """How to make one kind of store for a test, and how to act on it from outside."""

    name: str
    make: Callable[[Path, Any], Store]  # (a temporary folder, the value of `resource` or None)
    # Appends a valid line for `record` as another writer would (ownership lost under a lease).
    intrude: Callable[[Store, str, dict[str, Any]], None]
    # Appends bytes that are not a complete line, as a crash in the middle of a write leaves them,
    # or None when the store cannot be left that way (a transaction commits all or nothing).
    tear: Callable[[Store, str, bytes], None] | None
    # The journal's bytes as the store holds them.
    raw: Callable[[Store, str], bytes]
    # A fixture the store needs (a database server), or None.
    resource: str | None = None


def _file_intrude(store: Store, execution_id: str, record: dict[str, Any]) -> None:
    assert isinstance(store, FileStore)
    path = store.journal_path(execution_id)
    with open(path, "ab") as f:
        f.write(encode_line(dict(record), seed_for(execution_id)))


def _file_tear(store: Store, execution_id: str, data: bytes) -> None:
    assert isinstance(store, FileStore)
    with open(store.journal_path(execution_id), "ab") as f:
        f.write(data)


def _file_raw(store: Store, execution_id: str) -> bytes:
    assert isinstance(store, FileStore)
    return Path(store.journal_path(execution_id)).read_bytes()


def _memory_intrude(store: Store, execution_id: str, record: dict[str, Any]) -> None:
    assert isinstance(store, MemoryStore)
    journal = store._journals[execution_id]
    journal.data += encode_line(dict(record), seed_for(execution_id))
    journal.changed += 1


def _memory_tear(store: Store, execution_id: str, data: bytes) -> None:
    assert isinstance(store, MemoryStore)
    store._journals[execution_id].data += data


def _memory_raw(store: Store, execution_id: str) -> bytes:
    assert isinstance(store, MemoryStore)
    return store.journal_bytes(execution_id)


def _pg_make(tmp: Path, url: str) -> Store:
    from flux._engine.stores.postgres import PostgresStore

    empty_pg(url)
    return PostgresStore(url)


def _pg_intrude(store: Store, execution_id: str, record: dict[str, Any]) -> None:
    """Another owner takes the execution over (epoch + 1) and appends one record."""
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn, conn.transaction():
        pk, epoch, seq = conn.execute(
            "UPDATE flux.executions SET epoch = epoch + 1, next_seq = next_seq + 1 WHERE execution_id = %s "
            "RETURNING pk, epoch, next_seq - 1",
            (execution_id,),
        ).fetchone()
        line = encode_line({**record, "seq": seq}, seed_for(execution_id))
        conn.execute(
            "INSERT INTO flux.records (exec_pk, seq, epoch, line) VALUES (%s, %s, %s, %s)", (pk, seq, epoch, line)
        )


def _pg_raw(store: Store, execution_id: str) -> bytes:
    return store.journal_bytes(execution_id)  # type: ignore[attr-defined, no-any-return]


KINDS: list[StoreKind] = [
    StoreKind("file", lambda tmp, _: FileStore(str(tmp / "store")), _file_intrude, _file_tear, _file_raw),
    StoreKind(
        "memory",
        lambda tmp, _: MemoryStore(f"contract-{os.getpid()}-{id(tmp)}"),
        _memory_intrude,
        _memory_tear,
        _memory_raw,
    ),
    # A transaction commits all of a sync's records or none: a PostgreSQL journal is never torn.
    StoreKind("postgresql", _pg_make, _pg_intrude, None, _pg_raw, resource="pg_url"),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> StoreKind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def store(kind: StoreKind, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Store]:
    resource = request.getfixturevalue(kind.resource) if kind.resource else None
    made = kind.make(tmp_path, resource)
    try:
        yield made
    finally:
        close = getattr(made, "close", None)
        if close is not None:
            close()
