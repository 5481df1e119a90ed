"""The memory store: journals as bytes in this process, for tests and short-lived services.

It keeps the journal's exact bytes (the same lines, checked the same way on every read), so it
agrees with the file store record for record; tests/stores/ drives both with the same
operations. Nothing survives the process. `open_store("memory:NAME")` gives the store of that
name, shared by everything in the process that names it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

from flux._engine.errors import (
    BlobError,
    ExecutionExistsError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    JournalCorruptError,
)
from flux._engine.history import History
from flux._engine.journal import (
    BufferedWriter,
    JournalRead,
    Known,
    Records,
    Visit,
    check_journal,
    encode_record_line,
    seed_for,
)
from flux._engine.records import Status
from flux._engine.schedules import MemoryBook
from flux._engine.store import ExecutionSummary, Page, page_of, schedule_of, this_host, validate_execution_id

__all__ = ["MemoryStore"]


class _Journal:
    __slots__ = ("data", "owner", "cancel", "changed", "diverged")

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        self.owner: dict[str, Any] | None = None
        self.cancel = False
        self.diverged: dict[str, Any] | None = None
        self.changed = 0  # bumped on every write, for waiters


class MemoryWriter(BufferedWriter):
    def __init__(
        self, store: MemoryStore, journal: _Journal, execution_id: str, next_seq: int, durability: str, token: object
    ) -> None:
        super().__init__(store.describe(execution_id), execution_id, next_seq, durability)
        self._journal = journal
        self._token = token
        self._end = len(journal.data)

    def _write(self, data: bytes, first_seq: int) -> None:
        journal = self._journal
        if journal.owner is None or journal.owner.get("token") is not self._token or len(journal.data) != self._end:
            from flux._engine.errors import OwnershipLostError

            self._broken = OwnershipLostError(
                f"{self.where}: another owner took the execution over; stopped without writing"
            )
            raise self._broken
        journal.data += data
        journal.changed += 1
        self._end = len(journal.data)
        self.synced_seq = self.next_seq - 1

    def position(self) -> tuple[int, int, int]:
        data = bytes(self._journal.data[: self._end])
        return self._end, self.synced_seq + 1, zlib.crc32(data)


class MemoryLease:
    def __init__(
        self, store: MemoryStore, execution_id: str, read: JournalRead, writer: MemoryWriter, owner: dict[str, Any]
    ) -> None:
        self.read = read
        self.writer = writer
        self.owner = owner
        self._store = store
        self._execution_id = execution_id

    def close(self) -> None:
        self.writer.close()
        journal = self._store._journals.get(self._execution_id)
        with self._store._lock:
            if journal is not None and journal.owner is self.owner:
                journal.owner = None


class _Snapshots:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self, execution_id: str) -> bytes | None:
        return self.data.get(execution_id)

    def save(self, execution_id: str, data: bytes) -> None:
        self.data[execution_id] = bytes(data)

    def drop(self, execution_id: str) -> None:
        self.data.pop(execution_id, None)


class _Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.data.setdefault(digest, bytes(data))
        return digest

    def get(self, digest: str) -> bytes:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BlobError(f"invalid blob digest {digest!r}")
        data = self.data.get(digest)
        if data is None:
            raise BlobError(f"memory blob {digest}: the stored output is missing")
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"memory blob {digest}: the stored output was altered")
        return data

    def sweep_unreferenced(self) -> int:
        return 0  # blobs are kept for as long as the process lives


class _Cache:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def put(self, key: str, data: bytes) -> None:
        self.data[key] = bytes(data)

    def clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        return n


class MemoryStore:
    """Journals in memory; the same contract as the file store, nothing durable."""

    _named: ClassVar[dict[str, MemoryStore]] = {}

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._journals: dict[str, _Journal] = {}
        self._lock = threading.Lock()
        self.snapshots = _Snapshots()
        self.blobs = _Blobs()
        self.cache = _Cache()
        self.schedules = MemoryBook()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process's memory store of this name (made on first use)."""
        store = cls._named.get(name)
        if store is None:
            store = cls._named[name] = cls(name)
        return store

    @property
    def url(self) -> str:
        return f"memory:{self.name}"

    def __repr__(self) -> str:
        return f"MemoryStore({self.name!r})"

    def describe(self, execution_id: str) -> str:
        return f"memory:{self.name}#{validate_execution_id(execution_id)}"

    def secrets_file(self) -> str | None:
        return None

    def _owner(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": this_host(), "since": time.time(), "token": object()}

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> MemoryLease:
        validate_execution_id(execution_id)
        header["seq"] = 0
        line = encode_record_line(header, seed_for(execution_id))
        owner = self._owner()
        with self._lock:
            if execution_id in self._journals:
                raise ExecutionExistsError(execution_id, self.url)
            journal = self._journals[execution_id] = _Journal(line)
            journal.owner = owner
            journal.changed += 1
        read = JournalRead(self.describe(execution_id), Records.of([header]), [0], len(line))
        writer = MemoryWriter(self, journal, execution_id, 1, durability, owner["token"])
        return MemoryLease(self, execution_id, read, writer, owner)

    def acquire(
        self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None
    ) -> MemoryLease:
        validate_execution_id(execution_id)
        owner = self._owner()
        with self._lock:
            journal = self._journals.get(execution_id)
            if journal is None:
                raise ExecutionNotFoundError(execution_id, self.url)
            if journal.owner is not None:
                raise ExecutionLockedError(execution_id, {k: v for k, v in journal.owner.items() if k != "token"})
            journal.owner = owner
            journal.diverged = None  # a new owner takes it from here
        try:
            read = check_journal(
                bytes(journal.data), self.describe(execution_id), execution_id, visit=visit, known=known
            )
            if read.torn:  # a memory journal is never torn; a test that tears it is cut like a file
                del journal.data[read.valid_size :]
        except BaseException:
            with self._lock:
                journal.owner = None
            raise
        writer = MemoryWriter(self, journal, execution_id, len(read.records), durability, owner["token"])
        return MemoryLease(self, execution_id, read, writer, owner)

    def read(self, execution_id: str, visit: Visit | None = None, known: Known | None = None) -> JournalRead:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            raise ExecutionNotFoundError(execution_id, self.url)
        data = bytes(journal.data)
        return check_journal(data, self.describe(execution_id), execution_id, visit=visit, known=known)

    def header(self, execution_id: str) -> dict[str, Any]:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            raise ExecutionNotFoundError(execution_id, self.url)
        data = bytes(journal.data)
        return check_journal(data[: data.find(b"\n") + 1], self.describe(execution_id), execution_id).records[0]

    def export(self, execution_id: str) -> bytes:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            raise ExecutionNotFoundError(execution_id, self.url)
        data = bytes(journal.data)
        return data[: check_journal(data, self.describe(execution_id), execution_id).valid_size]

    def exists(self, execution_id: str) -> bool:
        return validate_execution_id(execution_id) in self._journals

    def list_ids(self) -> list[str]:
        return sorted(self._journals)

    def summary(self, execution_id: str) -> ExecutionSummary:
        try:
            read = self.read(execution_id)
            history = History(read.path, read.offsets, read.records)
            history.apply_all(read.records, read.offsets)
        except JournalCorruptError as err:
            return ExecutionSummary(execution_id, "?", "damaged", "", 0, None, str(err))
        header = history.header or {}
        status = history.status
        if status in (Status.RUNNING, Status.CREATED) and self.owner(execution_id) is None:
            if self._journals[execution_id].diverged is not None:
                status = Status.DIVERGED
            elif status == Status.RUNNING:
                status = Status.INTERRUPTED
        parent = header.get("parent") or {}
        return ExecutionSummary(
            execution_id, str(header.get("workflow", "")), status, str(header.get("created", "")),
            len(read.records), parent.get("execution_id") if isinstance(parent, dict) else None,
            schedule=schedule_of(header),
        )

    def list(
        self, *, status: str | Sequence[str] | None = None, workflow: str | None = None, limit: int | None = None,
        cursor: str | None = None, prefix: str | None = None, created_after: str | None = None,
        created_before: str | None = None, schedule: str | None = None,
    ) -> Page:
        ids = [i for i in self.list_ids() if prefix is None or i.startswith(prefix)]
        return page_of(
            [self.summary(i) for i in ids], status=status, workflow=workflow, limit=limit, cursor=cursor,
            created_after=created_after, created_before=created_before, schedule=schedule,
        )

    def delete(self, execution_id: str) -> None:
        validate_execution_id(execution_id)
        with self._lock:
            journal = self._journals.get(execution_id)
            if journal is None:
                raise ExecutionNotFoundError(execution_id, self.url)
            if journal.owner is not None:
                raise ExecutionLockedError(execution_id, {k: v for k, v in journal.owner.items() if k != "token"})
            del self._journals[execution_id]
        self.snapshots.drop(execution_id)

    def owner(self, execution_id: str) -> dict[str, Any] | None:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None or journal.owner is None:
            return None
        return {k: v for k, v in journal.owner.items() if k != "token"}

    async def wait_for_change(self, execution_id: str, timeout: float) -> None:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            return
        seen = journal.changed
        deadline = time.monotonic() + timeout
        delay = 0.001
        while journal.changed == seen and time.monotonic() < deadline:
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.05)

    def mark_diverged(self, execution_id: str, divergence: dict[str, Any]) -> None:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            raise ExecutionNotFoundError(execution_id, self.url)
        journal.diverged = dict(divergence)

    def divergence(self, execution_id: str) -> dict[str, Any] | None:
        journal = self._journals.get(validate_execution_id(execution_id))
        return None if journal is None else journal.diverged

    def request_cancel(self, execution_id: str) -> None:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is None:
            raise ExecutionNotFoundError(execution_id, self.url)
        journal.cancel = True

    def cancel_requested(self, execution_id: str) -> bool:
        journal = self._journals.get(validate_execution_id(execution_id))
        return journal is not None and journal.cancel

    def clear_cancel(self, execution_id: str) -> None:
        journal = self._journals.get(validate_execution_id(execution_id))
        if journal is not None:
            journal.cancel = False

    # For tests: the journal's bytes as a file would hold them.
    def journal_bytes(self, execution_id: str) -> bytes:
        return bytes(self._journals[validate_execution_id(execution_id)].data)
