"""Finds a workflow's code: imports a file under a stable module name (SPEC.md "Workflow code").

A file `path/to/orders.py` is imported as module `orders` with its folder first on `sys.path`,
so that `flux resume` on another day, from another folder, loads the same classes under the
same names. The journal's header records the file, the module and the workflow's attribute.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from flux._engine.errors import WorkflowLoadError

if TYPE_CHECKING:
    from flux.workflow import Workflow

__all__ = ["code_of", "find_workflow", "load_file", "load_recorded"]


def _module_name(path: str) -> str:
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0]) or "workflow"
    if stem[0].isdigit():
        stem = "_" + stem
    existing = sys.modules.get(stem)
    if existing is None or _same_file(getattr(existing, "__file__", None), path):
        return stem
    # A module of that name (a standard one, say) is already loaded from elsewhere.
    return f"{stem}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def _same_file(a: str | None, b: str) -> bool:
    return a is not None and os.path.abspath(a) == os.path.abspath(b)


def load_file(path: str) -> ModuleType:
    """Imports a Python file once per process and returns its module.

    Raises:
        WorkflowLoadError: when the file is missing or raises while it is imported.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise WorkflowLoadError(f"{path}: no such file; give the path of the workflow's .py file")
    name = _module_name(path)
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkflowLoadError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        del sys.modules[name]
        raise WorkflowLoadError(f"{path}: importing it raised {type(err).__name__}: {err}") from err
    return module


def workflows_in(module: ModuleType) -> dict[str, Workflow]:
    from flux.workflow import Workflow

    return {attr: obj for attr, obj in vars(module).items() if isinstance(obj, Workflow)}


def find_workflow(module: ModuleType, name: str) -> Workflow:
    """The workflow bound to `name` in the module, or the one whose workflow name is `name`.

    Raises:
        WorkflowLoadError: listing the workflows the module does have.
    """
    found = workflows_in(module)
    if name in found:
        return found[name]
    for wf in found.values():
        if wf.name == name:
            return wf
    where = getattr(module, "__file__", module.__name__)
    listed = ", ".join(sorted(found)) or "none"
    raise WorkflowLoadError(f"{where}: no workflow named {name!r}; workflows found: {listed}")


def code_of(wf: Workflow) -> dict[str, Any]:
    """Where a workflow's code lives, as recorded in a journal's header."""
    fn = wf.fn
    module = sys.modules.get(fn.__module__)
    file = getattr(module, "__file__", None) or fn.__code__.co_filename
    return {"file": os.path.abspath(file), "module": fn.__module__, "attr": fn.__name__}


def load_recorded(code: dict[str, Any], workflow_name: str, file: str | None = None) -> tuple[Workflow, dict[str, str]]:
    """Loads the workflow a journal header names; returns it and the module aliases for decoding.

    Raises:
        WorkflowLoadError: when the code cannot be found; says to pass --file.
    """
    path = file or code.get("file")
    if not isinstance(path, str) or not os.path.isfile(path):
        raise WorkflowLoadError(
            f"the workflow's code was recorded at {path!r}, which does not exist; pass --file PATH to point at it"
        )
    module = load_file(path)
    wf = find_workflow(module, code.get("attr") or workflow_name)
    recorded_module = code.get("module")
    aliases = {}
    if isinstance(recorded_module, str) and recorded_module != module.__name__:
        aliases[recorded_module] = module.__name__
    return wf, aliases
