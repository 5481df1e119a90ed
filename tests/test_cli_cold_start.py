"""`flux exec` in its plain form runs without the typer app (flux._cli.quick) and prints without
rich when no terminal is involved (flux._cli.streams): what it imports, which forms it leaves to
typer, and that both ways print the same bytes."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from flux._cli.quick import parse
from flux._cli.streams import plain_text
from tests.conftest import flux_cmd
from tests.support.cli import invoke

FLOWS = '''
from flux import ExecutionContext, task, workflow
from flux.tasks import pause

@task
async def echo(value: object) -> object:
    return value

@task
async def boom(value: object) -> object:
    raise RuntimeError(f"bad [red]{value}[/red] :smile: \\\\ end")

@task
async def refuse(value: object) -> object:
    raise ValueError(f"no {value}")

@workflow
async def breaks(ctx: ExecutionContext[object]) -> object:
    return await refuse(ctx.input)

@workflow
async def same(ctx: ExecutionContext[object]) -> object:
    return await echo(ctx.input)

@workflow
async def fails(ctx: ExecutionContext[object]) -> object:
    return await boom(ctx.input)

@workflow
async def waits(ctx: ExecutionContext[object]) -> object:
    return await pause("approve")
'''

# Modules a one-task `flux exec` has no use for: the typer app's parser (typer 0.29 coerces
# arguments through pydantic), rich, the HTTP server, PostgreSQL, the debugger, journal diffs,
# the worker threads of plain-function tasks (anyio). (Not zoneinfo: schedules import it only
# when they need a time zone, but orjson's oldest allowed version imports it itself.)
NOT_IMPORTED = (
    "typer", "click", "rich", "pydantic", "pydantic_core", "fastapi", "starlette", "uvicorn", "psycopg",
    "psycopg_pool", "flux.debug", "flux.journals", "flux.divergence", "flux.replay_log", "difflib", "pdb",
    "anyio",
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(FLOWS)
    return tmp_path


def _imported(importtime: str) -> set[str]:
    """The modules `python -X importtime` reports as imported."""
    return {line.split("|")[-1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["same", "--input", '"x"'], 0),
        (["same", "--input", '{"a": [1, 2]}', "--json"], 0),
        (["breaks", "--input", '"x"'], 1),
        (["same", "--input", "not json"], 2),
        (["waits", "--detach"], 0),
    ],
)
def test_flux_exec_imports_neither_typer_rich_pydantic_nor_the_debugger(
    project: Path, args: list[str], code: int
) -> None:
    env = {"FLUX_HOME": str(project / "store"), "PYTHONPROFILEIMPORTTIME": "1"}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    run = flux_cmd("exec", "flows.py", *args, cwd=project, env={**os.environ, **env})
    assert run.returncode == code, run.stderr[-2000:]
    imported = _imported(run.stderr)
    assert "flux._cli.base" in imported and "flux._engine.executor" in imported  # it did report
    loaded = sorted(m for m in imported if m in NOT_IMPORTED or m.partition(".")[0] in NOT_IMPORTED)
    assert loaded == []


def test_flux_exec_with_debug_is_typer_s_and_still_runs(project: Path) -> None:
    env = {**os.environ, "FLUX_HOME": str(project / "store"), "PYTHONPROFILEIMPORTTIME": "1"}
    run = flux_cmd("exec", "flows.py", "same", "--input", "1", "--debug", cwd=project, env=env)
    assert run.returncode == 0 and "status: completed" in run.stdout
    assert "typer" in _imported(run.stderr)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["exec"],
        ["exec", "--help"],
        ["--help", "exec", "f.py"],
        ["--debug", "exec", "f.py"],
        ["--version"],
        ["list"],
        ["exec", "f.py", "wf", "third"],
        ["exec", "f.py", "--debug"],
        ["exec", "f.py", "--input"],
        ["exec", "f.py", "--input", "-5"],
        ["exec", "f.py", "--input", "--json"],
        ["exec", "f.py", "--input", "1", "--input", "2"],
        ["exec", "f.py", "--json", "--json"],
        ["exec", "f.py", "--json=1"],
        ["exec", "f.py", "-i=1"],
        ["exec", "f.py", "-i1"],
        ["exec", "f.py", "--"],
        ["exec", "-", "wf"],
        ["exec", "f.py", "--inpu", "1"],
        ["--store", "a", "--store", "b", "exec", "f.py"],
        ["--store", "exec"],
        ["replay", "x"],
        ["replay", "--summary"],
        ["replay", "x", "y", "--summary"],
        ["replay", "x", "--summary", "--until", "3"],
        ["replay", "x", "--summary", "--break-at", "charge"],
        ["replay", "x", "--summary", "--debug"],
        ["replay", "x", "-q", "--summary"],
        ["replay", "x", "--summary", "--input", "1"],
    ],
)
def test_every_form_but_the_plain_one_is_left_to_typer(argv: list[str]) -> None:
    assert parse(argv) is None


def test_the_plain_form_gives_exec_its_keywords() -> None:
    parsed = parse(
        ["--home", "g", "exec", "--json", "f.py", "-i", "[1]", "wf", "--input-file=-", "--id", "x", "--store=s"]
    )
    assert parsed is not None
    command, before, keywords = parsed
    assert (command, before) == ("exec", "g")
    assert keywords == {
        "target": "f.py", "workflow": "wf", "input": "[1]", "input_file": "-", "execution_id": "x", "store": "s",
        "durability": None, "detach": False, "as_json": True, "debug": False,
    }
    assert parse(["exec", "pkg.mod:wf"]) == (
        "exec",
        None,
        {
            "target": "pkg.mod:wf", "workflow": None, "input": None, "input_file": None, "execution_id": None,
            "store": None, "durability": None, "detach": False, "as_json": False, "debug": False,
        },
    )


def test_the_plain_replay_gives_replay_its_keywords() -> None:
    assert parse(["replay", "-m", "pkg.flows", "3f2a", "-q", "--home=h"]) == (
        "replay",
        None,
        {
            "journal": "3f2a", "file": None, "module": "pkg.flows", "store": "h", "summary": True, "as_json": False,
            "until": None, "break_at": None, "debug": False, "full": False,
        },
    )


def _same_shape(text: str, store: Path) -> str:
    """Output with what differs between two runs of the same command made equal: the store's
    path and the times of a --json document."""
    text = text.replace(str(store), "STORE")
    return re.sub(r'"(created|updated)":"[^"]*"', r'"\1":"T"', text)


@pytest.mark.parametrize(
    "args",
    [
        ["same", "--input", '"x"'],
        ["same", "--input", '{"a":1,"b":[1,2]}', "--json"],
        ["same", "--input", '":smile: [red]x[/red] \\\\[b] [1,2] 12:30:45 \\t"'],
        ["fails", "--input", '"x"'],
        ["breaks", "--input", '"x"'],
        ["waits"],
        ["same", "--input", "not json"],
        ["nowhere"],
        ["same", "--input", "1", "--input-file", "in.json"],
        ["same", "--input", "1", "--durability", "never"],
        ["same", "--detach", "--input", "2"],
    ],
)
def test_the_plain_form_prints_what_the_typer_app_prints(project: Path, args: list[str]) -> None:
    """The plain form in a process of its own (flux._cli.quick, plain writes) against the same
    command parsed by the typer app in this process (rich Consoles), byte for byte."""
    (project / "in.json").write_text("3")
    quick_store, typer_store = project / "quick", project / "typer"
    full = ["exec", str(project / "flows.py"), *args, "--id", "one"]
    env = {name: value for name, value in os.environ.items() if name not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    quick = flux_cmd(*full, "--store", str(quick_store), cwd=project, env=env)
    cwd = os.getcwd()
    os.chdir(project)
    try:
        typed = invoke(*full, "--store", str(typer_store))
    finally:
        os.chdir(cwd)
    assert typed.exception is None or isinstance(typed.exception, SystemExit)
    assert (quick.returncode, _same_shape(quick.stdout, quick_store), _same_shape(quick.stderr, quick_store)) == (
        typed.exit_code,
        _same_shape(typed.stdout, typer_store),
        _same_shape(typed.stderr, typer_store),
    )
    assert quick.stdout or quick.stderr


def _rich_prints(markup: str) -> str:
    console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, force_terminal=False, color_system=None)
    console.print(markup)
    out = console.file.getvalue()  # type: ignore[attr-defined]  # the StringIO given
    assert isinstance(out, str)
    return out


_PIECES = st.sampled_from(
    [
        "a", "Z", " ", ":", "::", ":smile:", ":+1:", ":x:", ":SMILE:", ":smile-emoji:", "[", "]", "\\", "\\\\",
        "[red]", "[/red]", "[green]", "[/green]", "[/]", "[bold red]", "[1,2]", '{"a":1}', "[@click]", "[#fff]",
        "é", "☃", "\t", "\r", "\x07", "x\ny", "[link=x]", "12:30:45",
    ]
)

_CHARS = st.sampled_from(list('ab :[]\\/red#@é✓=1-,"'))


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join) | st.text(alphabet=_CHARS, max_size=20) | st.text(max_size=30))
def test_plain_text_is_what_rich_prints_whenever_it_gives_one(markup: str) -> None:
    text = plain_text(markup)
    if text is not None:
        assert text + "\n" == _rich_prints(markup)


@pytest.mark.parametrize(
    "markup",
    [
        "execution_id: 3f2a",
        "status: [green]completed[/green]",
        'output: {"a":1,"b":[1,2]}',
        '[red]ValueError: --input is not valid JSON: Expecting value: line 1 column 1 (char 0)[/red]',
        "resume with: flux resume 3f2a --input '<json>'",
    ],
)
def test_the_lines_flux_exec_prints_most_need_no_rich(markup: str) -> None:
    text = plain_text(markup)
    assert text is not None and text + "\n" == _rich_prints(markup)


def test_a_line_rich_would_change_is_left_to_rich() -> None:
    for markup in ["output: \":smile:\"", "a \\[red] b", "x[bold]y[/bold]z[red]w[/red]", "tab\there", "[red]x[/green]"]:
        assert plain_text(markup) is None, markup


CHANGED = '''
from flux import ExecutionContext, task, workflow

@task
async def echo(value: object) -> object:
    return value

@task
async def other(value: object) -> object:
    return value

@workflow
async def same(ctx: ExecutionContext[object]) -> object:
    await echo(ctx.input)
    return "another output"

@workflow
async def fails(ctx: ExecutionContext[object]) -> object:
    return await other(ctx.input)
'''


@pytest.fixture
def replayed(project: Path) -> tuple[Path, Path]:
    """A store with executions `one` (of `same`) and `two` (of `fails`), and a file where both
    workflows changed: `same` returns another output, `fails` calls another task."""
    store = project / "store"
    for execution_id, name in (("one", "same"), ("two", "fails")):
        run = flux_cmd(
            "exec", "flows.py", name, "--input", '"x"', "--id", execution_id, "--store", str(store), cwd=project
        )
        assert run.returncode in (0, 1), run.stderr
    (project / "changed.py").write_text(CHANGED)
    # Under a name no other test's module has: the typer app runs in this process.
    (project / "cold_start_flows.py").write_text(FLOWS)
    return store, project / "changed.py"


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "one", "--summary"],
        ["replay", "on", "-q"],
        ["replay", "two", "--quiet", "--json"],
        ["replay", "one", "--summary", "--file", "CHANGED"],
        ["replay", "one", "--summary", "--full"],
        ["replay", "two", "--summary", "--file", "CHANGED"],
        ["replay", "three", "--summary"],
        ["replay", "STORE/executions/one.jsonl", "--summary", "--module", "cold_start_flows"],
    ],
)
def test_a_plain_replay_summary_prints_what_the_typer_app_prints(
    project: Path, replayed: tuple[Path, Path], args: list[str]
) -> None:
    store, changed = replayed
    full = [arg.replace("CHANGED", str(changed)).replace("STORE", str(store)) for arg in args]
    path = f"{project}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "PYTHONPATH": path}
    quick = flux_cmd(*full, "--store", str(store), cwd=project, env=env)
    sys_path = list(sys.path)
    cwd = os.getcwd()
    os.chdir(project)
    sys.path.insert(0, str(project))
    try:
        typed = invoke(*full, "--store", str(store))
    finally:
        os.chdir(cwd)
        sys.path[:] = sys_path
    imported = _imported(quick.stderr)
    assert "flux.debug" in imported
    assert not {"typer", "pydantic"} & imported
    stderr = "\n".join(line for line in quick.stderr.splitlines() if not line.startswith("import time:"))
    seconds = re.compile(r"\d+\.\d{3} s$|\"seconds\":[0-9.e-]+", re.M)
    assert (quick.returncode, seconds.sub("S", quick.stdout), stderr.strip()) == (
        typed.exit_code,
        seconds.sub("S", typed.stdout),
        typed.stderr.strip(),
    )
    assert quick.stdout or quick.stderr
