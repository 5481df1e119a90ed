"""Journal bytes and the file store: what is written reads back, a torn tail is cut and kept, any
other damage stops with path:line, one process owns an execution, and ids never escape the store."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flux._engine.errors import ExecutionExistsError, ExecutionLockedError, InvalidExecutionIdError, JournalCorruptError
from flux._engine.journal import LineOffsets, check_journal, encode_line, read_journal, seed_for
from flux._engine.store import Lease, validate_execution_id
from flux._engine.stores.files import FileStore

ROOT = Path(__file__).resolve().parent.parent
EID = "run-1"
LINE_END = re.compile(rb',"crc":"[0-9a-f]{8}"\}\n\Z')


def header(execution_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "seq": 0,
        "kind": "header",
        "format": 1,
        "execution_id": execution_id,
        "workflow": "w",
        "code": {},
        "input": None,
        "created": "x",
        **extra,
    }


def task_started(i: int) -> dict[str, Any]:
    return {"seq": 0, "kind": "task_started", "call_id": str(i), "name": "t"}


def without_crc(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "crc"} for r in records]


def write_journal(home: Path, execution_id: str = EID, n: int = 4) -> tuple[Path, list[dict[str, Any]]]:
    """A closed journal of a header and `n` records, written through the store; returns its records."""
    lease = FileStore(str(home)).create(execution_id, header(execution_id), "fsync")
    written = [header(execution_id)]
    for i in range(1, n + 1):
        record = task_started(i)
        lease.writer.append(record)
        written.append(record)
    lease.writer.sync()
    lease.close()
    return home / "executions" / f"{execution_id}.jsonl", written


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- what is written reads back ---------------------------------------------------------------


def test_written_journal_reads_back_exactly(tmp_path: Path) -> None:
    path, written = write_journal(tmp_path / "home")
    read = read_journal(str(path), EID)
    assert without_crc(read.records) == written
    assert [r["seq"] for r in read.records] == list(range(len(written)))
    assert read.torn == b""
    assert read.valid_size == path.stat().st_size
    lines = lines_of(path)
    assert len(lines) == len(written)
    assert list(read.offsets) == [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
    for line, record in zip(lines, written, strict=True):
        assert LINE_END.search(line), line
        parsed = json.loads(line)
        assert {k: v for k, v in parsed.items() if k != "crc"} == record
        # The checksum covers every byte before `,"crc"`, seeded with the execution id (SPEC.md).
        prefix = line[: line.rindex(b',"crc":"')]
        assert int(parsed["crc"], 16) == zlib.crc32(prefix, zlib.crc32(EID.encode()))


def test_the_offsets_of_a_known_prefix_are_found_from_either_end_and_agree_with_a_full_index() -> None:
    lines = [b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 7)) for i in range(500)]
    data = b"".join(lines) + b'{"after":1}\n'
    truth = [sum(len(line) for line in lines[:i]) for i in range(501)]
    offsets = LineOffsets(data, 500, len(data) - len(b'{"after":1}\n'))
    offsets.append(truth[500])  # the line read after the prefix
    # The header's lines and the prefix's last lines (a pause waiting at the end of a resumed
    # run) are found without indexing the whole prefix...
    asked = (0, 1, 3, 436, 437, 499, 500, -1, -2)
    assert [offsets[i] for i in asked] == [truth[i] for i in (0, 1, 3, 436, 437, 499, 500, 500, 499)]
    assert offsets._head is None
    # ...and a line in the middle indexes it, with the same answers.
    assert offsets[250] == truth[250] and offsets._head is not None
    assert list(offsets) == truth
    # A prefix whose size is not known is indexed for any line past the header's.
    unsized = LineOffsets(data, 500)
    assert unsized[499] == truth[499] and unsized._head is not None


def test_records_with_awkward_text_stay_one_line_each(tmp_path: Path) -> None:
    lease = FileStore(str(tmp_path)).create(EID, header(EID), "os")
    awkward = {"seq": 0, "kind": "task_started", "name": 'a\nb\r"c"\\\u2028\x00é😀', "call_id": "}\n{"}
    lease.writer.append(dict(awkward))
    lease.writer.sync()
    lease.close()
    path = tmp_path / "executions" / f"{EID}.jsonl"
    assert len(lines_of(path)) == 2
    assert without_crc(read_journal(str(path), EID).records)[1] == {**awkward, "seq": 1}


def test_read_records_are_parsed_again_on_each_access_and_behave_as_a_list(tmp_path: Path) -> None:
    path, written = write_journal(tmp_path / "home", n=6)
    records = read_journal(str(path), EID).records
    assert len(records) == 7 and records == written and list(reversed(records)) == written[::-1]
    assert records[-1] == written[-1] and records[2:5] == written[2:5] and records[::3] == written[::3]
    first = records[3]
    first["name"] = "changed"
    assert records[3]["name"] == "t"  # a new dict on each access: nothing here can be changed
    with pytest.raises(IndexError):
        records[-8]
    with pytest.raises(IndexError):
        records[7]
    records.append({"seq": 7, "kind": "task_started", "call_id": "7", "name": "t"})
    assert len(records) == 8 and records[-1]["call_id"] == "7" and records[7] == records[-1]
    assert [r["seq"] for r in reversed(records)] == list(range(7, -1, -1))


def test_visit_sees_every_record_once_in_order_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flux._engine.journal as journal

    path, written = write_journal(tmp_path / "home", n=300)
    monkeypatch.setattr(journal, "_CHUNK_BYTES", 1000)  # many batches, lines cut between them
    batches: list[list[dict[str, Any]]] = []
    offsets_seen: list[int] = []

    def visit(records: list[dict[str, Any]], offsets: Any) -> None:
        batches.append(records)
        offsets_seen.append(len(offsets))

    read = journal.read_journal(str(path), EID, visit=visit)
    assert len(batches) > 20
    assert [r for batch in batches for r in batch] == written
    # Each batch comes with the offsets of every record read so far, its own included.
    assert offsets_seen == [sum(len(b) for b in batches[: i + 1]) for i in range(len(batches))]
    assert list(read.offsets) == [sum(len(x) for x in lines_of(path)[:i]) for i in range(len(written))]


def test_damage_in_a_later_batch_is_named_by_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flux._engine.journal as journal

    path, _ = write_journal(tmp_path / "home", n=300)
    monkeypatch.setattr(journal, "_CHUNK_BYTES", 1000)
    lines = lines_of(path)
    lines[250] = lines[250].replace(b'"name":"t"', b'"name":"u"')
    path.write_bytes(b"".join(lines))
    visited: list[int] = []
    with pytest.raises(JournalCorruptError) as caught:
        journal.read_journal(str(path), EID, visit=lambda records, offsets: visited.extend(r["seq"] for r in records))
    assert caught.value.line == 251 and caught.value.offset == sum(len(x) for x in lines[:250])
    assert "checksum mismatch" in str(caught.value)
    assert visited == list(range(len(visited))) and 0 < len(visited) <= 250  # only checked records


# -- a torn tail is cut and kept --------------------------------------------------------------


def check_cut(home: Path, complete: bytes, torn: bytes, expected: list[dict[str, Any]]) -> None:
    """Acquires a journal of `complete + torn`; the tail must move to the side file, once."""
    store = FileStore(str(home))
    path = home / "executions" / f"{EID}.jsonl"
    side = home / "executions" / f"{EID}.torn"
    side.unlink(missing_ok=True)
    path.write_bytes(complete + torn)

    read = read_journal(str(path), EID)
    assert without_crc(read.records) == expected
    assert read.torn == torn
    assert read.valid_size == len(complete)
    assert path.read_bytes() == complete + torn  # reading changes nothing

    lease = store.acquire(EID, "fsync")
    assert without_crc(lease.read.records) == expected
    lease.close()
    assert path.read_bytes() == complete
    kept = side.read_bytes()
    size, _, rest = kept.partition(b" ")
    assert int(size) == len(complete)
    assert rest == torn + b"\n"

    again = store.acquire(EID, "fsync")
    assert without_crc(again.read.records) == expected
    assert again.read.torn == b""
    assert again.writer.append(task_started(99)) == len(expected)  # numbering goes on after the cut
    again.writer.sync()
    again.close()
    assert side.read_bytes() == kept
    assert without_crc(store.read(EID).records) == [*expected, {**task_started(99), "seq": len(expected)}]


def test_torn_last_line_at_every_byte_is_cut_and_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, written = write_journal(home)
    data = path.read_bytes()
    start = data.rindex(b"\n", 0, len(data) - 1) + 1
    assert len(data) - start > 40
    for cut in range(start + 1, len(data)):  # the last byte alone is its newline
        torn = data[start:cut]
        copy = tmp_path / "copy.jsonl"
        copy.write_bytes(data[:cut])
        read = read_journal(str(copy), EID)
        assert without_crc(read.records) == written[:-1], cut
        assert read.torn == torn
        check_cut(home, data[:start], torn, written[:-1])


@pytest.mark.parametrize("zeros", [1, 9, 4096])
def test_zero_bytes_after_the_last_line_are_cut(tmp_path: Path, zeros: int) -> None:
    home = tmp_path / "home"
    path, written = write_journal(home)
    data = path.read_bytes()
    check_cut(home, data, b"\0" * zeros, written)


def test_last_line_replaced_by_zero_bytes_is_cut(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, written = write_journal(home)
    data = path.read_bytes()
    start = data.rindex(b"\n", 0, len(data) - 1) + 1
    check_cut(home, data[:start], b"\0" * (len(data) - start), written[:-1])


# -- any other damage stops, with path:line, and changes nothing ------------------------------


def assert_corrupt_untouched(home: Path, path: Path, line: int, offset: int, *words: str) -> JournalCorruptError:
    before = path.read_bytes()
    with pytest.raises(JournalCorruptError) as info:
        read_journal(str(path), EID)
    err = info.value
    message = str(err)
    assert f"{path}:{line}:" in message
    assert f"byte {offset}" in message
    assert (err.line, err.offset) == (line, offset)
    for word in words:
        assert word in message
    with pytest.raises(JournalCorruptError):
        FileStore(str(home)).acquire(EID, "fsync")
    assert path.read_bytes() == before
    assert not (path.parent / f"{EID}.torn").exists()
    return err


def test_damaged_middle_line_is_reported_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    data = path.read_bytes()
    lines = lines_of(path)
    assert len(lines) == 5
    offset = len(lines[0])
    for i in range(offset, offset + len(lines[1])):  # the newline too: line 2 then runs into line 3
        damaged = bytearray(data)
        damaged[i] ^= 0xFF
        path.write_bytes(bytes(damaged))
        with pytest.raises(JournalCorruptError) as info:
            read_journal(str(path), EID)
        assert f"{path}:2:" in str(info.value), i
        assert f"byte {offset}" in str(info.value)
        assert path.read_bytes() == bytes(damaged)
    assert_corrupt_untouched(home, path, 2, offset)


def test_every_single_bit_flip_in_a_line_is_detected(tmp_path: Path) -> None:
    path, _ = write_journal(tmp_path / "home")
    data = path.read_bytes()
    lines = lines_of(path)
    offset = len(lines[0])
    missed = []
    for i in range(offset, offset + len(lines[1])):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            try:
                check_journal(bytes(damaged), str(path), EID)
            except JournalCorruptError:
                continue
            missed.append(bytes(damaged[offset : offset + len(lines[1])]))
    assert missed == []


def test_line_copied_from_another_execution_fails_its_checksum(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home, EID)
    other, _ = write_journal(tmp_path / "other", "run-2")
    mine, theirs = lines_of(path), lines_of(other)
    assert mine[2] != theirs[2] and json.loads(mine[2])["seq"] == json.loads(theirs[2])["seq"] == 2
    path.write_bytes(b"".join([*mine[:2], theirs[2], *mine[3:]]))
    assert_corrupt_untouched(home, path, 3, len(mine[0]) + len(mine[1]), "checksum")


def test_gap_in_seq_names_the_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    lines = lines_of(path)
    path.write_bytes(b"".join([*lines[:2], *lines[3:]]))
    assert_corrupt_untouched(home, path, 3, len(lines[0]) + len(lines[1]), "seq 2", "found 3")


@pytest.mark.parametrize("body", [b'{"seq":2,"kind":"task_started",', b'{"seq":2,"kind":"task_started"]', b"[2"])
def test_invalid_json_with_a_correct_looking_suffix_fails(tmp_path: Path, body: bytes) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    lines = lines_of(path)
    crc = zlib.crc32(body, seed_for(EID))
    forged = b'%s,"crc":"%08x"}\n' % (body, crc)
    path.write_bytes(b"".join([*lines[:2], forged, *lines[3:]]))
    assert_corrupt_untouched(home, path, 3, len(lines[0]) + len(lines[1]), "invalid JSON")
    # With a plausible but wrong checksum it fails too, at the same place.
    path.write_bytes(b"".join([*lines[:2], b'%s,"crc":"0badc0de"}\n' % body, *lines[3:]]))
    assert_corrupt_untouched(home, path, 3, len(lines[0]) + len(lines[1]), "checksum")


@pytest.mark.parametrize("bad", [b"", b"no checksum here\n", b'{"seq":0,"kind":"header","crc":"zzzzzzzz"}\n'])
def test_journal_with_no_valid_header_fails(tmp_path: Path, bad: bytes) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    path.write_bytes(bad)
    assert_corrupt_untouched(home, path, 1, 0)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    FileStore(str(home)).create(EID, header(EID, format=2), "fsync").close()
    path = home / "executions" / f"{EID}.jsonl"
    assert_corrupt_untouched(home, path, 1, 0, "format version 2", "version 1")


def test_header_of_another_execution_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    data = path.read_bytes()
    # Re-sign the whole journal for another id: checksums pass, the header still names run-1.
    lines = [json.loads(x) for x in data.splitlines()]
    resigned = b"".join(encode_line({k: v for k, v in r.items() if k != "crc"}, seed_for("run-2")) for r in lines)
    with pytest.raises(JournalCorruptError, match=r":1: .*'run-1', not 'run-2'"):
        check_journal(resigned, str(path), "run-2")


# -- one process owns an execution ------------------------------------------------------------

ACQUIRE = """
import sys, time
from flux._engine.errors import ExecutionLockedError
from flux._engine.stores.files import FileStore
try:
    lease = FileStore(sys.argv[1]).acquire(sys.argv[2], "os")
except ExecutionLockedError as err:
    print("LOCKED", err.holder.get("pid"))
    print(err)
    sys.exit(3)
print("HELD", flush=True)
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))
lease.close()
"""


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def acquire_in_child(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ACQUIRE, str(home), EID],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["create", "acquire"])
def test_held_execution_is_refused_to_another_process_until_closed(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    store = FileStore(str(home))
    lease: Lease
    if how == "create":
        lease = store.create(EID, header(EID), "fsync")
    else:
        write_journal(home)
        lease = store.acquire(EID, "fsync")
    assert store.owner(EID) is not None
    before = (home / "executions" / f"{EID}.jsonl").read_bytes()

    refused = acquire_in_child(home)
    assert refused.returncode == 3, refused.stderr
    first, message = refused.stdout.splitlines()[:2]
    assert first == f"LOCKED {os.getpid()}"
    assert f"pid {os.getpid()}" in message and EID in message
    assert (home / "executions" / f"{EID}.jsonl").read_bytes() == before

    lease.close()
    assert store.owner(EID) is None
    allowed = acquire_in_child(home)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "HELD"


def test_held_execution_is_refused_in_the_same_process_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = FileStore(str(home))
    lease = store.create(EID, header(EID), "fsync")
    with pytest.raises(ExecutionLockedError) as info:
        store.acquire(EID, "fsync")
    assert info.value.holder["pid"] == os.getpid()
    lease.close()
    store.acquire(EID, "fsync").close()


def test_lock_of_a_killed_process_is_free_at_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_journal(home)
    store = FileStore(str(home))
    with subprocess.Popen(
        [sys.executable, "-c", ACQUIRE, str(home), EID, "60"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "HELD"
            with pytest.raises(ExecutionLockedError) as info:
                store.acquire(EID, "fsync")
            assert info.value.holder["pid"] == child.pid
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    lease = store.acquire(EID, "fsync")  # no retry, no wait
    assert lease.writer.next_seq == 5
    lease.close()


# -- file modes -------------------------------------------------------------------------------


def test_files_are_private_to_their_owner_whatever_the_umask(tmp_path: Path) -> None:
    home = tmp_path / "home"
    old = os.umask(0)
    try:
        path, _ = write_journal(home)
        with path.open("ab") as f:
            f.write(b'{"torn')
        FileStore(str(home)).acquire(EID, "fsync").close()
    finally:
        os.umask(old)
    executions = home / "executions"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(executions.stat().st_mode) == 0o700
    for name in (f"{EID}.jsonl", f"{EID}.lock", f"{EID}.torn", ".list"):
        assert stat.S_IMODE((executions / name).stat().st_mode) == 0o600, name
    assert sorted(os.listdir(executions)) == [".list", f"{EID}.jsonl", f"{EID}.lock", f"{EID}.torn"]


# -- execution ids never name another path ----------------------------------------------------

BAD_IDS = ["../x", "a/b", "", ".hidden", "x" * 65, "a\x00b", "-x", "_x", "x\n", "x.jsonl", "é", "/etc/passwd"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_execution_ids_are_refused_everywhere(tmp_path: Path, bad: str) -> None:
    store = FileStore(str(tmp_path / "home"))
    with pytest.raises(InvalidExecutionIdError) as info:
        validate_execution_id(bad)
    assert info.value.execution_id == bad
    with pytest.raises(InvalidExecutionIdError):
        store.journal_path(bad)
    with pytest.raises(InvalidExecutionIdError):
        store.create(bad, header(bad), "fsync")
    with pytest.raises(InvalidExecutionIdError):
        store.acquire(bad, "fsync")
    with pytest.raises(InvalidExecutionIdError):
        store.read(bad)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


@pytest.mark.parametrize("good", ["a", "x" * 64, "A-b_9", "0"])
def test_valid_execution_ids_are_kept(tmp_path: Path, good: str) -> None:
    assert validate_execution_id(good) == good
    FileStore(str(tmp_path)).create(good, header(good), "os").close()
    assert FileStore(str(tmp_path)).list_ids() == [good]


def test_symlinked_journal_is_not_followed(tmp_path: Path) -> None:
    # The target is a valid journal of the same execution with a torn tail: following the link
    # would read it, and acquiring would cut it.
    target, _ = write_journal(tmp_path / "elsewhere")
    with target.open("ab") as f:
        f.write(b'{"seq":5,"ki')
    before = target.read_bytes()
    home = tmp_path / "home"
    FileStore(str(home)).create("decoy", header("decoy"), "os").close()
    link = home / "executions" / f"{EID}.jsonl"
    link.symlink_to(target)
    store = FileStore(str(home))
    for attempt in (
        lambda: read_journal(str(link), EID),
        lambda: store.read(EID),
        lambda: store.acquire(EID, "fsync"),
    ):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.ELOOP
    with pytest.raises(ExecutionExistsError):
        store.create(EID, header(EID), "fsync")
    assert target.read_bytes() == before
    assert not (home / "executions" / f"{EID}.torn").exists()
    assert store.owner(EID) is None


@pytest.mark.parametrize("name", [f"{EID}.lock", f"{EID}.torn"])
def test_symlinked_lock_or_side_file_is_not_followed(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    with path.open("ab") as f:
        f.write(b'{"torn')
    journal = path.read_bytes()
    target = tmp_path / "precious.txt"
    target.write_bytes(b"do not touch\n")
    side = home / "executions" / name
    side.unlink(missing_ok=True)
    side.symlink_to(target)
    with pytest.raises(OSError) as info:
        FileStore(str(home)).acquire(EID, "fsync")
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b"do not touch\n"
    assert path.read_bytes() == journal


# -- create never overwrites ------------------------------------------------------------------


def test_create_never_overwrites_an_execution(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path, _ = write_journal(home)
    before = path.read_bytes()
    with pytest.raises(ExecutionExistsError):
        FileStore(str(home)).create(EID, header(EID, workflow="other"), "fsync")
    assert path.read_bytes() == before
    assert sorted(os.listdir(home / "executions")) == [".list", f"{EID}.jsonl", f"{EID}.lock"]
    assert FileStore(str(home)).owner(EID) is None


def test_create_succeeds_over_a_stale_temp_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = FileStore(str(home))
    store.create("decoy", header("decoy"), "os").close()
    stale = home / "executions" / f"{EID}.jsonl.new-{os.getpid()}"
    stale.write_bytes(b'{"seq":0,"kind":"hea')
    store.create(EID, header(EID), "fsync").close()
    assert without_crc(store.read(EID).records) == [header(EID)]


# -- the file store agrees with a list (Hypothesis "DatabaseComparison") ---------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
records = st.fixed_dictionaries(
    {
        "seq": st.just(0),
        "kind": st.sampled_from(["workflow_started", "task_started", "task_completed", "task_failed"]),
        "call_id": st.text(max_size=5),
        "value": json_values,
    }
)


class StoreComparison(RuleBasedStateMachine):
    """Drives a FileStore and a list of records with the same appends, syncs and reopenings."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="flux-journal-")
        self.store = FileStore(self.tmp)
        self.durable: list[dict[str, Any]] = [header(EID)]
        self.pending: list[dict[str, Any]] = []
        self.lease: Lease | None = self.store.create(EID, header(EID), "fsync")
        self.path = Path(self.store.journal_path(EID))

    def teardown(self) -> None:
        if self.lease is not None:
            self.lease.close()
        shutil.rmtree(self.tmp)

    @precondition(lambda self: self.lease is not None)
    @rule(record=records)
    def append(self, record: dict[str, Any]) -> None:
        assert self.lease is not None
        seq = self.lease.writer.append(record)
        assert seq == len(self.durable) + len(self.pending)
        self.pending.append(dict(record))

    @precondition(lambda self: self.lease is not None)
    @rule()
    def sync(self) -> None:
        assert self.lease is not None
        self.lease.writer.sync()
        self.durable += self.pending
        self.pending = []

    @precondition(lambda self: self.lease is not None)
    @rule()
    def close(self) -> None:
        assert self.lease is not None
        self.lease.close()
        self.lease = None
        self.pending = []  # appended but never synced: not in the journal

    @precondition(lambda self: self.lease is None)
    @rule(torn=st.binary(max_size=30).filter(lambda b: b"\n" not in b), durability=st.sampled_from(["fsync", "os"]))
    def reacquire(self, torn: bytes, durability: str) -> None:
        before = self.path.read_bytes()
        with self.path.open("ab") as f:  # a crash in the middle of a write
            f.write(torn)
        self.lease = self.store.acquire(EID, durability)
        assert without_crc(self.lease.read.records) == self.durable
        assert self.lease.read.torn == torn
        assert self.lease.writer.next_seq == len(self.durable)
        assert self.path.read_bytes() == before

    @rule()
    def read_without_lock(self) -> None:
        assert without_crc(self.store.read(EID).records) == self.durable

    @invariant()
    def file_holds_the_synced_records(self) -> None:
        data = self.path.read_bytes()
        assert data.endswith(b"\n")
        assert data.count(b"\n") == len(self.durable)
        assert (self.store.owner(EID) is not None) == (self.lease is not None)


StoreComparison.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_file_store_agrees_with_a_list = StoreComparison.TestCase


def test_raw_gives_the_journal_bytes_of_the_records_read(tmp_path: Path) -> None:
    from flux._engine.journal import Records, check_journal, encode_line, seed_for

    seed = seed_for("raw-1")
    records = [
        {"seq": 0, "kind": "header", "format": 1, "execution_id": "raw-1", "workflow": "w", "code": {}, "input": None,
         "created": "2026-01-01T00:00:00.000000+00:00"}
    ]
    records += [{"seq": n, "kind": "workflow_started", "at": "2026-01-01T00:00:01.000000+00:00"} for n in range(1, 2)]
    lines = [encode_line(r, seed) for r in records]
    data = b"".join(lines) + b'{"seq":2,"ki'  # and a torn tail, which is not a record
    read = check_journal(data, "raw-1.jsonl", "raw-1")
    assert isinstance(read.records, Records) and read.records.read_count == 2
    assert read.records.raw() == b"".join(lines)
    assert read.records.raw(1) == lines[1] and read.records.raw(0, 1) == lines[0] and read.records.raw(2) == b""
    with pytest.raises(IndexError):
        read.records.raw(3)
