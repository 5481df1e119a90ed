"""Flux programs import what they need from where Flux documents it: the top-level names, the
modules, and Flux's fallback to the public names of flux.tasks, flux.output_storage and
flux.secret_managers; importing flux stays cheap."""

from __future__ import annotations

import datetime as dt
import importlib
import subprocess
import sys

import pytest

import flux


def test_top_level_names_are_flux_s() -> None:
    from flux.context import ExecutionContext
    from flux.domain.events import ExecutionEvent, ExecutionEventType, ExecutionState
    from flux.domain.schedule import Schedule, ScheduleStatus, ScheduleType, cron, interval, once
    from flux.task import TaskMetadata, task
    from flux.tasks import call, pause
    from flux.workflow import workflow

    expected = {
        "workflow": workflow, "task": task, "call": call, "pause": pause, "TaskMetadata": TaskMetadata,
        "ExecutionContext": ExecutionContext, "ExecutionEvent": ExecutionEvent,
        "ExecutionEventType": ExecutionEventType, "ExecutionState": ExecutionState, "cron": cron,
        "interval": interval, "once": once, "Schedule": Schedule, "ScheduleType": ScheduleType,
        "ScheduleStatus": ScheduleStatus,
    }
    for name, value in expected.items():
        assert getattr(flux, name) is value, name
        assert name in flux.__all__


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("parallel", "flux.tasks"), ("Graph", "flux.tasks"), ("now", "flux.tasks"), ("progress", "flux.tasks"),
        ("LocalFileStorage", "flux.output_storage"), ("InlineOutputStorage", "flux.output_storage"),
        ("OutputStorageReference", "flux.output_storage"), ("SecretManager", "flux.secret_managers"),
    ],
)
def test_other_public_names_fall_back_to_flux_s_modules(name: str, module: str) -> None:
    assert getattr(flux, name) is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        _ = flux.no_such_thing  # type: ignore[attr-defined]


def test_the_modules_flux_programs_import() -> None:
    from flux.domain.events import ExecutionEventType
    from flux.domain.execution_context import ExecutionContext
    from flux.domain.schedule import cron
    from flux.errors import PauseRequested, WorkflowNotFoundError
    from flux.output_storage import OutputStorage
    from flux.secret_managers import SecretManager
    from flux.task import task
    from flux.tasks.call import call
    from flux.tasks.graph import Graph
    from flux.tasks.pause import pause
    from flux.tasks.progress import progress
    from flux.workflow import workflow

    assert flux.task is task and flux.workflow is workflow  # the decorators, not the modules
    assert ExecutionContext is flux.ExecutionContext and ExecutionEventType.TASK_PAUSED.value == "TASK_PAUSED"
    assert flux.tasks.pause is pause and flux.tasks.call is call and flux.tasks.progress is progress
    assert flux.tasks.Graph is Graph and callable(cron)
    assert issubclass(PauseRequested, flux.errors.ExecutionError)
    assert issubclass(WorkflowNotFoundError, flux.errors.ExecutionError)
    assert OutputStorage.__abstractmethods__ == {"store", "retrieve", "delete"}
    assert SecretManager.__abstractmethods__ == {"save", "remove", "get", "all"}


def test_importing_flux_imports_none_of_its_modules() -> None:
    code = "import flux, sys; print(sorted(m for m in sys.modules if m.startswith('flux')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['flux']"


def test_schedules_are_checked_and_say_when_they_run_next() -> None:
    base = dt.datetime(2026, 3, 6, 8, 30, tzinfo=dt.UTC)  # a Friday
    assert flux.cron("0 9 * * MON-FRI").next_run_time(base) == dt.datetime(2026, 3, 6, 9, 0, tzinfo=dt.UTC)
    assert flux.cron("0 9 * * MON-FRI").next_run_time(base.replace(hour=10)) == dt.datetime(
        2026, 3, 9, 9, 0, tzinfo=dt.UTC
    )
    assert flux.interval(minutes=30).next_run_time(base) == base + dt.timedelta(minutes=30)
    assert flux.once(base + dt.timedelta(days=1)).next_run_time(base) == base + dt.timedelta(days=1)
    assert flux.cron("@daily").type == flux.ScheduleType.CRON
    with pytest.raises(ValueError, match="Invalid cron expression"):
        flux.cron("61 * * * *")
    with pytest.raises(ValueError, match="Invalid timezone"):
        flux.cron("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="must be a positive duration"):
        flux.interval()
