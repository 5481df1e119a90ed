"""Battery scenario 4, second part: damaged journals through every command that reads them.

A store holds real journals of every record kind and field (battery_child's `varied` paused,
interrupted and cancelled, with their sub-workflows; `corner`, which fails after fallbacks,
rollbacks, a patch, recorded values and a cancelled task; `waits`, suspended on a sub-workflow's
timed pause; a `varied` and a `corner` resumed after a crash in a call, which ran again). One
line of one journal at a time is replaced by a record whose checksum is valid but whose content
no Flux writes:

- wrong type: a field of another JSON type than its kind declares;
- kind: an unknown kind, a required field missing, a field its kind does not have;
- wrong value: a field of the right type holding what no run records (a call id that does not
  exist, a time that is no time, a negative attempt, a tagged value that names no type, a blob
  that does not exist, a class to import, terminal escapes, a path out of the store, ...).

Each damaged journal, in a store with the rest of its execution (parent, sub-workflows, stored
outputs, cache) and a twin of itself as it was, goes through `flux list`, `show`, `show
--records`, `replay`, `diff` (with the twin), `recover` and `resume`, run in a forked child on
the real command line. What must hold: no
traceback and no hang, ever; an error is one line; a read-only command changes nothing; a wrong
type or kind is `JournalCorruptError` naming `path:line` in every command (`list` shows the
execution as damaged and names `path:line`).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson

from benchmarks.battery_child import ANSWER
from benchmarks.battery_kit import Figures, ForkServer, Size, read_bytes
from flux._engine import records as R
from flux._engine.journal import encode_line, read_journal, seed_for
from flux.journals import fork_execution

__all__ = ["run_commands"]

_WRONG_TYPE: dict[type, list[Any]] = {
    str: [["a list"], 7, None],
    int: ["7", [7], True, 1.5],
    list: [5, "[1]", {"a": 1}],
    dict: ["{}", [1], 3],
    float: ["soon", [1.0], True],
    bool: [1, "true", None],
}
_NESTED: Any = 0
for _ in range(200):
    _NESTED = [_NESTED]
_ANY_VALUES: list[Any] = [
    None, "not what was returned", {"$blob": "f" * 64, "size": 10}, {"$blob": "../../etc/passwd"}, {"$int": "12x"},
    {"$nope": 1}, {"$datetime": "yesterday"}, {"$tuple": 5}, {"$dataclass": "os:system", "v": {"command": "true"}},
    {"$error": "builtins:KeyboardInterrupt", "msg": "x", "args": [], "tb": ""}, {"$set": [[1], [2]]},
    {"$bytes": "!!"}, {"$enum": "no.such:Enum", "v": 1}, {"$float": "1e999"}, _NESTED * 3, "\x1b[2J\x1b]0;owned\x07",
]
_STR_VALUES = ["", "\x1b[31mred\x1b[0m\x07", "x" * 3000, "../../outside", "∂ƒ©☃"]
_BY_NAME: dict[str, list[Any]] = {
    "call_id": ["999", "0", "1.f.1.r.2", "-1"],
    "at": ["yesterday", "2026-13-45T99:99:99+00:00"],
    "created": ["yesterday", "9999-12-31T23:59:59.999999+14:00"],
    "name": ["no_such_task", "uuid4", "gate"],
    "src": ["nowhere.py:-1", ":"],
    "child": ["../../etc/passwd", "Z" * 64, "a" * 65],
    "workflow": ["no_such_workflow", "corner"],
    "change_id": ["v3"],
    "host": ["\x1b]0;owned\x07"],
    "execution_id": ["f" * 32],
    "attempt": [-1, 10**9, 2**63 - 1],
    "format": [0, 2],
    "pid": [-1, 0, 2**62],
    "wake_at": [-1e308, 1e308, 0, 4102444800.5, -1],
    "retry_at": [-1e308, 1e308, 0, None],
    "fallback": [False],
    "cached": [False],
    "args": [[], ["x"] * 500, [{"$int": "zz"}], [_NESTED], [{"$blob": "0" * 64, "size": 1}]],
    "kwargs": [{}, {"$set": 1}, {"a": {"$blob": "0" * 64, "size": 1}}, {"": None}],
    "waiting": [[], ["999"], [{"call_id": 5}], [{"call_id": "1", "child": "../x"}], [None]],
    "code": [{}, {"file": "relative.py", "attr": "x"}, {"file": "/no/such/file.py", "module": "no.such", "attr": "x"},
             {"file": 5}, {"module": "os", "attr": "system"}],
    "parent": [{}, {"execution_id": "../x", "call_id": "1"}, {"execution_id": "f" * 32, "call_id": "999"}],
    "forked_from": [{"execution_id": "nope", "seq": -1}, {}],
    "error": [{}, {"$error": "no.such:Error", "msg": 5}, {"$error": "builtins:SystemExit", "msg": "x", "args": [],
                                                           "tb": ""}, {"$error": "os:system", "msg": "true"}],
}
COMMANDS = (
    ("list",), ("show", "{id}"), ("show", "{id}", "--records"), ("replay", "{id}"), ("diff", "{id}", "{other}"),
    ("recover", "--durability", "os"), ("resume", "{id}", "--durability", "os"),
)
_READ_ONLY = {"list", "show", "replay", "diff"}


def _wrong_values(name: str, accepted: tuple[type, ...] | None, value: Any) -> list[Any]:
    """Values of the type the field may hold that no run records there."""
    if name in _BY_NAME:
        return [v for v in _BY_NAME[name] if v != value]
    if accepted is None:
        return [v for v in _ANY_VALUES if v != value]
    if accepted[0] is str:
        return [v for v in _STR_VALUES if v != value]
    return []


def _variants(lines: list[bytes], execution_id: str, others: dict[str, str]) -> Iterator[tuple[str, str, int, bytes]]:
    """(category, group, line, journal bytes) for every damaged form of every line."""
    seed = seed_for(execution_id)

    def made(index: int, record: dict[str, Any]) -> bytes:
        copy = list(lines)
        copy[index] = encode_line(record, seed)
        return b"".join(copy)

    for index, line in enumerate(lines):
        record = orjson.loads(line)
        record.pop("crc")
        kind = record["kind"]
        cls = R.RECORD_TYPES[kind]
        for name, accepted, required in cls.FIELDS:
            if name not in record:
                # An optional field this run did not write: present with a wrong type.
                if accepted is not None and not required:
                    for wrong in _WRONG_TYPE[accepted[0]][:1]:
                        if not isinstance(wrong, accepted):
                            yield "type", f"{kind}.{name}", index + 1, made(index, {**record, name: wrong})
                continue
            if accepted is not None:
                for wrong in _WRONG_TYPE[accepted[0]]:
                    if isinstance(wrong, accepted) and not (type(wrong) is bool and bool not in accepted):
                        continue
                    yield "type", f"{kind}.{name}", index + 1, made(index, {**record, name: wrong})
            for wrong in _wrong_values(name, accepted, record[name]):
                if name == "call_id" and wrong == "0" and others.get("call_id"):
                    wrong = others["call_id"]  # another call of the same journal
                yield "value", f"{kind}.{name}", index + 1, made(index, {**record, name: wrong})
            if required and index:
                yield "kind", f"{kind} without {name}", index + 1, made(
                    index, {k: v for k, v in record.items() if k != name}
                )
        if index:
            yield "kind", "unknown kind", index + 1, made(index, {**record, "kind": "task_exploded"})
            yield "kind", f"{kind} with an unknown field", index + 1, made(index, {**record, "extra": 1})


def _base_store(server: ForkServer, workdir: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """A store of real journals of every record kind; returns its folder and, per journal, its
    execution id, bytes, and how to resume it and diff it."""
    home = os.path.join(workdir, "base")

    def act(action: str, **args: Any) -> dict[str, Any]:
        result = os.path.join(workdir, "base.json")
        status = server.wait(server.fork(action, {"home": home, "durability": "os", "result": result, **args}))
        with open(result, "rb") as fh:
            outcome: dict[str, Any] = orjson.loads(fh.read())
        if status.get("code") != 0:
            raise AssertionError(f"a source run of the command battery failed: {outcome}")
        return outcome

    paused = act("run", workflow="varied", input=4)["execution_id"]
    answered = act("run", workflow="varied", input=4)["execution_id"]
    act("resume", workflow="varied", execution_id=answered, answer=ANSWER)
    cancelled = act("run", workflow="varied", input=4)["execution_id"]
    act("cancel", workflow="varied", execution_id=cancelled)
    act("run", workflow="corner", input=3)  # fails
    suspended = act("run", workflow="waits", input=1)["execution_id"]
    answered_inside = act("run", workflow="waits", input=2)["execution_id"]
    act("resume", workflow="waits", execution_id=answered_inside, answer=3)  # workflow_resumed with child
    forked = fork_execution(paused, 12, store=home, durability="os").execution_id  # a header forked_from
    folder = os.path.join(home, "executions")

    def run_again(workflow: str, outcome: str) -> str:
        """A run cut right after the start of the call that ended in its first `outcome`, then
        resumed: that call runs again, and its outcome is marked `rerun`."""
        eid: str = act("run", workflow=workflow, input=4 if workflow == "varied" else 3)["execution_id"]
        path = os.path.join(folder, eid + ".jsonl")
        lines = read_bytes(path).splitlines(keepends=True)
        call = next(orjson.loads(x)["call_id"] for x in lines if f'"kind":"{outcome}"'.encode() in x)
        start = next(i for i, x in enumerate(lines) if b'"task_started"' in x and orjson.loads(x)["call_id"] == call)
        with open(path, "wb") as fh:
            fh.write(b"".join(lines[: start + 1]))
        act("resume", workflow=workflow, execution_id=eid)
        return eid

    rerun_paused = run_again("varied", "task_completed")  # task_completed with rerun, then paused
    run_again("corner", "task_failed")  # task_failed with rerun
    # The answered run, cut a few records after the answer: an interrupted execution.
    path = os.path.join(folder, answered + ".jsonl")
    lines = read_bytes(path).splitlines(keepends=True)
    at = next(i for i, x in enumerate(lines) if b'"workflow_resumed"' in x and b'"call_id"' in x)
    with open(path, "wb") as fh:
        fh.write(b"".join(lines[: at + 4]))
    journals: dict[str, dict[str, Any]] = {}
    roots = {paused: ["--input", str(ANSWER)], suspended: ["--input", "1"], forked: ["--input", str(ANSWER)],
             rerun_paused: ["--input", str(ANSWER)]}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jsonl"):
            continue
        eid = name[:-6]
        records = read_journal(os.path.join(folder, name), eid).records
        call_ids = [r["call_id"] for r in records if r["kind"] == "task_started"]
        journals[eid] = {
            "data": read_bytes(os.path.join(folder, name)), "resume": roots.get(eid, []),
            "call_id": call_ids[-1] if len(call_ids) > 1 else "", "family": eid.split("-")[0],
        }
    # A fork is resumed with the journals of its source beside it, as it would be in its store.
    journals[forked]["family"] = (forked, paused)
    return home, journals


def _twin(data: bytes, execution_id: str) -> tuple[str, bytes]:
    """The same journal under another execution id (each line signed again for it): what `flux
    diff` compares a damaged journal with."""
    twin = "twin-" + execution_id
    seed = seed_for(twin)
    out = []
    for line in data.splitlines():
        record = orjson.loads(line)
        record.pop("crc")
        if record["kind"] == "header":
            record["execution_id"] = twin
        out.append(encode_line(record, seed))
    return twin, b"".join(out)


def _files(home: str) -> dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(home):
        for name in names:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, home)] = read_bytes(path)
    return out


def _write_store(home: str, files: dict[str, bytes]) -> None:
    os.makedirs(home, mode=0o700, exist_ok=True)  # private, as the store makes it: no warning that it was not
    for rel, data in files.items():
        path = os.path.join(home, rel)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def _pick(variants: list[tuple[str, str, str, int, bytes]], count: int, rng: random.Random) -> list[int]:
    """`count` variants (all, at 0), at least one of each category and group first."""
    if count <= 0 or count >= len(variants):
        return list(range(len(variants)))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (_, category, group, _, _) in enumerate(variants):
        groups.setdefault((category, group), []).append(i)
    first = [rng.choice(members) for members in groups.values()]
    taken = set(first)
    rest = [i for i in range(len(variants)) if i not in taken]
    return sorted(first + rng.sample(rest, max(0, count - len(first))))


def run_commands(size: Size, seed: int, workdir: str, fig: Figures) -> None:
    """At least `size.command_journals` damaged journals (every one at 0), each through every
    command; adds its figures to `fig`."""
    rng = random.Random(seed)
    os.makedirs(workdir, exist_ok=True)
    with ForkServer() as server:
        home, journals = _base_store(server, workdir)
        pristine = _files(home)
        variants = [
            (eid, category, group, line, data)
            for eid, info in journals.items()
            for category, group, line, data in _variants(info["data"].splitlines(keepends=True), eid, info)
        ]
        chosen = _pick(variants, size.command_journals, rng)
        outcomes: Counter[str] = Counter()
        by_category: Counter[str] = Counter()
        tracebacks = hangs = long_errors = changed = unnamed_type = runs = 0
        value_errors: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        examples: dict[str, str] = {}
        in_flight: list[tuple[int, str, int]] = []

        def collect(pid: int, index: int, result: str) -> None:
            nonlocal tracebacks, hangs, long_errors, changed, unnamed_type, runs
            status = server.wait(pid, timeout=300)
            eid, category, group, line, _ = variants[index]
            where = f"{eid}.jsonl:{line}:"
            if not status.get("exited") or status.get("code") != 0:
                hangs += 1
                fig.note(f"{group} at {where} the command child did not end well: {status}")
                return
            with open(result, "rb") as fh:
                ran = orjson.loads(fh.read())
            for one in ran:
                runs += 1
                seconds[one["argv"][0]] += one["seconds"]
                command = one["argv"][0]
                text = one["out"] + one["err"]
                errors = [x for x in one["err"].strip().splitlines() if x]
                # An exception that escaped (Python prints its traceback on standard error); a
                # failed workflow's recorded traceback that `flux show` prints is journal content.
                if one["escaped"] or "Traceback (most recent call last)" in one["err"]:
                    tracebacks += 1
                    fig.note(f"{group} at {where} flux {' '.join(one['argv'][:3])}: traceback: {one['err'][-300:]!r}")
                if one["hang"]:
                    hangs += 1
                    kept = os.path.join(os.path.dirname(workdir), f"hang{hangs}")
                    shutil.copytree(os.path.dirname(result), kept)
                    fig.note(f"{group} at {where} flux {' '.join(one['argv'][:3])}: still running after 30 s "
                             f"(store and journal kept in {kept})")
                if one["code"] == 2 and len(errors) != 1:
                    long_errors += 1
                    fig.note(f"{group} at {where} flux {command}: {len(errors)} error lines: {one['err'][:300]!r}")
                if one["changed"] and (command in _READ_ONLY or category != "value"):
                    changed += 1
                    fig.note(f"{group} at {where} flux {command} changed the journal")
                if category != "value":
                    # `list` shows the execution as damaged and its problem below the table
                    said = "damaged" if command == "list" else "JournalCorruptError"
                    ok = one["code"] == (0 if command == "list" else 2) and re.search(
                        rf"^{said}: \S*/{re.escape(where)} ", text, re.MULTILINE
                    ) is not None
                    unnamed_type += not ok
                    if not ok:
                        fig.note(f"{group} at {where} flux {command}: exit {one['code']}: {text.strip()[:300]!r}")
                    outcomes["named" if ok else "not named"] += 1
                elif one["code"] == 2:
                    name = errors[0].split(":")[0] if errors else "?"
                    named = re.search(rf"{re.escape(eid)}\.jsonl:\d+:", text) is not None
                    outcomes["named" if named else "error"] += 1
                    if not named:
                        value_errors[f"{command}: {name}"] += 1
                        examples.setdefault(f"{command}: {name}", f"{group}: {errors[0][:300] if errors else text}")
                else:
                    outcomes[f"exit {one['code']}"] += 1

        for n, index in enumerate(chosen):
            eid, category, group, line, data = variants[index]
            by_category[category] += 1
            folder = os.path.join(workdir, f"v{n % 4}")
            store = os.path.join(folder, "store")
            if os.path.isdir(folder):
                shutil.rmtree(folder)
            os.makedirs(folder)
            # The damaged execution with its sub-workflows (or parent), outputs and cache, and a
            # twin of the damaged journal as it was, to diff against.
            info = journals[eid]
            twin, twin_data = _twin(info["data"], eid)
            _write_store(store, {
                **{rel: b for rel, b in pristine.items()
                   if not rel.startswith("executions/") or rel[11:].startswith(info["family"])},  # str or tuple
                f"executions/{twin}.jsonl": twin_data,
            })
            damaged = os.path.join(folder, "damaged.jsonl")
            with open(damaged, "wb") as fh:
                fh.write(data)
            commands = []
            for command in COMMANDS:
                argv = [a.format(id=eid, other=twin) for a in command]
                if command[0] == "resume":
                    argv += info["resume"]
                commands.append([*argv, "--store", store])
            result = os.path.join(folder, "result.json")
            args = {"journal": os.path.join(store, "executions", eid + ".jsonl"), "damaged": damaged,
                    "commands": commands, "result": result}
            in_flight.append((server.fork("commands", args), index, result))
            if len(in_flight) == 2:  # two at a time: the two cores of a CI machine
                collect(*in_flight.pop(0))
        while in_flight:
            collect(*in_flight.pop(0))
    declared = {(kind, name) for kind, cls in R.RECORD_TYPES.items() for name, _, _ in cls.FIELDS}
    covered = {tuple(variants[i][2].split(".")) for i in chosen if variants[i][1] != "kind"}
    fig.add("cmd_journals", "damaged journals run through list, show, show --records, replay, diff, recover, resume",
            len(chosen), at_least=min(size.command_journals, len(variants)))
    fig.add("cmd_kinds", "  wrong type / unknown kind, missing or extra field / wrong value (of all made)",
            f"{by_category['type']} / {by_category['kind']} / {by_category['value']} ({len(variants)})")
    fig.add("cmd_fields", "  fields damaged, of the fields the record kinds declare",
            f"{len(covered & declared)} of {len(declared)}")
    fig.add("cmd_runs", "command runs", runs, equal=len(chosen) * len(COMMANDS))
    fig.add("cmd_tracebacks", "tracebacks", tracebacks, equal=0)
    fig.add("cmd_hangs", "hangs", hangs, equal=0)
    fig.add("cmd_long_errors", "errors on more than one line", long_errors, equal=0)
    fig.add("cmd_changed", "journals changed by a read-only command, or by any command when damaged", changed, equal=0)
    fig.add("cmd_unnamed", "wrong types and kinds not reported as JournalCorruptError naming path:line", unnamed_type,
            equal=0)
    fig.add("cmd_outcomes", "  outcomes: named path:line / other error / exit 0 / exit 1",
            f"{outcomes['named']} / {outcomes['error']} / {outcomes['exit 0']} / {outcomes['exit 1']}")
    fig.values["cmd_value_errors"] = dict(value_errors)
    fig.values["cmd_examples"] = examples
    fig.values["cmd_seconds"] = {k: round(v, 2) for k, v in seconds.items()}
