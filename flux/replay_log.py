"""A logger for workflow code that stays silent while the engine replays recorded history.

Workflow code runs again on every resume, over what the journal holds; a plain `logging` call
in it would repeat its lines each time. `flux.logger` (also `ctx.logger`) drops a record while
the running workflow replays (`ctx.is_replaying`), so each line is logged once, when the code
runs live. In task bodies (they only run live) and outside workflows it logs as usual. It logs
through `logging.getLogger("flux.workflow")` and adds `execution_id` to each record.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from flux._engine import traps

__all__ = ["ReplaySafeLogger", "logger"]


class ReplaySafeLogger(logging.LoggerAdapter[logging.Logger]):
    """`logging.LoggerAdapter` whose records are dropped while the workflow replays."""

    def isEnabledFor(self, level: int) -> bool:
        return not traps.replaying() and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            msg, given = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **given)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        executor = traps.current_executor()
        if executor is not None:
            extra = dict(kwargs.get("extra") or {})
            extra.setdefault("execution_id", executor.execution_id)
            kwargs["extra"] = extra
        kwargs.setdefault("stacklevel", 3)
        return msg, kwargs


logger = ReplaySafeLogger(logging.getLogger("flux.workflow"), {})
