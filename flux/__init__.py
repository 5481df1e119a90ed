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
    from flux.domain.events import ExecutionEvent, ExecutionEventType, ExecutionState
    from flux.domain.schedule import Schedule, ScheduleStatus, ScheduleType, cron, interval, once
    from flux.replay_log import logger
    from flux.saga import Saga
    from flux.task import TaskFunction, TaskMetadata, task
    from flux.tasks import call, pause
    from flux.workflow import Workflow, workflow

__all__ = [
    "ExecutionContext",
    "ExecutionEvent",
    "ExecutionEventType",
    "ExecutionState",
    "Saga",
    "Schedule",
    "ScheduleStatus",
    "ScheduleType",
    "TaskFunction",
    "TaskMetadata",
    "Workflow",
    "call",
    "cron",
    "interval",
    "logger",
    "once",
    "pause",
    "task",
    "workflow",
]

_WHERE = {
    "ExecutionContext": "flux.context",
    "ExecutionEvent": "flux.domain.events",
    "ExecutionEventType": "flux.domain.events",
    "ExecutionState": "flux.domain.events",
    "Saga": "flux.saga",
    "Schedule": "flux.domain.schedule",
    "ScheduleStatus": "flux.domain.schedule",
    "ScheduleType": "flux.domain.schedule",
    "TaskFunction": "flux.task",
    "TaskMetadata": "flux.task",
    "Workflow": "flux.workflow",
    "call": "flux.tasks",
    "cron": "flux.domain.schedule",
    "interval": "flux.domain.schedule",
    "logger": "flux.replay_log",
    "once": "flux.domain.schedule",
    "pause": "flux.tasks",
    "task": "flux.task",
    "workflow": "flux.workflow",
}

# Any other public name of these modules is found too (`flux.parallel`, `flux.LocalFileStorage`,
# `flux.SecretManager`), as Flux programs expect; they are imported only when such a name is
# asked for.
_FALLBACK = ("flux.tasks", "flux.output_storage", "flux.secret_managers")


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name.startswith("_"):
        raise AttributeError(f"module 'flux' has no attribute {name!r}")
    else:
        for candidate in _FALLBACK:
            found = importlib.import_module(candidate)
            if name in getattr(found, "__all__", ()):
                value = getattr(found, name)
                break
        else:
            raise AttributeError(f"module 'flux' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`flux.task` and `flux.workflow` are the decorators, though modules of those names exist:
    importing the module `flux.task` must not put the module where the decorator is."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("task", "workflow", "logger") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
