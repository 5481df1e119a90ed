"""The errors users see; all derive from `FluxError`. The tree is drawn in the engine's errors
module (`flux._engine.errors`), which this module re-exports whole."""

from __future__ import annotations

from flux._engine.errors import *  # noqa: F403 - the public error tree, re-exported whole
from flux._engine.errors import __all__ as __all__
