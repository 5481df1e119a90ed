"""Clocks for `run(..., clock=...)`: the system clock, and a virtual one for tests."""

from __future__ import annotations

from flux._engine.clock import Clock, SystemClock, VirtualClock

__all__ = ["Clock", "SystemClock", "VirtualClock"]
