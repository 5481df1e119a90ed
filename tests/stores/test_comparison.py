"""The file store and the memory store driven with the same random operations must agree on
everything a caller can see: records, errors, summaries, listings, owners, cancellation requests."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flux._engine.errors import FluxError
from flux._engine.store import Lease, Store
from flux._engine.stores.files import FileStore
from flux._engine.stores.memory import MemoryStore
from tests.stores.test_contract import AT, header

IDS = st.sampled_from(["a", "b", "c"])
NAMES = st.sampled_from(["charge", "ship", "refund"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _outcome(fn: Any) -> tuple[str, Any]:
    """What a call gave a caller: its value, or the class of the Flux error it raised."""
    try:
        return "ok", fn()
    except FluxError as err:
        return "error", type(err).__name__


class FilesAgreeWithMemory(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="flux-compare-")
        self.stores: list[Store] = [FileStore(self.tmp), MemoryStore()]
        self.leases: dict[str, list[Lease]] = {}
        self.calls = 0

    def teardown(self) -> None:
        for pair in self.leases.values():
            for lease in pair:
                lease.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _both(self, fn: Any) -> Any:
        results = [_outcome(lambda s=store: fn(s)) for store in self.stores]
        assert results[0] == results[1], results
        return results[0]

    @rule(execution_id=IDS)
    def create(self, execution_id: str) -> None:
        made: list[Lease] = []

        def create(store: Store) -> str:
            made.append(store.create(execution_id, header(execution_id, "wf"), "os"))
            return "created"

        kind, _ = self._both(create)
        if kind == "ok":
            self.leases[execution_id] = made
        else:
            for lease in made:
                lease.close()

    @rule(execution_id=IDS)
    def acquire(self, execution_id: str) -> None:
        got: list[Lease] = []

        def acquire(store: Store) -> int:
            lease = store.acquire(execution_id, "os")
            got.append(lease)
            return len(lease.read.records)

        kind, _ = self._both(acquire)
        if kind == "ok":
            self.leases[execution_id] = got
        else:
            for lease in got:
                lease.close()

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        execution_id = data.draw(st.sampled_from(sorted(self.leases)))
        for lease in self.leases.pop(execution_id):
            lease.close()

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data(), name=NAMES, value=VALUES, finish=st.booleans())
    def append_call(self, data: st.DataObject, name: str, value: Any, finish: bool) -> None:
        execution_id = data.draw(st.sampled_from(sorted(self.leases)))
        self.calls += 1
        call_id = str(self.calls)
        started = {
            "seq": 0,
            "kind": "task_started",
            "at": AT,
            "call_id": call_id,
            "name": name,
            "args": [value],
            "src": "x:1",
        }
        records = [started] + (
            [{"seq": 0, "kind": "task_completed", "at": AT, "call_id": call_id, "value": value}] if finish else []
        )
        seqs = [[lease.writer.append(dict(r)) for r in records] for lease in self.leases[execution_id]]
        assert seqs[0] == seqs[1]

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data(), discard=st.booleans())
    def sync(self, data: st.DataObject, discard: bool) -> None:
        execution_id = data.draw(st.sampled_from(sorted(self.leases)))
        for lease in self.leases[execution_id]:
            lease.writer.discard() if discard else lease.writer.sync()

    @rule(execution_id=IDS, request=st.booleans())
    def cancel_request(self, execution_id: str, request: bool) -> None:
        self._both(lambda s: s.request_cancel(execution_id) if request else s.clear_cancel(execution_id))

    @rule(execution_id=IDS)
    def read(self, execution_id: str) -> None:
        self._both(lambda s: [dict(r) for r in s.read(execution_id).records])

    @invariant()
    def they_agree(self) -> None:
        for execution_id in ("a", "b", "c"):
            self._both(lambda s, e=execution_id: s.exists(e))
            self._both(lambda s, e=execution_id: s.owner(e) is not None)
            self._both(lambda s, e=execution_id: s.cancel_requested(e) if s.exists(e) else None)
            self._both(lambda s, e=execution_id: s.header(e))
        self._both(lambda s: s.list_ids())
        self._both(lambda s: [(x.execution_id, str(x.status), x.records, x.workflow) for x in s.list().items])


FilesAgreeWithMemory.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_the_file_store_agrees_with_the_memory_store = FilesAgreeWithMemory.TestCase
