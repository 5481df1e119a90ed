"""Where in the user's code something happened: the frames that are not Flux's own.

A call's `src` (SPEC.md 3) names the line of workflow code that made it. Flux's own code and
asyncio's are walked past, wherever each is installed.
"""

from __future__ import annotations

import os
import sys
from types import FrameType

__all__ = ["ENGINE_DIR", "FLUX_DIR", "site_of", "user_frame"]

# This package (engine/, installed as flux._engine) and the `flux` package.
ENGINE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
FLUX_DIR = (
    os.path.dirname(os.path.abspath(sys.modules[__name__.rpartition("._engine")[0] or "flux"].__file__ or "")) + os.sep
)


def user_frame(depth: int = 1) -> FrameType | None:
    """The innermost frame of user code (outside engine/, flux/ and asyncio), looking outward
    from the frame `depth` levels up (1: the caller's), for debuggers and call sites."""
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(ENGINE_DIR) or name.startswith(FLUX_DIR) or "asyncio" in name):
            return frame
        frame = frame.f_back
    return None


def site_of(frame: FrameType) -> str:
    """`file.py:line` of a frame, as a call's `src` names it."""
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
