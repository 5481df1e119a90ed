"""What the executor records as a call's outcome: values (with secrets removed, in output
storage when asked), errors, and the task cache (SPEC.md 4.7 to 4.9).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from flux._engine import records as R
from flux._engine.codec import PLAIN_TYPES, decode, encode, encode_exception
from flux._engine.errors import (
    BlobError,
    DecodeError,
    DurabilityError,
    EncodeError,
    EngineError,
    ExecutionError,
    RecordTooLargeError,
    RetryError,
)
from flux._engine.secrets import redact, unredact

if TYPE_CHECKING:
    from collections.abc import Callable

    from flux._engine.calls import TaskSpec
    from flux._engine.clock import Clock
    from flux._engine.history import CallHistory
    from flux._engine.journal import Records
    from flux._engine.secrets import Secrets
    from flux._engine.store import Lease, Store

__all__ = ["SENSITIVE", "Outputs", "as_execution_error", "load_blob"]

# What the journal holds in place of the arguments and result of a `sensitive=True` task.
SENSITIVE = "[REDACTED:sensitive]"

log = logging.getLogger("flux")


def as_execution_error(exc: BaseException) -> ExecutionError:
    """What the workflow sees of a task's failure: an ExecutionError raised in the task (a nested
    task's failure, a timeout) as it is; anything else, and a RetryError, wrapped in one, its
    cause set."""
    if isinstance(exc, ExecutionError) and not isinstance(exc, RetryError):
        return exc
    err = ExecutionError(exc)
    err.__cause__ = exc
    return err


def load_blob(store: Any, ref: dict[str, Any]) -> Any:
    """The recorded value a `{"$blob": digest}` reference names, read from the store's output
    storage (its digest checked).

    Raises:
        BlobError: when the blob is missing or altered; DecodeError when the store keeps none.
    """
    blobs = store.blobs
    if blobs is None:
        raise DecodeError(f"{store.url}: this store keeps no output storage, but a value was recorded in it")
    return orjson.loads(blobs.get(ref["$blob"]))


class Outputs:
    """The executor's recording of outcomes; mixed into `Executor`, which supplies the state."""

    # Provided by Executor.
    store: Store
    secrets: Secrets
    redactions: dict[str, str]
    reruns: set[str]
    records: Records
    calls: dict[str, CallHistory]
    lease: Lease | None
    writer: Any
    fatal: BaseException | None
    execution_id: str
    path: str
    clock: Clock
    stamp: Callable[[], str]
    _flush_soon: bool

    def resolve(self, ref: str) -> type | None: ...

    def append(self, record: dict[str, Any]) -> None: ...

    def value_of(self, tree: Any) -> Any:
        """Decodes a recorded value, reading it from output storage when it was stored there."""
        if type(tree) is dict and "$blob" in tree:
            tree = self._load_blob(tree)
        if self.redactions:
            tree = unredact(tree, self.redactions)  # the workflow sees the real secret (SPEC.md 4.7)
        return decode(tree, self.resolve)

    def recorded_value_of(self, tree: Any) -> Any:
        """Decodes a recorded value as it was written (secrets shown as [secret:NAME]): for
        events and everything else shown outside the workflow."""
        if type(tree) is dict and "$blob" in tree:
            tree = self._load_blob(tree)
        return decode(tree, self.resolve)

    def recorded(self, tree: Any, seq: int, *, stored: bool = True) -> Any:
        """A value (or error) the journal holds at `seq`, decoded, from output storage when
        `stored` and it was stored there.

        One that cannot be rebuilt (a tag no Flux writes, a class not loaded, a stored output
        missing) is engine trouble, not the workflow's: the run stops and writes nothing more,
        even if the workflow catches the error (SPEC.md 8), and the error names the line.

        Raises:
            DecodeError, BlobError: naming `path:line`.
        """
        if type(tree) in PLAIN_TYPES and not self.redactions:
            return tree  # a number, string, bool or null stands for itself
        try:
            return self.value_of(tree) if stored else decode(tree, self.resolve)
        except (DecodeError, BlobError) as err:
            located = type(err)(f"{self.path}:{seq + 1}: {err}")
            self.fatal = self.fatal or located
            raise located from err

    def _load_blob(self, ref: dict[str, Any]) -> Any:
        return load_blob(self.store, ref)

    def _store_blob(self, tree: Any) -> dict[str, Any]:
        blobs = self.store.blobs
        if blobs is None:
            raise EncodeError(f"{self.store.url}: this store keeps no output storage; drop output_storage=")
        data = orjson.dumps(tree)
        digest = blobs.put(data)
        return {"$blob": digest, "size": len(data)}

    def _store_output(self, tree: Any) -> dict[str, Any]:
        """`_store_blob` for a task's result: a blob that cannot be written is engine trouble
        (SPEC.md 4.8), like a journal write that fails: nothing is recorded, the run stops, and
        the call runs again when the execution is resumed."""
        try:
            return self._store_blob(tree)
        except DurabilityError as err:
            self.fatal = self.fatal or err
            raise

    def error_tree(self, exc: BaseException) -> tuple[Any, BaseException]:
        """The recorded form of an exception, secrets removed, and the exception the workflow
        sees: the exception itself (secrets are kept out of what is written, not out of what
        the workflow sees, SPEC.md 4.7)."""
        tree = encode_exception(exc)
        if self.redactions:
            tree = redact(tree, self.redactions)[0]
        return tree, exc

    def reveal(self, spec: TaskSpec, task: str) -> dict[str, str]:
        """The secrets a task asked for; remembered so that none is ever recorded."""
        values = self.secrets.get(spec.secrets, task)
        for name, value in values.items():
            self.redactions[value] = name
        return values

    def complete(
        self, call_id: str, name: str, spec: TaskSpec, result: Any, extra: dict[str, Any] | None = None
    ) -> Any:
        """Records a task's result; returns what the workflow sees (the result, or its recorded
        form when a secret had to be removed).

        Raises:
            ExecutionError: when the result cannot be recorded (the failure is recorded instead).
        """
        try:
            if spec.storage is not None:
                tree = encode(spec.storage.store(f"{self.execution_id}_{call_id}", result), "output storage reference")
            elif spec.sensitive:
                tree = SENSITIVE
            else:
                tree = encode(result, (None, "task {!r} result", name))
        except EncodeError as err:
            raise self.fail(call_id, err)  # noqa: B904 - fail() sets the cause
        except Exception as err:  # noqa: BLE001 - anything else that fails while encoding is the task's failure too
            failed = EncodeError(
                f"task {name!r} result: it could not be recorded ({type(err).__name__}: {err})",
                type_name=type(result).__name__,
                where=f"task {name!r} result",
            )
            failed.__cause__ = err
            raise self.fail(call_id, failed)  # noqa: B904 - fail() sets the cause
        returned = result  # the real value, secrets and all; only what is written is redacted
        if self.redactions:
            tree = redact(tree, self.redactions)[0]
        stored = self._store_output(tree) if spec.blob else tree
        record = {"seq": 0, "kind": R.TASK_COMPLETED, "at": self.stamp(), "call_id": call_id, "value": stored}
        if extra:
            record.update(extra)
        if self.reruns and call_id in self.reruns:
            record["rerun"] = True
        try:
            self.append(record)
        except RecordTooLargeError as err:
            raise self.fail(call_id, err)  # noqa: B904 - fail() sets the cause
        if spec.cache and not (extra and extra.get("cached")):
            try:
                self._cache_put(spec, record, stored)
            except (OSError, EngineError) as err:
                # A cache is an optimisation: a result it cannot keep is simply not cached.
                log.warning(
                    "execution %s: the result of call %s could not be cached (%s)", self.execution_id, call_id, err
                )
        if not self._flush_soon:
            # The workflow may go on for long without starting a task: this result should not
            # wait for that to reach the disk. One sync per loop turn serves every result.
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_completed)
        return returned

    def _flush_completed(self) -> None:
        self._flush_soon = False
        writer = self.writer
        if writer is not None and self.fatal is None and writer.dirty:
            if writer.is_async:
                asyncio.get_running_loop().create_task(self._flush_async(writer))
                return
            try:
                writer.sync()
            except Exception as err:  # noqa: BLE001 - kept; the next waiter re-raises it
                self.fatal = err

    async def _flush_async(self, writer: Any) -> None:
        try:
            await writer.flush()
        except Exception as err:  # noqa: BLE001 - kept; the next waiter re-raises it
            self.fatal = self.fatal or err

    def fail(self, call_id: str, exc: BaseException) -> ExecutionError:
        """Records a task's failure; returns the ExecutionError to raise in the workflow."""
        tree, seen = self.error_tree(exc)
        record = {"seq": 0, "kind": R.TASK_FAILED, "at": self.stamp(), "call_id": call_id, "error": tree}
        if self.reruns and call_id in self.reruns:
            record["rerun"] = True
        self.append(record)
        return as_execution_error(seen)

    def _cache_key(self, spec: TaskSpec, start: dict[str, Any]) -> str:
        ident = [spec.identity, start["name"], start.get("args"), start.get("kwargs")]
        return hashlib.sha256(orjson.dumps(ident, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def cache_hit(self, spec: TaskSpec, start: dict[str, Any]) -> tuple[bool, Any]:
        """(True, the cached value) for a call whose result the cache holds, else (False, None).

        An entry that cannot be read, whose checksum does not hold, that is of another call, or
        whose value cannot be rebuilt (its blob gone, a class not loaded) is a miss: the body
        runs (SPEC.md 4.9)."""
        cache = self.store.cache
        try:
            data = cache.get(self._cache_key(spec, start)) if cache is not None else None
        except (OSError, EngineError):
            return False, None
        if data is None:
            return False, None
        try:
            entry = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False, None
        if not (
            isinstance(entry, dict)
            and entry.get("task") == spec.identity
            and entry.get("name") == start["name"]
            and "value" in entry
            and entry.get("check") == _cache_check(spec.identity, start["name"], entry["value"])
        ):
            return False, None
        try:
            return True, self.value_of(entry["value"])
        except (DecodeError, BlobError):
            return False, None

    def _cache_put(self, spec: TaskSpec, record: dict[str, Any], stored: Any) -> None:
        recorded = self.calls.get(record["call_id"])
        if recorded is not None:
            start: dict[str, Any] | None = recorded.start  # started in an earlier run of the execution
        else:
            start = next(
                (
                    r
                    for r in reversed(self.records)
                    if r.get("call_id") == record["call_id"] and r["kind"] == R.TASK_STARTED
                ),
                None,
            )
        cache = self.store.cache
        if start is not None and cache is not None:
            entry = {
                "task": spec.identity, "name": start["name"], "execution_id": self.execution_id, "value": stored,
                "check": _cache_check(spec.identity, start["name"], stored),
            }
            cache.put(self._cache_key(spec, start), orjson.dumps(entry))


def _cache_check(task: str, name: str, value: Any) -> str:
    """The SHA-256 an entry carries of what it says: a flipped bit anywhere makes it a miss."""
    return hashlib.sha256(orjson.dumps([task, name, value], option=orjson.OPT_SORT_KEYS)).hexdigest()

