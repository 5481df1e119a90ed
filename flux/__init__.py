"""Flux: durable workflows on plain files. Import `workflow`, `task` and `ExecutionContext` here.

Names are imported when first used, so `import flux` (and every `import flux._engine...`) stays
cheap.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flux.context import ExecutionContext
    from flux.domain.events import ExecutionEvent, ExecutionEventType
    from flux.saga import Saga
    from flux.task import TaskFunction, task
    from flux.workflow import Workflow, workflow

__all__ = [
    "ExecutionContext",
    "ExecutionEvent",
    "ExecutionEventType",
    "Saga",
    "TaskFunction",
    "Workflow",
    "task",
    "workflow",
]

_WHERE = {
    "ExecutionContext": "flux.context",
    "ExecutionEvent": "flux.domain.events",
    "ExecutionEventType": "flux.domain.events",
    "Saga": "flux.saga",
    "TaskFunction": "flux.task",
    "task": "flux.task",
    "Workflow": "flux.workflow",
    "workflow": "flux.workflow",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flux' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`flux.task` and `flux.workflow` are the decorators, though modules of those names exist:
    importing the module `flux.task` must not put the module where the decorator is."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("task", "workflow") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
