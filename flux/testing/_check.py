"""Checks one workflow for one input (SPEC.md "Determinism testing"); needs no hypothesis.

Every property runs real executions, each in a store of its own under one temporary directory:
an uninterrupted run; the same run cut after each record of its journal and resumed; a replay of
its journal in this process and in another one with another PYTHONHASHSEED; runs whose task
bodies start after random delays. A run that went live is held to the uninterrupted run's output
only where the world answered it alike (flux/testing/_calls.py). The directory is deleted when
every property holds and kept for inspection when one does not. Limit: sub-workflows are checked
as single calls (a cut store holds the parent's journal only, as after a crash before the
child's journal was created).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from flux._engine import records as R
from flux._engine.clock import Clock
from flux._engine.codec import class_ref, encode
from flux._engine.errors import DeterminismError, EncodeError, InvalidOptionError, WorkflowLoadError
from flux._engine.history import fold
from flux._engine.journal import read_journal
from flux.loader import code_of, find_workflow
from flux.testing._calls import Call, calls_of, compare_calls
from flux.testing._compare import difference, short

if TYPE_CHECKING:
    from flux.context import ExecutionContext
    from flux.workflow import Workflow

__all__ = ["PROPERTIES", "CheckReport", "DeterminismError", "Options", "PropertyResult", "check_once", "run_checks"]

T = TypeVar("T")

PROPERTIES: dict[str, str] = {
    "run": "the uninterrupted run ends without engine trouble",
    "resume": "a run interrupted after any record and resumed returns what the uninterrupted run returned",
    "no-rerun": "no task whose completion was recorded before the interruption runs again",
    "replay": "replaying the finished journal returns the same output",
    "replay-subprocess": "replaying it in another process, with another PYTHONHASHSEED, returns the same output",
    "completion-order": "runs whose concurrent branches finish in other orders return the same output",
}

CHILD_ENV = "FLUX_TESTING_REPLAY_CHILD"  # set in the replay subprocess: checks refuse to start there
VERDICT_PREFIX = "flux.testing verdict: "
_MAX_PAUSES = 1000
_SUBPROCESS_TIMEOUT = 300.0
_ORDER_SEEDS = (1, 2)
# Other string hash seeds to replay under: two strings of a set keep their order under all 1 time in 256.
_HASH_SEEDS = 8
_MAX_DELAY = 0.002  # seconds: the most a task body is held back in a completion-order run


def determinism_error(report: CheckReport, note: str = "") -> DeterminismError:
    """The error that reports a failed check: its message names the input, each failed property,
    the record after which the run was cut and the divergence."""
    first = report.first_failure
    return DeterminismError(
        report.describe() + note,
        report=report,
        input=report.input,
        property=first.name if first else "",
        seq=first.seq if first else None,
    )


@dataclass
class PropertyResult:
    """How one property fared for one input."""

    name: str
    status: str = "pass"  # pass, fail, or skip (not checked, because an earlier property failed)
    detail: str = ""
    seq: int | None = None  # resume, no-rerun: the last record kept when the run was interrupted
    runs: int = 0  # executions (or replays) this property made

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def fail(self, detail: str, seq: int | None = None) -> None:
        if self.status != "fail":
            self.status, self.detail, self.seq = "fail", detail, seq


@dataclass
class CheckReport:
    """The result of every property for one input."""

    workflow: str
    input: Any
    status: str = ""  # how the uninterrupted run ended: completed, failed, cancelled
    output: Any = None  # its output (the exception of a failed run)
    records: int = 0  # records in its journal
    results: list[PropertyResult] = field(default_factory=list)
    seconds: float = 0.0
    store: str | None = None  # kept when a property failed; run/ holds the uninterrupted execution

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> list[PropertyResult]:
        return [r for r in self.results if not r.ok]

    @property
    def first_failure(self) -> PropertyResult | None:
        failures = self.failures
        return failures[0] if failures else None

    def as_json(self) -> dict[str, Any]:
        """The report as `flux check --json` prints it (SPEC.md 12); values in their recorded
        form (SPEC.md 3), a failed run's output as its error's type and message."""
        from flux._engine.codec import encode

        def recorded(value: Any) -> Any:
            if isinstance(value, BaseException):
                return {"type": type(value).__name__, "message": str(value)}
            try:
                return encode(value, "value")
            except Exception:  # noqa: BLE001 - a report shows what it can
                return repr(value)

        return {
            "workflow": self.workflow,
            "input": recorded(self.input),
            "ok": self.ok,
            "status": self.status,
            "output": recorded(self.output),
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "store": self.store,
            "properties": [
                {"name": r.name, "status": r.status, "detail": r.detail, "seq": r.seq, "runs": r.runs}
                for r in self.results
            ],
        }

    def describe(self) -> str:
        """A message naming the input, each failed property, where the run was cut, and why."""
        if self.ok:
            return f"workflow {self.workflow!r} passed every property for input {short(self.input)}"
        lines = [f"workflow {self.workflow!r} is not deterministic for input {short(self.input, 400)}:"]
        for r in self.failures:
            lines.append(f"- {r.name}: {PROPERTIES[r.name]}")
            lines.append(f"  {r.detail}")
        if self.store:
            lines.append(f"journals kept in {self.store} (run/ holds the uninterrupted execution)")
        return "\n".join(lines)


@dataclass(frozen=True)
class Options:
    resume_inputs: Any = None  # a value, or callable(pause_name) -> value
    cuts: int | str = "all"
    subprocess_replay: bool = True
    tmp_dir: str | None = None
    clock: Callable[[], Clock] | None = None


def make_options(
    resume_inputs: Any = None,
    cuts: int | str = "all",
    subprocess_replay: bool = True,
    tmp_dir: str | os.PathLike[str] | None = None,
    clock: Callable[[], Clock] | None = None,
) -> Options:
    """Checks the options shared by check_once and check_workflow.

    Raises:
        InvalidOptionError: naming the bad option.
    """
    if cuts != "all" and (type(cuts) is not int or cuts < 0):
        raise InvalidOptionError(f"cuts={cuts!r} must be 'all' or an int >= 0")
    if clock is not None and not callable(clock):
        raise InvalidOptionError(f"clock={clock!r} must be a callable that returns a new clock, such as VirtualClock")
    return Options(
        resume_inputs, cuts, bool(subprocess_replay), os.fspath(tmp_dir) if tmp_dir is not None else None, clock
    )


def check_once(
    wf: Workflow,
    input: Any = None,
    *,
    resume_inputs: Any = None,
    cuts: int | str = "all",
    subprocess_replay: bool = True,
    tmp_dir: str | os.PathLike[str] | None = None,
    clock: Callable[[], Clock] | None = None,
) -> CheckReport:
    """Checks every determinism property of `wf` for one input; never raises for a failed one.

    Args:
        wf: the workflow. With `subprocess_replay`, it must be defined at the top level of a
            .py file that another process can import (the journal's header names the file).
        input: the workflow's input.
        resume_inputs: what each `pause` returns: a value, or a callable taking the pause's name.
        cuts: "all" to interrupt the run after every record, or how many evenly spread records.
        subprocess_replay: also replay in another process with another PYTHONHASHSEED.
        tmp_dir: directory for the temporary stores (default: the system's temporary directory).
        clock: a callable returning a new engine clock for each run (e.g. VirtualClock).

    Returns:
        A CheckReport; `report.ok` tells whether every property held.

    Raises:
        InvalidOptionError: for a bad option.
        WorkflowLoadError: when another process could not load the workflow.
    """
    options = make_options(resume_inputs, cuts, subprocess_replay, tmp_dir, clock)
    return run_checks(wf, input, options)


def run_checks(wf: Workflow, value: Any, options: Options, *, stop_at_first_failure: bool = False) -> CheckReport:
    """check_once with checked options; `stop_at_first_failure` skips the properties left."""
    if os.environ.get(CHILD_ENV):
        raise RuntimeError(
            "a determinism check started while the replay subprocess was loading the workflow's file; "
            'guard the code that runs checks with `if __name__ == "__main__":`'
        )
    if options.subprocess_replay:
        require_importable(wf)
    if options.tmp_dir is not None:
        os.makedirs(options.tmp_dir, exist_ok=True)
    root = tempfile.mkdtemp(prefix="flux-check-", dir=options.tmp_dir)
    started = time.perf_counter()
    report = _Checker(wf, value, options, root).run(stop_at_first_failure)
    report.seconds = time.perf_counter() - started
    if report.ok:
        shutil.rmtree(root, ignore_errors=True)
    else:
        report.store = root
    return report


def require_importable(wf: Workflow) -> None:
    """Raises WorkflowLoadError unless another process can load `wf` from the file it is in."""
    code = code_of(wf)
    module = sys.modules.get(wf.fn.__module__)
    found = None
    if module is not None and getattr(module, "__file__", None):
        try:
            found = find_workflow(module, code["attr"])
        except WorkflowLoadError:
            found = None
    if found is not wf:
        raise WorkflowLoadError(
            f"workflow {wf.name!r} is not defined at the top level of a .py file ({code['file']}), so the "
            "replay in another process cannot load it; define it at module level, or pass subprocess_replay=False"
        )


class _Watch:
    """An observer (SPEC.md "Observers"): notes which calls run live, and may hold them back."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.live_calls: list[str] = []
        self.rng = rng

    def live(self, call_id: str) -> float | None:
        self.live_calls.append(call_id)
        return self.rng.uniform(0.0, _MAX_DELAY) if self.rng is not None else None


def _in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine in a new event loop (in a thread when this one already runs a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _error_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def _label(record: dict[str, Any]) -> str:
    call_id = record.get("call_id")
    return f"{record['kind']}, call {call_id}" if call_id else record["kind"]


def _cut_points(n: int, cuts: int | str) -> list[int]:
    """How many records to keep for each interrupted run: 1 .. n-1, or `cuts` of them evenly spread."""
    every = list(range(1, n))
    if isinstance(cuts, str) or cuts >= len(every):  # make_options let no str but "all" through
        return every
    if cuts == 0:
        return []
    if cuts == 1:
        return [every[len(every) // 2]]
    step = (len(every) - 1) / (cuts - 1)
    return sorted({every[round(i * step)] for i in range(cuts)})


def _child_path() -> str:
    return os.pathsep.join(os.getcwd() if p == "" else p for p in sys.path)


class _Checker:
    def __init__(self, wf: Workflow, value: Any, options: Options, root: str) -> None:
        self.wf = wf
        self.value = value
        self.options = options
        self.root = root
        self.report = CheckReport(wf.name, value, results=[PropertyResult(name) for name in PROPERTIES])
        self.runs = 0
        self.stop = False  # stop at the first failure (check_workflow) instead of checking everything
        self.pause_inputs: dict[str, Any] = {}  # pause call id -> what the uninterrupted run resumed it with
        # The uninterrupted run, set by check_run:
        self.execution_id = ""
        self.journal = ""
        self.lines: list[bytes] = []
        self.records: Sequence[dict[str, Any]] = []
        self.calls: dict[str, Call] = {}

    def result(self, name: str) -> PropertyResult:
        return next(r for r in self.report.results if r.name == name)

    # -- running executions ------------------------------------------------------------------

    def isolated(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Runs one execution or replay in a loop of its own, with `random` seeded for this run:
        each run draws other numbers, reproducibly, so workflow code that uses `random` directly
        diverges the same way every time the check runs."""
        index = self.runs
        self.runs += 1
        state = random.getstate()
        random.seed(f"flux.testing run {index}")
        try:
            return _in_own_loop(make)
        finally:
            random.setstate(state)

    def drive(self, home: str, execution_id: str | None = None, observer: Any = None) -> ExecutionContext[Any]:
        """Runs (or continues) an execution until it ends, resuming every pause."""
        return self.isolated(lambda: self._drive(home, execution_id, observer))

    async def _drive(self, home: str, execution_id: str | None, observer: Any) -> ExecutionContext[Any]:
        wf = self.wf
        clock = self.options.clock
        common: dict[str, Any] = {"store": home, "durability": "os", "observer": observer}
        if execution_id is None:
            ctx = await wf.run_async(self.value, clock=clock() if clock else None, **common)
        else:
            ctx = await wf.run_async(execution_id=execution_id, clock=clock() if clock else None, **common)
        resumes = 0
        while ctx.is_paused:
            resumes += 1
            if resumes > _MAX_PAUSES:
                raise RuntimeError(
                    f"the execution paused more than {_MAX_PAUSES} times; is a pause in an endless loop?"
                )
            call_id, name = _waiting_pause(home, ctx)
            if call_id not in self.pause_inputs:
                self.pause_inputs[call_id] = self._resume_input(name)
            ctx = await wf.run_async(
                self.pause_inputs[call_id], execution_id=ctx.execution_id, resume=True, pause=call_id,
                clock=clock() if clock else None, **common,
            )
        return ctx

    def _resume_input(self, name: str) -> Any:
        given = self.options.resume_inputs
        return given(name) if callable(given) else given

    def judge(self, ctx: ExecutionContext[Any], what: str) -> tuple[str | None, str | None]:
        """Compares a run that went live with the uninterrupted one: (what differs, or None;
        why it was compared with a replay of its own journal instead, or None).

        When every call asked for in both runs was answered alike, the run must ask for the same
        calls and return the same output. When a task answered otherwise on running again (a new
        timestamp, `now()`), the runs may part legitimately: the run is then only checked
        against a replay of its own journal.
        """
        read = read_journal(ctx.journal_path, ctx.execution_id)
        comparison = compare_calls(self.calls, calls_of(fold(read.records, read.path)))
        if comparison.answered_differently:
            call_id = comparison.answered_differently[0]
            reason = f"call {call_id} ({self.calls[call_id].describe()}) answered otherwise when it ran again"
            try:
                store = os.path.dirname(os.path.dirname(ctx.journal_path))
                _, outcome, _ = self.isolated(lambda: self.wf.replay_async(read, ctx.execution_id, store=store))
            except Exception as err:  # noqa: BLE001 - divergence and any other trouble are the finding
                return f"replaying the journal of the {what}: {_error_text(err)}", reason
            found = (
                f"status {outcome.status}, expected {ctx.status}" if outcome.status != ctx.status
                else difference(ctx.output, outcome.output)
            )
            if found:
                problem: str | None = (
                    f"the {what} {_outcome_text(ctx.status, ctx.output)}, a replay of its journal "
                    f"{_outcome_text(outcome.status, outcome.output)} ({found})"
                )
                return problem, reason
            return None, reason
        problem = self.differs_from(ctx.status, ctx.output, what)
        if problem is None and comparison.asked_differently:
            problem = f"the {what} {comparison.asked_differently}"
        return problem, None

    def differs_from(self, status: str, output: Any, what: str) -> str | None:
        report = self.report
        found = (
            f"status {status}, expected {report.status}"
            if status != report.status
            else difference(report.output, output)
        )
        if found is None:
            return None
        return (
            f"the {what} {_outcome_text(status, output)}, the uninterrupted run "
            f"{_outcome_text(report.status, report.output)} ({found})"
        )

    # -- the properties ----------------------------------------------------------------------

    def run(self, stop: bool) -> CheckReport:
        steps: list[Callable[[], None]] = [self.check_cuts, self.check_replay, self.check_subprocess, self.check_order]
        if not self.options.subprocess_replay:
            self.result("replay-subprocess").status = "skip"
            self.result("replay-subprocess").detail = "subprocess_replay=False"
            steps.remove(self.check_subprocess)
        if not self.check_run():
            self._skip_rest()
            return self.report
        self.stop = stop
        for step in steps:
            if stop and not self.report.ok:
                break
            step()
        self._skip_rest()
        return self.report

    def _skip_rest(self) -> None:
        for r in self.report.results:
            if r.status == "pass" and r.runs == 0 and r.name != "run":
                r.status = "skip"
                r.detail = r.detail or "not checked: an earlier property failed"

    def check_run(self) -> bool:
        result = self.result("run")
        result.runs = 1
        try:
            ctx = self.drive(os.path.join(self.root, "run"))
        except Exception as err:  # noqa: BLE001 - any trouble is this property's failure
            result.fail(f"the uninterrupted run stopped: {_error_text(err)}")
            return False
        report = self.report
        report.status, report.output = ctx.status, ctx.output
        self.execution_id = ctx.execution_id
        self.journal = ctx.journal_path
        with open(self.journal, "rb") as fh:
            self.lines = fh.read().splitlines(keepends=True)
        self.records = read_journal(self.journal, self.execution_id).records
        self.calls = calls_of(fold(self.records, self.journal))
        report.records = len(self.records)
        result.detail = f"{ctx.status} after {len(self.records)} records: {_outcome_text(ctx.status, ctx.output)}"
        return True

    def check_cuts(self) -> None:
        resume, rerun = self.result("resume"), self.result("no-rerun")
        names = {r["call_id"]: r.get("name", "?") for r in self.records if r["kind"] == R.TASK_STARTED}
        points = _cut_points(len(self.lines), self.options.cuts)
        not_compared: list[str] = []
        for k in points:
            if (not resume.ok or not rerun.ok) and (self.stop or (not resume.ok and not rerun.ok)):
                break
            seq = k - 1  # the last record kept
            home = os.path.join(self.root, f"cut-{seq}")
            self._write_cut(home, k)
            done = {r["call_id"] for r in self.records[:k] if r["kind"] in (R.TASK_COMPLETED, R.TASK_FAILED)}
            watch = _Watch()
            try:
                ctx = self.drive(home, self.execution_id, watch)
                problem, uncompared = self.judge(ctx, "resumed run")
            except Exception as err:  # noqa: BLE001 - divergence and any other trouble fail the property
                problem, uncompared = _error_text(err), None
            if uncompared:
                not_compared.append(uncompared)
            resume.runs += 1
            rerun.runs += 1
            where = f"interrupted after record seq={seq} ({_label(self.records[seq])}) of {len(self.records)}"
            again = [c for c in dict.fromkeys(watch.live_calls) if c in done]
            if problem:
                resume.fail(f"{where}, then resumed: {problem}", seq)
            if again:
                calls = ", ".join(f"{c} ({names.get(c, '?')})" for c in again)
                rerun.fail(f"{where}, then resumed: completed task calls ran again: {calls}", seq)
            if not problem and not again:
                shutil.rmtree(home, ignore_errors=True)
        for result in (resume, rerun):
            if result.ok:
                result.detail = f"{result.runs} interrupted runs"
                if result.runs < len(points):
                    result.detail += f" of {len(points)} (stopped at the first failure)"
        if resume.ok and not_compared:
            resume.detail += _uncompared_note(not_compared, resume.runs)

    def _write_cut(self, home: str, keep: int) -> None:
        executions = os.path.join(home, "executions")
        os.makedirs(executions, mode=0o700)
        path = os.path.join(executions, f"{self.execution_id}.jsonl")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(self.lines[:keep]))
        # Output storage: a blob is written before the record that names it, so it survives.
        blobs = os.path.join(self.root, "run", "blobs")
        if os.path.isdir(blobs):
            shutil.copytree(blobs, os.path.join(home, "blobs"))

    def check_replay(self) -> None:
        result = self.result("replay")
        result.runs = 1
        read = read_journal(self.journal, self.execution_id)
        try:
            _, outcome, _ = self.isolated(
                lambda: self.wf.replay_async(read, self.execution_id, store=os.path.join(self.root, "run"))
            )
        except Exception as err:  # noqa: BLE001
            result.fail(f"replaying the journal: {_error_text(err)}")
            return
        if outcome.status == "replayed":
            result.fail(
                "the replay asked for a call after the journal's last record; the journal says the run had ended"
            )
            return
        problem = self.differs_from(outcome.status, outcome.output, "replay")
        if problem:
            result.fail(problem)
        else:
            result.detail = f"{len(self.records)} records replayed"

    def check_subprocess(self) -> None:
        """Replays the journal in fresh processes, each with another string hash seed, at once:
        code whose calls depend on the order a set of strings iterates in fails under at least
        one of them, whatever the set (SPEC.md 9)."""
        result = self.result("replay-subprocess")
        mine = os.environ.get("PYTHONHASHSEED")
        seeds = [str(n) for n in range(1, _HASH_SEEDS + 2) if str(n) != mine][:_HASH_SEEDS]
        cmd = [sys.executable, "-m", "flux.testing._replay", self.journal, "--file", code_of(self.wf)["file"]]
        procs = []
        for seed in seeds:
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": _child_path(), CHILD_ENV: "1"}
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((seed, proc))
        result.runs = len(procs)
        problems: list[str] = []
        for seed, proc in procs:
            try:
                stdout, stderr = proc.communicate(timeout=_SUBPROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                problems.append(
                    f"the replay subprocess (PYTHONHASHSEED={seed}) did not finish in {_SUBPROCESS_TIMEOUT:g} s"
                )
                continue
            verdict = _last_json_line(stdout)
            if verdict is None:
                tail = (stderr.strip().splitlines() or ["no output"])[-1]
                problems.append(f"the replay subprocess (PYTHONHASHSEED={seed}) exited {proc.returncode}: {tail}")
                continue
            problem = self._judge(verdict)
            if problem:
                problems.append(f"replayed with PYTHONHASHSEED={seed}: {problem}")
        if problems:
            result.fail(problems[0] + (f" (and {len(problems) - 1} more seeds)" if len(problems) > 1 else ""))
        else:
            result.detail = f"replayed with PYTHONHASHSEED={', '.join(seeds)}"

    def _judge(self, verdict: dict[str, Any]) -> str | None:
        report = self.report
        if verdict.get("error"):
            return str(verdict["error"])
        status = verdict.get("status")
        if status == "replayed":
            return "the replay asked for a call after the journal's last record"
        if status != report.status:
            return f"the replay ended {status}, the uninterrupted run {report.status}"
        if status == "completed":
            try:
                expected = encode(report.output)
            except EncodeError:
                expected = None
            if verdict.get("output") != expected:
                return (
                    f"the replay returned {short(verdict.get('output'))}, the uninterrupted run "
                    f"{short(expected)} (as recorded JSON)"
                )
        elif status == "failed" and isinstance(report.output, BaseException):
            mine = [class_ref(type(report.output)), str(report.output)]
            if verdict.get("failure") != mine:
                return f"the replay failed with {verdict.get('failure')}, the uninterrupted run with {mine}"
        return None

    def check_order(self) -> None:
        result = self.result("completion-order")
        not_compared: list[str] = []
        for i, seed in enumerate(_ORDER_SEEDS, 1):
            home = os.path.join(self.root, f"order-{i}")
            result.runs += 1
            what = f"run whose task bodies started after random delays (seed {seed})"
            # A journal holding only the header: a new run under the same execution id, so that
            # what tasks derive from it (idempotency keys, sub-workflow ids) stays the same.
            self._write_cut(home, 1)
            try:
                ctx = self.drive(home, self.execution_id, _Watch(random.Random(seed)))
                problem, uncompared = self.judge(ctx, what)
            except Exception as err:  # noqa: BLE001
                problem, uncompared = f"the {what}: {_error_text(err)}", None
            if problem:
                result.fail(problem)
                return
            if uncompared:
                not_compared.append(uncompared)
            shutil.rmtree(home, ignore_errors=True)
        result.detail = f"{len(_ORDER_SEEDS)} runs with task bodies delayed 0-{_MAX_DELAY * 1000:g} ms"
        if not_compared:
            result.detail += _uncompared_note(not_compared, len(_ORDER_SEEDS))


def _waiting_pause(store: str, ctx: ExecutionContext[Any]) -> tuple[str, str]:
    """The first pause the execution waits at (its call id or route, and its name)."""
    from flux.client import Client

    waiting = Client(store).view(ctx.execution_id).waiting
    if not waiting:
        raise RuntimeError(f"execution {ctx.execution_id} is paused but waits at no pause")
    return waiting[0].call_id, waiting[0].name


def _uncompared_note(reasons: list[str], runs: int) -> str:
    return f" ({len(reasons)} of {runs} checked against a replay of their own journal only: {reasons[0]})"


def _outcome_text(status: str, output: Any) -> str:
    if status == "failed" and isinstance(output, BaseException):
        return f"failed with {_error_text(output)}"
    if status == "completed":
        return f"returned {short(output)}"
    if status == "replayed":
        return "asked for a call past the journal's end"
    return status


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    """The verdict the replay subprocess printed last (the workflow's code may print too)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(VERDICT_PREFIX):
            try:
                value = orjson.loads(line[len(VERDICT_PREFIX):])
            except orjson.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None
