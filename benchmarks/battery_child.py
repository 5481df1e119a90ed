"""The processes the fault battery kills: its workflows, and a fork server that starts them fast.

Starting Python and importing Flux takes a few hundred milliseconds; forking a process that has
already done it takes a few. `serve` is that process. Start it with

    python -c "import benchmarks.battery_child as c; c.serve()"

and `FLUX_TEST_FAULTS` set (so that the journal's fault hooks are armed), then send one JSON
command per line on its stdin; it answers one JSON line on its stdout:

    {"op": "fork", "action": ..., "args": {...}, "faults": "kill:2:after_write", "sync_log": path}
        -> {"pid": n}          a child runs `action`, writes its result to args["result"], exits
    {"op": "wait", "pid": n, "timeout": seconds}
        -> {"exited": true, "code": c, "signal": s}, or {"exited": false} after `timeout`
    {"op": "wait_some", "pids": [...], "count": k, "timeout": seconds}
        -> {"ended": {pid: status, ...}} once k of them exited, or after `timeout`

Actions: `cli` (the `flux` command line with `argv`, its output in the files `stdout` and
`stderr`; the exit status is the command's), `commands` (several command lines on one damaged
journal, see `_commands`), `run` (a new execution of `workflow` in `home`),
`resume` (continue `execution_id`; with `answer`, answer its waiting pause), `cancel` (cancel
`execution_id`, which no process runs: its sagas compensate), `request_cancel` (ask the process
that runs `execution_id` to cancel it), `race` (wait at the FIFO `barrier`, then continue
`execution_id`; the `held` workflow blocks its owner in a task until it is killed). A child's
exit status says how it ended: 0 finished, 3 `ExecutionLockedError`, 4 `NondeterminismError`,
5 `DurabilityError`, 6 any other error.

`varied` is the workload of the kill loop: sequential and parallel tasks, a task that fails
once and is retried, a durable timer, output storage, the task cache (a second call of the same
task is a hit), a sub-workflow, a pause, and a saga that compensates (or, cancelled at its
pause, compensates what it booked).

The same file is a workflow file for `flux exec`: the battery's disk-fault runs use it through
the real command line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import traceback
from typing import Any

import orjson

from flux import ExecutionContext, Saga, task, workflow
from flux.errors import ExecutionError
from flux.tasks import call, idempotency_key, now, parallel, pause, sleep, uuid4

__all__ = [
    "ANSWER", "EXIT_CODES", "WORKFLOWS", "corner", "expected_output", "expected_varied", "fanout", "held", "many",
    "serve", "twenty", "varied", "waits",
]

SIDE_LOG = "BATTERY_SIDE_LOG"
ANSWER = 7  # what the battery answers the pause of `varied` with
EXIT_CODES = {0: "finished", 3: "locked", 4: "divergence", 5: "durability", 6: "error"}


def _side(text: str) -> None:
    # Appended with O_APPEND by each body, after the engine made its task_started durable, so
    # that the battery can tell which bodies ran in which process.
    path = os.environ.get(SIDE_LOG)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"%s %d\n" % (text.encode(), os.getpid()))
        finally:
            os.close(fd)


@task
async def work(i: int) -> int:
    _side(idempotency_key())
    return (i * 7919 + 13) % 1009


@task
def work_in_thread(i: int) -> int:
    _side(idempotency_key())
    return (i * 31 + 7) % 97


async def _lane(j: int) -> int:
    a = await work(100 + j)
    b = await work(200 + j + a % 3)
    return a + b


@workflow
async def many(ctx: ExecutionContext[int]) -> dict[str, Any]:
    """`input` sequential tasks (every tenth a plain function), then `input // 5` lanes of two."""
    seq = []
    for i in range(ctx.input):
        seq.append(await (work_in_thread(i) if i % 10 == 9 else work(i)))
    lanes = await asyncio.gather(*(_lane(j) for j in range(max(2, ctx.input // 5))))
    return {"seq": seq, "lanes": list(lanes), "total": sum(seq) + sum(lanes)}


@workflow
async def twenty(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(20):
        total += await work(ctx.input + i)
    return total


_tried: set[str] = set()


def _first_try(key: str) -> bool:
    """True the first time a call is tried, in any process of the execution (a marker file
    beside the side log), so that a retried task fails exactly once however often it is killed."""
    path = os.environ.get(SIDE_LOG)
    if not path:
        first = key not in _tried
        _tried.add(key)
        return first
    folder = path + ".tries"
    os.makedirs(folder, exist_ok=True)
    try:
        os.close(os.open(os.path.join(folder, key.replace(":", "_")), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


@task.with_options(retry_max_attempts=2, retry_delay=0)
async def flaky(i: int) -> int:
    key = idempotency_key()
    _side(key)
    if _first_try(key):
        raise ValueError(f"flaky({i}) fails at its first try")
    return i * 3 + 1


@task.with_options(output_storage=True)
async def stored(i: int) -> list[int]:
    _side(idempotency_key())
    return [i * k % 101 for k in range(40)]


@task.with_options(cache=True)
async def cached(i: int) -> int:
    _side(idempotency_key())
    return i * i + 5


@task
async def book(what: str) -> str:
    _side(idempotency_key())
    return f"booked {what}"


@task
async def unbook(booking: str) -> str:
    _side(idempotency_key())
    return f"released {booking}"


@task
async def refuse(booking: str) -> None:
    _side(idempotency_key())
    raise RuntimeError(f"refused after {booking}")


@workflow
async def varied_child(ctx: ExecutionContext[int]) -> int:
    a = await work(ctx.input)
    b = await stored(ctx.input + 1)
    c = await flaky(ctx.input + 2)
    return a + sum(b) + c


@workflow
async def varied(ctx: ExecutionContext[int]) -> dict[str, Any]:
    """`input` sequential tasks, retries, output storage, the cache, a timer, a sub-workflow, a
    saga around a pause, then `input // 5` lanes of two tasks."""
    n = ctx.input
    seq = [await (work_in_thread(i) if i % 5 == 4 else work(i)) for i in range(n)]
    tries = [await flaky(i) for i in range(2)]
    kept = await stored(n)
    hits = [await cached(n), await cached(n)]
    await sleep(0.002)
    child = await call(varied_child, n)
    saga = "kept"
    try:
        async with Saga() as trip:
            flight = await trip.step(book("flight"), compensate=unbook)
            answer = await pause("gate")
            await trip.step(book(f"hotel {answer}"), compensate=unbook)
            await refuse(flight)
    except ExecutionError:
        saga = "compensated"
    lanes = await asyncio.gather(*(_lane(j) for j in range(max(2, n // 5))))
    return {"seq": seq, "tries": tries, "kept": sum(kept), "hits": hits, "child": child, "saga": saga,
            "lanes": list(lanes)}


def _backup(x: int) -> int:
    return -x


def _undo(x: int) -> None:
    return None


@task.with_options(fallback=_backup)
async def shaky(x: int) -> int:
    raise ValueError(f"shaky({x})")


@task.with_options(rollback=_undo)
async def risky(x: int) -> int:
    raise ValueError(f"risky({x})")


def _broken(x: int) -> int:
    raise LookupError(f"no way back from {x}")


@task.with_options(fallback=_broken, rollback=_broken)
async def doomed(x: int) -> int:
    raise ValueError(f"doomed({x})")


@task.with_options(rollback=_broken)
async def stranded(x: int) -> int:
    raise ValueError(f"stranded({x})")


@task
async def slow(x: int) -> int:
    await asyncio.sleep(0.05)
    return x


@task
async def boom(x: int) -> int:
    raise RuntimeError(f"boom({x})")


@workflow
async def corner(ctx: ExecutionContext[int]) -> int:
    """The records `varied` does not write: fallbacks and rollbacks that succeed and fail, a
    patch, recorded values, a task cancelled by its failing sibling; then the workflow fails."""
    got = await shaky(ctx.input)
    try:
        await risky(ctx.input)
    except ExecutionError:
        got += 1
    for handled in (doomed, stranded):
        try:
            await handled(ctx.input)
        except ExecutionError:
            got += 1
    if ctx.patched("v2"):
        got += 1
    when = await now()
    key = await uuid4()
    try:
        await parallel(slow(x=1), boom(2))
    except ExecutionError:
        got += 1
    raise ValueError(f"corner failed after {got} at {when.year} with {key.version}")


@workflow
async def inner_gate(ctx: ExecutionContext[int]) -> Any:
    return await pause("inner", delay=3600)


@workflow
async def waits(ctx: ExecutionContext[int]) -> Any:
    """Waits on a sub-workflow that waits at a timed pause: the run ends suspended."""
    return await call(inner_gate, ctx.input)


@workflow
async def fanout(ctx: ExecutionContext[int]) -> int:
    """`input` tasks at once: their records are written by one large sync, several pages long."""
    return sum(await asyncio.gather(*(work(i) for i in range(ctx.input))))


@task
async def block() -> None:
    _side(idempotency_key())
    await asyncio.sleep(3600)


@workflow
async def held(ctx: ExecutionContext[None]) -> None:
    """Holds its execution until the process is killed: the racing resumers' prize."""
    await block()


def expected_output(n: int) -> dict[str, Any]:
    """What `many` returns for input n, computed without the engine."""

    def w(i: int) -> int:
        return (i * 7919 + 13) % 1009

    seq = [(i * 31 + 7) % 97 if i % 10 == 9 else w(i) for i in range(n)]
    lanes = []
    for j in range(max(2, n // 5)):
        a = w(100 + j)
        lanes.append(a + w(200 + j + a % 3))
    return {"seq": seq, "lanes": lanes, "total": sum(seq) + sum(lanes)}


def expected_varied(n: int) -> dict[str, Any]:
    """What `varied` returns for input n (its pause answered), computed without the engine."""

    def w(i: int) -> int:
        return (i * 7919 + 13) % 1009

    def kept(i: int) -> int:
        return sum(i * k % 101 for k in range(40))

    lanes = expected_output(n)["lanes"][: max(2, n // 5)]
    return {
        "seq": [(i * 31 + 7) % 97 if i % 5 == 4 else w(i) for i in range(n)],
        "tries": [1, 4],
        "kept": kept(n),
        "hits": [n * n + 5] * 2,
        "child": w(n) + kept(n + 1) + (n + 2) * 3 + 1,
        "saga": "compensated",
        "lanes": lanes,
    }


WORKFLOWS = {
    "many": many, "twenty": twenty, "held": held, "varied": varied, "fanout": fanout, "corner": corner,
    "waits": waits,
}


# -- fork server ----------------------------------------------------------------------------------


def _act(action: str, args: dict[str, Any]) -> dict[str, Any]:
    home = args["home"]
    durability = args.get("durability", "fsync")
    wf = WORKFLOWS[args.get("workflow", "many")]
    if action == "run":
        ctx = wf.run(args.get("input"), store=home, durability=durability)
    elif action == "resume" and "answer" in args:
        ctx = wf.resume(args["execution_id"], args["answer"], store=home, durability=durability)
    elif action in ("resume", "race"):
        if action == "race" and args.get("barrier"):
            # A barrier: each racer says it is ready (one byte appended to `barrier.ready`), then
            # opens the FIFO `barrier` to read, which blocks until the battery opens it to write,
            # once every racer is ready: they all call acquire at once.
            ready = os.open(args["barrier"] + ".ready", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(ready, b".")
            os.close(ready)
            os.close(os.open(args["barrier"], os.O_RDONLY))
        ctx = wf.run(execution_id=args["execution_id"], store=home, durability=durability)
    elif action == "cancel":
        ctx = wf.cancel(args["execution_id"], store=home)
    elif action == "request_cancel":
        from flux._engine.stores.files import FileStore

        FileStore(home).request_cancel(args["execution_id"])
        return {"execution_id": args["execution_id"], "status": "asked"}
    else:
        raise ValueError(f"unknown action {action!r}")
    output = ctx.output if ctx.has_succeeded else repr(ctx.output)
    return {"execution_id": ctx.execution_id, "status": ctx.status, "output": output}


def _record_fsyncs(log: str) -> None:
    """Wraps os.fsync so that every fsync of a journal that returns is logged with the size it
    made durable: the power-loss scenario then trusts the disk, not the engine, about what was
    synced. Lines go to the same file as the fault hooks' acknowledgements, in the order they
    happened."""
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        target = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else ""
        if target.endswith(".jsonl"):
            line = b"fsync %d %s\n" % (os.fstat(fd).st_size, target.encode())
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(out, line)
            finally:
                os.close(out)

    os.fsync = fsync


def _cli(args: dict[str, Any]) -> None:
    """Runs the `flux` command line in this process, as `python -m flux ARGV` would: its output
    goes to the files `stdout` and `stderr`, its exit status is the process's, and an exception
    it lets out prints a traceback, as Python prints one (and creates the file `escaped`)."""
    from flux._cli.main import main

    for fd, path in ((1, args["stdout"]), (2, args["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    sys.argv = ["flux", *args["argv"]]
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - what Python would print for an uncaught exception
        traceback.print_exc()
        code = 1
        if args.get("escaped"):
            with open(args["escaped"], "wb"):
                pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _commands(args: dict[str, Any]) -> None:
    """Runs `flux` command lines one after another, each in a process of its own forked from
    this one, on the journal at `journal` holding the bytes of the file `damaged` (put back
    before each, the `.torn` and `.index` beside it removed). Writes, as JSON to `result`, for
    each: its exit status, what it printed, whether an exception escaped it (Python would print
    a traceback), whether it still ran after `timeout` seconds (then it is killed), and whether
    it changed the journal."""
    with open(args["damaged"], "rb") as fh:
        damaged = fh.read()
    journal = args["journal"]
    out_path, err_path, escaped_path = (args["result"] + suffix for suffix in (".out", ".err", ".escaped"))
    results = []
    for argv in args["commands"]:
        with open(journal, "wb") as fh:
            fh.write(damaged)
        for path in (journal[:-6] + ".torn", journal[:-6] + ".index", escaped_path):
            if os.path.exists(path):
                os.unlink(path)
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            _cli({"argv": argv, "stdout": out_path, "stderr": err_path, "escaped": escaped_path})
        status = _wait(pid, args.get("timeout", 30))
        hang = not status["exited"]
        if hang:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with open(out_path, encoding="utf-8", errors="replace") as fh_out, open(
            err_path, encoding="utf-8", errors="replace"
        ) as fh_err:
            out, err = fh_out.read(), fh_err.read()
        with open(journal, "rb") as fh:
            changed = fh.read() != damaged
        results.append(
            {"argv": argv, "code": status.get("code"), "out": out[-2000:], "err": err[-2000:],
             "escaped": os.path.exists(escaped_path), "hang": hang, "changed": changed,
             "seconds": time.perf_counter() - started}
        )
    with open(args["result"], "wb") as fh:
        fh.write(orjson.dumps(results))
    os._exit(0)


def _child(command: dict[str, Any]) -> None:
    from flux._engine import faults
    from flux._engine.errors import DurabilityError, ExecutionLockedError, NondeterminismError

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    args = command["args"]
    if args.get("side_log"):
        os.environ[SIDE_LOG] = args["side_log"]
    if command["action"] in ("cli", "commands"):
        faults.configure(command.get("faults", "none"), command.get("sync_log"))
        (_cli if command["action"] == "cli" else _commands)(args)
    code = 6
    result: dict[str, Any]
    try:
        faults.configure(command.get("faults", "none"), command.get("sync_log"))
        if args.get("log_fsyncs") and command.get("sync_log"):
            _record_fsyncs(command["sync_log"])
        started = time.perf_counter()
        result = _act(command["action"], args)
        result["seconds"] = time.perf_counter() - started
        code = 0
    except ExecutionLockedError as err:
        result, code = {"error": "ExecutionLockedError", "message": str(err)}, 3
    except NondeterminismError as err:
        result, code = {"error": "NondeterminismError", "message": str(err)}, 4
    except DurabilityError as err:
        result, code = {"error": "DurabilityError", "message": str(err)}, 5
    except BaseException as err:  # noqa: BLE001 - any other ending is reported, not hidden
        result = {"error": type(err).__name__, "message": str(err), "traceback": traceback.format_exc()}
    if args.get("result"):
        with open(args["result"], "wb") as fh:
            fh.write(orjson.dumps(result))
    os._exit(code)


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(status):
                return {"exited": True, "code": None, "signal": os.WTERMSIG(status)}
            return {"exited": True, "code": os.WEXITSTATUS(status), "signal": None}
        if time.monotonic() > deadline:
            return {"exited": False}
        time.sleep(0.0005)


def _wait_some(pids: list[int], count: int, timeout: float) -> dict[str, Any]:
    """Waits until `count` of `pids` have exited, or `timeout`; their statuses by pid."""
    deadline = time.monotonic() + timeout
    ended: dict[str, Any] = {}
    while len(ended) < count and time.monotonic() < deadline:
        for pid in pids:
            if str(pid) not in ended:
                status = _wait(pid, 0)
                if status["exited"]:
                    ended[str(pid)] = status
        time.sleep(0.0005)
    return {"ended": ended}


def _warm_up() -> None:
    """Runs each kind of work once, so that what Flux imports or builds on first use is there
    before the children are forked: each child then starts in a few milliseconds."""
    import gc
    import shutil
    import tempfile

    import flux._cli.main  # noqa: F401 - imported before forking: the `cli` action starts at once
    from flux._engine import faults

    home = tempfile.mkdtemp(prefix="flux-battery-warm-")
    try:
        faults.configure("none")
        ctx = varied.run(2, store=home, durability="os")
        done = varied.resume(ctx.execution_id, ANSWER, store=home, durability="os")
        varied.cancel(varied.run(2, store=home, durability="os").execution_id, store=home)
        many.run(2, store=home, durability="os")
        paused = varied.run(2, store=home, durability="os").execution_id
        for argv in (["list"], ["show", paused], ["show", paused, "--records"], ["replay", paused],
                     ["diff", paused, done.execution_id], ["show", "nosuch"]):
            _quietly(["flux", *argv, "--store", home])
        for argv in (["recover"], ["resume", paused, "--input", "1"]):
            _quietly(["flux", *argv, "--store", home, "--durability", "os"])
    finally:
        shutil.rmtree(home, ignore_errors=True)
        _tried.clear()
    gc.collect()
    gc.freeze()  # the children's collections leave the shared pages alone


def _quietly(argv: list[str]) -> None:
    """Runs a command line with its output thrown away (to warm up the command line's code)."""
    from flux._cli.main import main

    keep = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.argv = argv
    try:
        main()
    except SystemExit:
        pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(keep[0], 1)
        os.dup2(keep[1], 2)
        for fd in (*keep, devnull):
            os.close(fd)


def serve() -> None:
    """Answers fork and wait commands on stdin/stdout until stdin closes."""
    _warm_up()
    for line in sys.stdin.buffer:
        command = orjson.loads(line)
        if command["op"] == "fork":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(command)
            reply: dict[str, Any] = {"pid": pid}
        elif command["op"] == "wait":
            reply = _wait(command["pid"], command.get("timeout", 60.0))
        elif command["op"] == "wait_some":
            reply = _wait_some(command["pids"], command["count"], command.get("timeout", 60.0))
        else:
            reply = {"error": f"unknown op {command['op']!r}"}
        sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
        sys.stdout.flush()
