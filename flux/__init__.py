"""Flux: durable workflows on plain files. Import `workflow`, `task` and `ExecutionContext` here."""

from __future__ import annotations

from flux.context import ExecutionContext
from flux.domain.events import ExecutionEvent, ExecutionEventType
from flux.saga import Saga
from flux.task import TaskFunction, task
from flux.workflow import Workflow, workflow

__all__ = ["ExecutionContext", "ExecutionEvent", "ExecutionEventType", "Saga", "TaskFunction", "Workflow", "task", "workflow"]
