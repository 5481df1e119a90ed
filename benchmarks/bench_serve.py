"""`flux serve` under load from a second process on loopback: starts per second, and the
latency of listing a store of 100,000 executions.

    python benchmarks/bench_serve.py                  # about 3 minutes on a 2-core VM
    python benchmarks/bench_serve.py --quick          # a smoke run

The server is a real `python -m flux serve examples/hello.py` process on 127.0.0.1; this
process is the client (httpx, asyncio, N requests in flight). Starts: `POST
/api/v1/workflows/hello_world/executions`, which answers once the header is durable (the run
goes on in the server), and the same with `?wait=10`, which answers when the run has completed.
Listing: a file store filled with 100,000 journals written directly (valid journals of a
one-task workflow: 85% completed, 10% failed, 5% paused), then `GET /api/v1/executions`.
Figures are medians of the runs, with the range.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flux._engine.clock import iso  # noqa: E402
from flux._engine.journal import encode_line, seed_for  # noqa: E402

APP = ROOT / "examples" / "hello.py"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, store: str, durability: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("FLUX_SERVE_TOKEN", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flux",
                "serve",
                str(APP),
                "--store",
                store,
                "--port",
                str(self.port),
                "--durability",
                durability,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("flux serve did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


async def _starts(url: str, count: int, concurrency: int, wait: bool) -> float:
    """Starts per second: `count` starts, `concurrency` in flight at once."""
    params = {"wait": "10"} if wait else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        queue = iter(range(count))

        async def worker() -> None:
            for n in queue:
                response = await client.post(
                    "/api/v1/workflows/hello_world/executions", params=params, content=f'"w{n}"'
                )
                if response.status_code != 201 or (wait and response.json()["status"] != "completed"):
                    raise RuntimeError(f"start {n}: {response.status_code} {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - began)


def fill_store(home: Path, count: int) -> float:
    """`count` journals of workflow hello_world written straight into a file store."""
    folder = home / "executions"
    folder.mkdir(parents=True, mode=0o700)
    began = time.perf_counter()
    base = 1_764_000_000.0
    for n in range(count):
        execution_id = f"{n:07d}{os.urandom(6).hex()}"
        seed = seed_for(execution_id)
        at = base + n * 0.5
        done = {"seq": 3, "kind": "task_completed", "at": iso(at + 0.003), "call_id": "1", "value": f"Hello, w{n}"}
        if n % 20 == 7:
            tail = [
                done,
                {
                    "seq": 4,
                    "kind": "workflow_paused",
                    "at": iso(at + 0.004),
                    "call_id": "2",
                    "name": "approve",
                    "src": "hello.py:17",
                },
            ]
        elif n % 10 == 3:
            error = {
                "$error": "builtins:ValueError",
                "msg": "refused",
                "args": ["refused"],
                "tb": "Traceback (most recent call last):\n",
            }
            tail = [
                {"seq": 3, "kind": "task_failed", "at": iso(at + 0.003), "call_id": "1", "error": error},
                {"seq": 4, "kind": "workflow_failed", "at": iso(at + 0.004), "error": error},
            ]
        else:
            tail = [done, {"seq": 4, "kind": "workflow_completed", "at": iso(at + 0.004), "value": f"Hello, w{n}"}]
        records: list[dict[str, Any]] = [
            {
                "seq": 0,
                "kind": "header",
                "format": 1,
                "execution_id": execution_id,
                "workflow": "hello_world",
                "code": {"file": str(APP), "module": "hello", "attr": "hello_world"},
                "input": f"w{n}",
                "created": iso(at),
            },
            {"seq": 1, "kind": "workflow_started", "at": iso(at + 0.001)},
            {
                "seq": 2,
                "kind": "task_started",
                "at": iso(at + 0.002),
                "call_id": "1",
                "name": "say_hello",
                "args": [f"w{n}"],
                "src": "hello.py:16",
            },
            *tail,
        ]
        path = folder / f"{execution_id}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"".join(encode_line(r, seed) for r in records))
        finally:
            os.close(fd)
    return time.perf_counter() - began


def _timed(client: httpx.Client, path: str, params: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = client.get(path, params=params)
    took = time.perf_counter() - began
    response.raise_for_status()
    return took, response.json()


def _fmt(values: list[float], unit: str = "ms", scale: float = 1000) -> str:
    if not values:
        return "-"
    med = statistics.median(values) * scale
    return (
        f"{med:.0f} {unit} ({min(values) * scale:.0f}-{max(values) * scale:.0f})"
        if med >= 10
        else f"{med:.1f} {unit} ({min(values) * scale:.1f}-{max(values) * scale:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--executions", type=int, default=100_000, help="executions in the listed store")
    parser.add_argument("--starts", type=int, default=1000, help="starts per run")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 executions, 200 starts, 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.executions, args.starts, args.runs = 10_000, 200, 2
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="flux-bench-serve-"))
    rows: list[tuple[str, str]] = []
    try:
        for durability in ("fsync", "os"):
            for wait in (False, True):
                rates = []
                for run in range(args.runs):
                    server = Served(str(work / f"starts-{durability}-{wait}-{run}"), durability)
                    try:
                        rates.append(asyncio.run(_starts(server.url, args.starts, args.concurrency, wait)))
                    finally:
                        server.stop()
                what = "start and run to the end (?wait=10)" if wait else "start (answer once the header is durable)"
                rows.append(
                    (
                        f"{what}, durability {durability}, {args.concurrency} in flight",
                        f"{statistics.median(rates):.0f}/s ({min(rates):.0f}-{max(rates):.0f})",
                    )
                )
        home = work / "listed"
        filled = fill_store(home, args.executions)
        server = Served(str(home), "fsync")
        try:
            with httpx.Client(base_url=server.url, timeout=300) as client:
                first, _ = _timed(client, "/api/v1/executions", {"limit": 50})
                samples: dict[str, list[float]] = {}
                cursor = None
                for _ in range(max(args.runs, 5) * 4):
                    for name, params in [
                        ("first page (50 rows)", {"limit": 50}),
                        ("status=failed (50 rows)", {"limit": 50, "status": "failed"}),
                        ("status=paused (50 rows)", {"limit": 50, "status": "paused"}),
                        ("id prefix, one match", {"prefix": "0054321"}),
                        (
                            "a time range (50 rows)",
                            {
                                "limit": 50,
                                "created_after": iso(1_764_000_000.0 + 10_000),
                                "created_before": iso(1_764_000_000.0 + 20_000),
                            },
                        ),
                    ]:
                        samples.setdefault(name, []).append(_timed(client, "/api/v1/executions", params)[0])
                    took, page = _timed(
                        client, "/api/v1/executions", {"limit": 50, **({"cursor": cursor} if cursor else {})}
                    )
                    samples.setdefault("next page by cursor", []).append(took)
                    cursor = page["cursor"]
                    execution_id = page["items"][0]["execution_id"]
                    samples.setdefault("one execution", []).append(
                        _timed(client, f"/api/v1/executions/{execution_id}")[0]
                    )
        finally:
            server.stop()
        rows.append(
            (
                f"list, first request after start ({args.executions:,} executions; reads every header once)",
                _fmt([first], "s", 1),
            )
        )
        for name, values in samples.items():
            rows.append((f"list: {name}" if name != "one execution" else "GET one execution", _fmt(values)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    title = f"flux serve, {args.executions:,} executions listed, {args.starts} starts x {args.runs} runs"
    print(f"| {title} | median (min-max) |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(
        f"\n{os.cpu_count()} CPUs; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{args.executions:,} journals written in {filled:.0f} s; {time.strftime('%Y-%m-%d')}"
    )


if __name__ == "__main__":
    main()
