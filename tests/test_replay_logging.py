"""A logger for workflow code that stays silent while the engine replays recorded history
(`flux.logger`, `ctx.logger`), and `ctx.is_replaying`: each line is logged once, when the code
that logs it runs live, however many times the execution is resumed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import flux
from flux import ExecutionContext, task, workflow
from flux.tasks import pause

REPLAYING: list[tuple[str, bool]] = []


@task
async def step(n: int) -> int:
    flux.logger.info("in task %d", n)  # task bodies only run live: always logged
    return n


@workflow
async def chatty(ctx: ExecutionContext[None]) -> int:
    REPLAYING.append(("start", ctx.is_replaying))
    ctx.logger.info("before the first step")
    await step(1)
    REPLAYING.append(("after step 1", ctx.is_replaying))
    flux.logger.info("between the steps")
    await pause("wait")
    REPLAYING.append(("after the pause", ctx.is_replaying))
    flux.logger.warning("after the pause")
    await step(2)
    return 2


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flux.workflow"]


def test_workflow_logging_is_silent_while_the_run_replays(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flux.workflow")
    REPLAYING.clear()
    ctx = chatty.run()
    assert _lines(caplog) == ["before the first step", "in task 1", "between the steps"]
    assert REPLAYING == [("start", False), ("after step 1", False)]
    caplog.clear()
    REPLAYING.clear()
    done = chatty.resume(ctx.execution_id, "go")
    assert done.output == 2
    # The code before the pause ran again over the journal: nothing it logs is repeated.
    assert _lines(caplog) == ["after the pause", "in task 2"]
    assert REPLAYING == [("start", True), ("after step 1", True), ("after the pause", False)]
    records: list[Any] = [r for r in caplog.records if r.name == "flux.workflow"]
    assert all(getattr(r, "execution_id", None) == ctx.execution_id for r in records)


def test_outside_a_workflow_the_logger_logs_and_nothing_replays(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flux.workflow")
    flux.logger.info("plain")
    assert _lines(caplog) == ["plain"]
    assert ExecutionContext("x", "default", "wf").is_replaying is False
