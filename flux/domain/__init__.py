"""Flux's domain types, as Flux code imports them: `flux.domain.events`,
`flux.domain.execution_context`, `flux.domain.schedule`, `flux.domain.resource_request`.

Names are imported from their modules when first used, so importing one of them stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ExecutionEvent": "flux.domain.events",
    "ExecutionEventType": "flux.domain.events",
    "ExecutionState": "flux.domain.events",
    "ExecutionContext": "flux.domain.execution_context",
    "ResourceRequest": "flux.domain.resource_request",
    "Schedule": "flux.domain.schedule",
    "ScheduleType": "flux.domain.schedule",
    "ScheduleStatus": "flux.domain.schedule",
    "CronSchedule": "flux.domain.schedule",
    "IntervalSchedule": "flux.domain.schedule",
    "OnceSchedule": "flux.domain.schedule",
    "cron": "flux.domain.schedule",
    "interval": "flux.domain.schedule",
    "once": "flux.domain.schedule",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'flux.domain' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
