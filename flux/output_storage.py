"""Output storage: keeps large results out of the journal (SPEC.md "Output storage").

`@task.with_options(output_storage=LocalFileStorage())` (or `output_storage=True`) writes the
task's encoded result to `<home>/blobs/<sha256>.json` (atomically, fsynced, mode 0600) and
records only `{"$blob": digest, "size": n}` in the journal. Replay reads the file back and
checks its digest; a missing or altered file stops the run with `BlobError` naming it.
"""

from __future__ import annotations

__all__ = ["LocalFileStorage", "OutputStorage"]


class OutputStorage:
    """Where outputs go. The engine keeps them as content-addressed files in the store."""


class LocalFileStorage(OutputStorage):
    """Blobs under the store's `blobs/` folder, next to the journals."""

    def __repr__(self) -> str:
        return "LocalFileStorage()"
