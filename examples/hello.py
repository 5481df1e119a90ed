"""Hello world: one workflow, one task.

    flux exec examples/hello.py hello_world --input '"World"'
"""

from flux import ExecutionContext, task, workflow


@task
async def say_hello(name: str) -> str:
    return f"Hello, {name}"


@workflow
async def hello_world(ctx: ExecutionContext[str]) -> str:
    return await say_hello(ctx.input)
