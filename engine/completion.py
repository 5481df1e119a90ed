"""Completion order made durable: `asyncio.wait`, `as_completed`, `wait_for`, `timeout` in workflows.

Which of several tasks finished first (or whether a timeout came first) is timing, and on replay
every recorded result is there at once. Inside a workflow these functions therefore record what
they observed (a `value_recorded` of the tasks found done, by key) and a replay hands back the
same observation, waiting only for the tasks it names (SPEC.md 4.1). Outside a workflow, in a
task body, and without a timeout or another `return_when` they are asyncio's own.

A task is known by its name: the engine names each task made in a workflow after its branch
(`"2."`), so the key does not depend on the order of a set; a name given by the code is its key.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any, TypeVar

from flux._engine import traps
from flux._engine.errors import InvalidOptionError
from flux._engine.sites import site_of, user_frame

__all__ = ["adopt", "as_completed", "install", "original_wait", "wait", "wait_for"]

original_wait = asyncio.wait
original_as_completed = asyncio.as_completed
original_wait_for = asyncio.wait_for
original_timeout = asyncio.timeout
original_timeout_at = asyncio.timeout_at

T = TypeVar("T")

WAIT = "asyncio.wait"
WAIT_FOR = "asyncio.wait_for"
TIMEOUT = "asyncio.timeout"
AS_COMPLETED = "asyncio.as_completed"
_MISSING: Any = object()


def install() -> None:
    """Puts the recording versions in the `asyncio` module (idempotent); outside a workflow
    they call asyncio's own."""
    asyncio.wait = wait  # type: ignore[assignment]
    asyncio.as_completed = as_completed  # type: ignore[assignment]
    asyncio.wait_for = wait_for  # type: ignore[assignment]
    asyncio.timeout = timeout
    asyncio.timeout_at = timeout_at


def adopt(namespace: dict[str, Any]) -> None:
    """Rebinds names a workflow's module imported from asyncio before Flux was imported
    (`from asyncio import wait`) to the recording versions."""
    for name, value in list(namespace.items()):
        if value is original_wait:
            namespace[name] = wait
        elif value is original_as_completed:
            namespace[name] = as_completed
        elif value is original_wait_for:
            namespace[name] = wait_for
        elif value is original_timeout:
            namespace[name] = timeout
        elif value is original_timeout_at:
            namespace[name] = timeout_at


def _recording() -> traps.Branch | None:
    """The branch to record in: workflow code, not a task body (which runs live every time)."""
    branch = traps.current_branch()
    return branch if branch is not None and branch.call_id is None else None


def _site() -> str:
    frame = user_frame(1)
    return "?" if frame is None else site_of(frame)


def _keys(futures: list[asyncio.Future[Any]], ordered: bool, what: str) -> list[str]:
    """One key per future: a task's name; a position for another future of a list."""
    keys: list[str] = []
    for i, fut in enumerate(futures):
        if isinstance(fut, asyncio.Task):
            keys.append(fut.get_name())
        elif ordered:
            keys.append(f"#{i}")
        else:
            raise InvalidOptionError(
                f"{what} in a workflow was given a set holding a future that is not an asyncio task "
                f"({type(fut).__name__}): pass a list, or make it a task with asyncio.ensure_future()"
            )
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise InvalidOptionError(
            f"{what} in a workflow was given two tasks named {twice!r}: give each task a name of its own, or none"
        )
    return keys


def _recorded(branch: traps.Branch, name: str, src: str) -> tuple[str, Any]:
    """The slot of one observation and what the journal recorded there (_MISSING when live)."""
    executor = branch.executor
    call_id, call = executor.observe(branch, name, src)
    return call_id, (call.value if call is not None else _MISSING)


async def wait(
    fs: Iterable[asyncio.Future[Any]], *, timeout: float | None = None, return_when: str = asyncio.ALL_COMPLETED
) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    """`asyncio.wait`; in workflow code with a timeout or another `return_when`, recorded."""
    branch = _recording()
    if branch is None or (return_when == asyncio.ALL_COMPLETED and timeout is None):
        return await original_wait(fs, timeout=timeout, return_when=return_when)
    if asyncio.isfuture(fs) or asyncio.iscoroutine(fs):
        raise TypeError(f"expect a list of futures, not {type(fs).__name__}")
    ordered = not isinstance(fs, (set, frozenset))
    futures = list(dict.fromkeys(fs))
    if not futures:
        raise ValueError("Set of Tasks/Futures is empty.")
    if return_when not in (asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION, asyncio.ALL_COMPLETED):
        raise ValueError(f"Invalid return_when value: {return_when}")
    if any(asyncio.iscoroutine(f) for f in futures):
        raise TypeError("Passing coroutines is forbidden, use tasks explicitly.")
    return await _observed_wait(branch, WAIT, futures, _keys(futures, ordered, "asyncio.wait()"), timeout, return_when)


async def _observed_wait(
    branch: traps.Branch,
    name: str,
    futures: list[asyncio.Future[Any]],
    keys: list[str],
    timeout: float | None,
    return_when: str,
) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    src = _site()
    call_id, recorded = _recorded(branch, name, src)
    if recorded is not _MISSING:
        known = isinstance(recorded, list) and all(isinstance(k, str) for k in recorded)
        if not (known and set(recorded) <= set(keys)):
            branch.executor.observation_diverged(call_id, f"{name}() of {sorted(keys)}", src)
        named = set(recorded)
        done = {f for f, k in zip(futures, keys, strict=True) if k in named}
        # A live wait always lets the loop turn, so the tasks made before it had started by
        # the time it returned: so does a replay, even of an observation that found none done.
        if done:
            await original_wait(done)
        else:
            await asyncio.sleep(0)
        return done, set(futures) - done
    done, pending = await original_wait(futures, timeout=timeout, return_when=return_when)
    branch.executor.observed(call_id, name, sorted(k for f, k in zip(futures, keys, strict=True) if f in done), src)
    return done, pending


async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for`; in workflow code with a timeout, a recorded `wait` of one task.

    The awaitable always runs as a task of its own (as asyncio 3.11 does; 3.12 does not), so
    its call ids are the same on every Python. A timeout cancels it (its running call records
    `task_cancelled`) and raises TimeoutError, on replay too.
    """
    branch = _recording()
    if timeout is None or branch is None:
        return await original_wait_for(aw, timeout)
    inner = asyncio.ensure_future(aw)
    try:
        done, _ = await _observed_wait(
            branch, WAIT_FOR, [inner], _keys([inner], True, "asyncio.wait_for()"), max(timeout, 0.0),
            asyncio.ALL_COMPLETED,
        )
    except BaseException:
        inner.cancel()
        raise
    if done:
        return inner.result()
    inner.cancel()
    await original_wait([inner])  # its cancellation done (raises only if this caller is cancelled)
    if not inner.cancelled():  # finished while being cancelled: asyncio.wait_for gives its result too
        return inner.result()
    raise TimeoutError


def as_completed(fs: Iterable[Any], *, timeout: float | None = None) -> Iterator[Awaitable[Any]]:
    """`asyncio.as_completed`; in workflow code each result handed out is a recorded observation.

    Coroutines are made into tasks in the order given (asyncio makes them in a set's order,
    which changes from run to run), so their call ids are stable too.
    """
    branch = _recording()
    if branch is None:
        return original_as_completed(fs, timeout=timeout)
    if asyncio.isfuture(fs) or asyncio.iscoroutine(fs):
        raise TypeError(f"expect an iterable of futures, not {type(fs).__name__}")
    ordered = not isinstance(fs, (set, frozenset))
    items = list(fs)
    if not ordered and any(asyncio.iscoroutine(f) for f in items):
        for f in items:
            if asyncio.iscoroutine(f):
                f.close()  # never started: no "never awaited" warning
        raise InvalidOptionError(
            "asyncio.as_completed() in a workflow was given a set of coroutines, whose order changes from run "
            "to run (and with it the call ids of their tasks): pass a list"
        )
    loop = asyncio.get_running_loop()
    futures = list(dict.fromkeys(asyncio.ensure_future(f, loop=loop) for f in items))
    return _Completions(futures, _keys(futures, ordered, "asyncio.as_completed()"), timeout, loop)


class _Completions:
    """What `as_completed` returns in workflow code: iterated, it gives one awaitable per
    future; iterated with `async for` (as Python 3.13 allows), the futures themselves."""

    def __init__(
        self,
        futures: list[asyncio.Future[Any]],
        keys: list[str],
        timeout: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._left = dict(zip(keys, futures, strict=True))  # not handed out yet
        self._key_of = {id(f): k for f, k in zip(futures, keys, strict=True)}
        self._finished: collections.deque[asyncio.Future[Any]] = collections.deque()  # in the order they finished
        self._given = 0
        self._count = len(futures)
        self._loop = loop
        self._wakeup: asyncio.Future[None] | None = None
        self._deadline = None if timeout is None else loop.time() + timeout
        for fut in futures:
            fut.add_done_callback(self._on_done)

    def _on_done(self, fut: asyncio.Future[Any]) -> None:
        self._finished.append(fut)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def __iter__(self) -> Iterator[Awaitable[Any]]:
        return self

    def __next__(self) -> Awaitable[Any]:
        if self._given >= self._count:
            raise StopIteration
        self._given += 1
        return self._result()

    def __aiter__(self) -> _Completions:
        return self

    async def __anext__(self) -> asyncio.Future[Any]:
        if not self._left:
            raise StopAsyncIteration
        return await self._take(_site())

    async def _result(self) -> Any:
        fut = await self._take(_site())
        return fut.result()

    async def _take(self, src: str) -> asyncio.Future[Any]:
        branch = _recording()
        if branch is None:  # awaited outside the workflow that made it: nothing to record in
            return await self._first(None)
        call_id, recorded = _recorded(branch, AS_COMPLETED, src)
        if recorded is not _MISSING:
            if recorded is None:
                raise TimeoutError
            if not isinstance(recorded, str) or recorded not in self._left:
                branch.executor.observation_diverged(call_id, f"asyncio.as_completed() of {sorted(self._left)}", src)
            fut = self._left.pop(recorded)
            if not fut.done():
                await original_wait([fut])
            return fut
        try:
            fut = await self._first(self._deadline)
        except TimeoutError:
            branch.executor.observed(call_id, AS_COMPLETED, None, src)
            raise
        branch.executor.observed(call_id, AS_COMPLETED, self._key_of[id(fut)], src)
        return fut

    async def _first(self, deadline: float | None) -> asyncio.Future[Any]:
        """The first future to finish among those not handed out yet, live."""
        while True:
            while self._finished:
                fut = self._finished.popleft()
                if self._left.pop(self._key_of[id(fut)], None) is not None:
                    return fut
            if deadline is not None and self._loop.time() >= deadline:
                raise TimeoutError
            self._wakeup = self._loop.create_future()
            timer = None if deadline is None else self._loop.call_at(deadline, _wake, self._wakeup)
            try:
                await self._wakeup
            finally:
                if timer is not None:
                    timer.cancel()
                self._wakeup = None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)



def timeout(delay: float | None) -> Any:
    """`asyncio.timeout`; in workflow code, whether it expired is recorded."""
    branch = _recording()
    if branch is None:
        return original_timeout(delay)
    return RecordedTimeout(branch, None if delay is None else asyncio.get_running_loop().time() + delay)


def timeout_at(when: float | None) -> Any:
    """`asyncio.timeout_at`; in workflow code, whether it expired is recorded."""
    branch = _recording()
    if branch is None:
        return original_timeout_at(when)
    return RecordedTimeout(branch, when)


class RecordedTimeout:
    """`asyncio.Timeout` for workflow code (SPEC.md 4.1). Entering takes a slot; the deadline
    passing records `true` at once (before the cancellation it sends lands anywhere), a block
    that ends first records `false`. The call the expiry interrupts records `task_cancelled`,
    even in the workflow's own task, so a replay meets the same cancellation there and, the
    expiry being recorded, turns it into TimeoutError as the live run did. A replay of a block
    that ended in time sets no timer."""

    def __init__(self, branch: traps.Branch, when: float | None) -> None:
        self._branch = branch
        self._when = when
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.Handle | None = None
        self._state = "created"
        self._recorded: Any = _MISSING
        self._call_id = ""
        self._src = "?"
        self._cancelling = 0

    def when(self) -> float | None:
        return self._when

    def expired(self) -> bool:
        return self._state in ("expiring", "expired")

    def reschedule(self, when: float | None) -> None:
        if self._state != "entered":
            raise RuntimeError("Timeout has not been entered" if self._state == "created"
                               else f"Cannot change state of {self._state} Timeout")
        self._when = when
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if when is None or self._recorded is False:  # replay of a block that ended in time
            return
        loop = asyncio.get_running_loop()
        self._handle = loop.call_soon(self._expire) if when <= loop.time() else loop.call_at(when, self._expire)

    def __repr__(self) -> str:
        return f"<Timeout [{self._state}] when={self._when}>"

    async def __aenter__(self) -> RecordedTimeout:
        if self._state != "created":
            raise RuntimeError("Timeout has already been entered")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Timeout should be used inside a task")
        self._src = _site()
        self._call_id, self._recorded = _recorded(self._branch, TIMEOUT, self._src)
        if self._recorded is not _MISSING and not isinstance(self._recorded, bool):
            found = f"{_short_value(self._recorded)}, not true or false,"
            self._branch.executor.observation_diverged(self._call_id, "an asyncio.timeout() block", self._src, found)
        self._task = task
        self._cancelling = task.cancelling()
        self._state = "entered"
        self.reschedule(self._when)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        assert self._task is not None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        executor = self._branch.executor
        cancelled = exc_type is asyncio.CancelledError
        if self._state == "expiring":
            self._state = "expired"
            executor.cancelled_by_code.discard(self._task)
            if self._task.uncancel() <= self._cancelling and cancelled:
                raise TimeoutError from exc
            return
        if self._recorded is True:
            # A replay: the deadline passed in the recorded run, and the call it interrupted
            # raised its recorded cancellation (or the block ended before it could land).
            self._state = "expired"
            if cancelled and self._task.cancelling() <= self._cancelling:
                raise TimeoutError from exc
            return
        self._state = "exited"
        # Ended in time: returned or raised. A cancellation that is not this block's (an outer
        # timeout's, a shutdown's) leaves it unrecorded unless the workflow's own code sent it,
        # as does the engine unwinding the run (a pause, parking, the end of a replay): the block
        # has not ended then, and starts its deadline again when the run is resumed.
        ended = exc_type is None or issubclass(exc_type, Exception)
        if self._recorded is _MISSING and (ended or (cancelled and self._task in executor.cancelled_by_code)):
            executor.observed(self._call_id, TIMEOUT, False, self._src)

    def _expire(self) -> None:
        assert self._task is not None
        executor = self._branch.executor
        if self._recorded is _MISSING:
            executor.observed(self._call_id, TIMEOUT, True, self._src)
            self._recorded = True
        executor.cancelled_by_code.add(self._task)
        self._task.cancel()
        self._state = "expiring"
        self._handle = None


def _short_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"

install()
