"""What every built-in of `flux.tasks` that records or waits has in common. The tests of each
built-in are in the file named for it: test_parallel (parallel, pipeline, map), test_graph,
test_subworkflows (call), test_recorded_values (now, uuid4, randint, randrange, choice),
test_timers_and_pauses (sleep, pause), test_cancellation, test_secrets, test_output_storage and
test_cache; tests/builtin_workflows.py holds what they share, and tests/test_builtins_crash.py the
real SIGKILL tests of them all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flux.errors import OutsideWorkflowError
from flux.tasks import call, choice, now, pause, sleep, uuid4
from tests.builtin_workflows import kid


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: now(), "now()"),
        (lambda: uuid4(), "uuid4()"),
        (lambda: choice([1]), "choice()"),
        (lambda: sleep(1), "sleep()"),
        (lambda: pause("p"), "pause()"),
        (lambda: call(kid, 1), "call()"),
    ],
)
def test_the_recording_builtins_refuse_to_run_outside_a_workflow(make: Any, name: str) -> None:
    with pytest.raises(
        OutsideWorkflowError,
        match=f"{name.replace('(', '[(]').replace(')', '[)]')} can only be awaited inside a running workflow",
    ):
        asyncio.run(make())
