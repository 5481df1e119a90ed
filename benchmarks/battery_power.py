"""Battery scenarios 2 and 3, on what a disk holds after the power went: power loss, truncation.

- Power loss rebuilds, from real fsync-mode runs, what a disk may hold after the power went: the
  synced prefix, then part of what was written after it, zeros, pages of the last write kept out
  of order (a later page on disk, an earlier one not), or stale non-zero blocks where a page was
  never written. Recovery (`FileStore.acquire`) must keep every acknowledged record and cut the
  rest as a torn tail (kept in `.torn`), or report stale bytes as damage naming `path:line`.
  It also takes away the directory entry of a journal just created (its directory never
  synced): the execution must not exist for any command, and can be made again.
- Truncation cuts a ~20 KB journal at every byte offset: every cut is checked in-process, and
  a sample (every cut at the long size) is recovered through the store, which cuts it on disk.
"""

from __future__ import annotations

import bisect
import os
import random
import zlib
from collections import Counter
from typing import Any

from benchmarks import battery_child
from benchmarks.battery_child import ANSWER, expected_output, expected_varied, many
from benchmarks.battery_kit import (
    Figures,
    ForkServer,
    Size,
    journal_of,
    make_journals,
    read_bytes,
    reset_journal,
    run_cli,
)
from flux._engine.errors import FluxError, JournalCorruptError
from flux._engine.journal import Known, check_journal
from flux._engine.stores.files import FileStore

__all__ = ["run_power", "run_truncation"]

PAGE = 4096
KINDS = ("part", "zeros", "part+zeros", "pages", "stale")


def _page_state(rng: random.Random, data: bytes, synced: int, upto: int, stale: bool, junk: bytes) -> bytes:
    """The disk after a power loss during a write that the next fsync would have covered: the
    file keeps some size past `synced`; each page after `synced` reached the disk or not, in any
    order. A page that did not holds what it held at the last fsync: zeros past the old end of
    file, or, for a block the file system allocated anew (`stale`), the old contents of that
    block (`junk`, never a NUL byte)."""
    size = upto if rng.random() < 0.6 else rng.randint(synced + 1, upto)
    out = bytearray(data[:size])
    for page in range(synced // PAGE, (size - 1) // PAGE + 1):
        lo, hi = max(page * PAGE, synced), min((page + 1) * PAGE, size)
        fresh = page * PAGE >= synced  # a block the file did not have at the last fsync
        if rng.random() < (0.5 if fresh or not stale else 0.8):
            continue  # this page reached the disk
        if stale and fresh:
            at = rng.randrange(len(junk) - PAGE)
            out[lo:hi] = junk[at : at + hi - lo]
        else:
            out[lo:hi] = bytes(hi - lo)
    return bytes(out)


def _first_difference(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    lo = 0
    while lo < n:
        hi = min(n, lo + 256)
        if a[lo:hi] != b[lo:hi]:
            return next(i for i in range(lo, hi) if a[i] != b[i])
        lo = hi
    return n


def _expected(data: bytes, state: bytes) -> tuple[str, int, int]:
    """What recovery must do with `state`: ("torn", valid size, 0), or ("damage", valid size,
    line) when the first line that differs from what was written is complete and holds no byte
    that was never written (SPEC.md 2.2: such a line cannot be told from damage)."""
    p0 = _first_difference(data, state)
    end = data.rfind(b"\n", 0, p0) + 1
    stop = state.find(b"\n", end)
    if p0 == len(state) or stop < 0 or b"\0" in state[end:stop]:
        return "torn", end, 0
    return "damage", end, data[:end].count(b"\n") + 1


def run_power(size: Size, seed: int, workdir: str) -> Figures:
    """`size.power_states` power losses of real fsync-mode journals, each recovered, and
    `size.lost_entries` journals whose directory entry was lost."""
    fig = Figures("power")
    rng = random.Random(seed)
    sources = make_journals(
        workdir, [("many", 10), ("many", 20), ("many", 30), ("fanout", 150), ("fanout", 300)], durability="fsync"
    )
    # Stale blocks: the bytes of another journal (lines that are valid for another execution) or
    # random bytes; never a NUL byte, which would say "never written".
    junk = sources[2]["data"] * 2 + bytes(rng.randrange(1, 256) for _ in range(4 * PAGE))
    home = os.path.join(workdir, "power")
    store = FileStore(home)
    store._ensure_dirs()
    resume_every = max(1, size.power_states // 100)
    kinds: Counter[str] = Counter()
    lost = unclean = failed = cut = resumed = resumed_ok = crashes = 0
    out_of_order = stale_damage = stale_torn = stale_accepted = stale_wrong = 0
    for i in range(size.power_states):
        kind = KINDS[i % len(KINDS)]
        # Pages out of order need a write several pages long: the fan-outs' first syncs.
        src = rng.choice(sources[3:] if kind in ("pages", "stale") else sources)
        data, events, eid = src["data"], src["events"], src["execution_id"]
        # The power goes right after event j: the disk holds what the last fsync made durable,
        # and maybe some of what was written after it, up to what the next fsync would cover.
        j = rng.randint(1, len(events))
        if kind in ("pages", "stale"):
            widest = max(range(1, len(events)), key=lambda k: _gap(events, k, len(data)))
            j = widest if rng.random() < 0.7 else j
        synced = max(s for what, s in events[:j] if what == "fsync")
        acked = max((s for what, s in events[:j] if what == "ack"), default=0)
        upto = next((s for what, s in events[j:] if what == "fsync"), len(data))
        if upto <= synced:
            kind = "part"  # nothing was written past the last fsync
        kinds[kind] += 1
        unsynced = data[synced:upto]
        if kind in ("pages", "stale"):
            state = _page_state(rng, data, synced, upto, kind == "stale", junk)
            pages = [state[p : p + PAGE] == data[p : p + PAGE] for p in range(synced // PAGE * PAGE, len(state), PAGE)]
            out_of_order += any(not a and b for a, b in zip(pages, pages[1:], strict=False))
        else:
            state = data[:synced]
            if kind != "zeros":
                state += unsynced[: rng.randint(0, len(unsynced))]
            if kind != "part":
                state += b"\0" * rng.randint(1, 4096 if kind == "zeros" else 512)
        expect, end, line = _expected(data, state)
        path = reset_journal(store.dir, eid, state)
        try:
            lease = store.acquire(eid, "fsync")
        except JournalCorruptError as err:
            named = err.line == line and str(err).startswith(f"{path}:{line}: ") and read_bytes(path) == state
            if expect == "damage" and named:
                stale_damage += 1
            else:
                failed += expect != "damage"
                stale_wrong += expect == "damage"
                fig.note(f"state {i} ({kind}, {synced} bytes synced): {err}")
            continue
        except Exception as err:  # noqa: BLE001 - counted: recovery must not fail otherwise
            crashes += 1
            fig.note(f"state {i} ({kind}): {type(err).__name__}: {err}")
            continue
        try:
            on_disk = read_bytes(path)
            if expect == "damage":
                stale_accepted += 1
                fig.note(f"state {i}: stale bytes at line {line} were accepted")
            elif kind == "stale":
                stale_torn += 1
            if len(on_disk) < acked:
                lost += data[:acked].count(b"\n") - on_disk.count(b"\n")
                fig.note(f"state {i}: recovery kept {len(on_disk)} bytes; {acked} were acknowledged, {synced} synced")
            torn_path = path[:-6] + ".torn"
            torn = read_bytes(torn_path) if os.path.exists(torn_path) else b""
            clean = (
                on_disk == data[:end] == state[:end]
                and lease.read.valid_size == end
                and lease.read.records == src["records"][: data[:end].count(b"\n")]
                and torn == (b"%d %s\n" % (end, state[end:]) if len(state) > end else b"")
            )
            if not clean:
                unclean += 1
                fig.note(f"state {i} ({kind}): recovery kept {len(on_disk)} bytes, not the {end} before the tear")
            cut += len(state) > end
        finally:
            lease.close()
        if i % resume_every == 0 and src["workflow"] == "many":
            resumed += 1
            try:
                ctx = many.run(execution_id=eid, store=home, durability="os")
            except FluxError as err:
                fig.note(f"state {i}: the recovered journal cannot be resumed: {err}")
                continue
            resumed_ok += ctx.status == "completed" and ctx.output == expected_output(src["n"])
    fig.add("states", "power-loss states recovered", size.power_states, at_least=size.power_states)
    fig.add("kinds", "  synced + part of the rest / + zeros / + both / pages out of order / stale blocks",
            " / ".join(str(kinds[k]) for k in KINDS))
    fig.add("out_of_order", "  states with a later page on disk and an earlier one not", out_of_order)
    fig.add("torn_cut", "torn tails cut on recovery (kept in .torn)", cut)
    fig.add("acked_lost", "acknowledged records lost", lost, equal=0)
    fig.add("unclean", "recoveries other than a cut at the first line never (wholly) written", unclean, equal=0)
    fig.add("failed", "recoveries that failed", failed, equal=0)
    fig.add("crashes", "recoveries that crashed", crashes, equal=0)
    fig.add("stale", "stale blocks: reported as damage naming path:line / cut as a torn tail (SPEC.md 10)",
            f"{stale_damage} / {stale_torn}")
    fig.add("stale_accepted", "stale bytes accepted as records", stale_accepted, equal=0)
    fig.add("stale_wrong", "stale blocks reported at another line, or with the file changed", stale_wrong, equal=0)
    fig.add("resumed", "recovered states resumed to the uninterrupted output", f"{resumed_ok}/{resumed}",
            equal=f"{resumed}/{resumed}")
    _lost_entries(size, fig, workdir)
    return fig


def _gap(events: list[tuple[str, int]], j: int, end: int) -> int:
    synced = max(s for what, s in events[:j] if what == "fsync")
    return next((s for what, s in events[j:] if what == "fsync"), end) - synced


# -- a lost directory entry -----------------------------------------------------------------------


class _Cli:
    """The `flux` command line on one store, run in forked children; keeps what each printed."""

    def __init__(self, server: ForkServer, home: str, folder: str) -> None:
        self.server, self.home, self.folder = server, home, folder
        self.outputs: list[str] = []
        self.tracebacks = 0  # Python's report of an exception that escaped, on standard error

    def __call__(self, *argv: str) -> tuple[int | None, str]:
        code, out, err = run_cli(self.server, [*argv, "--store", self.home], self.folder)
        self.outputs.append(out + err)
        self.tracebacks += "Traceback (most recent call last)" in err
        return code, out + err

    def not_found(self, execution_id: str) -> bool:
        """Whether show, show --records and resume each say in one line that it does not exist."""
        return all(
            code == 2 and text.strip().startswith("ExecutionNotFoundError:") and len(text.strip().splitlines()) == 1
            for code, text in (self("show", execution_id), self("show", execution_id, "--records"),
                               self("resume", execution_id))
        )

    def lists(self, execution_id: str, command: str = "list") -> bool:
        code, text = self(command)
        return code == 0 and execution_id in text


def _lose_entry(server: ForkServer, folder: str, case: int) -> tuple[str, str, str] | None:
    """A process killed once it linked a new journal, before it synced the directory; then the
    power loss: the link is gone (the temporary file's entry may be back, the lock file gone).
    Returns (store, lost execution id, its parent's id or ""), or None when the run was not
    killed there."""
    home = os.path.join(folder, "store")
    executions = os.path.join(home, "executions")
    sub = case % 3 == 2
    args = {"home": home, "workflow": "varied" if sub else "many", "input": 4}
    status = server.wait(server.fork("run", args, faults=f"kill:{2 if sub else 1}:create_dirsync"))
    journals = sorted((n for n in os.listdir(executions) if n.endswith(".jsonl")), key=len)
    if status.get("signal") is None or len(journals) != (2 if sub else 1):
        return None
    lost_id = journals[-1][:-6]  # a sub-workflow's id is its parent's and a call id
    path = os.path.join(executions, lost_id + ".jsonl")
    if case % 2:
        os.rename(path, f"{path}.new-{os.getpid()}")  # the temporary file's entry came back
    else:
        os.unlink(path)
    if case % 4 == 1:
        os.unlink(os.path.join(executions, lost_id + ".lock"))
    return home, lost_id, journals[0][:-6] if sub else ""


def _lost_entries(size: Size, fig: Figures, workdir: str) -> None:
    """Journals whose directory entry a power loss took (`_lose_entry`): a top-level execution
    must then not exist for any command and can be made again under its id; a sub-workflow is
    made again by its resumed parent."""
    top = top_ok = again_ok = child = child_ok = tracebacks = 0
    with ForkServer() as server:
        for case in range(size.lost_entries):
            folder = os.path.join(workdir, f"lost{case}")
            os.makedirs(folder)
            lost = _lose_entry(server, folder, case)
            if lost is None:
                fig.note(f"lost entry {case}: the run was not killed after linking its journal")
                continue
            home, lost_id, root = lost
            cli = _Cli(server, home, folder)
            absent = cli.not_found(lost_id) and not cli.lists(lost_id)
            if root:
                child += 1
                resumed = cli("resume", root)[0] == 0 and cli("resume", root, "--input", str(ANSWER))[0] == 0
                journal = os.path.join(home, "executions", root + ".jsonl")
                final = check_journal(read_bytes(journal), journal, root).records[-1]
                child_ok += absent and resumed and final.get("value") == expected_varied(4) and cli.lists(lost_id)
            else:
                top += 1
                top_ok += absent and not cli.lists(lost_id, "recover")
                code, text = cli("exec", battery_child.__file__, "many", "--input", "4", "--id", lost_id)
                found = journal_of(home)
                again_ok += code == 0 and found is not None and found[1] == lost_id and "status: completed" in text
            tracebacks += cli.tracebacks
            if not absent:
                fig.note(f"lost entry {case}: {' | '.join(t.strip()[:200] for t in cli.outputs)}")
    fig.add("lost_entries", "journals whose directory entry was lost", top + child, at_least=size.lost_entries)
    fig.add("lost_kinds", "  of a top-level execution / of a sub-workflow", f"{top} / {child}")
    fig.add("lost_absent", "  top-level: absent for show, show --records, resume, list and recover", f"{top_ok}/{top}",
            equal=f"{top}/{top}")
    fig.add("lost_again", "  top-level: made again under the same id, to the right output", f"{again_ok}/{top}",
            equal=f"{top}/{top}")
    fig.add("lost_child", "  sub-workflow: absent, then made again by its resumed parent, to the right output",
            f"{child_ok}/{child}", equal=f"{child}/{child}")
    fig.add("lost_tracebacks", "  tracebacks", tracebacks, equal=0)


# -- truncation -----------------------------------------------------------------------------------


def _check_cut(store: FileStore, src: dict[str, Any], k: int) -> str | None:
    """Cuts the journal at byte `k` on disk and recovers it through the store; None when the
    recovery kept exactly the complete records and put the rest in `.torn`, else what went wrong."""
    data, eid, records = src["data"], src["execution_id"], src["records"]
    state = data[:k]
    path = reset_journal(store.dir, eid, state)
    end = state.rfind(b"\n") + 1
    lines = state.count(b"\n")
    try:
        lease = store.acquire(eid, "os")
    except JournalCorruptError as err:
        # No complete header: damage, not a torn tail; the file must be left alone.
        ok = lines == 0 and read_bytes(path) == state and err.line == 1
        return None if ok else str(err)
    except Exception as err:  # noqa: BLE001 - counted: recovery must not fail otherwise
        return f"{type(err).__name__}: {err}"
    try:
        torn_path = path[:-6] + ".torn"
        torn = read_bytes(torn_path) if os.path.exists(torn_path) else b""
        ok = (
            lines > 0
            and lease.read.records == records[:lines]
            and read_bytes(path) == state[:end]
            and torn == (b"%d %s\n" % (end, state[end:]) if end < k else b"")
        )
    finally:
        lease.close()
    return None if ok else f"recovered {len(lease.read.records)} records, expected {lines}"


def run_truncation(size: Size, seed: int, workdir: str) -> Figures:
    """Cuts ~20 KB journals at every byte offset: each cut is read in-process (what any reader
    and any recovery decides), and `size.truncation_store_cuts` of them (all, at 0) are
    recovered through the store, on disk."""
    fig = Figures("truncation")
    rng = random.Random(seed)
    sources = make_journals(workdir, [("many", 50 + 5 * i) for i in range(size.truncation_journals)])
    home = os.path.join(workdir, "truncation")
    store = FileStore(home)
    store._ensure_dirs()
    cuts = wrong = on_disk = on_disk_wrong = 0
    for src in sources:
        data, eid, records = src["data"], src["execution_id"], src["records"]
        path = os.path.join(store.dir, eid + ".jsonl")
        # Cut k shares its complete lines with cut k-1: all but the last of them are taken as
        # known, as a replay snapshot vouches for a prefix (SPEC.md 2.3), and the last complete
        # line and the torn bytes after it are checked at every k. The cuts recovered on disk
        # below read every line.
        bounds = [i + 1 for i, b in enumerate(data) if b == 0x0A]
        crcs = [zlib.crc32(data[:b]) for b in bounds]
        offsets = [0, *bounds[:-1]]
        for k in range(len(data) + 1):
            cuts += 1
            state = data[:k]
            lines = bisect.bisect_right(bounds, k)
            known = Known(bounds[lines - 2], lines - 1, crcs[lines - 2], lambda: None) if lines >= 2 else None
            try:
                read = check_journal(state, path, eid, known=known)
            except JournalCorruptError as err:
                if lines != 0 or err.line != 1:
                    wrong += 1
                    fig.note(f"cut at {k}: {err}")
                continue
            end = bounds[lines - 1] if lines else 0
            last = read.records[-1] if lines else None
            if (
                read.valid_size != end or read.torn != state[end:] or len(read.records) != lines
                or read.offsets[-1] != offsets[lines - 1] or last != records[lines - 1]
            ):
                wrong += 1
                fig.note(f"cut at {k}: read {len(read.records)} records, expected {lines}")
        # Through the store: every line boundary and the bytes next to it are where a reader's
        # decision changes; the rest are random offsets.
        if size.truncation_store_cuts:
            near = sorted({k + d for k in [0, *bounds] for d in (-1, 0, 1) if 0 <= k + d <= len(data)})
            picks = rng.sample(near, min(len(near), size.truncation_store_cuts * 2 // 3))
            picks += rng.sample(range(len(data) + 1), size.truncation_store_cuts - len(picks))
        else:
            picks = list(range(len(data) + 1))
        for k in picks:
            on_disk += 1
            problem = _check_cut(store, src, k)
            if problem is not None:
                on_disk_wrong += 1
                fig.note(f"cut at {k}, recovered on disk: {problem}")
    fig.add("journal_bytes", "journal sizes (bytes)", ", ".join(str(len(s["data"])) for s in sources))
    fig.add("cuts", "cuts, one at every byte offset, read in-process (last complete line and rest checked)", cuts)
    fig.add("wrong", "reads other than exactly the complete records (a cut header: damage)", wrong, equal=0)
    fig.add("on_disk", "cuts recovered through the store (torn tail cut into .torn)", on_disk)
    fig.add("on_disk_wrong", "recoveries other than exactly the complete records", on_disk_wrong, equal=0)
    return fig
