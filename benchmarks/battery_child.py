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

Actions: `run` (a new execution of `workflow` in `home`), `resume` (continue `execution_id`),
`race` (wait until `start_at`, then continue `execution_id`; the `held` workflow blocks its
owner in a task until it is killed). A child's exit status says how it ended: 0 finished,
3 `ExecutionLockedError`, 4 `NondeterminismError`, 5 `DurabilityError`, 6 any other error.

The same file is a workflow file for `flux exec`: the battery's disk-fault runs use it through
the real command line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import traceback
from typing import Any

import orjson

from flux import ExecutionContext, task, workflow
from flux.tasks import idempotency_key

__all__ = ["EXIT_CODES", "expected_output", "held", "many", "serve", "twenty"]

SIDE_LOG = "BATTERY_SIDE_LOG"
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


# -- fork server ----------------------------------------------------------------------------------


def _act(action: str, args: dict[str, Any]) -> dict[str, Any]:
    home = args["home"]
    durability = args.get("durability", "fsync")
    wf = {"many": many, "twenty": twenty, "held": held}[args.get("workflow", "many")]
    if action == "run":
        ctx = wf.run(args.get("input"), store=home, durability=durability)
    elif action in ("resume", "race"):
        if action == "race":
            while time.time() < args["start_at"]:
                pass  # spin: the racers must call acquire within microseconds of each other
        ctx = wf.run(execution_id=args["execution_id"], store=home, durability=durability)
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


def _child(command: dict[str, Any]) -> None:
    from flux._engine import faults
    from flux._engine.errors import DurabilityError, ExecutionLockedError, NondeterminismError

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    args = command["args"]
    if args.get("side_log"):
        os.environ[SIDE_LOG] = args["side_log"]
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


def serve() -> None:
    """Answers fork and wait commands on stdin/stdout until stdin closes."""
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
        else:
            reply = {"error": f"unknown op {command['op']!r}"}
        sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
        sys.stdout.flush()
