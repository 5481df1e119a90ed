"""Strict equality for workflow outputs: equal values of the same types, all the way down.

`==` is too lenient to judge replay: `1 == 1.0 == True`, two aware datetimes of the same instant
are equal whatever their tzinfo, dicts compare equal in any order, and exceptions compare by
identity. A replayed value must be the same value of the same type in the same order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from typing import Any

__all__ = ["difference", "short"]

_MAX_DEPTH = 100


def short(value: Any, limit: int = 120) -> str:
    """`repr(value)`, cut at `limit` characters."""
    try:
        text = repr(value)
    except Exception as err:  # noqa: BLE001 - a broken __repr__ must not hide the difference
        text = f"<{type(value).__name__} whose repr raised {type(err).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def difference(expected: Any, actual: Any, where: str = "output") -> str | None:
    """Where and how `actual` differs from `expected`, or None when they are the same.

    Types must match exactly (recursively, including a datetime's tzinfo), dict keys must come
    in the same order, floats must match bit for bit (nan equals nan), exceptions must have the
    same type, message and arguments, and objects with attributes must have the same ones.
    """
    return _diff(expected, actual, where, 0)


def _diff(e: Any, a: Any, where: str, depth: int) -> str | None:
    if e is a:
        return None
    te, ta = type(e), type(a)
    if te is not ta:
        return f"{where}: got {short(a)} of type {_type_name(ta)}, expected {short(e)} of type {_type_name(te)}"
    if depth > _MAX_DEPTH:
        return None if _equal(e, a) else _plain(e, a, where)
    d = depth + 1
    if te is float:
        same = (e == a and math.copysign(1.0, e) == math.copysign(1.0, a)) or (e != e and a != a)
        return None if same else _plain(e, a, where)
    if isinstance(e, (list, tuple)):
        if len(e) != len(a):
            return f"{where}: got {len(a)} items, expected {len(e)}: got {short(a)}, expected {short(e)}"
        for i, (x, y) in enumerate(zip(e, a, strict=True)):
            found = _diff(x, y, f"{where}[{i}]", d)
            if found:
                return found
        return None
    if isinstance(e, dict):
        if list(e) != list(a):
            if set(e) == set(a):
                return f"{where}: the same keys in another order: got {short(list(a))}, expected {short(list(e))}"
            return f"{where}: got keys {short(list(a))}, expected {short(list(e))}"
        for key in e:
            found = _diff(e[key], a[key], f"{where}[{key!r}]", d)
            if found:
                return found
        return None
    if isinstance(e, enum.Enum):
        return _plain(e, a, where)  # not the same member (same members were `is`)
    if isinstance(e, (dt.datetime, dt.time)):
        return _diff_temporal(e, a, where, d)
    if isinstance(e, BaseException):
        return _diff_exception(e, a, where, d)
    if dataclasses.is_dataclass(e):
        for f in dataclasses.fields(e):
            found = _diff(getattr(e, f.name, None), getattr(a, f.name, None), f"{where}.{f.name}", d)
            if found:
                return found
    attrs_e, attrs_a = getattr(e, "__dict__", None), getattr(a, "__dict__", None)
    if isinstance(attrs_e, dict) and isinstance(attrs_a, dict) and not isinstance(e, type):
        # Objects rebuilt from the journal without __init__ may lack attributes it would set.
        for key in attrs_e.keys() | attrs_a.keys():
            if key not in attrs_a:
                return f"{where}.{key}: missing, expected {short(attrs_e[key])}"
            if key not in attrs_e:
                return f"{where}.{key}: got {short(attrs_a[key])}, expected no such attribute"
            found = _diff(attrs_e[key], attrs_a[key], f"{where}.{key}", d)
            if found:
                return found
    return None if _equal(e, a) else _plain(e, a, where)


def _diff_temporal(e: dt.datetime | dt.time, a: dt.datetime | dt.time, where: str, depth: int) -> str | None:
    # Aware datetimes of the same instant are ==; the wall time, tzinfo and fold must match too.
    if e.replace(tzinfo=None) != a.replace(tzinfo=None) or e.fold != a.fold:
        return _plain(e, a, where)
    tz_e, tz_a = e.tzinfo, a.tzinfo
    if type(tz_e) is not type(tz_a):
        return _diff(tz_e, tz_a, f"{where}.tzinfo", depth)
    if tz_e is not None and tz_a is not None:
        probe = e if isinstance(e, dt.datetime) else None
        if tz_e.utcoffset(probe) != tz_a.utcoffset(probe) or tz_e.tzname(probe) != tz_a.tzname(probe):
            return f"{where}.tzinfo: got {short(tz_a)}, expected {short(tz_e)}"
    return None


def _diff_exception(e: BaseException, a: BaseException, where: str, depth: int) -> str | None:
    if str(e) != str(a):
        return f"{where}: got {_type_name(type(a))}({short(str(a))}), expected {_type_name(type(e))}({short(str(e))})"
    found = _diff(e.args, a.args, f"{where}.args", depth)
    if found:
        return found
    if e.__cause__ is not None or a.__cause__ is not None:
        return _diff(e.__cause__, a.__cause__, f"{where}.__cause__", depth)
    return None


def _equal(e: Any, a: Any) -> bool:
    try:
        return bool(e == a)
    except Exception:  # noqa: BLE001 - a value whose == raises is not the same value
        return False


def _plain(e: Any, a: Any, where: str) -> str:
    return f"{where}: got {short(a)}, expected {short(e)}"
