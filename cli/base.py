"""What every `flux` command shares, and the body of `flux exec`; imports neither typer nor rich.

`flux._cli.main` declares the commands to typer; `flux._cli.quick` runs the plain form of
`flux exec` without building that app. Both call `guarded` and `exec_command` here, so the two
ways behave alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from flux import runner
from flux._cli.streams import Stream
from flux.errors import FluxError

if TYPE_CHECKING:
    from flux.context import ExecutionContext
    from flux.debug import ReplayResult

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "dumps",
    "emit",
    "err",
    "escape",
    "exec_command",
    "execution_shape",
    "fail",
    "guarded",
    "interruptible",
    "logging_to_stderr",
    "out",
    "journal_arg",
    "printable",
    "progress_line",
    "read_input",
    "replay_command",
    "report",
    "state",
    "store_arg",
    "summary_parts",
]

out = Stream()
err = Stream(stderr=True)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# Options given before the command (`flux --store S --debug list`); one given after it wins.
state: dict[str, Any] = {"debug": False, "store": None}

# Control characters in journal content (a workflow name, an error message) would reach the
# terminal as escape sequences: they are shown as `\xNN` instead.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}


def printable(text: Any) -> str:
    """`text` with every control character shown escaped, for a terminal."""
    return str(text).translate(_CONTROLS)


def escape(text: str) -> str:
    """`rich.markup.escape`: `text` printed as it is inside markup. Text without a `[` is its own
    escape, which spares importing rich for it."""
    if "[" not in text and not text.endswith("\\"):
        return text
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@contextlib.contextmanager
def logging_to_stderr(on: bool) -> Iterator[None]:
    """With --debug: the library's log (INFO and up) on standard error while the command runs."""
    if not on:
        yield
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s flux %(levelname)s %(message)s"))
    logger = logging.getLogger("flux")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def fail(error: BaseException) -> NoReturn:
    """The error as one red line (`--debug`: its traceback first), then exit 2."""
    if state["debug"]:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    name = type(error).__name__
    message = printable(str(error).replace("\n", " "))
    err.print(f"[red]{escape(name)}: {escape(message)}[/red]")
    raise SystemExit(EXIT_BAD_INPUT)


def guarded(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """`fn(**kwargs)` inside the one error boundary every command shares: errors of the tree, bad
    values and OS errors become one red line and exit 2 (`--debug` adds the traceback)."""
    state["debug"] = bool(state["debug"] or kwargs.get("debug"))
    if "store" in kwargs and kwargs["store"] is None:
        kwargs["store"] = state["store"]
    try:
        with logging_to_stderr(state["debug"]):
            return fn(**kwargs)
    except (FluxError, ValueError, OSError) as error:
        fail(error)


@contextlib.contextmanager
def interruptible(execution_id: str, store: str | None) -> Iterator[None]:
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
        raise SystemExit(EXIT_INTERRUPTED) from None


def read_input(input: str | None, input_file: str | None) -> Any:
    """The input of --input or --input-file (`-`: standard input), parsed as JSON."""
    if input is not None and input_file is not None:
        raise ValueError("give --input or --input-file, not both")
    if input_file == "-":
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("--input-file -: standard input is not UTF-8 text; give JSON") from None
        return runner.parse_input(text, "--input-file - (standard input)")
    if input_file is not None:
        try:
            with open(input_file, "rb") as fh:
                text = fh.read().decode("utf-8")
        except OSError as error:
            raise ValueError(f"{input_file}: cannot read the input file ({error.strerror})") from None
        except UnicodeDecodeError:
            raise ValueError(f"{input_file}: the input file is not UTF-8 text; give JSON") from None
        return runner.parse_input(text, input_file)
    if input is None:
        return None
    return runner.parse_input(input)


def dumps(data: Any) -> str:
    """One JSON document: orjson, or the standard library for what orjson refuses (integers
    beyond 64 bits)."""
    try:
        return orjson.dumps(data).decode()
    except TypeError:
        return json.dumps(data, ensure_ascii=False, default=repr)


def emit(data: Any) -> None:
    sys.stdout.write(dumps(data) + "\n")


def execution_shape(execution_id: str, store: str | None) -> dict[str, Any]:
    """An execution as every command's --json prints it: `flux show --json` without its calls."""
    shape = runner.read_execution(execution_id, store).to_json()
    del shape["calls"]
    return shape


COLOURS = {"completed": "green", "failed": "red", "paused": "yellow", "cancelled": "magenta"}


def report(ctx: ExecutionContext[Any], store: str | None, as_json: bool = False) -> None:
    """What exec, resume and fork print: the execution as the run left it; values as recorded
    (SPEC.md 3), never cut; exit 1 when it failed or was cancelled."""
    shape = execution_shape(ctx.execution_id, store)
    if as_json:
        emit(shape)
    else:
        status = shape["status"]
        colour = COLOURS.get(status, "white")
        out.print(f"execution_id: {ctx.execution_id}")
        out.print(f"workflow: {escape(printable(shape['workflow']))}")
        out.print(f"status: [{colour}]{status}[/{colour}]")
        if status == "completed":
            out.print(f"output: {escape(printable(dumps(shape['output'])))}")
        elif status == "failed" and shape["error"] is not None:
            error = shape["error"]
            out.print(f"[red]error: {escape(printable(error['type']))}: {escape(printable(error['message']))}[/red]")
            out.print(f"traceback: flux show {ctx.execution_id}{store_arg(store)}")
        elif status == "paused":
            out.print(f"resume with: flux resume {ctx.execution_id}{store_arg(store)} --input '<json>'")
        elif status == "cancelled":
            out.print("the execution was cancelled; it will not run again")
    if shape["status"] in ("failed", "cancelled"):
        raise SystemExit(EXIT_FAILED)


def store_arg(store: str | None) -> str:
    return f" --store {store}" if store else ""


def progress_line(as_json: bool) -> Any:
    """The live progress line, on a terminal only (and never with --json)."""
    if as_json or not err.is_terminal:
        return None
    from flux._cli.progress import Progress

    return Progress(err.console)


def exec_command(
    *,
    target: str,
    workflow: str | None,
    input: str | None,
    input_file: str | None,
    execution_id: str | None,
    store: str | None,
    durability: str | None,
    detach: bool,
    as_json: bool,
    debug: bool,
) -> None:
    """`flux exec`: run a new execution of a workflow and print how it ended (`--detach`: only
    submit it and print its id)."""
    value = read_input(input, input_file)
    if detach:
        submitted = runner.submit_file(target, workflow, value, store=store, execution_id=execution_id)
        if as_json:
            emit({"execution_id": submitted})
        else:
            out.print(submitted)
        return
    execution_id = execution_id or uuid.uuid4().hex
    progress = progress_line(as_json)
    if err.is_terminal:
        err.print(f"execution_id: {execution_id}")
    with interruptible(execution_id, store), progress or contextlib.nullcontext():
        ctx = runner.exec_file(
            target, workflow, value, store=store, durability=durability, execution_id=execution_id, observer=progress
        )
    report(ctx, store, as_json)



def journal_arg(text: str, store: str | None) -> str:
    """A journal's path as given, or the full id of the execution an id or id prefix names."""
    from flux._engine.store import is_execution_id

    if os.path.exists(text) or not is_execution_id(text):
        return text
    return runner.resolve_execution_id(text, store)


def summary_parts(result: ReplayResult) -> list[str | tuple[str, str]]:
    """The one line `flux replay --summary` prints, as text and (text, colour) parts."""
    return [
        f"{result.execution_id}: replayed {result.replayed} of {result.records} records, ",
        f"{result.call_count} calls, status {result.status} (recorded {result.recorded_status}), ",
        (result.note, "green" if result.matches else "red"),
        f", {result.seconds:.3f} s",
    ]


def replay_command(
    *,
    journal: str,
    file: str | None,
    module: str | None,
    until: int | None,
    break_at: str | None,
    summary: bool,
    as_json: bool,
    store: str | None,
    debug: bool,
    full: bool = False,
) -> None:
    """`flux replay`: re-run a journal against the current code and print what it found; exit 1
    when the code does not reproduce it, 2 on divergence. Only the table of calls, a divergence
    and a breakpoint need rich."""
    from flux import debug as debug_replay

    journal = journal_arg(journal, store)

    def on_break(point: debug_replay.BreakPoint) -> None:
        from flux._cli.render import break_banner

        out.print(break_banner(point))
        debug_replay.break_into(point)

    result = debug_replay.replay(
        journal, store=store, file=file, module=module, until=until, break_at=break_at, on_break=on_break,
        calls=not summary or as_json, snapshot=not full,
    )
    if as_json:
        emit(result.as_json())
    elif result.divergence is not None:
        from flux._cli.render import render_divergence

        out.print(render_divergence(result.divergence))
    elif summary:
        out.print_parts(*summary_parts(result))
    else:
        from flux._cli.render import render_replay

        out.print(render_replay(result))
    if result.divergence is not None:
        fail(result.divergence.error)
    if not result.matches:
        raise SystemExit(EXIT_FAILED)
