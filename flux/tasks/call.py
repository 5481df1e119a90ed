"""`call`: a sub-workflow run as one task call of the running workflow (SPEC.md 4.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

from flux._engine import traps
from flux.tasks.builtins import _src

if TYPE_CHECKING:
    from flux.workflow import Workflow

__all__ = ["call"]

In = TypeVar("In")
Out = TypeVar("Out")


# A type checker sees the child's input and output types: with one argument it must be the
# child's input; a call by name is unchecked.
@overload
async def call(workflow: Workflow[Any, Out]) -> Out: ...
@overload
async def call(workflow: Workflow[In, Out], input: In, /) -> Out: ...
@overload
async def call(workflow: Workflow[Any, Out], first: Any, second: Any, /, *rest: Any) -> Out: ...
@overload
async def call(workflow: str, /, *args: Any) -> Any: ...


async def call(workflow: Workflow[Any, Any] | str, *args: Any) -> Any:
    """Runs a sub-workflow with its own journal and returns its output.

    `workflow` is a workflow, or the name of one: a workflow of the calling workflow's module
    (by attribute or workflow name), else any loaded workflow of that name or of that
    `"namespace/name"`. Its input is the single argument given, a tuple of them when several
    are given, None when none is.

    The parent records the child's execution id (derived from the parent's id and the call id,
    so a resumed parent finds the same child); the child's header records its parent. A parent
    that crashes while the child runs resumes both; completed tasks of neither run again.

    Raises:
        ExecutionError: when the child fails (its exception is the cause).
        WorkflowNotFoundError: when no workflow of that name is loaded.
    """
    from flux.workflow import run_child

    value = args[0] if len(args) == 1 else (tuple(args) if args else None)
    return await run_child(workflow, value, _src())


traps.takes_site(call.__code__)  # made into a task of its own, it names the line that made it
