"""Built-in tasks: pauses, durable timers, recorded time and randomness, composition, sub-workflows,
progress.

Everything here goes through the engine, so replay sees the same values and the same structure
(SPEC.md "Built-ins"). Each lives in a submodule of its own (`flux.tasks.pause`,
`flux.tasks.call`, `flux.tasks.graph`, `flux.tasks.progress`, `flux.tasks.builtins`); this package
exports them all.
"""

from __future__ import annotations

from flux.tasks.builtins import (
    choice,
    idempotency_key,
    map_task,
    now,
    parallel,
    pipeline,
    randint,
    randrange,
    sleep,
    uuid4,
)
from flux.tasks.call import call
from flux.tasks.graph import Graph, GraphError
from flux.tasks.pause import pause
from flux.tasks.progress import progress

__all__ = [
    "Graph",
    "GraphError",
    "call",
    "choice",
    "idempotency_key",
    "map_task",
    "now",
    "parallel",
    "pause",
    "pipeline",
    "progress",
    "randint",
    "randrange",
    "sleep",
    "uuid4",
]
