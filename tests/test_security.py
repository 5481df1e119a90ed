"""What a journal (or a user) can make Flux do: reading one never runs code, ids and file names
never reach outside the store, and the store's files are private to their owner."""

from __future__ import annotations

import base64
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flux._engine.codec import decode, find_class
from flux._engine.errors import DecodeError, ExecutionNotFoundError, InvalidExecutionIdError, JournalCorruptError
from flux._engine.journal import FORMAT_VERSION, check_journal, encode_line, read_journal, seed_for
from flux._engine.stores.files import FileStore
from tests.conftest import flux_cmd

EID = "sec-1"


class _Payload:
    """Unpickling this would run `os.system`: the canary file appears if anything unpickles."""

    def __init__(self, canary: str) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


def _attacks(canary: str) -> list[Any]:
    touch = ["touch", canary]
    pickled = base64.b64encode(pickle.dumps(_Payload(canary))).decode()
    return [
        {"$dataclass": "os:system", "v": {}},
        {"$dataclass": "subprocess:Popen", "v": {"args": touch}},
        {"$enum": "subprocess:Popen", "v": touch},
        {"$namedtuple": "subprocess:Popen", "v": [touch]},
        {"$pydantic": "subprocess:Popen", "v": {"args": touch}},
        {"$error": "subprocess:Popen", "msg": "x", "args": [touch]},
        {"$error": "os:system", "msg": "x", "args": [f"touch {canary}"]},
        {"$enum": "builtins:eval", "v": f"__import__('os').system('touch {canary}')"},
        {"$dataclass": "builtins:exec", "v": {}},
        {"$error": "builtins:SystemExit", "msg": "x", "args": [3]},
        {"$dataclass": f"__import__('os').system('touch {canary}'):X", "v": {}},
        {"$enum": "flux_never_imported_module:Thing", "v": 1},
        {"$dataclass": "xml.dom.minidom:Document", "v": {}},
        {"$enum": "os.path:join", "v": [canary]},
        {"$pickle": pickled},
        {"$bytes": pickled},  # just bytes: kept as they are, never unpickled
        {"$int": f"__import__('os').system('touch {canary}')"},
        {"$decimal": f"__import__('os').system('touch {canary}')"},
        {"$dict": [[{"$enum": "subprocess:Popen", "v": touch}, 1]]},
        {"$tuple": [{"$namedtuple": "subprocess:Popen", "v": [touch]}]},
        {"$set": [{"$error": "subprocess:Popen", "msg": "x", "args": [touch]}]},
        {"$datetime": "2026-01-01T00:00:00", "tz": f"../../../../{canary}"},
        {"$error": "subprocess:CalledProcessError", "msg": "x", "args": [1, touch],
         "cause": {"$error": "subprocess:Popen", "msg": "y", "args": [touch]}},
    ]


def test_decoding_crafted_values_never_imports_or_runs_anything(tmp_path: Path) -> None:
    import subprocess as _loaded  # noqa: F401 - the worst case: the module the journal names is loaded
    from zoneinfo import ZoneInfo

    ZoneInfo("UTC")  # the codec's own import for time zones, done before the snapshot
    canary = str(tmp_path / "canary")
    modules = set(sys.modules)
    for tree in _attacks(canary):
        try:
            value = decode(tree, find_class)
        except DecodeError:
            continue
        assert not isinstance(value, subprocess.Popen), tree
        assert not callable(value) or isinstance(value, BaseException), tree
    assert not os.path.exists(canary)
    assert set(sys.modules) == modules


def _journal(execution_id: str, records: list[dict[str, Any]]) -> bytes:
    seed = seed_for(execution_id)
    return b"".join(encode_line({"seq": i, **r}, seed) for i, r in enumerate(records))


def _header(execution_id: str, input: Any = None, code: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "header", "format": FORMAT_VERSION, "execution_id": execution_id, "workflow": "w",
            "code": code or {}, "input": input, "created": "2026-01-01T00:00:00.000000+00:00"}


@pytest.mark.slow
def test_show_list_and_reading_crafted_journals_run_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(canary)!r}, 'w').close()\n")
    home = tmp_path / "store"
    store = FileStore(str(home))
    store._ensure_dirs()
    for i, tree in enumerate(_attacks(str(canary))):
        execution_id = f"attack-{i}"
        records = [
            _header(execution_id, tree, {"file": str(evil), "module": "evil", "attr": "w"}),
            {"kind": "workflow_started", "at": "2026-01-01T00:00:00.000000+00:00"},
            {"kind": "task_started", "at": "x", "call_id": "1", "name": "t", "args": [tree], "src": "f.py:1"},
            {"kind": "task_completed", "at": "x", "call_id": "1", "value": tree},
        ]
        (home / "executions" / f"{execution_id}.jsonl").write_bytes(_journal(execution_id, records))
        read_journal(str(home / "executions" / f"{execution_id}.jsonl"), execution_id)
    listing = flux_cmd("list", "--home", str(home), cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    shown = flux_cmd("show", "attack-2", "--home", str(home), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert not canary.exists()
    assert "evil" not in sys.modules


BAD_IDS = ["..", "../x", "a/b", "/etc/passwd", ".hidden", "-rf", "_x", "a\x00b", "é", "x" * 65, "", "a b", "a\nb",
           "a.jsonl", "..\\x", "~root"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_an_execution_id_that_could_name_another_path_is_refused_before_any_path_is_built(
    tmp_path: Path, bad: str
) -> None:
    home = tmp_path / "store"
    store = FileStore(str(home))
    for attempt in (
        lambda: store.journal_path(bad),
        lambda: store.read(bad),
        lambda: store.acquire(bad, "os"),
        lambda: store.create(bad, _header(bad), "os"),
        lambda: store.owner(bad) is not None,
    ):
        with pytest.raises(InvalidExecutionIdError):
            attempt()
    assert not home.exists() or list(home.rglob("*")) == [home / "executions"] or list(home.rglob("*")) == []


@pytest.mark.slow
def test_the_command_line_refuses_bad_ids_in_one_line(tmp_path: Path) -> None:
    for command in ("show", "resume"):
        result = flux_cmd(command, "../../etc/passwd", "--home", str(tmp_path / "store"), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("InvalidExecutionIdError:")
        assert len(result.stderr.strip().splitlines()) == 1


def test_file_names_in_the_store_that_are_not_ids_are_ignored(tmp_path: Path) -> None:
    home = tmp_path / "store"
    store = FileStore(str(home))
    store.create(EID, _header(EID), "os").close()
    for name in ("..jsonl", "-x.jsonl", "a b.jsonl", ".hidden.jsonl", "x.jsonl.new-1"):
        (home / "executions" / name).write_bytes(b"junk\n")
    assert store.list_ids() == [EID]


@pytest.mark.parametrize("suffix", [".jsonl", ".lock", ".torn"])
def test_symbolic_links_in_the_store_are_never_followed(tmp_path: Path, suffix: str) -> None:
    home = tmp_path / "store"
    store = FileStore(str(home))
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    if suffix == ".jsonl":
        # A valid journal of the same id, with a torn tail a writer would cut if it followed the link.
        target.write_bytes(_journal(EID, [_header(EID)]) + b'{"seq":1,"ki')
        store._ensure_dirs()
    else:
        target.write_bytes(b"precious")
        store.create(EID, _header(EID), "os").close()
        journal = Path(store.journal_path(EID))
        journal.write_bytes(journal.read_bytes() + b'{"seq":1,"ki')  # a torn tail to cut into .torn
    before = target.read_bytes()
    link = home / "executions" / f"{EID}{suffix}"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    with pytest.raises((OSError, JournalCorruptError, ExecutionNotFoundError)):
        store.acquire(EID, "fsync")
    if suffix == ".jsonl":
        with pytest.raises(OSError):
            store.read(EID)
    assert target.read_bytes() == before
    assert link.is_symlink()


WORKFLOW = textwrap.dedent(
    """
    from flux import ExecutionContext, task, workflow
    from flux.tasks import pause


    @task.with_options(output_storage=True)
    async def big(n: int) -> str:
        return "x" * n


    @workflow
    async def private(ctx: ExecutionContext[int]) -> str:
        value = await big(ctx.input)
        await pause("look")
        return value[:3]
    """
)


def _modes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): stat.S_IMODE(p.lstat().st_mode) for p in [home, *home.rglob("*")]}


@pytest.mark.slow
def test_every_file_of_a_store_is_private_to_its_owner_even_with_a_permissive_umask(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(WORKFLOW)
    home = tmp_path / "store"
    script = textwrap.dedent(
        """
        import os
        os.umask(0)
        from flux._cli.main import main
        import sys
        sys.argv = ["flux"] + sys.argv[1:]
        main()
        """
    )
    runner = tmp_path / "run_flux.py"
    runner.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    first = subprocess.run(
        [sys.executable, str(runner), "exec", "flows.py", "private", "--input", "5000", "--home", str(home)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert "status: paused" in first.stdout, first.stderr
    execution_id = next((home / "executions").glob("*.jsonl")).stem
    journal = home / "executions" / f"{execution_id}.jsonl"
    journal.write_bytes(journal.read_bytes() + b'{"seq":99,"ki')  # a torn tail: resuming cuts it into .torn
    second = subprocess.run([sys.executable, str(runner), "resume", execution_id, "--input", "1", "--home", str(home)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "status: completed" in second.stdout, second.stderr
    modes = _modes(home)
    assert any(name.startswith("blobs/") for name in modes), modes  # output storage wrote a blob
    assert any(name.endswith(".torn") for name in modes), modes
    for name, mode in modes.items():
        path = home / name if name != "." else home
        wanted = 0o700 if path.is_dir() else 0o600
        assert mode == wanted, (name, oct(mode))


def test_a_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    from flux._engine.errors import SecretError
    from flux._engine.secrets import Secrets

    path = tmp_path / "secrets.json"
    path.write_text('{"API_KEY": "s3cret"}')
    os.chmod(path, 0o644)
    os.environ.pop("API_KEY", None)
    secrets = Secrets(str(tmp_path / "secrets.json"))
    with pytest.raises(SecretError, match="chmod 600"):
        secrets._file()
    os.chmod(path, 0o600)
    assert secrets._file() == {"API_KEY": "s3cret"}


CRAFTED_LINES = {
    "duplicate key": b'{"seq":1,"kind":"workflow_started","kind":"workflow_completed","at":"x"',
    "seq as true": b'{"seq":true,"kind":"workflow_started","at":"x"',
    "huge number": b'{"seq":1,"kind":"workflow_completed","at":"x","value":123456789012345678901234567890',
    "spaces": b'{"seq":1, "kind":"workflow_started","at":"x"',
    "escaped key": b'{"seq":1,"\\u006bind":"workflow_started","at":"x"',
    "NaN": b'{"seq":1,"kind":"workflow_completed","at":"x","value":NaN',
    "deep nesting": b'{"seq":1,"kind":"workflow_completed","at":"x","value":' + b"[" * 300 + b"]" * 300,
}


@pytest.mark.parametrize("label", CRAFTED_LINES)
def test_a_line_with_a_valid_checksum_but_not_written_by_flux_is_damage(label: str) -> None:
    import zlib

    prefix = CRAFTED_LINES[label]
    line = b'%s,"crc":"%08x"}\n' % (prefix, zlib.crc32(prefix, seed_for(EID)))
    with pytest.raises(JournalCorruptError) as info:
        check_journal(_journal(EID, [_header(EID)]) + line, "p.jsonl", EID)
    assert info.value.line == 2
