"""Finds a workflow's code: the registry of loaded workflows, files and modules (SPEC.md 7).

Every `@workflow` registers itself when its module is imported. A journal's header records the
workflow's name, its module, its attribute and its file; resuming, recovering and replaying find
the code in this order:

1. a file or module the user named (`--file`, `--module`, `flux exec pkg.module:wf`);
2. a workflow of that name already loaded in this process (the registry);
3. the recorded file, when it still exists;
4. the recorded module, when it can be imported from `sys.path`.

The recorded file is a hint, not a requirement: code moved or redeployed elsewhere is found by
name once it is loaded or named. A file inside a package (a folder with `__init__.py`) is
imported under its package's dotted name, its package's parent first on `sys.path`, so its
relative imports work; a lone file `path/to/orders.py` is imported as module `orders` with its
folder first on `sys.path`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import weakref
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

from flux._engine.errors import WorkflowLoadError

if TYPE_CHECKING:
    from flux.workflow import Workflow

__all__ = [
    "code_of",
    "find_workflow",
    "load_file",
    "load_module",
    "load_recorded",
    "load_target",
    "register",
    "registered",
]

# (module, qualified name) -> the workflow defined there. Weak: a workflow nothing else holds
# (one defined inside a test function) is forgotten with it.
_registry: weakref.WeakValueDictionary[tuple[str, str], Workflow] = weakref.WeakValueDictionary()


def register(wf: Workflow) -> None:
    """Called by `@workflow`: the workflow can be found by name from now on."""
    _registry[(wf.fn.__module__, wf.fn.__qualname__)] = wf


def registered(name: str | None = None) -> list[Workflow]:
    """The loaded workflows (of that name)."""
    return [wf for wf in list(_registry.values()) if name is None or wf.name == name]


def _from_registry(name: str, code: dict[str, Any], aliases: dict[str, str]) -> Workflow | None:
    module = code.get("module")
    attr = code.get("attr")
    if isinstance(module, str) and isinstance(attr, str):
        wf = _registry.get((aliases.get(module, module), attr))
        if wf is not None and wf.name == name:
            return wf
    found = registered(name)
    return found[0] if len(found) == 1 else None


def _module_name(path: str) -> tuple[str, str]:
    """(module name, folder to put on sys.path) for a file: its dotted name inside its package,
    or its stem when it is in no package."""
    folder, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    parts = [] if stem == "__init__" else [stem]
    while os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    if len(parts) > 1 and all(p.isidentifier() for p in parts):
        return ".".join(parts), folder
    name = re.sub(r"\W", "_", stem) or "workflow"
    if name[0].isdigit():
        name = "_" + name
    existing = sys.modules.get(name)
    if existing is not None and not _same_file(getattr(existing, "__file__", None), path):
        # A module of that name (a standard one, say) is already loaded from elsewhere.
        name = f"{name}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    return name, os.path.dirname(path)


def _same_file(a: str | None, b: str) -> bool:
    return a is not None and os.path.abspath(a) == os.path.abspath(b)


def load_file(path: str) -> ModuleType:
    """Imports a Python file once per process and returns its module.

    Raises:
        WorkflowLoadError: when the file is missing, is not Python, or raises while it is imported.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise WorkflowLoadError(f"{path}: no such file; give the path of the workflow's .py file")
    if not path.endswith(".py"):
        raise WorkflowLoadError(f"{path}: not a .py file; give the path of the workflow's .py file")
    name, folder = _module_name(path)
    module = sys.modules.get(name)
    if module is not None:
        if not _same_file(getattr(module, "__file__", None), path):
            raise WorkflowLoadError(
                f"{path}: module {name!r} is already loaded from {getattr(module, '__file__', '?')}; "
                "load the workflow by its module name instead"
            )
        return module
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if "." in name:
        return _import(name, path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkflowLoadError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        del sys.modules[name]
        raise WorkflowLoadError(f"{path}: importing it raised {type(err).__name__}: {err}") from err
    return module


def _import(name: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            raise WorkflowLoadError(f"{where}: no module named {err.name!r} on sys.path") from err
        raise WorkflowLoadError(f"{where}: importing it raised {type(err).__name__}: {err}") from err
    except BaseException as err:
        raise WorkflowLoadError(f"{where}: importing it raised {type(err).__name__}: {err}") from err


def load_module(name: str) -> ModuleType:
    """Imports a module by its dotted name, the current directory first on `sys.path` (as
    `python -m` does).

    Raises:
        WorkflowLoadError: when it cannot be found or raises while it is imported.
    """
    if not all(part.isidentifier() for part in name.split(".")):
        raise WorkflowLoadError(f"{name!r} is not a module name (give a .py file, or a dotted module name)")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return _import(name, name)


def load_target(target: str, workflow: str | None = None) -> Workflow:
    """The workflow a command line names: `file.py` with `workflow`, `pkg.module` with
    `workflow`, or `pkg.module:workflow` / `file.py:workflow`.

    Raises:
        WorkflowLoadError: naming what was looked for and what was found.
    """
    where, sep, attr = target.rpartition(":") if ":" in target and not os.path.exists(target) else (target, "", "")
    if sep:
        if workflow is not None:
            raise WorkflowLoadError(f"{target}: names its workflow already; drop the extra {workflow!r}")
        workflow = attr
    if workflow is None:
        raise WorkflowLoadError(f"{target}: which workflow? give FILE WORKFLOW or module:workflow")
    module = (
        load_file(where) if where.endswith(".py") or os.sep in where or os.path.exists(where) else load_module(where)
    )
    return find_workflow(module, workflow)


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
    where = getattr(module, "__file__", None) or module.__name__
    listed = ", ".join(sorted(found)) or "none"
    raise WorkflowLoadError(f"{where}: no workflow named {name!r}; workflows found: {listed}")


def code_of(wf: Workflow) -> dict[str, Any]:
    """Where a workflow's code lives, as recorded in a journal's header."""
    fn = wf.fn
    module = sys.modules.get(fn.__module__)
    file = getattr(module, "__file__", None) or fn.__code__.co_filename
    return {"file": os.path.abspath(file), "module": fn.__module__, "attr": fn.__qualname__}


def load_recorded(
    code: dict[str, Any],
    workflow_name: str,
    file: str | None = None,
    module: str | None = None,
    *,
    trust_recorded: bool = True,
) -> tuple[Workflow, dict[str, str]]:
    """The workflow a journal header names, and the module aliases for decoding its values.

    `trust_recorded=False` is for journals that may come from anywhere (`flux replay FILE`, golden
    journals): the code the header names is then never imported; only code the user named
    (`file`, `module`) or code already loaded (the registry) is used.

    Raises:
        WorkflowLoadError: when the code cannot be found; says to pass --file or --module.
    """
    recorded_module = code.get("module") if isinstance(code.get("module"), str) else None
    path = code.get("file")
    if isinstance(path, str) and not os.path.isabs(path):
        raise WorkflowLoadError(
            f"the code of workflow {workflow_name!r} was recorded at the relative path {path!r}; "
            "Flux never imports a relative path a journal names: point at the code with file=PATH or module=NAME"
        )
    if file is not None or module is not None:
        # `module` is set whenever `file` is not.
        loaded = load_file(file) if file is not None else load_module(cast(str, module))
        attr = _attr(code)
        chosen = find_workflow(loaded, attr if attr in workflows_in(loaded) else workflow_name)
        return chosen, _aliases(recorded_module, chosen)
    wf = _from_registry(workflow_name, code, {})
    if wf is None and recorded_module == "__main__":
        wf = _from_registry(workflow_name, {}, {})
    if wf is not None:
        return wf, _aliases(recorded_module, wf)
    if not trust_recorded:
        raise WorkflowLoadError(
            f"workflow {workflow_name!r} is not loaded, and code a journal names ({path!r}) is imported only from "
            "a store's own journals: point at the code with file=PATH or module=NAME, or import it first"
        )
    if isinstance(path, str) and os.path.isfile(path):
        loaded = load_file(path)
        return find_workflow(loaded, _attr(code) or workflow_name), _aliases(recorded_module, None, loaded)
    if recorded_module and recorded_module != "__main__" and _importable(recorded_module):
        loaded = load_module(recorded_module)
        return find_workflow(loaded, _attr(code) or workflow_name), {}
    raise WorkflowLoadError(
        f"the code of workflow {workflow_name!r} was recorded at {path!r} (module {recorded_module!r}), which "
        "cannot be found here; point at it with file=PATH or module=NAME"
    )


def _attr(code: dict[str, Any]) -> str | None:
    attr = code.get("attr")
    return attr if isinstance(attr, str) and "." not in attr else None


def _aliases(recorded: str | None, wf: Workflow | None, module: ModuleType | None = None) -> dict[str, str]:
    loaded = wf.fn.__module__ if wf is not None else module.__name__ if module is not None else None
    if recorded and loaded and recorded != loaded:
        return {recorded: loaded}
    return {}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
