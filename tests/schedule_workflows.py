"""Workflows of the schedule tests (loaded by `flux worker` in subprocesses too)."""

from __future__ import annotations

from typing import Any

from flux import workflow


@workflow
async def stamped(ctx: Any) -> dict[str, Any]:
    at = ctx.scheduled_at
    return {"schedule": ctx.schedule, "at": None if at is None else at.isoformat()}
