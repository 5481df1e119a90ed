"""`Graph`: tasks as nodes, dependencies as edges with optional conditions.

    Graph("orders")
        .add_node("validate", validate)
        .add_node("ship", ship).add_node("refund", refund)
        .add_edge("validate", "ship", condition=lambda r: r["ok"])
        .add_edge("validate", "refund", condition=lambda r: not r["ok"])
        .start_with("validate").end_with("ship").end_with("refund")

The start node gets the graph's input; a node with one taken incoming edge gets its source's
result, a node with several gets a dict of source name -> result. A node runs once each of its
predecessors has run or been skipped and at least one edge into it was taken; nodes whose
inputs are ready run concurrently. The result is the end node's result (a dict by name when
several end nodes ran).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flux._engine.errors import GraphError

__all__ = ["Graph", "GraphError"]

_SKIPPED = object()


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    condition: Callable[[Any], bool] | None


class Graph:
    """A directed acyclic graph of tasks, run with `await graph(input)`."""

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

    def add_edge(self, source: str, target: str, condition: Callable[[Any], bool] | None = None) -> Graph:
        self._edges.append(_Edge(source, target, condition))
        return self

    def start_with(self, name: str) -> Graph:
        self._start = name
        return self

    def end_with(self, name: str) -> Graph:
        self._ends.append(name)
        return self

    def validate(self) -> None:
        """Raises GraphError naming the node at fault."""
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
                    taken: dict[str, Any] = {}
                    for edge in incoming[name]:
                        value = await asyncio.shield(done[edge.source])
                        if value is _SKIPPED:
                            continue
                        if edge.condition is None or edge.condition(value):
                            taken[edge.source] = value
                    if not taken:
                        result = _SKIPPED
                    else:
                        arg = next(iter(taken.values())) if len(taken) == 1 else taken
                        result = await self._nodes[name](arg)
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
            raise GraphError(f"graph {self.name!r}: no end node ran (every path to one was skipped)")
        if len(ran) == 1:
            return next(iter(ran.values()))
        return ran
