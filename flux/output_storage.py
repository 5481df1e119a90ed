"""Output storage: where results go instead of the journal (SPEC.md 4.8).

`@task.with_options(output_storage=...)` or `@workflow.with_options(output_storage=...)`:

- `LocalFileStorage()` (or `True`): the encoded result is written to `<store>/blobs/<sha256>.json`
  (atomically, fsynced, mode 0600) and the journal records `{"$blob": digest, "size": n}`.
  Replay reads the file back and checks its digest.
- `InlineOutputStorage()`: the result is recorded in the journal itself (the default).
- A subclass of `OutputStorage` of your own: the engine calls its `store(reference_id, value)`
  when a result is recorded and records the `OutputStorageReference` it returns; a replay calls
  its `retrieve(reference)` to get the value back. The value handed to `store` is the Python
  value itself: the storage decides how to keep it.

A workflow with output storage returns its output as an `OutputStorageReference`
(`ctx.output`): `wf.output_storage.retrieve(ctx.output)` reads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from flux._engine.refs import OutputStorageReference

__all__ = ["InlineOutputStorage", "LocalFileStorage", "OutputStorage", "OutputStorageReference"]


class OutputStorage(ABC):
    """Where outputs go. Subclass it and implement `store`, `retrieve` and `delete`."""

    @abstractmethod
    def store(self, reference_id: str, value: Any) -> OutputStorageReference:
        """Keeps `value` under `reference_id`; returns the reference the journal records."""

    @abstractmethod
    def retrieve(self, reference: OutputStorageReference) -> Any:
        """The value a reference names."""

    @abstractmethod
    def delete(self, reference: OutputStorageReference) -> Any:
        """Forgets the value a reference names."""


class InlineOutputStorage(OutputStorage):
    """The value stays in the journal; its reference carries it (`metadata["value"]`)."""

    def store(self, reference_id: str, value: Any) -> OutputStorageReference:
        return OutputStorageReference("inline", reference_id, {"value": value})

    def retrieve(self, reference: OutputStorageReference) -> Any:
        return reference.metadata["value"]

    def delete(self, reference: OutputStorageReference) -> None:
        pass

    def __repr__(self) -> str:
        return "InlineOutputStorage()"


class LocalFileStorage(OutputStorage):
    """Content-addressed files under the store's `blobs/` folder, next to the journals.

    The engine writes and reads them itself when a task or workflow declares this storage. Its
    `store`/`retrieve`/`delete` work on the store given here (default: the one `FLUX_STORE`,
    `FLUX_HOME` or `.flux` names), for code that keeps values by hand.
    """

    def __init__(self, store: Any = None) -> None:
        self._store_spec = store

    def _blobs(self) -> Any:
        from flux._engine.errors import StoreError
        from flux._engine.store import open_store

        blobs = open_store(self._store_spec).blobs
        if blobs is None:
            raise StoreError("this store keeps no output storage")
        return blobs

    def store(self, reference_id: str, value: Any) -> OutputStorageReference:
        import orjson

        from flux._engine.codec import encode

        data = orjson.dumps(encode(value, f"output {reference_id!r}"))
        digest = self._blobs().put(data)
        return OutputStorageReference("local_file", digest, {"size": len(data)})

    def retrieve(self, reference: OutputStorageReference) -> Any:
        import orjson

        from flux._engine.codec import decode

        if reference.storage_type != "local_file":
            raise ValueError(f"Invalid storage type: {reference.storage_type}")
        return decode(orjson.loads(self._blobs().get(reference.reference_id)))

    def delete(self, reference: OutputStorageReference) -> None:
        """Deletes nothing at once: stored outputs are shared by content, and a journal that
        names this one replays from it. `flux delete` and `flux prune` sweep the outputs that
        nothing names any more (SPEC.md 4.8)."""
        if reference.storage_type != "local_file":
            raise ValueError(f"Invalid storage type: {reference.storage_type}")

    def __repr__(self) -> str:
        return "LocalFileStorage()"
