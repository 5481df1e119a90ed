"""What an embedded user installs: the library runs on its runtime dependencies alone, and the
`flux` script installed without its `cli` extra says how to get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Hides modules as if they were not installed, before anything else is imported.
BLOCKER = """
import importlib.abc, sys

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""

EXTRAS = {"typer", "rich", "click", "pytest", "hypothesis", "_pytest"}


def _python(code: str, blocked: set[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    program = BLOCKER.format(blocked=sorted(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_library_runs_pauses_and_resumes_without_the_cli_and_test_extras(tmp_path: Path) -> None:
    (tmp_path / "lean.py").write_text(
        textwrap.dedent(
            """
            from flux import ExecutionContext, task, workflow
            from flux.tasks import pause

            @task
            async def double(x: int) -> int:
                return 2 * x

            @workflow
            async def lean(ctx: ExecutionContext[int]) -> int:
                extra = await pause("more")
                return await double(ctx.input) + extra
            """
        )
    )
    run = _python(
        """
        import sys
        sys.path.insert(0, ".")
        from lean import lean
        from flux.client import Client
        import anyio

        paused = lean.run(20, store="store")
        assert paused.is_paused, paused.status
        done = lean.resume(paused.execution_id, 2, store="store")
        async def listing():
            async with Client("store") as client:
                return await client.list()

        listed = anyio.run(listing)
        print(done.status, done.output, len(listed.items))
        loaded = sorted(n for n in sys.modules if n.partition(".")[0] in EXTRAS)
        print("loaded:", loaded)
        """.replace("EXTRAS", repr(EXTRAS)),
        EXTRAS,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["completed 42 1", "loaded: []"]


@pytest.mark.parametrize("missing", ["typer", "rich"])
def test_the_flux_command_without_its_extra_says_how_to_install_it(tmp_path: Path, missing: str) -> None:
    run = _python("from flux._cli import main\nmain()\n", {missing}, tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"flux: the command line needs {missing}, which is not installed; "
        "install it with: pip install 'flux-replay[cli]'"
    ]
    assert run.stdout == ""


def test_every_pointer_an_error_message_gives_into_the_spec_finds_its_section() -> None:
    import re

    from flux._engine import codec, core
    from flux.spec import spec_section

    sources = Path(core.__file__).read_text() + Path(codec.__file__).read_text()
    pointers = re.findall(r"`flux spec ([^`]+)`", sources)
    assert len(pointers) >= 2
    for pointer in pointers:
        section = spec_section(pointer.strip('"'))
        assert section.startswith("#") and len(section.splitlines()) > 3, pointer


def test_flux_spec_prints_one_section_and_refuses_an_unknown_one() -> None:
    from tests.support.cli import invoke

    shown = invoke("spec", "replay rules")
    assert shown.exit_code == 0 and shown.stdout.startswith("### 4.2 Replay rules\n")
    assert "\n### 4.3" not in shown.stdout and "## 5." not in shown.stdout
    whole = invoke("spec")
    assert whole.exit_code == 0 and whole.stdout == (Path(__file__).parents[1] / "SPEC.md").read_text()
    unknown = invoke("spec", "no such thing")
    assert unknown.exit_code == 2 and "SPEC.md has no section 'no such thing'; its sections: 1 Store" in unknown.stderr


@pytest.mark.slow
def test_a_built_wheel_ships_the_spec_and_the_annotations(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).parents[1]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("flux_replay-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("flux/SPEC.md") == (root / "SPEC.md").read_bytes()
        assert "flux/py.typed" in archive.namelist()
        # Every package of the tree, the stores' included (the default store is one of them).
        for module in ("flux/_engine/stores/files.py", "flux/_engine/stores/postgres.py", "flux/worker.py"):
            assert module in archive.namelist(), module
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra ==" not in r] == [
        "Requires-Dist: orjson>=3.9",
        "Requires-Dist: anyio>=4.0",
        "Requires-Dist: cronsim>=2.8",
        'Requires-Dist: typing_extensions>=4.12; python_version < "3.13"',
    ]
