"""`ExecutionContext`, where Flux programs import it from (`flux.domain.execution_context`)."""

from __future__ import annotations

from flux.context import ExecutionContext

__all__ = ["ExecutionContext"]
