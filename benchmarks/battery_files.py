"""Battery scenarios 2 to 4, on the bytes of journals: power loss, truncation, corruption.

- Power loss keeps what was synced plus a random part of what was not (or zeros), as a disk may
  after the power went, and checks that recovery (`FileStore.acquire`) keeps every synced record
  and leaves a clean prefix of the journal.
- Truncation cuts a journal at every byte offset.
- Corruption flips every bit of a journal, swaps, repeats, drops and imports lines, and writes
  lines with a valid checksum around content no Flux writes (NaN, duplicate keys, huge numbers,
  deep nesting, `seq` of another type): each case must end in a torn-tail repair or a
  `JournalCorruptError` naming `path:line`; never a crash, a hang or silent acceptance.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from benchmarks.battery_child import expected_output, many
from benchmarks.battery_kit import Figures, ForkServer, Size, journal_of
from flux._engine.errors import FluxError, JournalCorruptError
from flux._engine.history import History as ReplayIndex
from flux._engine.journal import check_journal, read_journal, seed_for
from flux._engine.stores.files import FileStore

__all__ = ["run_corruption", "run_power", "run_truncation"]


def _make_journals(workdir: str, inputs: list[int], durability: str = "os") -> list[dict[str, Any]]:
    """Real runs of `many`: each journal's bytes and records, and what happened to it in order:
    `("fsync", size)` when an fsync of it returned, `("ack", size)` when a sync returned to the
    engine (so everything up to `size` was acknowledged)."""
    out = []
    with ForkServer() as server:
        for i, n in enumerate(inputs):
            home = os.path.join(workdir, f"source{i}")
            sync_log = home + ".sync"
            args = {"home": home, "input": n, "durability": durability, "log_fsyncs": True}
            pid = server.fork("run", args, sync_log=sync_log)
            status = server.wait(pid)
            if status.get("code") != 0:
                raise AssertionError(f"a source run of the battery failed: {status}")
            found = journal_of(home)
            assert found is not None
            path, eid = found
            with open(path, "rb") as fh:
                data = fh.read()
            header_end = data.index(b"\n") + 1  # create() syncs the header before the journal appears
            events = [("fsync", header_end)]
            for line in _read(sync_log).splitlines():
                fields = line.split()
                if fields[0] == b"fsync" and fields[2].decode() == os.path.realpath(path):
                    events.append(("fsync", int(fields[1])))
                elif fields[0].decode() == eid:
                    events.append(("ack", int(fields[1])))
            records = read_journal(path, eid).records
            out.append({"n": n, "execution_id": eid, "data": data, "events": events, "records": records})
    return out


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _reset(folder: str, execution_id: str, data: bytes) -> str:
    path = os.path.join(folder, execution_id + ".jsonl")
    _write(path, data)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(folder, execution_id + ".torn"))
    return path


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


# -- 2. power loss -------------------------------------------------------------------------------


def run_power(size: Size, seed: int, workdir: str) -> Figures:
    """`size.power_states` power losses of real fsync-mode journals, each recovered."""
    fig = Figures("power")
    rng = random.Random(seed)
    sources = _make_journals(workdir, [10, 20, 30, 40], durability="fsync")
    home = os.path.join(workdir, "power")
    store = FileStore(home)
    store._ensure_dirs()
    resume_every = max(1, size.power_states // 100)
    kinds: Counter[str] = Counter()
    lost = unclean = failed = cut = resumed = resumed_ok = 0
    for i in range(size.power_states):
        src = rng.choice(sources)
        data, events, eid = src["data"], src["events"], src["execution_id"]
        # The power goes right after event j: the disk holds what the last fsync made durable,
        # and maybe some of what was written after it, up to what the next fsync would cover.
        j = rng.randint(1, len(events))
        synced = max(size for what, size in events[:j] if what == "fsync")
        acked = max((size for what, size in events[:j] if what == "ack"), default=0)
        upto = next((size for what, size in events[j:] if what == "fsync"), len(data))
        unsynced = data[synced:upto]
        kind = rng.choice(("part", "zeros", "part+zeros"))
        kinds[kind] += 1
        state = data[:synced]
        if kind != "zeros":
            state += unsynced[: rng.randint(0, len(unsynced))]
        if kind != "part":
            state += b"\0" * rng.randint(1, 4096 if kind == "zeros" else 512)
        path = _reset(store.dir, eid, state)
        try:
            lease = store.acquire(eid, "fsync")
        except FluxError as err:
            failed += 1
            fig.note(f"state {i} ({kind}, {synced} bytes synced): recovery failed: {err}")
            continue
        try:
            on_disk = _read(path)
            end = len(on_disk)  # what recovery left, not what it meant to leave
            if end < acked:
                lost += data[:acked].count(b"\n") - on_disk.count(b"\n")
                fig.note(f"state {i}: recovery kept {end} bytes; {acked} were acknowledged, {synced} synced")
            clean = on_disk == data[:end] and end == lease.read.valid_size and (end == 0 or data[end - 1] == 0x0A)
            if not clean or lease.read.records != src["records"][: len(lease.read.records)]:
                unclean += 1
                fig.note(f"state {i}: recovery is not a clean prefix of the journal")
            cut += len(state) > end
        finally:
            lease.close()
        if i % resume_every == 0:
            resumed += 1
            try:
                ctx = many.run(execution_id=eid, store=home, durability="os")
            except FluxError as err:
                fig.note(f"state {i}: the recovered journal cannot be resumed: {err}")
                continue
            resumed_ok += ctx.status == "completed" and ctx.output == expected_output(src["n"])
    fig.add("states", "power-loss states recovered", size.power_states, at_least=size.power_states)
    fig.add("kinds", "  synced + part of the unsynced / + zeros / + part and zeros",
            f"{kinds['part']} / {kinds['zeros']} / {kinds['part+zeros']}")
    fig.add("torn_cut", "torn tails cut on recovery", cut)
    fig.add("acked_lost", "acknowledged records lost", lost, equal=0)
    fig.add("unclean", "recoveries that are not a clean prefix", unclean, equal=0)
    fig.add("failed", "recoveries that failed", failed, equal=0)
    fig.add("resumed", "recovered states resumed to the uninterrupted output", f"{resumed_ok}/{resumed}",
            equal=f"{resumed}/{resumed}")
    return fig


# -- 3. truncation -------------------------------------------------------------------------------


def run_truncation(size: Size, seed: int, workdir: str) -> Figures:
    """Cuts ~20 KB journals at every byte offset and recovers each cut."""
    fig = Figures("truncation")
    sources = _make_journals(workdir, [50 + 5 * i for i in range(size.truncation_journals)])
    home = os.path.join(workdir, "truncation")
    store = FileStore(home)
    store._ensure_dirs()
    cuts = wrong = 0
    for src in sources:
        data, eid, records = src["data"], src["execution_id"], src["records"]
        for k in range(len(data) + 1):
            cuts += 1
            state = data[:k]
            path = _reset(store.dir, eid, state)
            end = state.rfind(b"\n") + 1
            lines = state.count(b"\n")
            try:
                lease = store.acquire(eid, "os")
            except JournalCorruptError as err:
                # No complete header: damage, not a torn tail; the file must be left alone.
                if lines != 0 or _read(path) != state or err.line != 1:
                    wrong += 1
                    fig.note(f"cut at {k}: {err}")
                continue
            except Exception as err:  # noqa: BLE001 - counted: recovery must not fail otherwise
                wrong += 1
                fig.note(f"cut at {k}: {type(err).__name__}: {err}")
                continue
            try:
                torn_path = path[:-6] + ".torn"
                torn = _read(torn_path) if os.path.exists(torn_path) else b""
                ok = (
                    lines > 0
                    and lease.read.records == records[:lines]
                    and _read(path) == state[:end]
                    and torn == (b"%d %s\n" % (end, state[end:]) if end < k else b"")
                )
            finally:
                lease.close()
            if not ok:
                wrong += 1
                fig.note(f"cut at {k}: recovered {len(lease.read.records)} records, expected {lines}")
    fig.add("journal_bytes", "journal sizes (bytes)", ", ".join(str(len(s["data"])) for s in sources))
    fig.add("cuts", "cuts, one at every byte offset", cuts)
    fig.add("wrong", "recoveries other than exactly the complete records", wrong, equal=0)
    return fig


# -- 4. corruption -------------------------------------------------------------------------------


class _Hang(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Hang()


def _seal(prefix: bytes, execution_id: str) -> bytes:
    """A line with a valid checksum around any bytes, as only a deliberate writer could make."""
    return b'%s,"crc":"%08x"}\n' % (prefix, zlib.crc32(prefix, seed_for(execution_id)))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _crafted(lines: list[bytes], execution_id: str) -> Iterator[tuple[str, bytes]]:
    """Lines with valid checksums whose content no Flux writes, each put in place of a real line."""
    def prefix(line: bytes) -> bytes:
        return line[: line.rindex(b',"crc":"')]

    for i, line in enumerate(lines):
        p = prefix(line)
        record = orjson.loads(line)
        seq = record["seq"]
        edits: list[tuple[str, bytes]] = [
            ("seq as true/false", re.sub(rb'^\{"seq":\d+', b'{"seq":%s' % (b"true" if seq == 1 else b"false"), p)),
            ("seq as float", re.sub(rb'^\{"seq":\d+', b'{"seq":%d.0' % seq, p)),
            ("seq as string", re.sub(rb'^\{"seq":\d+', b'{"seq":"%d"' % seq, p)),
            ("duplicate seq", re.sub(rb'^\{"seq":\d+', b'{"seq":%d,"seq":%d' % (seq + 1, seq), p)),
            ("duplicate kind", p.replace(b'"kind":', b'"kind":"header","kind":', 1)),
            ("space", p.replace(b":", b": ", 1)),
            ("escaped character", p.replace(b'"kind":"', b'"\\u006bind":"', 1)),
            ("byte order mark", b"\xef\xbb\xbf" + p),
            ("kind unknown", re.sub(rb'"kind":"[a-z_]+"', b'"kind":"task_exploded"', p, count=1)),
            ("kind as number", re.sub(rb'"kind":"[a-z_]+"', b'"kind":7', p, count=1)),
        ]
        if b'"value":' in p:
            head, _, _ = p.partition(b'"value":')
            for label, value in [
                ("NaN", b"NaN"), ("Infinity", b"Infinity"), ("-Infinity", b"-Infinity"), ("1e400", b"1e400"),
                ("huge integer", b"123456789012345678901234567890"), ("-2**64", b"-18446744073709551616"),
                ("float written 1E2", b"1E2"), ("float written 100.00", b"100.00"),
                ("nesting 254", b"[" * 254 + b"]" * 254), ("nesting 1000", b"[" * 1000 + b"]" * 1000),
                ("nesting 100000", b"[" * 100_000 + b"]" * 100_000), ("unclosed nesting", b"[" * 5000),
                ("lone surrogate", b'"\\ud800"'), ("invalid UTF-8", b'"\xff\xfe"'), ("overlong UTF-8", b'"\xc0\xaf"'),
                ("NUL in string", b'"a\x00b"'), ("raw newline in string", b'"a\rb"'),
                ("duplicate value", b'1,"value":2'),
            ]:
                edits.append((label, head + b'"value":' + value))
            if b'"call_id":' in p:
                edits.append(("duplicate call_id", head + b'"value":1,"call_id":"999"'))
        if seq == 0:
            edits += [
                ("header format 2", p.replace(b'"format":1', b'"format":2')),
                ("header of another execution", p.replace(execution_id.encode(), b"f" * len(execution_id))),
            ]
        for label, new_prefix in edits:
            yield f"crafted: {label}", b"".join(lines[:i] + [_seal(new_prefix, execution_id)] + lines[i + 1 :])
    # Lines that are well formed one by one but break the history (SPEC.md 2.1).
    started = next(orjson.loads(x) for x in lines if b'"task_started"' in x)
    n = len(lines)
    bad_records = [
        ("completion of a call never started", {"kind": "task_completed", "at": "x", "call_id": "77", "value": 1}),
        ("second start of a call", {**started, "seq": n}),
        (
            "resume of a call that is no pause",
            {"kind": "workflow_resumed", "at": "x", "call_id": started["call_id"], "input": 1},
        ),
        ("second header", {"kind": "header", "format": 1, "execution_id": execution_id}),
        ("task_started without a name", {"kind": "task_started", "at": "x", "call_id": "78"}),
    ]
    for label, record in bad_records:
        body = orjson.dumps({"seq": n, **{k: v for k, v in record.items() if k not in ("seq", "crc")}})
        yield f"crafted: {label}", b"".join(lines) + _seal(body[:-1], execution_id)


def _structural(lines: list[bytes], foreign: list[bytes]) -> Iterator[tuple[str, bytes]]:
    n = len(lines)
    for i in range(n):
        for j in range(i + 1, n):
            swapped = list(lines)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            yield "swapped lines", b"".join(swapped)
        yield "duplicated line", b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
        yield "line repeated at the end", b"".join(lines + [lines[i]])
        if i < n - 1:
            yield "line dropped", b"".join(lines[:i] + lines[i + 1 :])
        if i < len(foreign):
            yield "foreign line", b"".join(lines[:i] + [foreign[i]] + lines[i + 1 :])
    if n < len(foreign):
        yield "foreign line appended", b"".join(lines + [foreign[n]])
    yield "CRLF line ends", b"".join(x[:-1] + b"\r\n" for x in lines)


def _flips(data: bytes) -> Iterator[tuple[str, bytes]]:
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            yield "bit flip", bytes(damaged)


def _random(data: bytes, rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    boundaries = {i + 1 for i, b in enumerate(data) if b == 0x0A}
    made = 0
    while made < count:
        i = rng.randrange(len(data))
        j = min(len(data), i + rng.randint(1, 64))
        op = rng.randrange(4)
        if op == 0:
            out = data[:i] + bytes(rng.randrange(256) for _ in range(j - i)) + data[j:]
        elif op == 1:
            out = data[:i] + rng.choice((b"\n", b"{", b"}", b'"', b"\\", b",", b"\0", b"\xff")) + data[i:]
        elif op == 2:
            out = data[:i] + data[j:]
        else:
            out = data[:j] + data[i:j] + data[j:]
        if out == data or (len(out) in boundaries and data.startswith(out)):
            continue  # unchanged, or a shorter journal that no reader could tell from a real one
        made += 1
        yield "random edit", out


def _classify(data: bytes, path: str, execution_id: str, original: list[dict[str, Any]]) -> str:
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        try:
            read = check_journal(data, path, execution_id)
            ReplayIndex(path, read.offsets).apply_all(read.records)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except JournalCorruptError as err:
        named = err.line >= 1 and str(err).startswith(f"{path}:{err.line}: ")
        return "corrupt" if named else "corrupt without path:line"
    except _Hang:
        return "hang"
    except Exception as err:  # noqa: BLE001 - anything else is the crash being counted
        return f"crash ({type(err).__name__})"
    if read.records != original[: len(read.records)]:
        return "silently accepted"
    if read.torn:
        return "torn"
    return "silently accepted"


def run_corruption(size: Size, seed: int, workdir: str) -> Figures:
    """At least `size.corruption_cases` damaged journals, each read and indexed as a resume would."""
    fig = Figures("corruption")
    rng = random.Random(seed)
    bases = _make_journals(workdir, [2, 2] + [3 + i for i in range(max(0, size.corruption_cases // 100_000))])
    base, foreign = bases[0], bases[1]
    path = os.path.join(workdir, "executions", base["execution_id"] + ".jsonl")
    outcomes: Counter[str] = Counter()
    by_case: dict[str, Counter[str]] = {}
    slowest = 0.0
    previous = signal.signal(signal.SIGALRM, _on_alarm)

    def cases() -> Iterator[tuple[str, bytes, dict[str, Any]]]:
        lines = _lines(base["data"])
        for label, data in _flips(base["data"]):
            yield label, data, base
        for label, data in _structural(lines, _lines(foreign["data"])):
            yield label, data, base
        for label, data in _crafted(lines, base["execution_id"]):
            yield label, data, base
        for extra in bases[2:]:
            for label, data in _flips(extra["data"]):
                yield label, data, extra
        yield from ((label, data, base) for label, data in _random(base["data"], rng, size.corruption_cases))

    try:
        total = 0
        for label, data, src in cases():
            if total >= size.corruption_cases and label == "random edit":
                break
            total += 1
            started = time.perf_counter()
            p = path if src is base else os.path.join(workdir, "executions", src["execution_id"] + ".jsonl")
            outcome = _classify(data, p, src["execution_id"], src["records"])
            slowest = max(slowest, time.perf_counter() - started)
            outcomes[outcome] += 1
            by_case.setdefault(label, Counter())[outcome] += 1
            if outcome not in ("corrupt", "torn"):
                fig.note(f"{label}: {outcome}: {data[-160:]!r}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    bad = sum(c for o, c in outcomes.items() if o not in ("corrupt", "torn"))
    fig.add("cases", "damaged journals read", total, at_least=size.corruption_cases)
    fig.add("journal_bytes", "  of a journal of (bytes)", len(base["data"]))
    fig.add("kinds", "  bit flips / line edits / crafted lines / random edits", " / ".join(
        str(sum(c.total() for k, c in by_case.items() if k.startswith(prefix)))
        for prefix in ("bit flip", ("swapped", "duplicated", "line ", "foreign", "CRLF"), "crafted", "random")
    ))
    fig.add("corrupt", "JournalCorruptError naming path:line", outcomes["corrupt"])
    fig.add("torn", "torn-tail repairs", outcomes["torn"])
    fig.add("accepted", "silently accepted", outcomes["silently accepted"], equal=0)
    fig.add("crashes", "crashes, hangs, errors without path:line", bad - outcomes["silently accepted"], equal=0)
    fig.add("slowest_ms", "slowest case (ms)", round(slowest * 1e3, 1))
    fig.values["by_case"] = {k: dict(v) for k, v in by_case.items()}
    return fig
