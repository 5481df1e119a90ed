"""The source of the workflow files that tests run in `flux` subprocesses.

A flows file is `flows_file(body, ...)`: the imports and run-log functions every flows file
shares, then the bodies. Task bodies tell the test they ran by appending a line to the run log
($RUN_LOG), each with one O_APPEND write, so that the lines of a killed process are whole or
absent: `log(line)` writes the line, `log_call(what)` prefixes it with the call's idempotency key
(read them back with tests.support.projects.run_log and logged_calls).
"""

from __future__ import annotations

import textwrap

HEAD = '''\
import asyncio
import os

from flux import ExecutionContext, Saga, task, workflow
from flux.output_storage import LocalFileStorage
from flux.tasks import Graph, call, idempotency_key, parallel, pause, pipeline, sleep


def log(line):
    fd = os.open(os.environ["RUN_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, line.encode() + b"\\n")
    os.close(fd)


def log_call(what):
    log(f"{idempotency_key()} {what}")
'''

# A sequence of tasks, each logged as `<execution_id>:<call_id> <i>` and slowed by $STEP_DELAY
# seconds; and the same task around a pause.
SQUARES = '''
@task
async def work(i: int) -> int:
    log_call(str(i))
    await asyncio.sleep(float(os.environ.get("STEP_DELAY", "0")))
    return i * i


@workflow
async def squares(ctx: ExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await work(i)
    return total


@workflow
async def gated(ctx: ExecutionContext[int]) -> list:
    first = await work(ctx.input)
    answer = await pause("approve")
    second = await work(ctx.input + 1)
    return [first, answer, second]
'''


def flows_file(*bodies: str) -> str:
    """A flows file: HEAD, then each body."""
    return "\n\n".join([HEAD, *(textwrap.dedent(body).strip("\n") + "\n" for body in bodies)])
