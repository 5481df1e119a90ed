"""The `flux` command: parse arguments, call one function of `flux.runner`, render, exit."""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer
from rich.table import Table

from flux import runner
from flux._cli import base
from flux._cli.base import (
    COLOURS,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    dumps,
    emit,
    err,
    escape,
    execution_shape,
    interruptible,
    out,
    printable,
    progress_line,
    read_input,
    report,
    state,
)
from flux._cli.render import (
    printable_lines,
    render_calls,
    render_diff,
    render_fork,
    render_timeline,
    short,
)
from flux._cli.schedules import schedule_app
from flux._engine.clock import iso, parse_moment
from flux._engine.store import open_store
from flux.errors import FluxError

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    help="Run durable workflows whose every step is recorded in a journal, and replay them.",
    pretty_exceptions_enable=False,
)

_STORE_HELP = (
    "The store: a directory or a store URL (default: $FLUX_STORE, else $FLUX_HOME, else the nearest .flux "
    "folder here or above, else ./.flux)."
)
StoreOpt = typer.Option(None, "--store", "--home", help=_STORE_HELP)
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks of errors, and the library's log on stderr.")
JsonOpt = typer.Option(False, "--json", help="Print the result as one JSON document (flux spec 'command line').")
DurabilityOpt = typer.Option(None, "--durability", help="fsync (default) or os.")
FileOpt = typer.Option(None, "--file", help="The workflow's file, if it moved since the run started.")
ModuleOpt = typer.Option(
    None, "--module", "-m", help="The workflow's module (dotted name), if it moved since the run started."
)
InputFileOpt = typer.Option(None, "--input-file", help="File holding the input as JSON; - reads standard input.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("flux-replay")
        except PackageNotFoundError:
            number = "unknown (not installed)"
        out.print(f"flux {number} (Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _options(
    store: str = StoreOpt,
    debug: bool = DebugOpt,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Run durable workflows whose every step is recorded in a journal, and replay them."""
    state["store"], state["debug"] = store, debug


def _fail(error: BaseException) -> NoReturn:
    base.fail(error)


F = TypeVar("F", bound=Callable[..., Any])


def command(name: str | None = None) -> Callable[[F], F]:
    """`@app.command`, with the one error boundary every command shares: errors of the tree, bad
    values and OS errors become one red line and exit 2 (`--debug` adds the traceback)."""

    def decorate(fn: F) -> F:
        def run(**kwargs: Any) -> Any:
            return base.guarded(fn, kwargs)

        # typer reads the signature and help of the command; `__wrapped__` would make it call
        # `fn` itself, past the boundary.
        run.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]  # read by inspect
        run.__doc__, run.__name__ = fn.__doc__, fn.__name__
        app.command(name)(run)
        return fn

    return decorate


def _resolve(execution_id: str, store: str | None) -> str:
    return runner.resolve_execution_id(execution_id, store)


def _journal_arg(text: str, store: str | None) -> str:
    return base.journal_arg(text, store)


@command("exec")
def exec_(
    target: str = typer.Argument(..., help="The workflow's file (app.py), or module:workflow (pkg.module:wf)."),
    workflow: str = typer.Argument(None, help="Name of the workflow in that file or module."),
    input: str = typer.Option(None, "--input", "-i", help="Input as JSON."),
    input_file: str = InputFileOpt,
    execution_id: str = typer.Option(None, "--id", help="Execution id to use (an existing one is not made again)."),
    store: str = StoreOpt,
    durability: str = DurabilityOpt,
    detach: bool = typer.Option(False, "--detach", help="Only submit it: print its id; `flux worker` runs it."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run a new execution of a workflow: `flux exec app.py wf` or `flux exec pkg.module:wf`."""
    base.exec_command(
        target=target, workflow=workflow, input=input, input_file=input_file, execution_id=execution_id,
        store=store, durability=durability, detach=detach, as_json=as_json, debug=debug,
    )


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
    detach: bool = typer.Option(
        False, "--detach", help="Only record the answer (or make it runnable): print its id; `flux worker` runs it."
    ),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Continue a paused or interrupted execution (an unambiguous prefix of its id will do)."""
    value = read_input(input, input_file)
    has_input = input is not None or input_file is not None
    execution_id = _resolve(execution_id, store)
    if detach:
        handed = runner.hand_off_resume(
            execution_id, value, store=store, pause=pause, durability=durability, has_input=has_input
        )
        if as_json:
            emit({"execution_id": handed})
        else:
            out.print(handed)
        return
    progress = progress_line(as_json)
    with interruptible(execution_id, store), progress or contextlib.nullcontext():
        ctx = runner.resume_execution(
            execution_id, value, store=store, file=file, module=module, pause=pause, durability=durability,
            has_input=has_input, observer=progress,
        )
    report(ctx, store, as_json)


@command()
def cancel(
    execution_id: str = typer.Argument(..., help="The execution to cancel."),
    store: str = StoreOpt,
    file: str = FileOpt,
    module: str = ModuleOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Cancel a running, paused or interrupted execution (its sagas compensate)."""
    execution_id = _resolve(execution_id, store)
    status = runner.cancel_execution(execution_id, store=store, file=file, module=module)
    if as_json:
        emit({**execution_shape(execution_id, store), "status": str(status)})
        return
    out.print(f"execution_id: {execution_id}")
    out.print(f"status: {status}")


@command()
def delete(
    execution_id: str = typer.Argument(..., help="The execution to delete (an id or an unambiguous prefix)."),
    force: bool = typer.Option(False, "--force", help="Delete it even if it has not finished (paused, interrupted)."),
    store: str = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Delete an execution and its sub-workflows' journals; never one a process runs."""
    from flux.retention import delete_execution

    execution_id = _resolve(execution_id, store)
    deleted = delete_execution(execution_id, store, force=force)
    if as_json:
        emit({"deleted": deleted})
        return
    for one in deleted:
        out.print(f"deleted {one}")


FinalStatusOpt = typer.Option(
    None, "--status", "-s", help="Only executions that ended so (repeat): completed, failed, cancelled."
)


@command()
def prune(
    finished_before: str = typer.Option(
        ..., "--finished-before", help="An age (30d, 12h, 90m) or an ISO date: executions that finished before go."
    ),
    status: list[str] = FinalStatusOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Only print what would be deleted."),
    store: str = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Delete every finished execution older than an age, with its sub-workflows."""
    from flux.retention import prune_store

    pruned = prune_store(store, finished_before=finished_before, statuses=status or None, dry_run=dry_run)
    if as_json:
        emit({**pruned.to_json(), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    for one in pruned.deleted:
        out.print(f"{verb} {one}")
    for one, why in pruned.skipped.items():
        err.print(f"kept {one}: {printable(why)}")
    out.print(f"{verb} {len(pruned.deleted)} executions ({pruned.journals} journals)")


# `flux purge`, the name the PostgreSQL operations docs use: the same command.
command("purge")(prune)


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
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Resume every interrupted execution in the store; paused, finished and running ones are left alone."""
    from flux.recover import recover_store

    rows = recover_store(store, durability=durability, file=file, module=module, concurrency=concurrency)
    if as_json:
        emit({"executions": [
            {
                "execution_id": row.execution_id,
                "workflow": row.workflow,
                "status": row.status,
                "error": None if row.error is None else {"type": type(row.error).__name__, "message": str(row.error)},
                "wake_at": iso(row.wake_at) if row.wake_at is not None else None,
            }
            for row in rows
        ]})
    elif not rows:
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
    if rows and not as_json:
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


WorkerTargetsArg = typer.Argument(..., help="Files (app.py) or modules (pkg.module) whose workflows to run.")
QueueOpt = typer.Option(None, "--queue", "-q", help="A queue to claim from (repeat; default: default).")


@command()
def worker(
    targets: list[str] = WorkerTargetsArg,
    store: str = StoreOpt,
    concurrency: int = typer.Option(256, "--concurrency", "-c", help="Executions run at once."),
    lease: float = typer.Option(
        None, "--lease", help="Seconds a lease lasts without renewal (PostgreSQL; default 15)."
    ),
    queue: list[str] = QueueOpt,
    park_after: float = typer.Option(
        5.0, "--park-after", help="Park runs that only wait on the clock this long or more (PostgreSQL)."
    ),
    durability: str = DurabilityOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run the store's ready executions of these workflows until SIGTERM or Ctrl-C (--debug: log each
    claim, park, takeover and refusal)."""
    from flux import worker as worker_mod

    stats, names = worker_mod.serve(
        targets,
        store=store,
        concurrency=concurrency,
        lease=lease,
        queues=queue or ["default"],
        park_after=park_after,
        durability=durability,
        on_ready=lambda names: out.print(f"worker ready: {', '.join(names)}"),
    )
    out.print(
        f"worker stopped: {stats.claimed} claimed, {stats.finished} finished, {stats.paused} paused, "
        f"{stats.parked} parked, {stats.diverged} diverged, {stats.skipped} skipped, {stats.errors} errors"
    )


StatusOpt = typer.Option(
    None, "--status", "-s", help="Only executions in this status (repeat for several): running, paused, "
    "interrupted, completed, failed, cancelled, damaged, ..."
)


@command("list")
def list_(
    status: list[str] = StatusOpt,
    workflow: str = typer.Option(None, "--workflow", "-w", help="Only executions of this workflow."),
    schedule: str = typer.Option(None, "--schedule", help="Only executions this schedule started."),
    since: str = typer.Option(None, "--since", help="Only those started since: an age (12h, 30d) or an ISO time."),
    before: str = typer.Option(None, "--before", help="Only those started before: an age (12h, 30d) or an ISO time."),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many (0: no limit)."),
    cursor: str = typer.Option(None, "--cursor", help="Go on after the last page (the cursor it printed)."),
    as_json: bool = JsonOpt,
    jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON object per execution, one per line."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """List executions, newest first: 50 at a time, with filters; the next page with --cursor."""
    now = time.time()
    page = runner.list_executions(
        store,
        status=status or None,
        workflow=workflow,
        limit=limit or None,
        cursor=cursor,
        created_after=parse_moment(since, now, "--since") if since is not None else None,
        created_before=parse_moment(before, now, "--before") if before is not None else None,
        schedule=schedule,
    )
    if as_json:
        emit(page.to_json())
        return
    if jsonl:
        sys.stdout.write("".join(dumps(row.to_json()) + "\n" for row in page.items))
        if page.cursor is not None:
            err.print(f"more: flux list --cursor {page.cursor}")
        return
    rows = page.items
    if not rows:
        where = runner.store_place(open_store(store))
        filtered = any(x is not None for x in (workflow, schedule, since, before, cursor)) or bool(status)
        out.print(f"no executions{' match' if filtered else ''} in store {escape(printable(where))}")
        return
    # Plain aligned text: a rich Table takes seconds to lay out for thousands of rows. The
    # schedule column only when a row of the page was started by one.
    scheduled = any(r.schedule for r in rows)
    cells = [("execution_id", "workflow", "status", "started", "records") + (("schedule",) if scheduled else ())]
    cells += [
        (r.execution_id, printable(r.workflow), str(r.status), printable(r.created[:19]), str(r.records))
        + ((printable(r.schedule or "-"),) if scheduled else ())
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    sys.stdout.write("\n".join(lines) + "\n")
    for row in rows:
        if row.problem:
            # What is wrong with each damaged journal, path:line included, one line each.
            problem = printable(row.problem.replace("\n", " "))
            err.print(f"[red]damaged: {escape(problem)}[/red]")
    if page.cursor is not None:
        err.print(f"more: flux list --cursor {page.cursor}")


@command()
def show(
    execution_id: str = typer.Argument(..., help="The execution (an unambiguous prefix of its id will do)."),
    records: bool = typer.Option(False, "--records", help="One row per record instead of one per call."),
    as_json: bool = JsonOpt,
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Show one execution: input, output or error with its traceback, what it waits for, its parent and
    children, and one row per call (calls run again after a crash are marked rerun)."""
    execution_id = _resolve(execution_id, store)
    view = runner.read_execution(execution_id, store)
    if as_json:
        emit(view.to_json())
        return
    colour = COLOURS.get(view.status, "white")
    out.print(f"execution_id: {view.execution_id}")
    out.print(f"workflow: {escape(printable(view.workflow))}")
    out.print(f"status: [{colour}]{view.status}[/{colour}]")
    out.print(f"started: {view.created}  last record: {view.updated}  records: {view.records}")
    out.print(f"journal: {escape(printable(view.path))}")
    if view.schedule is not None:
        how = "triggered by hand from" if view.schedule.get("trigger") else "a fire of"
        name = printable(str(view.schedule.get("name")))
        out.print(f"schedule: {how} schedule {escape(name)} at {escape(printable(str(view.schedule.get('at'))))}")
    if view.divergence is not None:
        out.print(f"[red]diverged: {escape(printable(str(view.divergence.get('message', ''))))}[/red]")
    if view.forked_from is not None:
        out.print(f"forked from: {escape(printable(dumps(view.forked_from)))}")
    if view.parent is not None:
        parent, call = view.parent.get("execution_id"), view.parent.get("call_id")
        out.print(f"parent: {escape(printable(parent))} (call {escape(printable(call))})")
    out.print(f"input: {escape(printable(dumps(view.input)))}")
    if view.status == "completed":
        out.print(f"output: {escape(printable(dumps(view.output)))}")
    if view.error is not None:
        kind, message = printable(view.error["type"]), printable(view.error["message"])
        out.print(f"[red]error: {escape(kind)}: {escape(message)}[/red]")
        if view.error.get("traceback"):
            out.print("traceback:")
            out.print(escape(printable_lines(view.error["traceback"].rstrip())))
    for waiting in view.waiting:
        where = "" if waiting.execution_id == view.execution_id else f" in sub-workflow {waiting.execution_id}"
        until = f", on its own at {iso(waiting.wake_at)}" if waiting.wake_at is not None else ""
        name = escape(printable(waiting.name))
        out.print(f"waiting at pause {name!r} (call {waiting.call_id}{escape(where)}{until})")
    for timer in view.timers:
        out.print(f"timer: call {timer['call_id']} fires at {timer['wake_at']}")
    for call_id, child in view.children.items():
        out.print(f"child: call {escape(printable(call_id))} -> {escape(printable(child))}")
    from flux import debug as debug_replay

    shown = (
        render_timeline(list(debug_replay.open_journal(view.path)[0].records))
        if records
        else render_calls(list(view.calls))
    )
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
    full: bool = typer.Option(
        False, "--full", help="With --summary: check every line, even those a replay snapshot vouches for."
    ),
    as_json: bool = JsonOpt,
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Re-run a journal against the current code without running any task body."""
    base.replay_command(
        journal=journal, file=file, module=module, until=until, break_at=break_at, summary=summary,
        as_json=as_json, store=store, debug=debug, full=full,
    )


@command()
def diff(
    a: str = typer.Argument(..., help="A journal path, or an execution id in the store."),
    b: str = typer.Argument(..., help="Another journal of the same workflow."),
    as_json: bool = JsonOpt,
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Compare two journals of the same workflow: exit 0 if the same in substance, 1 if not."""
    from flux import journals

    result = journals.diff_journals(_journal_arg(a, store), _journal_arg(b, store), store=store)
    if as_json:
        emit(result.as_json())
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
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Make a new execution of the first AT records of another, then continue it live."""
    from flux import journals

    value = read_input(input, None)
    change = journals.parse_set_result(set_result) if set_result is not None else None
    execution_id = _resolve(execution_id, store)
    made = journals.fork_execution(execution_id, at, set_result=change, store=store, durability=durability)
    if not as_json:
        out.print(render_fork(made))
    ctx = journals.continue_fork(
        made.execution_id, store=store, file=file, input=value, has_input=input is not None, durability=durability
    )
    report(ctx, store, as_json)


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
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Check that WORKFLOW is deterministic for one input: exit 0 if every property holds, 1 if not."""
    from flux import testing
    from flux._cli.render_check import render_check

    value = read_input(input, input_file)
    resumed = runner.parse_input(resume_input, "--resume-input") if resume_input is not None else None
    report = testing.check_file(
        file, workflow, value, resume_inputs=resumed, cuts="all" if cuts is None else cuts,
        subprocess_replay=not no_subprocess, tmp_dir=tmp_dir,
    )
    if as_json:
        emit(report.as_json())
        if not report.ok:
            raise typer.Exit(EXIT_FAILED)
        return
    out.print(f"workflow: {escape(report.workflow)}  input: {escape(short(report.input))}  ({report.seconds:.2f} s)")
    out.print(render_check(report))
    if not report.ok:
        out.print(f"[red]not deterministic[/red]; journals kept in {escape(report.store or '?')}")
        raise typer.Exit(EXIT_FAILED)


app.add_typer(schedule_app, name="schedule")


@command("export")
def export(
    execution_id: str = typer.Argument(..., help="The execution whose journal to write out."),
    output: str = typer.Option(None, "--output", "-o", help="Write to this file instead of standard output."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Write an execution's journal, byte for byte (import it into any store with `flux import`)."""
    data = runner.export_execution(execution_id, store)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with open(output, "xb") as fh:  # never overwrites a file
        fh.write(data)


@command("import")
def import_(
    journal: str = typer.Argument(..., help="A journal file (`flux export`, or a file store's <id>.jsonl)."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Add a journal to the store under its own execution id, byte for byte (checked first)."""
    summary = runner.import_execution(journal, store)
    out.print(f"execution_id: {summary.execution_id}")
    out.print(f"workflow: {escape(summary.workflow)}")
    out.print(f"status: {summary.status}")
    out.print(f"records: {summary.records}")


queue_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL fleet's queues and their limits.")
app.add_typer(queue_app, name="queue")


@queue_app.command("set")
def queue_set(
    name: str = typer.Argument(..., help="The queue (`flux worker --queue`, FLUX_QUEUE when submitting)."),
    concurrency: int = typer.Option(None, "--concurrency", help="At most this many of its executions run at once."),
    rate: int = typer.Option(None, "--rate", help="At most this many of its executions start in any --per seconds."),
    per: float = typer.Option(None, "--per", help="The window of --rate, in seconds."),
    unlimited: bool = typer.Option(False, "--unlimited", help="Take the queue's limits away."),
    store: str = StoreOpt,
    debug: bool = DebugOpt,
) -> None:
    """Limit how many executions of a queue the whole fleet runs at once, or starts in a window
    of time (PostgreSQL). A limit not given is kept."""
    state["debug"] = state["debug"] or debug
    store = store if store is not None else state["store"]
    try:
        limited = concurrency is not None or rate is not None or per is not None
        if limited == unlimited:
            raise ValueError("give --concurrency N, --rate N --per SECONDS, or --unlimited")
        # Every limit is checked before any is written: a command refused changes nothing.
        runner.check_queue_limits(concurrency, rate, per)
        if unlimited or concurrency is not None:
            runner.set_queue_limit(name, concurrency, store)
        if unlimited or rate is not None:
            runner.set_queue_rate(name, rate, per, store)
    except (FluxError, ValueError, OSError) as error:
        _fail(error)
    said = [] if concurrency is None else [f"at most {concurrency} at once"]
    said += [] if rate is None else [f"at most {rate} started per {per:g} s"]
    out.print(f"queue {escape(name)}: " + ("no limit" if unlimited else ", ".join(said)))


@queue_app.command("list")
def queue_list(store: str = StoreOpt, as_json: bool = JsonOpt, debug: bool = DebugOpt) -> None:
    """The queues with executions or a limit: the limits, how many run now, how many are ready."""
    state["debug"] = state["debug"] or debug
    store = store if store is not None else state["store"]
    try:
        rows = runner.queue_table(store)
    except (FluxError, ValueError, OSError) as error:
        _fail(error)
    if as_json:
        emit({"queues": [
            {
                "name": row.name, "concurrency": row.concurrency,
                "rate": None if row.rate is None else {"limit": row.rate, "per": row.per},
                "running": row.running, "ready": row.ready,
            }
            for row in rows
        ]})
        return
    if not rows:
        out.print("no queues")
        return
    table = Table("queue", "limit", "rate", "running", "ready")
    for row in rows:
        table.add_row(
            escape(row.name), "-" if row.concurrency is None else str(row.concurrency),
            "-" if row.rate is None else f"{row.rate} per {row.per:g} s", str(row.running), str(row.ready),
        )
    out.print(table)


db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL store's schema.")
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(store: str = StoreOpt, debug: bool = DebugOpt) -> None:
    """Create or update the Flux schema in a PostgreSQL database (safe beside other processes)."""
    state["debug"] = state["debug"] or debug
    store = store if store is not None else state["store"]
    try:
        applied, version = runner.migrate_store(store)
    except (FluxError, ValueError, OSError) as error:
        _fail(error)
    out.print(f"applied migrations: {', '.join(map(str, applied)) or 'none'}; schema version {version}")


@db_app.command("status")
def db_status(store: str = StoreOpt, debug: bool = DebugOpt) -> None:
    """Print the schema version of a PostgreSQL store and the newest this Flux knows."""
    state["debug"] = state["debug"] or debug
    store = store if store is not None else state["store"]
    try:
        version, newest = runner.schema_status(store)
    except (FluxError, ValueError, OSError) as error:
        _fail(error)
    out.print(f"schema version {version} (this Flux knows {newest})")
    if version < newest:
        raise typer.Exit(EXIT_FAILED)


@command()
def spec(
    section: str = typer.Argument(None, help="A section's number (4.2) or the start of its title (replay rules)."),
    debug: bool = DebugOpt,
) -> None:
    """Print the specification shipped with this version (SPEC.md), or one of its sections."""
    from flux.spec import spec_section, spec_text

    sys.stdout.write(spec_text() if section is None else spec_section(section))


ServeTargets = typer.Argument(
    None, help="Files (app.py) or modules (pkg.module) whose workflows it runs; app.py:wf serves one."
)


@command()
def serve(
    targets: list[str] = ServeTargets,
    store: str = StoreOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    token_file: str = typer.Option(
        None, "--token-file",
        help="File (mode 0600) whose first line is the token every route but /healthz needs; "
        "default $FLUX_SERVE_TOKEN.",
    ),
    durability: str = DurabilityOpt,
    debug: bool = DebugOpt,
) -> None:
    """Serve the HTTP API and the web console of a store (needs the serve extra)."""
    try:
        from flux.serve.security import load_token
        from flux.serve.server import run_server
    except ModuleNotFoundError as error:
        _fail(ModuleNotFoundError(f"flux serve needs {error.name}: pip install 'flux-replay[serve]'"))
    run_server(targets or [], store=store, host=host, port=port, token=load_token(token_file), durability=durability)


def main() -> None:
    app(prog_name="flux")  # also as `python -m flux`: the name help, errors and completion use


if __name__ == "__main__":
    main()
