"""What happens when a task fails: retries with durable backoff, timeouts, fallback, rollback.

Every step is a record (SPEC.md "Failure handling"), so a run that dies anywhere in here resumes
at the same step: a backoff waits only for what is left of it, no recorded attempt runs again,
and a fallback or rollback that was recorded as finished does not run again.

    attempt 0 ─fail─> attempt_failed{retry_at} ─wait─> retry_started{1} ─> attempt 1 ─> …
    last attempt fails ─> attempt_failed{retry_at: null} ─> fallback_started ─> task_completed
                                                          │                 └fail> fallback_failed ─> task_failed
                                                          └> rollback_started ─> rollback_completed|failed ─> task_failed
"""  # noqa: E501 - the diagram's branches line up under the step they leave

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flux._engine import records as R
from flux._engine import traps
from flux._engine.clock import finishes_within
from flux._engine.codec import encode
from flux._engine.errors import (
    EngineError,
    ExecutionTimeoutError,
    FallbackError,
    RetryError,
    RollbackError,
)
from flux._engine.isolate import TimedOut, run_isolated

if TYPE_CHECKING:
    from flux._engine.calls import TaskSpec
    from flux._engine.executor import Executor
    from flux._engine.history import CallHistory as RecordedCall

__all__ = ["TaskOptions", "attempt_prefix", "run_attempt", "run_handled"]

log = logging.getLogger("flux")


@dataclass(frozen=True)
class TaskOptions:
    """How a task's failures are handled. Checked by `flux` when the decorator runs."""

    retry_max_attempts: int = 0
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    timeout: float | None = None
    fallback: Callable[..., Any] | None = None
    rollback: Callable[..., Any] | None = None
    retry_max_delay: float | None = 600.0  # no wait is longer (None: no limit)
    retry_jitter: float = 0.0  # each wait is drawn from [wait * (1 - jitter), wait]
    retry_on: tuple[type[BaseException], ...] = ()  # when given, only these are retried
    non_retryable: tuple[type[BaseException], ...] = ()  # never retried

    @property
    def plain(self) -> bool:
        return self.retry_max_attempts == 0 and self.timeout is None and self.fallback is None and self.rollback is None

    def wait_before(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` (1-based retries), before jitter:
        `retry_delay * retry_backoff ** (attempt - 1)`, at most `retry_max_delay`."""
        try:
            wait = self.retry_delay * self.retry_backoff ** (attempt - 1)
        except OverflowError:
            wait = float("inf")
        if self.retry_max_delay is not None:
            wait = min(wait, self.retry_max_delay)
        return wait

    def jittered(self, wait: float) -> float:
        """The wait actually taken: drawn at random when `retry_jitter` is set. It is recorded
        (`retry_at`, `delay`), so a resumed run waits what the recorded one chose."""
        if not self.retry_jitter or wait <= 0:
            return wait
        return wait * (1.0 - self.retry_jitter * _jitter_rng.random())

    def retries(self, exc: BaseException) -> bool:
        """Whether an attempt that raised `exc` may be retried."""
        if self.non_retryable and isinstance(exc, self.non_retryable):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)


_jitter_rng = random.SystemRandom()


def attempt_prefix(call_id: str, attempt: int) -> str:
    """The call-id prefix of the tasks an attempt's body calls: `<call_id>.` for the first,
    `<call_id>.a<k>.` for retry k, so a retry never replays what a failed attempt recorded
    (SPEC.md 4.3)."""
    return f"{call_id}." if attempt == 0 else f"{call_id}.a{attempt}."


async def run_attempt(
    ex: Executor, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], call_id: str, attempt: int = 0
) -> Any:
    """Runs the body once, within the task's timeout if it has one."""
    branch = traps.Branch(ex, attempt_prefix(call_id, attempt), call_id=call_id)
    timeout = spec.options.timeout if spec.options is not None else None
    if spec.secrets:
        kwargs = {**kwargs, "secrets": ex.reveal(spec, spec.name)}
    if spec.inject is not None:
        kwargs = {**kwargs, **spec.inject(call_id, spec.name)}
    if timeout is None:
        token = traps.enter(branch)
        try:
            return await spec.invoke(args, kwargs)
        finally:
            traps.leave(token)
    if not spec.is_async:
        token = traps.enter(branch)
        try:
            return await run_isolated(spec.fn, args, kwargs, timeout, ex.clock, ex.resolve)
        except TimedOut:
            raise ExecutionTimeoutError("Task", spec.name, call_id, timeout) from None
        finally:
            traps.leave(token)
    context = contextvars.copy_context()
    context.run(traps.enter, branch)
    # Created directly, not through the task factory: this task must not take a call slot,
    # since replay, which never runs the body, would not take it either.
    body: asyncio.Task[Any] = asyncio.Task(spec.fn(*args, **kwargs), context=context)
    try:
        in_time = await finishes_within(body, ex.clock, timeout)
    except BaseException:
        body.cancel()
        raise
    if not in_time:
        body.cancel()
        await asyncio.gather(body, return_exceptions=True)
        raise ExecutionTimeoutError("Task", spec.name, call_id, timeout)
    return body.result()


async def _run_handler(
    ex: Executor, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], prefix: str, call_id: str
) -> Any:
    """Runs a fallback or rollback; tasks it calls get call ids under `prefix`."""
    token = traps.enter(traps.Branch(ex, prefix, call_id=call_id))
    ex._busy += 1
    try:
        if inspect.iscoroutinefunction(fn) or getattr(fn, "__flux_task__", False):
            return await fn(*args, **kwargs)
        import anyio.to_thread  # here: a workflow of async tasks never needs it

        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
    finally:
        ex._idle()
        traps.leave(token)


def _is_engine_trouble(ex: Executor, exc: BaseException) -> bool:
    return isinstance(exc, EngineError) or ex.fatal is not None


async def run_handled(
    ex: Executor,
    spec: TaskSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    call_id: str,
    name: str,
    call: RecordedCall | None,
) -> Any:
    """Runs a task call with options from wherever its records left it."""
    opts = spec.options
    assert opts is not None
    now = ex.clock.now
    failures = list(call.failures or ()) if call is not None else []
    retries = set(call.retries or ()) if call is not None else set()
    handlers = dict(call.handlers or {}) if call is not None else {}
    last_error: BaseException | None = None

    if not handlers and not (failures and failures[-1].get("retry_at") is None):
        attempt = len(failures)
        while True:
            if attempt > 0 and attempt not in retries:
                wait = failures[-1]["retry_at"] - now()
                if wait > 0:
                    await ex.durable()  # the failure and its wake-up time survive a crash in the wait
                    await ex.wait_on_clock(wait)
                ex.append({"seq": 0, "kind": R.RETRY_STARTED, "at": ex.stamp(), "call_id": call_id, "attempt": attempt})
            await ex.durable()
            ex._busy += 1
            try:
                result = await run_attempt(ex, spec, args, kwargs, call_id, attempt)
                if spec.storage is None and not spec.sensitive:
                    encode(result, (None, "task {!r} result", name))  # an unrecordable result fails the attempt
            except Exception as exc:
                if _is_engine_trouble(ex, exc):
                    raise
                last_error = exc
                more = attempt < opts.retry_max_attempts and opts.retries(exc)
                if not more and attempt == 0 and opts.fallback is None and opts.rollback is None:
                    break  # not retried, nothing follows: the failure is the task's
                delay = opts.jittered(opts.wait_before(attempt + 1)) if more else None
                record = {"seq": 0, "kind": R.ATTEMPT_FAILED, "at": ex.stamp(), "call_id": call_id,
                          "attempt": attempt, "error": ex.error_tree(exc)[0],
                          "retry_at": now() + delay if delay is not None else None}
                if delay is not None:
                    record["delay"] = delay
                if opts.retry_max_attempts:
                    record["max_attempts"] = opts.retry_max_attempts
                    record["backoff"] = opts.retry_backoff
                ex.append(record)
                failures.append(record)
                if more:
                    log.info(
                        "execution %s: task %r (call %s) attempt %d failed (%s: %s); retrying in %.3g s",
                        ex.execution_id, name, call_id, attempt, type(exc).__name__, exc, delay,
                    )
                if not more:
                    break
                attempt += 1
                continue
            finally:
                ex._idle()
            return ex.complete(call_id, name, spec, result, {"attempt": attempt} if attempt else None)
        attempts = attempt + 1
    else:
        attempts = len(failures)
        last_error = ex.recorded(failures[-1]["error"], failures[-1]["seq"], stored=False) if failures else None

    error: BaseException | None = last_error
    if opts.retry_max_attempts > 0 and (attempts > 1 or last_error is None or opts.retries(last_error)):
        error = RetryError(
            last_error, opts.retry_max_attempts, opts.retry_delay, opts.retry_backoff, name, attempts_made=attempts
        )
    if opts.fallback is not None:
        failed = handlers.get(R.FALLBACK_FAILED)
        if failed is None:
            if R.FALLBACK_STARTED not in handlers:
                ex.append({"seq": 0, "kind": R.FALLBACK_STARTED, "at": ex.stamp(), "call_id": call_id})
            await ex.durable()
            try:
                result = await _run_handler(ex, opts.fallback, args, kwargs, f"{call_id}.f.", call_id)
                encode(result, (None, "fallback of task {!r} result", name))
            except Exception as exc:
                if _is_engine_trouble(ex, exc):
                    raise
                fallback_error: BaseException = exc
                ex.append({"seq": 0, "kind": R.FALLBACK_FAILED, "at": ex.stamp(), "call_id": call_id,
                           "error": ex.error_tree(exc)[0]})
            else:
                return ex.complete(call_id, name, spec, result, {"fallback": True})
        else:
            fallback_error = ex.recorded(failed["error"], failed["seq"], stored=False)
        error = FallbackError(error, fallback_error, name)
    elif opts.rollback is not None:
        ended = handlers.get(R.ROLLBACK_COMPLETED) or handlers.get(R.ROLLBACK_FAILED)
        if ended is None:
            if R.ROLLBACK_STARTED not in handlers:
                ex.append({"seq": 0, "kind": R.ROLLBACK_STARTED, "at": ex.stamp(), "call_id": call_id})
            await ex.durable()
            try:
                await _run_handler(ex, opts.rollback, args, kwargs, f"{call_id}.r.", call_id)
            except Exception as exc:
                if _is_engine_trouble(ex, exc):
                    raise
                ended = {"seq": 0, "kind": R.ROLLBACK_FAILED, "at": ex.stamp(), "call_id": call_id,
                         "error": ex.error_tree(exc)[0]}
            else:
                ended = {"seq": 0, "kind": R.ROLLBACK_COMPLETED, "at": ex.stamp(), "call_id": call_id}
            ex.append(ended)
        if ended["kind"] == R.ROLLBACK_FAILED:
            error = RollbackError(error, ex.recorded(ended["error"], ended["seq"], stored=False), name)
    assert error is not None
    raise ex.fail(call_id, error)

