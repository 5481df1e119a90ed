"""Where journals live. `Store` is the seam; `FileStore` keeps them as plain files.

Layout of a `FileStore` home (SPEC.md, section "Store"):

    <home>/executions/<execution_id>.jsonl   the journal
    <home>/executions/<execution_id>.lock    flock'ed by the one process that runs the execution
    <home>/executions/<execution_id>.torn    torn tails cut from the journal, kept for inspection
    <home>/executions/<execution_id>.index   replay snapshot written when a run pauses (optional)
"""

from __future__ import annotations

import contextlib
import hashlib
import errno
import fcntl
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from flux._engine.errors import (
    BlobError,
    UnsafePathError,
    DurabilityError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    InvalidExecutionIdError,
)
from flux._engine.isolate import register_inherited_fd, unregister_inherited_fd
from flux._engine.journal import (
    FILE_MODE,
    JournalRead,
    JournalWriter,
    Known,
    Records,
    Visit,
    encode_line,
    fsync_dir,
    read_journal,
    seed_for,
)

__all__ = ["FileStore", "Lease", "Store", "validate_execution_id"]

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DIR_MODE = 0o700
_HOLDER_BYTES = 256  # a lock file's size: the holder's pid, host and start time, space-padded


def validate_execution_id(execution_id: str) -> str:
    """Returns the id unchanged, or raises InvalidExecutionIdError when it could name another path."""
    if not isinstance(execution_id, str) or _ID_RE.fullmatch(execution_id) is None:
        raise InvalidExecutionIdError(str(execution_id))
    return execution_id


@dataclass
class Lease:
    """Ownership of one execution: its lock and its open writer. Close it when done."""

    read: JournalRead
    writer: JournalWriter
    lock_fd: int
    journal_lock_fd: int = -1

    def close(self) -> None:
        self.writer.close()
        if self.journal_lock_fd >= 0:
            _release_lock(self.journal_lock_fd)
            self.journal_lock_fd = -1
        if self.lock_fd >= 0:
            _release_lock(self.lock_fd)
            self.lock_fd = -1


class Store(Protocol):
    """What the executor needs from a place that keeps journals."""

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> Lease: ...

    def acquire(
        self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None
    ) -> Lease: ...

    def read(self, execution_id: str, visit: Visit | None = None) -> JournalRead: ...

    def list_ids(self) -> list[str]: ...

    def describe(self, execution_id: str) -> str: ...

    def request_cancel(self, execution_id: str) -> None: ...

    def cancel_requested(self, execution_id: str) -> bool: ...

    def clear_cancel(self, execution_id: str) -> None: ...


class FileStore:
    """Journals as files under one directory (`.flux/` by default)."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.dir = os.path.join(home, "executions")

    def _ensure_dirs(self) -> None:
        for path in (self.home, self.dir):
            try:
                os.mkdir(path, DIR_MODE)
            except FileExistsError:
                pass

    def journal_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".jsonl")

    def describe(self, execution_id: str) -> str:
        return self.journal_path(execution_id)

    def _lock(self, execution_id: str) -> int:
        path = os.path.join(self.dir, execution_id + ".lock")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ExecutionLockedError(execution_id, holder) from None
            except BaseException:
                os.close(fd)
                raise
            # A lock file deleted and recreated under us would let two processes hold "the"
            # lock on two inodes; only the lock on the file that is at the path counts.
            held = os.fstat(fd)
            try:
                same = held.st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        register_inherited_fd(fd)
        # Who holds the lock, padded to a fixed size and written over the last holder's: JSON
        # allows the trailing spaces, and no truncation (a journalled metadata change) is needed.
        info = orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        info = info.ljust(_HOLDER_BYTES)
        os.pwrite(fd, info, 0)
        if held.st_size > len(info):
            os.ftruncate(fd, len(info))
        return fd

    def _lock_journal(self, execution_id: str, path: str) -> int:
        """Flocks the journal itself too: a lock file deleted or replaced while held (`rm *.lock`)
        would otherwise let a second process in beside the first (SPEC.md 5)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExecutionLockedError(execution_id, self._holder(execution_id)) from None
        except BaseException:
            os.close(fd)
            raise
        register_inherited_fd(fd)
        return fd

    def _holder(self, execution_id: str) -> dict[str, Any]:
        try:
            fd = os.open(os.path.join(self.dir, execution_id + ".lock"), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return {}
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def create(self, execution_id: str, header: dict[str, Any], durability: str) -> Lease:
        """Creates a new journal holding only `header`, durable before this returns.

        Raises:
            FileExistsError: when the execution already exists (a journal is never overwritten).
        """
        self._ensure_dirs()
        path = self.journal_path(execution_id)
        lock_fd = self._lock(execution_id)
        try:
            if os.path.lexists(path):
                raise FileExistsError(f"{path}: execution {execution_id} already exists")
            tmp = f"{path}.new-{os.getpid()}"
            # We hold the lock, so a temp file of this name was left by a process that died.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
            try:
                header["seq"] = 0
                data = encode_line(header, seed_for(execution_id))
                if os.write(fd, data) != len(data):
                    # A journal must never appear with half a header (SPEC.md 2.2).
                    raise OSError(errno.ENOSPC, "short write of the journal header")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # unlike rename, link never replaces an existing journal
            finally:
                os.unlink(tmp)
            fsync_dir(self.dir)
            journal_lock_fd = self._lock_journal(execution_id, path)
            read = JournalRead(path, Records.of([header]), [0], len(data))
            try:
                writer = JournalWriter.open(read, execution_id, durability, path[:-6] + ".torn")
            except BaseException:
                _release_lock(journal_lock_fd)
                raise
        except OSError as err:
            _release_lock(lock_fd)
            if isinstance(err, FileExistsError):
                raise
            raise DurabilityError(f"{path}: cannot create the journal ({err.strerror or err})") from err
        except BaseException:
            _release_lock(lock_fd)
            raise
        return Lease(read, writer, lock_fd, journal_lock_fd)

    def acquire(self, execution_id: str, durability: str, visit: Visit | None = None, known: Known | None = None) -> Lease:
        """Locks an execution, reads its journal and opens it for appending. `visit` and `known`
        are as for `read_journal`.

        Raises:
            ExecutionNotFoundError, ExecutionLockedError, JournalCorruptError.
        """
        path = self.journal_path(execution_id)
        if os.path.islink(path):
            raise UnsafePathError(errno.ELOOP, f"{path}: is a symbolic link; journals are never read through links, remove it")
        if not os.path.isfile(path):
            raise ExecutionNotFoundError(execution_id, self.home)
        journal_lock_fd = self._lock_journal(execution_id, path)
        try:
            lock_fd = self._lock(execution_id)
        except BaseException:
            _release_lock(journal_lock_fd)
            raise
        try:
            read = read_journal(path, execution_id, visit=visit, known=known)
            writer = JournalWriter.open(read, execution_id, durability, path[:-6] + ".torn")
        except BaseException:
            _release_lock(lock_fd)
            _release_lock(journal_lock_fd)
            raise
        return Lease(read, writer, lock_fd, journal_lock_fd)

    def read(self, execution_id: str, visit: Visit | None = None) -> JournalRead:
        """Reads a journal without locking or changing it; `visit` as for `read_journal`."""
        path = self.journal_path(execution_id)
        try:
            return read_journal(path, execution_id, visit=visit)
        except FileNotFoundError:
            raise ExecutionNotFoundError(execution_id, self.home) from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePathError(
                    errno.ELOOP, f"{path}: is a symbolic link; journals are never read through links, remove it"
                ) from None
            raise

    def list_ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-6] for n in names if n.endswith(".jsonl") and _ID_RE.fullmatch(n[:-6]))

    # -- blobs and the task cache (SPEC.md "Output storage", "Cache") ---------------------------

    def _private_dir(self, name: str) -> str:
        self._ensure_dirs()
        path = os.path.join(self.home, name)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, DIR_MODE)
        return path

    def _write_atomically(self, folder: str, name: str, data: bytes) -> str:
        path = os.path.join(folder, name)
        tmp = f"{path}.tmp-{os.getpid()}-{id(data)}"
        _write_file(tmp, data, sync=True)
        os.replace(tmp, path)
        fsync_dir(folder)
        return path

    def _snapshot_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".index")

    def get_snapshot(self, execution_id: str) -> bytes | None:
        """The execution's replay snapshot (SPEC.md 2.3), or None when there is none."""
        try:
            fd = os.open(self._snapshot_path(execution_id), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # missing, or a link: either way there is no snapshot to use
        try:
            return b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        finally:
            os.close(fd)

    def put_snapshot(self, execution_id: str, data: bytes) -> None:
        """Replaces the execution's replay snapshot; the caller holds the execution's lock. Not
        synced: a snapshot lost or torn by a crash is ignored, and the journal is read whole."""
        path = self._snapshot_path(execution_id)
        _write_file(path + ".new", data, sync=False)  # one writer at a time: a leftover is reused
        os.replace(path + ".new", path)

    def drop_snapshot(self, execution_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._snapshot_path(execution_id))

    def blob_path(self, digest: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise BlobError(f"invalid blob digest {digest!r}")
        return os.path.join(self.home, "blobs", digest + ".json")

    def put_blob(self, data: bytes) -> str:
        """Stores `data` under its SHA-256; returns the digest. Durable before it returns."""
        digest = hashlib.sha256(data).hexdigest()
        folder = self._private_dir("blobs")
        if not os.path.exists(os.path.join(folder, digest + ".json")):
            self._write_atomically(folder, digest + ".json", data)
        return digest

    def get_blob(self, digest: str) -> bytes:
        """The bytes stored under `digest`.

        Raises:
            BlobError: naming the file when it is missing or its content does not match.
        """
        path = self.blob_path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as err:
            raise BlobError(f"{path}: the stored output is missing ({err.strerror}); restore the file") from None
        try:
            data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        finally:
            os.close(fd)
        if hashlib.sha256(data).hexdigest() != digest:
            raise BlobError(f"{path}: the stored output was altered (its SHA-256 no longer matches); restore the file")
        return data

    def cache_get(self, key: str) -> bytes | None:
        path = os.path.join(self.home, "cache", key + ".json")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            return b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        finally:
            os.close(fd)

    def cache_put(self, key: str, data: bytes) -> None:
        self._write_atomically(self._private_dir("cache"), key + ".json", data)

    def clear_cache(self) -> int:
        """Deletes every cached task result; returns how many there were."""
        folder = os.path.join(self.home, "cache")
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
        return len(names)

    def _cancel_path(self, execution_id: str) -> str:
        return os.path.join(self.dir, validate_execution_id(execution_id) + ".cancel")

    def request_cancel(self, execution_id: str) -> None:
        """Asks the process that runs the execution to cancel it (it checks a few times a second)."""
        fd = os.open(self._cancel_path(execution_id), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        os.close(fd)

    def cancel_requested(self, execution_id: str) -> bool:
        return os.path.lexists(self._cancel_path(execution_id))

    def clear_cancel(self, execution_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._cancel_path(execution_id))

    def is_locked(self, execution_id: str) -> bool:
        """True when some process holds the execution's lock right now."""
        path = os.path.join(self.dir, validate_execution_id(execution_id) + ".lock")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


def _write_file(path: str, data: bytes, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _release_lock(fd: int) -> None:
    unregister_inherited_fd(fd)
    os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        holder = orjson.loads(data) if data else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, orjson.JSONDecodeError):
        return {}
