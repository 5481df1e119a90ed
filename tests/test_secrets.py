"""Secrets: `secret_requests` hands a task its secrets from the environment or a private secrets
file (refused when others may read or write it), a missing one stops the run naming it, and a
secret returned or raised by a task is in no byte written or shown, only `[secret:NAME]` (the
SIGKILL canary test is in tests/test_builtins_crash.py)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

import flux._cli.main
from flux import ExecutionContext, task, workflow
from flux.errors import ExecutionError, InvalidOptionError, SecretError
from flux.tasks import pause
from tests.builtin_workflows import RAN, SEEN, ran, reset
from tests.support.cli import invoke
from tests.support.journals import every_byte_under, records


@pytest.fixture(autouse=True)
def _reset() -> None:
    reset()


CANARY = "cAnArY-7f3e9d2b-0xDEADBEEF"
SECRET = "FLUX_TEST_API_KEY"


@task.with_options(secret_requests=[SECRET])
async def fingerprint(label: str, secrets: dict[str, str]) -> str:
    ran()
    return f"{label}:{hashlib.sha256(secrets[SECRET].encode()).hexdigest()[:12]}"


@task.with_options(secret_requests=[SECRET])
async def leaks_in_result(secrets: dict[str, str]) -> dict[str, Any]:
    return {"token": secrets[SECRET], "nested": [f"Bearer {secrets[SECRET]}"], secrets[SECRET]: 1}


@task.with_options(secret_requests=[SECRET])
async def leaks_in_error(secrets: dict[str, str]) -> None:
    raise PermissionError(f"key {secrets[SECRET]} was rejected")


@task.with_options(secret_requests=[SECRET], retry_max_attempts=1, retry_delay=0)
async def leaks_in_every_attempt(secrets: dict[str, str]) -> None:
    raise ConnectionError(f"refused {secrets[SECRET]}")


@workflow
async def keyed(ctx: ExecutionContext[str]) -> str:
    return await fingerprint(ctx.input)


@workflow
async def leaky(ctx: ExecutionContext[None]) -> Any:
    result = await leaks_in_result()
    try:
        await leaks_in_error()
    except ExecutionError as err:
        message = str(err.inner_exception)
    try:
        await leaks_in_every_attempt()
    except ExecutionError as err:
        retried = str(err)
    SEEN.append([result, message, retried])
    await pause("half-way")
    await leaks_in_error()  # uncaught: the workflow fails with it
    return [result, message, retried]


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def test_a_task_gets_its_secret_from_the_environment_and_the_kwarg_is_not_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = keyed.run("env")
    assert ctx.output == f"env:{_sha(CANARY)}"
    started = next(r for r in records(ctx) if r["kind"] == "task_started")
    assert started["args"] == ["env"] and "kwargs" not in started


def test_a_task_gets_its_secret_from_a_private_secrets_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    path = tmp_path / "secrets.json"
    path.write_bytes(orjson.dumps({SECRET: "from-the-file"}))
    path.chmod(0o600)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(path))
    assert keyed.run("file").output == f"file:{_sha('from-the-file')}"
    monkeypatch.setenv(SECRET, "from-the-env")  # the environment comes first
    assert keyed.run("env").output == f"env:{_sha('from-the-env')}"


def test_the_default_secrets_file_is_in_the_store(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.delenv("FLUX_SECRETS_FILE", raising=False)
    home.mkdir(mode=0o700)
    (home / "secrets.json").write_bytes(orjson.dumps({SECRET: "in-home"}))
    (home / "secrets.json").chmod(0o600)
    assert keyed.run("home").output == f"home:{_sha('in-home')}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_secrets_file_others_can_read_or_write_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    path = tmp_path / "secrets.json"
    path.write_bytes(orjson.dumps({SECRET: CANARY}))
    path.chmod(mode)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(path))
    with pytest.raises(SecretError) as info:
        keyed.run("x")
    message = str(info.value)
    assert str(path) in message and f"mode {mode:o}" in message and f"chmod 600 {path}" in message
    assert CANARY not in message and RAN == []


def test_a_missing_secret_fails_the_task_with_a_recorded_value_error_naming_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET, raising=False)
    monkeypatch.setenv("FLUX_SECRETS_FILE", str(tmp_path / "absent.json"))
    ctx = keyed.run("x")
    assert ctx.has_failed and RAN == []
    assert isinstance(ctx.output, ExecutionError) and isinstance(ctx.output.inner_exception, ValueError)
    assert str(ctx.output.inner_exception) == f"The following secrets were not found: ['{SECRET}']"
    (path,) = (home / "executions").glob("*.jsonl")
    assert [orjson.loads(line)["kind"] for line in path.read_bytes().splitlines()][-2:] == [
        "task_failed", "workflow_failed",
    ]


def test_a_secret_returned_or_raised_by_a_task_is_in_no_byte_written(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    first = leaky.run()
    assert first.status == "paused"
    redacted = f"[secret:{SECRET}]"
    done = leaky.resume(first.execution_id, None)
    assert done.status == "failed"
    assert f"key {redacted} was rejected" in str(done.output)
    # The workflow saw the real values, live and on replay alike (replay puts the secret back
    # into what the journal holds); only what is written is redacted.
    live, replayed = SEEN
    assert live == replayed
    assert live == [
        {"token": CANARY, "nested": [f"Bearer {CANARY}"], CANARY: 1},
        f"key {CANARY} was rejected",
        f"RetryError: task 'leaks_in_every_attempt' failed after 2 attempts; last: ConnectionError: refused {CANARY}",
    ]
    kinds_written = {r["kind"] for r in records(done)}
    assert {"attempt_failed", "task_failed", "workflow_failed"} <= kinds_written
    # A wide console: no line is wrapped, so no canary can hide across two lines.
    monkeypatch.setattr(flux._cli.main, "out", Console(highlight=False, soft_wrap=True, width=1000))
    shown = invoke("show", done.execution_id, "--home", str(home))
    listed = invoke("list", "--home", str(home))
    assert shown.exit_code == 0 and "leaks_in_error" in shown.output and redacted in shown.output
    texts = [
        every_byte_under(home),
        repr([(e.type, e.name, e.value) for e in done.events]).encode(),
        repr(done.output).encode(),
        str(done.output).encode(),
        getattr(done.output, "__flux_traceback__", "").encode(),
        shown.output.encode(),
        listed.output.encode(),
    ]
    for text in texts:
        assert CANARY.encode() not in text
    assert redacted.encode() in texts[0]


@task
async def send_with(token: str) -> int:
    return len(token)


@task.with_options(secret_requests=[SECRET])
async def authorised_call(secrets: dict[str, str]) -> int:
    return await send_with(secrets[SECRET])  # a task called from the body, with the secret


@workflow
async def nested_secret(ctx: ExecutionContext[None]) -> int:
    return await authorised_call()


def test_a_secret_passed_to_a_task_called_inside_a_secret_task_is_not_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = nested_secret.run()
    assert ctx.output == len(CANARY)
    assert CANARY.encode() not in every_byte_under(home)


@task.with_options(secret_requests=[SECRET])
async def secret_bytes(secrets: dict[str, str]) -> bytes:
    return secrets[SECRET].encode()


@workflow
async def bytes_secret(ctx: ExecutionContext[None]) -> bytes:
    return await secret_bytes()


def test_a_secret_returned_as_bytes_is_not_recorded_or_shown(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET, CANARY)
    ctx = bytes_secret.run()
    written = every_byte_under(home)
    assert base64.b64encode(CANARY.encode()) not in written
    assert CANARY.encode() not in written
    assert CANARY.encode() not in repr(ctx.output).encode()


@pytest.mark.parametrize(
    ("value", "message"),
    [("API_KEY", "must be a list of secret names"), ([""], "must be a list of secret names"), ([1], "must be a list")],
)
def test_bad_secret_requests_are_refused_when_decorating(value: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        task.with_options(secret_requests=value)


# -- redaction works on values, never on the encoding of another type ---------------------------

PIN = "FLUX_TEST_PIN"


@task.with_options(name="lookup_{account}")
async def lookup(account: str) -> dict[str, Any]:
    import datetime as dt
    import uuid
    from decimal import Decimal

    return {
        "when": dt.datetime(2026, 5, 1, 12, 0),  # holds the PIN's digits inside its text
        "id": uuid.UUID("12345678-2026-4026-8026-202620262026"),
        "price": Decimal("2026.50"),
        "account": account,
    }


@task.with_options(secret_requests=[PIN])
async def with_pin(secrets: dict[str, str]) -> Any:
    from flux.tasks import choice

    found = await lookup(f"acct-{secrets[PIN]}-9")  # a nested task named from the secret
    chosen = await choice([secrets[PIN]])  # a value recorded inside the task that holds it
    return {"found": found, "chosen": chosen, "pin": int(secrets[PIN])}  # the secret as a number


@workflow
async def by_account(ctx: ExecutionContext[None]) -> Any:
    return await with_pin()


def test_redaction_keeps_typed_values_and_hides_numbers_names_and_recorded_values(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    monkeypatch.setenv(PIN, "2026")
    ctx = by_account.run()
    assert ctx.status == "completed", ctx.output
    found = ctx.output["found"]
    assert found["when"] == dt.datetime(2026, 5, 1, 12, 0)  # untouched, and it decodes
    assert found["id"] == uuid.UUID("12345678-2026-4026-8026-202620262026")
    assert found["price"] == Decimal("2026.50")
    assert found["account"] == f"acct-[secret:{PIN}]-9"
    assert ctx.output["chosen"] == f"[secret:{PIN}]"
    assert ctx.output["pin"] == f"[secret:{PIN}]"
    written = b"".join(p.read_bytes() for p in (home / "executions").glob("*.jsonl"))
    assert b'"name":"lookup_acct-[secret:FLUX_TEST_PIN]-9"' in written  # the task's name is redacted
    assert b"acct-2026-9" not in written and b'"pin":2026' not in written and b'"value":"2026"' not in written
    assert b'"$datetime":"2026-05-01T12:00:00"' in written
    from flux.debug import replay

    assert replay(ctx.journal_path).matches
