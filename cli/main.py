"""The `flux` command: parse arguments, call one function of `flux.runner`, render, exit."""

from __future__ import annotations

import contextlib
import inspect
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flux import debug as debug_replay
from flux import journals, runner
from flux._cli.render import (
    break_banner,
    printable,
    render_calls,
    render_diff,
    render_divergence,
    render_fork,
    render_replay,
    render_timeline,
    replay_summary,
    short,
)
from flux._engine.clock import iso
from flux.context import ExecutionContext
from flux.errors import FluxError
from flux.recover import recover_store

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run durable workflows whose every step is recorded in a journal, and replay them.",
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_state: dict[str, bool] = {"debug": False}

StoreOpt = typer.Option(
    None,
    "--store",
    "--home",
    help="The store: a directory or a store URL (default: $FLUX_STORE, else $FLUX_HOME, else ./.flux).",
)
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks of errors.")
DurabilityOpt = typer.Option(None, "--durability", help="fsync (default) or os.")
FileOpt = typer.Option(None, "--file", help="The workflow's file, if it moved since the run started.")
ModuleOpt = typer.Option(
    None, "--module", "-m", help="The workflow's module (dotted name), if it moved since the run started."
)
InputFileOpt = typer.Option(None, "--input-file", help="File holding the input as JSON.")


def _fail(error: BaseException) -> NoReturn:
    if _state["debug"]:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    name = type(error).__name__
    message = printable(str(error).replace("\n", " "))
    err.print(f"[red]{escape(name)}: {escape(message)}[/red]")
    raise typer.Exit(EXIT_BAD_INPUT)


F = TypeVar("F", bound=Callable[..., Any])


def command(name: str | None = None) -> Callable[[F], F]:
    """`@app.command`, with the one error boundary every command shares: errors of the tree, bad
    values and OS errors become one red line and exit 2 (`--debug` adds the traceback)."""

    def decorate(fn: F) -> F:
        def run(*args: Any, **kwargs: Any) -> Any:
            _state["debug"] = bool(kwargs.get("debug"))
            try:
                return fn(*args, **kwargs)
            except (FluxError, ValueError, OSError) as error:
                _fail(error)

        # typer reads the signature and help of the command; `__wrapped__` would make it call
        # `fn` itself, past the boundary.
        run.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]  # read by inspect
        run.__doc__, run.__name__ = fn.__doc__, fn.__name__
        app.command(name)(run)
        return fn

    return decorate


@contextlib.contextmanager
def _interruptible(execution_id: str, store: str | None) -> Iterator[None]:
    """Ctrl-C stops the run where it is, as a crash would (nothing more is recorded): say which
    execution it was and how to go on with it."""
    try:
        yield
    except KeyboardInterrupt:
        store_arg = f" --store {store}" if store else ""
        err.print(
            f"interrupted: execution {execution_id} stopped where it was; "
            f"continue it with: flux resume {execution_id}{store_arg}"
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _read_input(input: str | None, input_file: str | None) -> Any:
    if input is not None and input_file is not None:
        raise ValueError("give --input or --input-file, not both")
    if input_file is not None:
        try:
            with open(input_file, "rb") as fh:
                text = fh.read().decode("utf-8")
        except OSError as error:
            raise ValueError(f"{input_file}: cannot read the input file ({error.strerror})") from None
        return runner.parse_input(text, input_file)
    if input is None:
        return None
    return runner.parse_input(input)


def _report(ctx: ExecutionContext[Any], store: str | None) -> None:
    out.print(f"execution_id: {ctx.execution_id}")
    out.print(f"workflow: {escape(printable(ctx.name))}")
    colour = {"completed": "green", "failed": "red", "paused": "yellow", "cancelled": "magenta"}.get(
        ctx.status, "white"
    )
    out.print(f"status: [{colour}]{ctx.status}[/{colour}]")
    if ctx.has_succeeded:
        out.print(f"output: {escape(short(ctx.output, 2000))}")
    elif ctx.has_failed:
        error = ctx.output
        out.print(f"[red]error: {escape(type(error).__name__)}: {escape(printable(error))}[/red]")
    elif ctx.is_paused:
        store_arg = f" --store {store}" if store else ""
        out.print(f"resume with: flux resume {ctx.execution_id}{store_arg} --input '<json>'")
    elif ctx.status == "cancelled":
        out.print("the execution was cancelled; it will not run again")
    if ctx.has_failed or ctx.status == "cancelled":
        raise typer.Exit(EXIT_FAILED)


@command("exec")
def exec_(
    target: str = typer.Argument(..., help="The workflow's file (app.py), or module:workflow (pkg.module:wf)."),
    workflow: str = typer.Argument(None, help="Name of the workflow in that file or module."),
    input: str = typer.Option(None, "--input", "-i", help="Input as JSON."),
    input_file: str = InputFileOpt,
    execution_id: str = typer.Option(None, "--id", help="Execution id to use (an existing one is not made again)."),
    store: str = StoreOpt,
    durability: str = DurabilityOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run a new execution of a workflow: `flux exec app.py wf` or `flux exec pkg.module:wf`."""
    value = _read_input(input, input_file)
    execution_id = execution_id or uuid.uuid4().hex
    if sys.stderr.isatty():
        err.print(f"execution_id: {execution_id}")
    with _interruptible(execution_id, store):
        ctx = runner.exec_file(target, workflow, value, store=store, durability=durability, execution_id=execution_id)
    _report(ctx, store)


@command()
def resume(
    execution_id: str = typer.Argument(..., help="The execution to continue."),
    input: str = typer.Option(None, "--input", "-i", help="Input as JSON, returned by the waiting pause()."),
    input_file: str = InputFileOpt,
    pause: str = typer.Option(None, "--pause", help="The pause to answer (its name or call id), when several wait."),
    store: str = StoreOpt,
    file: str = FileOpt,
    module: str = ModuleOpt,
    durability: str = DurabilityOpt,
    debug: bool = DebugOpt,
) -> None:
    """Continue a paused or interrupted execution."""
    value = _read_input(input, input_file)
    has_input = input is not None or input_file is not None
    with _interruptible(execution_id, store):
        ctx = runner.resume_execution(
            execution_id, value, store=store, file=file, module=module, pause=pause, durability=durability,
            has_input=has_input,
        )
    _report(ctx, store)


@command()
def cancel(
    execution_id: str = typer.Argument(..., help="The execution to cancel."),
    store: str = StoreOpt,
    file: str = FileOpt,
    module: str = ModuleOpt,
    debug: bool = DebugOpt,
) -> None:
    """Cancel a running, paused or interrupted execution (its sagas compensate)."""
    status = runner.cancel_execution(execution_id, store=store, file=file, module=module)
    out.print(f"execution_id: {execution_id}")
    out.print(f"status: {status}")


@command("clear-cache")
def clear_cache(store: str = StoreOpt, debug: bool = DebugOpt) -> None:
    """Delete every cached task result (tasks declared with cache=True) in the store."""
    count = runner.clear_cache(store)
    out.print(f"removed {count} cached results")


@command()
def recover(
    store: str = StoreOpt,
    file: str = typer.Option(None, "--file", help="The workflows' file, if it moved since the runs started."),
    module: str = ModuleOpt,
    durability: str = DurabilityOpt,
    concurrency: int = typer.Option(8, "--concurrency", help="How many executions to resume at once."),
    debug: bool = DebugOpt,
) -> None:
    """Resume every interrupted execution in the store; paused, finished and running ones are left alone."""
    rows = recover_store(store, durability=durability, file=file, module=module, concurrency=concurrency)
    if not rows:
        out.print("no interrupted executions")
        return
    table = Table(box=None)
    table.add_column("execution_id", no_wrap=True)
    table.add_column("workflow")
    table.add_column("result")
    for row in rows:
        if row.error is not None:
            result = f"[red]{escape(type(row.error).__name__)}[/red] (below)"
        elif row.status == "locked":
            result = "skipped: another process runs it"
        elif row.status == "waiting" and row.wake_at is not None:
            result = f"waiting: its next durable wait ends at {iso(row.wake_at)}; recover it then"
        else:
            result = row.status
        table.add_row(row.execution_id, escape(printable(row.workflow)), result)
    out.print(table)
    for row in rows:
        if row.error is not None:
            # In full, one line each: a table cell would cut the path:line off.
            message = printable(str(row.error).replace("\n", " "))
            err.print(f"[red]{escape(type(row.error).__name__)}: {escape(message)}[/red]")
    if any(row.status == "error" for row in rows):
        raise typer.Exit(EXIT_BAD_INPUT)
    if any(row.status == "failed" for row in rows):
        raise typer.Exit(EXIT_FAILED)


@command("list")
def list_(store: str = StoreOpt, debug: bool = DebugOpt) -> None:
    """List the executions in the store."""
    rows = list(reversed(runner.list_executions(store).items))
    if not rows:
        out.print("no executions")
        return
    # Plain aligned text: a rich Table takes seconds to lay out for thousands of rows.
    cells = [("execution_id", "workflow", "status", "started", "events")]
    cells += [
        (r.execution_id, printable(r.workflow), str(r.status), printable(r.created[:19]), str(max(r.records - 1, 0)))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    sys.stdout.write("\n".join(lines) + "\n")
    for row in rows:
        if row.problem:
            # What is wrong with each damaged journal, path:line included, one line each.
            problem = printable(row.problem.replace("\n", " "))
            err.print(f"[red]damaged: {escape(problem)}[/red]")


@command()
def show(
    execution_id: str = typer.Argument(...),
    records: bool = typer.Option(False, "--records", help="One row per record instead of one per call."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Show the timeline of one execution: one row per call (or per record with --records)."""
    view = runner.read_execution(execution_id, store)
    shown = (
        render_timeline(list(debug_replay.open_journal(view.path)[0].records))
        if records
        else render_calls(list(view.calls))
    )
    out.print(f"execution_id: {view.execution_id}  status: {view.status}  journal: {escape(printable(view.path))}")
    for waiting in view.waiting:
        where = "" if waiting.execution_id == view.execution_id else f" in sub-workflow {waiting.execution_id}"
        until = f", on its own at {waiting.wake_at}" if waiting.wake_at is not None else ""
        name = escape(printable(waiting.name))
        out.print(f"waiting at pause {name!r} (call {waiting.call_id}{escape(where)}{until})")
    out.print(shown)


@command()
def replay(
    journal: str = typer.Argument(..., help="Path of the journal (.jsonl), or an execution id in the store."),
    file: str = FileOpt,
    module: str = ModuleOpt,
    until: int = typer.Option(
        None, "--until", help="Stop after the record with this seq and show the workflow's state."
    ),
    break_at: str = typer.Option(
        None, "--break-at", help="Start pdb in the workflow when this seq (or task name) is replayed."
    ),
    summary: bool = typer.Option(False, "--summary", "--quiet", "-q", help="Print one line only."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Re-run a journal against the current code without running any task body."""

    def on_break(point: debug_replay.BreakPoint) -> None:
        out.print(break_banner(point))
        debug_replay.break_into(point)

    result = debug_replay.replay(
        journal, store=store, file=file, module=module, until=until, break_at=break_at, on_break=on_break,
        calls=not summary or as_json,
    )
    if as_json:
        sys.stdout.write(orjson.dumps(result.as_json(), default=repr).decode() + "\n")
    elif result.divergence is not None:
        out.print(render_divergence(result.divergence))
    elif summary:
        out.print(replay_summary(result))
    else:
        out.print(render_replay(result))
    if result.divergence is not None:
        _fail(result.divergence.error)
    if not result.matches:
        raise typer.Exit(EXIT_FAILED)


@command()
def diff(
    a: str = typer.Argument(..., help="A journal path, or an execution id in the store."),
    b: str = typer.Argument(..., help="Another journal of the same workflow."),
    as_json: bool = typer.Option(False, "--json", help="Print the differences as JSON."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Compare two journals of the same workflow: exit 0 if the same in substance, 1 if not."""
    result = journals.diff_journals(a, b, store=store)
    if as_json:
        sys.stdout.write(orjson.dumps(result.as_json()).decode() + "\n")
    else:
        out.print(render_diff(result))
    if not result.same:
        raise typer.Exit(EXIT_FAILED)


@command()
def fork(
    execution_id: str = typer.Argument(..., help="The execution to fork (it is not changed)."),
    at: int = typer.Option(..., "--at", help="Keep the first AT records (seq 0 to AT-1)."),
    set_result: str = typer.Option(None, "--set-result", help="SEQ=JSON: replace the result recorded at SEQ."),
    input: str = typer.Option(None, "--input", "-i", help="Input as JSON for a pause the fork waits at."),
    store: str = StoreOpt,
    file: str = FileOpt,
    durability: str = DurabilityOpt,
    debug: bool = DebugOpt,
) -> None:
    """Make a new execution of the first AT records of another, then continue it live."""
    value = _read_input(input, None)
    change = journals.parse_set_result(set_result) if set_result is not None else None
    made = journals.fork_execution(execution_id, at, set_result=change, store=store, durability=durability)
    out.print(render_fork(made))
    ctx = journals.continue_fork(
        made.execution_id, store=store, file=file, input=value, has_input=input is not None, durability=durability
    )
    _report(ctx, store)


@command()
def check(
    file: str = typer.Argument(..., help="Python file that defines the workflow."),
    workflow: str = typer.Argument(..., help="Name of the workflow in that file."),
    input: str = typer.Option(None, "--input", "-i", help="Input as JSON."),
    input_file: str = InputFileOpt,
    resume_input: str = typer.Option(None, "--resume-input", help="JSON that every pause() returns when resumed."),
    cuts: int = typer.Option(
        None, "--cuts", help="Interrupt after this many evenly spread records (default: every one)."
    ),
    no_subprocess: bool = typer.Option(False, "--no-subprocess", help="Skip the replay in another process."),
    tmp_dir: str = typer.Option(None, "--tmp-dir", help="Directory for the temporary stores (default: the system's)."),
    debug: bool = DebugOpt,
) -> None:
    """Check that WORKFLOW is deterministic for one input: exit 0 if every property holds, 1 if not."""
    from flux import testing
    from flux._cli.render_check import render_check

    value = _read_input(input, input_file)
    resumed = runner.parse_input(resume_input, "--resume-input") if resume_input is not None else None
    report = testing.check_file(
        file, workflow, value, resume_inputs=resumed, cuts="all" if cuts is None else cuts,
        subprocess_replay=not no_subprocess, tmp_dir=tmp_dir,
    )
    out.print(f"workflow: {escape(report.workflow)}  input: {escape(short(report.input))}  ({report.seconds:.2f} s)")
    out.print(render_check(report))
    if not report.ok:
        out.print(f"[red]not deterministic[/red]; journals kept in {escape(report.store or '?')}")
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
