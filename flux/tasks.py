"""Built-in tasks: `pause`, and the idempotency key of the running task call."""

from __future__ import annotations

import os
import sys
from typing import Any

from engine import traps

__all__ = ["idempotency_key", "pause"]


async def pause(name: str) -> Any:
    """Pauses the execution here. Resuming it makes this call return the resume input.

    Raises:
        RuntimeError: outside a running workflow.
    """
    frame = sys._getframe(1)
    src = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    return await traps.pause(name, src)


def idempotency_key() -> str:
    """A key for the running task call, the same on every attempt and replay: hand it to
    external systems so that a task run again after a crash does not act twice."""
    return traps.idempotency_key()
