"""`pause`: the workflow waits here for an answer (an approval gate), or until a time.

Each pause takes a call slot (SPEC.md 4.1). The run ends paused once every branch still running
waits at one (SPEC.md 4.5); resuming the execution makes the pause return the resume input.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flux._engine import traps
from flux._engine.errors import InvalidOptionError
from flux.tasks.builtins import _seconds, _src

__all__ = ["pause"]


async def pause(
    name: str,
    output: Any = None,
    *,
    until: dt.datetime | float | None = None,
    after: dt.timedelta | float | None = None,
    on_complete: str | None = None,
    delay: dt.timedelta | float | None = None,
) -> Any:
    """Pauses the execution here. Resuming it makes this call return the resume input.

    Args:
        name: names the pause (`flux resume ID --pause NAME` answers it).
        output: a value shown with the pause: `WORKFLOW_PAUSED`'s value is
            `{"name": name, "output": output}` (for example what an approver should look at).
        until: a datetime (a naive one is taken as UTC) or epoch seconds: after that time the
            execution may continue without an input (this call then returns None).
        after: the same, relative to now (a timedelta or seconds); `delay` is another name for it.
        on_complete: the execution id of another execution of the store: once that one has
            finished, the execution may continue without an input.

    At most one of `until`, `after` and `on_complete` may be given. Nothing resumes a paused
    execution on its own: `flux resume` (or `flux recover`) continues it.

    Raises:
        InvalidOptionError: for a bad or a second wake condition.
        OutsideWorkflowError: outside a running workflow.
    """
    if not isinstance(name, str) or not name:
        raise InvalidOptionError(f"pause name={name!r} must be a non-empty str")
    if after is not None and delay is not None:
        raise InvalidOptionError("give pause() `after` or `delay`, not both")
    after = after if after is not None else delay
    given = [k for k, v in (("until", until), ("after", after), ("on_complete", on_complete)) if v is not None]
    if len(given) > 1:
        raise InvalidOptionError(f"pause() accepts at most one of until=, after=, on_complete=; got {', '.join(given)}")
    wake_at: float | None = None
    if until is not None:
        if isinstance(until, dt.datetime):
            wake_at = (until if until.tzinfo is not None else until.replace(tzinfo=dt.UTC)).timestamp()
        else:
            wake_at = _seconds(until, "until")
    elif after is not None:
        seconds = _seconds(after, "after")
        if seconds <= 0:
            raise InvalidOptionError(f"pause(after={after!r}) must be a positive duration")
        wake_at = (traps.now_seconds() or 0.0) + seconds
    if on_complete is not None and (not isinstance(on_complete, str) or not on_complete):
        raise InvalidOptionError(f"pause(on_complete={on_complete!r}) must be an execution id")
    return await traps.pause(name, _src(), wake_at, output, on_complete)


traps.takes_site(pause.__code__)  # made into a task of its own, it names the line that made it
