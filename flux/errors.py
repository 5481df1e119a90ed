"""The errors users see; all derive from `FluxError` (the tree is drawn in engine/errors.py)."""

from __future__ import annotations

from engine.errors import (
    CompensationError,
    ExecutionTimeoutError,
    FallbackError,
    RetryError,
    RollbackError,
    DecodeError,
    DurabilityError,
    EncodeError,
    EngineError,
    ExecutionError,
    ExecutionLockedError,
    ExecutionNotFoundError,
    ExecutionStateError,
    FluxError,
    InvalidExecutionIdError,
    InvalidOptionError,
    JournalCorruptError,
    NondeterminismError,
    RecordedError,
    WorkflowLoadError,
)

__all__ = [
    "CompensationError",
    "ExecutionTimeoutError",
    "FallbackError",
    "RetryError",
    "RollbackError",
    "DecodeError",
    "DurabilityError",
    "EncodeError",
    "EngineError",
    "ExecutionError",
    "ExecutionLockedError",
    "ExecutionNotFoundError",
    "ExecutionStateError",
    "FluxError",
    "InvalidExecutionIdError",
    "InvalidOptionError",
    "JournalCorruptError",
    "NondeterminismError",
    "RecordedError",
    "WorkflowLoadError",
]
