"""An approval workflow that waits for a person with `pause`.

    flux exec examples/approval.py expense_approval --input '{"employee": "ada", "amount": 120}'
    flux resume <execution_id> --input '{"approved": true, "by": "grace"}'
"""

from __future__ import annotations

from flux import ExecutionContext, task, workflow
from flux.tasks import pause


@task
async def validate(claim: dict) -> dict:
    if claim["amount"] <= 0:
        raise ValueError("amount must be positive")
    return {**claim, "validated": True}


@task
async def pay(claim: dict, decision: dict) -> str:
    return f"paid {claim['amount']} to {claim['employee']} (approved by {decision['by']})"


@workflow
async def expense_approval(ctx: ExecutionContext[dict]) -> str:
    claim = await validate(ctx.input)
    decision = await pause("manager_approval")
    if not decision or not decision.get("approved"):
        return "rejected"
    return await pay(claim, decision)
