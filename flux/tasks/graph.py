"""`Graph`, importable as Flux programs do (`from flux.tasks.graph import Graph`)."""

from __future__ import annotations

from flux.graph import Graph, GraphError

__all__ = ["Graph", "GraphError"]
