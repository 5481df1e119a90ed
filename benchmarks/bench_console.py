"""How long the web console takes to show an execution of 10,000 calls, in headless Chromium.

    python benchmarks/bench_console.py [--calls 10000] [--runs 5]

Starts `flux serve` on a fresh file store, runs the `wide` workflow of tests/serve_workflows.py
(N calls, one in a thousand failing), then, in Debian's `chromium` driven by Playwright, times
from navigation to the waterfall holding N rows and the calls table its first 200 (the target:
under 2 s). The baseline measured in the same run is the same page for an execution of 5 calls,
so the ratio is what the 10,000 calls add. Prints medians (min-max) and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.serve_helpers import Server, start  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="flux-bench-console-"))
    load_before = os.getloadavg()
    server = Server(str(work / "store"), work)
    samples: dict[str, list[float]] = {}
    try:
        with server.client() as api:
            wide = start(api, "wide", {"n": args.calls, "fail_every": 1000}, wait=300)["execution_id"]
            small = start(api, "counter", {"n": 5}, wait=60)["execution_id"]
        cases = [(f"execution of {args.calls:,} calls", wide, args.calls), ("baseline: execution of 5 calls", small, 5)]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                for _ in range(args.runs):
                    for name, execution_id, rows in cases:
                        page = browser.new_page(viewport={"width": 1400, "height": 1000})
                        page.goto(server.url + "/static/favicon.svg")
                        began = time.perf_counter()
                        page.goto(f"{server.url}/#/executions/{execution_id}")
                        page.locator(f'#waterfall[data-rows="{rows}"]').wait_for(timeout=120_000)
                        page.locator("#calls tbody tr").nth(min(rows, 200) - 1).wait_for(timeout=120_000)
                        samples.setdefault(name, []).append(time.perf_counter() - began)
                        page.close()
            finally:
                browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    base = statistics.median(samples["baseline: execution of 5 calls"])
    print(f"| console, {args.runs} runs | median s (min-max) | x baseline |")
    print("|---|---|---|")
    for name, values in samples.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.2f} ({min(values):.2f}-{max(values):.2f}) | {med / base:.1f} |")
    print(f"\nload average before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
