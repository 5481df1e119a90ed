"""The suite's one table: figures, ratios to the plain fsync loop and to each peer, targets, verdicts.

Only this module decides what a target is and whether it was met; `suite.py` only measures.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "PEER_NAMES", "render"]

PEER_NAMES = ("flux-core", "dbos", "temporal")
MB = 1e6
# Each peer is compared with our row of the same durability, like with like: flux-core's SQLite
# runs in WAL mode with synchronous=NORMAL (a commit is not fsynced; the WAL is at checkpoints),
# as ours with durability "os"; DBOS's SQLite keeps its defaults (synchronous=FULL: every commit
# fsynced), as ours with "fsync"; Temporal's dev server keeps its state in memory by default,
# nearest to "os".
COMPARED_WITH = {"flux-core": "os", "dbos": "fsync", "temporal": "os"}

COLUMNS = ("workload", "engine", "median (min-max)", "x P1", *(f"vs {p}" for p in PEER_NAMES), "target", "measured",
           "result")


@dataclass
class Figure:
    """The timed runs of one row; `tasks` divides each time into a per-task figure (1: per process)."""

    seconds: list[float]
    tasks: int
    peak_rss: list[int] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def us_per_task(self) -> float:
        return self.median_s / self.tasks * 1e6 if self.tasks else float("nan")

    def span(self, unit: str) -> str:
        scale = {"µs": 1e6 / self.tasks if self.tasks else 0, "ms": 1e3, "s": 1.0}[unit]
        lo, hi = min(self.seconds) * scale, max(self.seconds) * scale
        mid = self.median_s * scale
        digits = 2 if mid < 10 else 1 if mid < 100 else 0
        return f"{mid:.{digits}f} {unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def _peer_figure(peer: dict[str, Any], key: str) -> Figure | None:
    w = peer.get("workloads", {}).get(key)
    return Figure(w["seconds"], w["tasks"]) if w else None


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _times(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x" if x >= 1 else f"{x:.2f}x"


class _Rows:
    def __init__(self, figures: dict[str, Figure], peers: dict[str, dict[str, Any]]) -> None:
        self.figures = figures
        self.peers = peers
        self.p1 = figures["P1"].us_per_task
        self.rows: list[tuple[str, ...]] = []

    def peer_us(self, name: str, workload: str) -> float | None:
        f = _peer_figure(self.peers.get(name, {}), workload)
        return f.us_per_task if f else None

    def add(self, workload: str, engine: str, figure: Figure, *, unit: str = "µs", vs: str | None = None,
            durability: str = "", target: str = "", measured: str = "", result: str = "") -> None:
        ratios = []
        for name in PEER_NAMES:
            theirs = self.peer_us(name, vs) if vs and COMPARED_WITH[name] == durability else None
            ratios.append(_times(theirs / figure.us_per_task) if theirs else "")
        x_p1 = _times(figure.us_per_task / self.p1) if unit == "µs" else ""
        self.rows.append((workload, engine, figure.span(unit), x_p1, *ratios, target, measured, result))

    def note(self, workload: str, engine: str, target: str, measured: str, result: str) -> None:
        self.rows.append((workload, engine, "", "", *([""] * len(PEER_NAMES)), target, measured, result))


def _w1_fsync(r: _Rows) -> tuple[str, str, str]:
    ours = r.figures["W1/fsync"].us_per_task
    checks = [("P1", ours / r.p1, 1.2, False)]
    for name, floor in (("dbos", 8.0), ("flux-core", 20.0)):
        theirs = r.peer_us(name, "W1")
        same = r.figures[f"W1/{COMPARED_WITH[name]}"].us_per_task  # ours at the peer's durability
        checks.append((name, theirs / same if theirs else None, floor, True))
    parts, ok = [], True
    for name, value, limit, at_least in checks:
        if value is None:
            parts.append(f"{name} not run")
            continue
        good = value >= limit if at_least else value <= limit
        ok = ok and good
        parts.append(f"{value:.2f}x P1" if name == "P1" else f"{_times(value)} {name}")
    target = "<= 1.2x P1; dbos >= 8x (fsync), flux-core >= 20x (os)"
    return target, "; ".join(parts), _verdict(ok)


def _at_most(figure: Figure, limit_us: float) -> tuple[str, str, str]:
    return f"<= {limit_us:g} µs/task", f"{figure.us_per_task:.1f} µs/task", _verdict(figure.us_per_task <= limit_us)


def render(figures: dict[str, Figure], peers: dict[str, dict[str, Any]], n: int, small: int, large: int, w5: int,
           *, replay_option: str, markdown: bool = False, history: dict[str, list[float]] | None = None) -> str:
    r = _Rows(figures, peers)
    plain = "plain loop"
    r.add("P0 append, no fsync", plain, figures["P0"])
    r.add("P1 append + fsync each line", plain, figures["P1"])
    r.add("P1000 append, fsync per 1000 lines", plain, figures["P1000"])

    titles = {
        "W1": f"W1 {n} sequential tasks",
        "W2": f"W2 {n} parallel tasks + sum",
        "W3": f"W3 replay {n} tasks + finish",
        "W4": "W4 100 executions x 10 tasks",
    }
    targets: dict[str, tuple[str, str, str]] = {
        "W1/fsync": _w1_fsync(r),
        "W1/os": _at_most(figures["W1/os"], 15),
        "W2/fsync": _at_most(figures["W2/fsync"], 9),
        "W3/fsync": _at_most(figures["W3/fsync"], 3),
        "W3/os": _at_most(figures["W3/os"], 3),
    }
    for w, title in titles.items():
        for d in ("fsync", "os"):
            key = f"{w}/{d}"
            target, measured, result = targets.get(key, ("", "", ""))
            r.add(title if d == "fsync" else "", f"ours ({d})", figures[key], vs=w, durability=d, target=target,
                  measured=measured, result=result)
        for name in PEER_NAMES:
            f = _peer_figure(peers.get(name, {}), w)
            if f is not None:
                r.add("", name, f)

    for d in ("fsync", "os"):
        f = figures[f"W5/{d}"]
        peak = max(f.peak_rss) / MB
        ok = f.median_s < 1.0 and peak < 200
        r.add(f"W5 resume a {w5:,}-task journal, fresh process" if d == "fsync" else "", f"ours ({d})", f,
              target="< 1 s; peak RSS < 200 MB", measured=f"{f.median_s:.2f} s; {peak:.0f} MB", result=_verdict(ok))
    f = figures["W5/replay"]
    limit = 0.6 * w5 / 100_000  # 0.6 s for 100,000 tasks
    r.add(f"W5 `flux replay {replay_option}`, whole process", "ours", f, unit="s", target=f"<= {limit:.2g} s",
          measured=f"{f.median_s:.2f} s; peak RSS {max(f.peak_rss) / MB:.0f} MB", result=_verdict(f.median_s <= limit))
    for d in ("fsync", "os"):
        f = figures[f"W6/{d}"]
        r.add("W6 `flux exec` one task, whole process" if d == "fsync" else "", f"ours ({d})", f, unit="ms",
              target="<= 130 ms", measured=f"{f.median_s * 1e3:.0f} ms", result=_verdict(f.median_s <= 0.13))
    r.add("", "python -c pass", figures["W6/python"], unit="ms")

    w0 = {d: figures[f"W0/{d}"].median_s for d in ("fsync", "os")}
    for d in ("fsync", "os"):
        lo, hi = figures[f"small/{d}"], figures[f"large/{d}"]
        runs = (f"{hi.us_per_task / lo.us_per_task:.2f}x plain"
                + (f", {((hi.median_s - w0[d]) / hi.tasks) / ((lo.median_s - w0[d]) / lo.tasks):.2f}x net of W0"
                   if lo.median_s > w0[d] and hi.median_s > w0[d] else ""))
        ratios = sorted((history or {}).get(d, []))
        disk = sorted((history or {}).get("plain", []))
        title = f"Scaling W1: µs/task late / early in a {large:,}-task run" if d == "fsync" else ""
        where = f"tasks {large - small + 1:,}-{large:,} / 1-{small}"
        if not ratios:
            r.note(title, f"ours ({d})", "<= 1.2x", f"n/a; {large:,}/{small:,}-task runs: {runs}", "?")
            continue
        ratio = statistics.median(ratios)
        if d == "fsync" and disk:
            # fsync itself may slow down as a file grows; that part is the disk's, measured by the
            # plain loop in the same run, and is not counted against the engine.
            own = ratio / statistics.median(disk)
            measured = f"{ratio:.2f}x ({where}), the plain fsync loop {statistics.median(disk):.2f}x: {own:.2f}x of it"
        else:
            own = ratio
            measured = f"{ratio:.2f}x ({where})"
        r.note(
            title, f"ours ({d})", "<= 1.2x", f"{measured}; {large:,}/{small:,}-task runs: {runs}", _verdict(own <= 1.2)
        )

    table = _markdown(r.rows) if markdown else _aligned(r.rows)
    return table + "\n" + _peer_notes(peers, n)


def _aligned(rows: list[tuple[str, ...]]) -> str:
    keep = [i for i in range(len(COLUMNS)) if any(row[i] for row in rows)]
    widths = {i: max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in keep}
    numeric = {2, 3, 4, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cells[i].rjust(widths[i]) if i in numeric else cells[i].ljust(widths[i]) for i in keep
        ).rstrip()

    return "\n".join([line(COLUMNS), "  ".join("-" * widths[i] for i in keep), *(line(row) for row in rows)])


def _markdown(rows: list[tuple[str, ...]]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---" if i not in (2, 3, 4, 5, 6) else "---:" for i in range(len(COLUMNS))]
    return "\n".join([line(COLUMNS), "|" + "|".join(align) + "|", *(line(row) for row in rows)])


def _peer_notes(peers: dict[str, dict[str, Any]], n: int) -> str:
    pairs = ", ".join(f"{name} with ours ({d})" for name, d in COMPARED_WITH.items())
    lines = ["x P1: µs/task over the plain fsync loop's. vs <peer>: the peer's µs/task over ours at the same "
             f"durability (how many times faster we are): {pairs}; flux-core's SQLite runs with WAL and "
             "synchronous=NORMAL (no fsync per commit), DBOS's with SQLite's defaults (synchronous=FULL), "
             "Temporal's dev server in memory. W4 counts its 1000 tasks."]
    for name in PEER_NAMES:
        peer = peers.get(name, {"unavailable": "not run"})
        if "unavailable" in peer:
            lines.append(f"{name}: skipped: {peer['unavailable']}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in peer["versions"].items())
        notes = peer.get("notes", {})
        lines.append(f"{name} ({versions}, Python {peer['python']}): {notes.get('store', '')}.")
        for w in ("W3", "W4"):
            if w in notes:
                lines.append(f"  {w}: {notes[w]}.")
        for w, why in peer.get("skipped", {}).items():
            lines.append(f"  {w} not run: {why}.")
    return "\n".join(lines)
