"""The options Flux programs set on workflows and tasks: checked as Flux checks them, kept as
attributes, and the ones this engine acts on (metadata, config, approvals, sensitive) doing what
Flux's documentation says."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flux import ExecutionContext, ExecutionEventType, ScheduleType, TaskMetadata, cron, task, workflow
from flux.domain.resource_request import ResourceRequest
from flux.errors import ApprovalRejected, InvalidOptionError
from tests.support.journals import records


async def body(ctx: ExecutionContext[Any]) -> Any:
    return ctx.input


def test_workflow_options_are_checked_and_kept() -> None:
    wf = workflow.with_options(
        name="billing",
        namespace="finance",
        secret_requests=["API_KEY"],
        requests=ResourceRequest(cpu=2, memory="512Mi"),
        affinity={"zone": "eu"},
        schedule=cron("0 9 * * MON-FRI", timezone="Europe/Lisbon"),
        durability="durable",
        runner="subprocess",
        runner_options={"cpus": 1, "network": "none"},
        routing={"terms": [{"weight": 1}]},
        hooks=[{"on": "completed", "workflow": "notify", "principal": "me"}],
    )(body)
    assert (wf.name, wf.namespace, wf.qualified_name) == ("billing", "finance", "finance/billing")
    assert wf.secret_requests == ["API_KEY"] and wf.requests is not None and wf.requests.cpu == 2
    assert (wf.durability, wf.runner, wf.affinity) == ("durable", "subprocess", {"zone": "eu"})
    assert wf.schedule is not None and wf.schedule.type == ScheduleType.CRON
    assert (wf.runner_options, wf.routing) == ({"cpus": 1, "network": "none"}, {"terms": [{"weight": 1}]})
    assert wf.hooks == [{"on": "completed", "workflow": "notify", "principal": "me"}]
    assert workflow(body).namespace == "default" and workflow(body).qualified_name == "default/body"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": "Bad Space"}, "Invalid namespace"),
        ({"durability": "forever"}, "durability must be 'durable' or 'transient'"),
        ({"durability": "transient", "schedule": cron("@daily")}, "cannot be combined with a schedule"),
        ({"runner": "k8s"}, "runner must be one of"),
        ({"runner_options": {"gpus": 1}}, "unknown runner option 'gpus'"),
        ({"routing": {"terms": []}}, "routing must be a scoring policy"),
        ({"affinity": "eu"}, "affinity must be a label dict"),
        ({"hooks": [{"on": "x"}]}, "hooks must be a list of hook specs"),
        ({"requests": {"cpu": 1}}, "requests="),
        ({"colour": "red"}, "unknown workflow option colour"),
    ],
)
def test_bad_workflow_options_are_refused_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        workflow.with_options(**options)(body)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"risk": "dangerous"}, "risk must be one of"),
        ({"sensitive": True, "cache": True}, "sensitive=True cannot be combined with cache=True"),
        ({"requires_approval": "yes"}, "requires_approval="),
        ({"metadata": 1}, "metadata=1 must be True or False"),
        ({"digest_exclude": "x"}, "digest_exclude="),
        ({"config_requests": "A"}, "config_requests="),
        ({"requires_approval": True, "approval_target": "account"}, "approval_target='account' names no parameter"),
    ],
)
def test_bad_task_options_are_refused_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOptionError, match=message):
        task.with_options(**options)(body)


def test_flux_s_explicit_defaults_are_accepted() -> None:
    t = task.with_options(name=None, timeout=0, auth_exempt=True, digest_exclude=("trace",), risk="read")(body)
    assert t.name == "body" and t.timeout == 0 and t.auth_exempt and t.digest_exclude == ("trace",)
    assert t.risk == "read"


@task.with_options(metadata=True)
async def tagged(x: int, metadata: TaskMetadata) -> str:
    return f"{metadata.task_id}/{metadata.task_name}/{x}"


@task.with_options(config_requests=["REGION"])
async def configured(config: dict[str, Any]) -> str:
    return str(config["REGION"])


@workflow
async def with_metadata(ctx: ExecutionContext[None]) -> list[str]:
    return [await tagged(1), await tagged(2), await configured()]


def test_metadata_and_config_are_handed_to_the_body_and_not_recorded(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGION", "eu-west")
    ctx = with_metadata.run()
    assert ctx.output == ["1/tagged/1", "2/tagged/2", "eu-west"]
    started = [r for r in records(ctx) if r["kind"] == "task_started"]
    assert [r.get("kwargs") for r in started] == [None, None, None] and started[0]["args"] == [1]


RAN: list[str] = []


@task.with_options(requires_approval=True, approval_target="account")
async def wire(account: str, amount: int) -> str:
    RAN.append(account)
    return f"sent {amount} to {account}"


@task.with_options(requires_approval=lambda account, amount: amount > 100)
async def maybe_wire(account: str, amount: int) -> str:
    RAN.append(account)
    return f"sent {amount}"


@workflow
async def payouts(ctx: ExecutionContext[int]) -> Any:
    small = await maybe_wire("a", 10)  # the predicate says no approval is needed
    try:
        big = await wire("b", ctx.input)
    except ApprovalRejected as err:
        return {"small": small, "rejected": err.task_name, "reason": err.reason}
    return {"small": small, "big": big}


def test_a_task_that_requires_approval_pauses_before_it_runs_and_a_resume_approves_it(home: Path) -> None:
    RAN.clear()
    ctx = payouts.run(500)
    assert ctx.is_paused and RAN == ["a"]
    paused = [e for e in ctx.events if e.type == ExecutionEventType.WORKFLOW_PAUSED][-1]
    assert paused.value["name"] == "approval:wire"
    assert paused.value["output"] == {"type": "approval_required", "task_name": "wire", "target_value": "b"}
    awaiting = [e for e in ctx.events if e.type == ExecutionEventType.TASK_AWAITING_APPROVAL]
    assert [(e.name, e.value["task_name"], e.value["target_value"]) for e in awaiting] == [("wire", "wire", "b")]
    done = payouts.resume(ctx.execution_id, {"approved": True})
    assert done.output == {"small": "sent 10", "big": "sent 500 to b"} and RAN == ["a", "b"]
    assert [e.type for e in done.events if e.type.value.startswith("TASK_APPRO")] == [ExecutionEventType.TASK_APPROVED]


def test_a_rejected_approval_raises_approval_rejected_without_running_the_task(home: Path) -> None:
    RAN.clear()
    ctx = payouts.run(500)
    done = payouts.resume(ctx.execution_id, {"approved": False, "reason": "too much"})
    assert done.output == {"small": "sent 10", "rejected": "wire", "reason": "too much"} and RAN == ["a"]
    assert ExecutionEventType.TASK_REJECTED in [e.type for e in done.events]


SECRET_VALUES: list[str] = []


@task.with_options(sensitive=True)
async def issue_token(user: str) -> str:
    token = f"tok-{user}-{len(SECRET_VALUES)}"
    SECRET_VALUES.append(token)
    return token


@workflow
async def login(ctx: ExecutionContext[str]) -> int:
    token = await issue_token(ctx.input)
    from flux.tasks import pause

    await pause("next")
    return len(token)


def test_a_sensitive_task_records_neither_arguments_nor_result_and_runs_again_on_replay(home: Path) -> None:
    SECRET_VALUES.clear()
    ctx = login.run("ann")
    started, completed = [r for r in records(ctx) if r["kind"] in ("task_started", "task_completed")]
    assert started["args"] == ["[REDACTED:sensitive]"] and completed["value"] == "[REDACTED:sensitive]"
    done = login.resume(ctx.execution_id, None)
    assert done.output == len("tok-ann-0") and len(SECRET_VALUES) == 2  # the body ran again
    written = b"".join(p.read_bytes() for p in (home / "executions").glob("*"))
    assert b"tok-ann" not in written and b"ann" not in written.replace(b'"input":"ann"', b"")
    assert os.path.exists(done.journal_path)
