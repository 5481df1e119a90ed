"""`OutputStorageReference`: what the journal records for a value kept in an output storage
(SPEC.md 4.8). Public as `flux.output_storage.OutputStorageReference`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["OutputStorageReference"]


@dataclass
class OutputStorageReference:
    """Where a stored output is: the storage's kind (`storage_type`, e.g. "local_file"), the id
    it was stored under, and whatever else the storage keeps with it (`metadata`)."""

    storage_type: str
    reference_id: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"storage_type": self.storage_type, "reference_id": self.reference_id, "metadata": self.metadata or {}}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> OutputStorageReference:
        return OutputStorageReference(data["storage_type"], data["reference_id"], data.get("metadata") or {})
