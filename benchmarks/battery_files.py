"""Battery scenario 4, corruption: damaged journals, read as a resume reads them, then through
every command.

- Bytes: every bit flip of a ~2 KB journal; swapped, repeated, dropped and foreign lines; lines
  with a valid checksum around content no Flux writes (NaN, duplicate keys, huge numbers, deep
  nesting, `seq` of another type); random edits. Each case must end in a torn-tail repair or a
  `JournalCorruptError` naming `path:line`; never a crash, a hang or silent acceptance.
- Commands: records with valid checksums and wrong field types, unknown kinds and wrong values
  through `flux list`, `show`, `show --records`, `replay`, `diff`, `recover` and `resume`
  (benchmarks/battery_commands.py).
"""

from __future__ import annotations

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

from benchmarks.battery_commands import run_commands
from benchmarks.battery_kit import Figures, Size, make_journals
from flux._engine.errors import JournalCorruptError
from flux._engine.history import History as ReplayIndex
from flux._engine.journal import check_journal, seed_for

__all__ = ["run_corruption"]


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
    inputs = [2, 2] + [3 + i for i in range(size.corruption_cases // 100_000)]
    bases = make_journals(workdir, [("many", n) for n in inputs])
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
    run_commands(size, seed, os.path.join(workdir, "commands"), fig)
    return fig
