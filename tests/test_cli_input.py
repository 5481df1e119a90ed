"""What the command line reads: JSON inputs exactly, and a resume that answers a pause only with
an input."""

from __future__ import annotations

from pathlib import Path

import orjson

from flux import ExecutionContext, task, workflow
from flux.tasks import pause
from tests.support.cli import invoke
from tests.support.journals import records


@workflow
async def echo(ctx: ExecutionContext[object]) -> object:
    answer = await pause("more")
    return [ctx.input, answer]


def _run(*args: str) -> tuple[int, str]:
    result = invoke(*args)
    return result.exit_code, result.output


def test_large_integers_on_the_command_line_are_kept_exactly(home: Path) -> None:
    big = 18446744073709551617
    account = 123456789012345678901234567890
    code, out = _run("exec", __file__, "echo", "--input", f'{{"big": {big}, "account": {account}}}')
    assert code == 0, out
    execution_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("execution_id"))
    input_file = home.parent / "input.json"
    input_file.write_text(str(-(10**40)))
    code, out = _run("resume", execution_id, "--input-file", str(input_file))
    assert code == 0, out
    header = records(home / "executions" / f"{execution_id}.jsonl")[0]
    assert header["input"] == {"big": {"$int": str(big)}, "account": {"$int": str(account)}}
    final = records(home / "executions" / f"{execution_id}.jsonl")[-1]
    assert final["value"] == [header["input"], {"$int": str(-(10**40))}]


def test_a_resume_without_an_input_does_not_answer_a_pause_that_waits_for_one(home: Path) -> None:
    code, out = _run("exec", __file__, "echo", "--input", "1")
    execution_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("execution_id"))
    journal = home / "executions" / f"{execution_id}.jsonl"
    before = journal.read_bytes()
    code, out = _run("resume", execution_id)
    assert code == 2 and "waits at pause 'more' for an input" in out
    assert journal.read_bytes() == before
    code, out = _run("resume", execution_id, "--input", "null")
    assert code == 0 and "output: [1,null]" in out
    assert orjson.loads(journal.read_bytes().splitlines()[-1])["value"] == [1, None]


def test_json_that_is_not_json_is_one_line(home: Path) -> None:
    for text in ("NaN", "{", "1" * 5000):
        code, out = _run("exec", __file__, "echo", "--input", text)
        assert code == 2 and out.startswith("ValueError: --input is not valid JSON"), out


@task
async def passes(x: object) -> object:
    return x


@workflow
async def relay(ctx: ExecutionContext[object]) -> object:
    got = await passes(ctx.input)
    return [got, await pause("more")]


def test_resume_input_and_a_replaced_result_keep_large_integers_exactly(home: Path) -> None:
    big, other = 2**64 + 1, -(10**30) - 7
    code, out = _run("exec", __file__, "relay", "--input", "1")
    assert code == 0, out
    execution_id = next(line.split(": ")[1] for line in out.splitlines() if line.startswith("execution_id"))
    code, out = _run("resume", execution_id, "--input", str(big))
    assert code == 0, out
    journal = home / "executions" / f"{execution_id}.jsonl"
    assert records(journal)[-1]["value"] == [1, {"$int": str(big)}]
    seq = next(r["seq"] for r in records(journal) if r["kind"] == "task_completed")
    code, out = _run("fork", execution_id, "--at", str(seq + 1), "--set-result", f"{seq}={other}")
    assert code == 0, out
    (fork,) = [p for p in (home / "executions").glob("*.jsonl") if p != journal]
    assert records(fork)[seq]["value"] == {"$int": str(other)}
