"""`Graph`: tasks as nodes, dependencies as edges with optional conditions.

    Graph("orders")
        .add_node("validate", validate)
        .add_node("ship", ship).add_node("refund", refund)
        .add_edge("validate", "ship", condition=lambda r: r["ok"])
        .add_edge("validate", "refund", condition=lambda r: not r["ok"])
        .start_with("validate").end_with("ship").end_with("refund")

The start node gets the graph's input; any other node gets one positional argument per incoming
edge, its source's result, in the order the edges were added. A node runs once every edge into
it is taken: its source ran and the edge's condition (sync or async) is true of the source's
result; otherwise it is skipped, and so are the nodes after it. Nodes whose inputs are ready run
concurrently. The result is the end node's result (a dict by name when several end nodes ran),
or None when no end node ran. `Graph.START` and `Graph.END` (names "START" and "END") may be
used in edges: `add_edge(Graph.START.name, "a")` is `start_with("a")`.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from flux._engine.errors import GraphError

__all__ = ["Graph", "GraphError"]

_SKIPPED = object()


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    condition: Callable[[Any], bool | Awaitable[bool]] | None


@dataclass(frozen=True)
class _Terminal:
    name: str


class Graph:
    """A directed acyclic graph of tasks, run with `await graph(input)`."""

    START: ClassVar[_Terminal] = _Terminal("START")
    END: ClassVar[_Terminal] = _Terminal("END")

    def __init__(self, name: str) -> None:
        self.name = name
        self._nodes: dict[str, Callable[[Any], Awaitable[Any]]] = {}
        self._edges: list[_Edge] = []
        self._start: str | None = None
        self._ends: list[str] = []

    def add_node(self, name: str, action: Callable[[Any], Awaitable[Any]]) -> Graph:
        if name in self._nodes:
            raise GraphError(f"graph {self.name!r}: node {name!r} is added twice")
        if not callable(action):
            raise GraphError(f"graph {self.name!r}: the action of node {name!r} is not callable")
        self._nodes[name] = action
        return self

    def add_edge(
        self, source: str, target: str, condition: Callable[[Any], bool | Awaitable[bool]] | None = None
    ) -> Graph:
        if source == self.START.name and condition is None:
            return self.start_with(target)
        if target == self.END.name and condition is None:
            return self.end_with(source)
        if target == self.START.name:
            raise GraphError(f"graph {self.name!r}: START cannot be an edge's target")
        if source == self.END.name:
            raise GraphError(f"graph {self.name!r}: END cannot be an edge's source")
        self._edges.append(_Edge(source, target, condition))
        return self

    def start_with(self, name: str) -> Graph:
        self._start = name
        return self

    def end_with(self, name: str) -> Graph:
        self._ends.append(name)
        return self

    def validate(self) -> Graph:
        """Checks the graph; returns it.

        Raises:
            GraphError: naming the node at fault.
        """
        where = f"graph {self.name!r}"
        if self._start is None:
            raise GraphError(f"{where} has no start node; call start_with(name)")
        if not self._ends:
            raise GraphError(f"{where} has no end node; call end_with(name)")
        for name in [self._start, *self._ends]:
            if name not in self._nodes:
                raise GraphError(f"{where}: node {name!r} is used as start or end but was never added")
        for edge in self._edges:
            for name in (edge.source, edge.target):
                if name not in self._nodes:
                    raise GraphError(f"{where}: edge {edge.source!r} -> {edge.target!r} names unknown node {name!r}")
        into_start = [e.source for e in self._edges if e.target == self._start]
        if into_start:
            raise GraphError(f"{where}: start node {self._start!r} has an incoming edge from {into_start[0]!r}")
        self._check_acyclic(where)
        reachable = {self._start}
        frontier = [self._start]
        while frontier:
            node = frontier.pop()
            for e in self._edges:
                if e.source == node and e.target not in reachable:
                    reachable.add(e.target)
                    frontier.append(e.target)
        for name in self._nodes:
            if name not in reachable:
                raise GraphError(f"{where}: node {name!r} cannot be reached from start node {self._start!r}")
        return self

    def _check_acyclic(self, where: str) -> None:
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(node: str, path: list[str]) -> None:
            state[node] = 1
            for e in self._edges:
                if e.source != node:
                    continue
                if state.get(e.target) == 1:
                    cycle = (
                        " -> ".join(path[path.index(e.target):] + [node, e.target])
                        if e.target in path
                        else f"{node} -> {e.target}"
                    )
                    raise GraphError(f"{where} has a cycle through node {e.target!r}: {cycle}")
                if e.target not in state:
                    visit(e.target, path + [node])
            state[node] = 2

        for name in self._nodes:
            if name not in state:
                visit(name, [])

    async def __call__(self, input: Any = None) -> Any:
        self.validate()
        from flux.task import _src_of, call_site

        token = call_site.set(_src_of(sys._getframe(1)))  # node calls point at `await graph(...)`
        try:
            return await self._run(input)
        finally:
            call_site.reset(token)

    async def _run(self, input: Any) -> Any:
        order = list(self._nodes)  # insertion order: the order node tasks take their call slots
        done: dict[str, asyncio.Future[Any]] = {n: asyncio.get_running_loop().create_future() for n in order}
        incoming = {n: [e for e in self._edges if e.target == n] for n in order}

        async def run_node(name: str) -> None:
            try:
                if name == self._start:
                    result = await self._nodes[name](input)
                else:
                    values: list[Any] = []
                    every_edge_taken = True
                    for edge in incoming[name]:
                        value = await asyncio.shield(done[edge.source])
                        if value is _SKIPPED:
                            every_edge_taken = False
                            continue  # still wait for the other sources, in order
                        if edge.condition is not None:
                            taken = edge.condition(value)
                            if inspect.isawaitable(taken):
                                taken = await taken
                            if not taken:
                                every_edge_taken = False
                        values.append(value)
                    result = await self._nodes[name](*values) if every_edge_taken else _SKIPPED
            except BaseException as exc:
                if not done[name].done():
                    done[name].set_exception(exc)
                raise
            done[name].set_result(result)

        # Every node's task is created up front, in insertion order, so call ids never depend
        # on which node happened to finish first.
        from flux.tasks import parallel

        await parallel(*(run_node(n) for n in order))
        for fut in done.values():
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: the failure was raised by parallel already
        ran = {n: done[n].result() for n in self._ends if done[n].result() is not _SKIPPED}
        if not ran:
            return None  # no path reached an end node
        if len(ran) == 1:
            return next(iter(ran.values()))
        return ran
