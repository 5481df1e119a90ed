"""`flux schedule ...`: create, list, pause, resume, trigger and delete schedules (SPEC.md "Schedules")."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from flux import schedules
from flux.errors import FluxError

__all__ = ["schedule_app"]

schedule_app = typer.Typer(
    no_args_is_help=True, help="Schedules: workflows that run by themselves (flux worker fires them)."
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOpt = typer.Option(
    None, "--store", "--home", help="The store (default: $FLUX_STORE, else $FLUX_HOME, else ./.flux)."
)
NameArg = typer.Argument(..., help="The schedule's name.")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks of errors.")


def _guarded(fn: Callable[[], Any], debug: bool) -> Any:
    try:
        return fn()
    except (FluxError, ValueError, OSError) as error:
        _fail(error, debug)


def _fail(error: BaseException, debug: bool) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    err.print(f"[red]{escape(type(error).__name__)}: {escape(str(error))}[/red]")
    raise typer.Exit(2)


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in state.items() if k != "declared"}
    out["next_fire_at"] = _when(state.get("next_fire")) if state.get("next_fire") is not None else None
    return out


def _print(state: dict[str, Any], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(_json(state)).decode() + "\n")
        return
    spec = state["spec"]
    what = {
        "cron": lambda: f"cron {spec['expression']!r} in {spec['timezone']}",
        "interval": lambda: f"every {spec['seconds']:g}s",
        "once": lambda: f"once at {_when(spec['at'])}",
    }[spec["type"]]()
    status = "paused" if state.get("paused") else "active"
    out.print(
        f"schedule {escape(state['name'])}: workflow {escape(state['workflow'])}, {escape(what)}, {status}, "
        f"next fire {_when(state.get('next_fire'))}"
    )


@schedule_app.command("create")
def create(
    name: str = typer.Argument(..., help="The schedule's name (letters, digits, - and _; at most 40)."),
    workflow: str = typer.Argument(..., help="The name of the workflow it starts."),
    cron_expr: str = typer.Option(None, "--cron", help="A five-field cron expression, e.g. '0 9 * * MON-FRI'."),
    timezone: str = typer.Option("UTC", "--timezone", "--tz", help="IANA time zone of --cron and --at."),
    every: str = typer.Option(None, "--interval", help="Fire every 30s, 15m, 2h, 1d, 1w."),
    at: str = typer.Option(None, "--at", help="Fire once at this ISO-8601 time."),
    input: str = typer.Option(None, "--input", help="The workflow input, as JSON."),
    missed: str = typer.Option("latest", "--missed", help="Fires missed while no worker ran: skip, latest or all."),
    missed_limit: int = typer.Option(10, "--missed-limit", help="With --missed all: run at most this many."),
    overlap: str = typer.Option(
        "skip", "--overlap", help="A fire while the previous run is open: allow, skip or buffer_one."
    ),
    grace: float = typer.Option(60.0, "--grace", help="Seconds late a fire may be and still count as on time."),
    paused: bool = typer.Option(False, "--paused", help="Create it paused."),
    store: str = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Create a schedule; `flux worker` with the workflow loaded fires it."""

    def go() -> dict[str, Any]:
        sched = schedules.build_schedule(
            cron_expr=cron_expr, every=every, at=at, timezone=timezone, overlap=overlap,
            missed=missed, missed_limit=missed_limit, grace=grace,
        )
        value = None
        if input is not None:
            from flux import runner

            value = runner.parse_input(input)
        return schedules.create_schedule(store, name, workflow, sched, value, paused=paused)

    _print(_guarded(go, debug), as_json)


@schedule_app.command("list")
def list_(store: str = StoreOpt, as_json: bool = JsonOpt, debug: bool = DebugOpt) -> None:
    """List the schedules with their next fire times."""
    states = _guarded(lambda: schedules.list_schedules(store), debug)
    if as_json:
        sys.stdout.write(orjson.dumps([_json(s) for s in states]).decode() + "\n")
        return
    if not states:
        out.print("no schedules")
        return
    cells = [("name", "workflow", "when", "status", "next fire", "fires", "last execution")]
    for s in states:
        spec = s["spec"]
        when = {"cron": f"{spec.get('expression')} {spec.get('timezone')}",
                "interval": f"every {spec.get('seconds', 0):g}s",
                "once": f"once {_when(spec.get('at'))}"}[spec["type"]]
        cells.append((s["name"], s["workflow"], when, "paused" if s.get("paused") else "active",
                      _when(s.get("next_fire")), str(s.get("fires", 0)), s.get("last_execution") or "-"))
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    sys.stdout.write("\n".join(lines) + "\n")


@schedule_app.command("pause")
def pause(name: str = NameArg, store: str = StoreOpt, as_json: bool = JsonOpt, debug: bool = DebugOpt) -> None:
    """Stop a schedule's fires until it is resumed."""
    _print(_guarded(lambda: schedules.pause_schedule(store, name), debug), as_json)


@schedule_app.command("resume")
def resume(name: str = NameArg, store: str = StoreOpt, as_json: bool = JsonOpt, debug: bool = DebugOpt) -> None:
    """Fire a paused schedule again, from now on."""
    _print(_guarded(lambda: schedules.resume_schedule(store, name), debug), as_json)


@schedule_app.command("trigger")
def trigger(
    name: str = typer.Argument(...),
    target: str = typer.Argument(None, help="The file or module defining the workflow, if it is not importable."),
    store: str = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Start one execution of the schedule now; a worker runs it."""

    def go() -> str:
        workflows = []
        if target is not None:
            import os

            from flux.loader import load_file, load_module, workflows_in

            module = load_file(target) if target.endswith(".py") or os.path.exists(target) else load_module(target)
            workflows = list(workflows_in(module).values())
        return schedules.trigger_schedule(store, name, workflows)

    execution_id = _guarded(go, debug)
    if as_json:
        sys.stdout.write(orjson.dumps({"schedule": name, "execution_id": execution_id}).decode() + "\n")
    else:
        out.print(f"execution_id: {execution_id}")


@schedule_app.command("delete")
def delete(name: str = NameArg, store: str = StoreOpt, as_json: bool = JsonOpt, debug: bool = DebugOpt) -> None:
    """Delete a schedule (the executions it started stay)."""
    _guarded(lambda: schedules.delete_schedule(store, name), debug)
    if as_json:
        sys.stdout.write(orjson.dumps({"deleted": name}).decode() + "\n")
    else:
        out.print(f"deleted schedule {escape(name)}")
