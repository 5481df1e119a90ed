"""Turns Python values into JSON trees that decode to an equal value of the same type.

The common case (str, bool, None, finite float, 64-bit int, list, dict with plain string keys)
is written as itself. Everything JSON cannot express exactly is a tagged object whose first key
starts with `$` (SPEC.md, section "Values"). Decoding never imports a module and never evaluates
anything: classes are looked up among modules already imported, through a `Resolver`.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import os
import sys
import traceback
import types
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from flux._engine import errors as _errors
from flux._engine.errors import DecodeError, EncodeError, RecordedError

__all__ = [
    "PLAIN_TYPES",
    "Resolver",
    "all_plain",
    "class_ref",
    "decode",
    "encode",
    "encode_args",
    "find_class",
    "register_codec",
]

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# Recorded as themselves: a value of one of these types decodes to itself.
PLAIN_TYPES = frozenset({int, float, str, bool, type(None)})
_MAX_DEPTH = 80  # a tagged value takes up to 3 JSON levels; orjson stops at 255

Resolver = Callable[[str], "type | None"]


def class_ref(cls: type) -> str:
    """The `module:qualname` reference written for a class."""
    return f"{cls.__module__}:{cls.__qualname__}"


# Journals written before the engine was installed as `flux._engine` name its errors by their
# old modules; they are the same classes, found in `flux.errors` (SPEC.md 3).
_OLD_ERROR_MODULES = {"engine.errors", "engine.secrets", "engine.journal", "flux.graph", "flux.testing._check"}


def find_class(ref: str, aliases: dict[str, str] | None = None) -> type | None:
    """Finds a class among modules already imported; never imports anything.

    Names are looked up in the objects' own `__dict__`, so a module-level `__getattr__` (which
    may import submodules lazily) is never triggered. Flux's own errors (`flux.errors:Name`) are
    always found.
    """
    module_name, _, qualname = ref.partition(":")
    if aliases and module_name in aliases:
        module_name = aliases[module_name]
    if module_name == "flux.errors" or module_name in _OLD_ERROR_MODULES:
        found = vars(_errors).get(qualname)
        if isinstance(found, type) and qualname in _errors.__all__:
            return found
    module = sys.modules.get(module_name)
    if module is None or not qualname:
        return None
    obj: Any = module
    for part in qualname.split("."):
        if part == "<locals>":
            return None
        try:
            namespace = vars(obj)
        except TypeError:
            return None
        obj = namespace.get(part)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


def _is_plain_namedtuple(cls: type) -> bool:
    """A class made by `collections.namedtuple` or `typing.NamedTuple` itself, not a subclass
    of one: its values are its fields and nothing else runs when it is built or read."""
    return cls.__bases__ == (tuple,) and isinstance(getattr(cls, "_fields", None), tuple) and hasattr(cls, "_make")


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and _is_plain_namedtuple(type(value))


def _is_pydantic(value: Any) -> bool:
    return hasattr(type(value), "model_fields") and hasattr(value, "model_dump")


# Where a value sits, for error messages, is built only when an error needs it: a `Place` is a
# str, or a tuple (parent place, step, key). Step "[]" is an index, "[k]" a dict key, "." an
# attribute, anything else a literal suffix; a parent of None makes `step.format(key)` the root.
Place = Any


def _place(where: Place) -> str:
    """The text of a place: `task 'f' argument[0]['k']`."""
    steps: list[str] = []
    while type(where) is tuple:
        where, step, key = where
        if where is None:
            where = step.format(key)
        elif step == "[]":
            steps.append(f"[{key}]")
        elif step == "[k]":
            steps.append(f"[{key!r}]")
        elif step == ".":
            steps.append(f".{key}")
        else:
            steps.append(step)
    return str(where) + "".join(reversed(steps))


def parse_json(text: str | bytes, where: str) -> Any:
    """A JSON document as Python values, exactly: integers of any size stay integers (orjson
    would make floats of those beyond 64 bits). `NaN` and `Infinity` are not JSON and are refused.

    Raises:
        ValueError: naming `where` and what is wrong.
    """

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None
    except ValueError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None
    except RecursionError:
        raise ValueError(f"{where} is nested too deeply") from None


def encode(value: Any, where: Place = "value") -> Any:
    """Returns a JSON tree for `value`. `where` names it in errors: a str, or a `Place` such as
    `(None, "task {!r} argument", name)`, formatted only if there is an error.

    Raises:
        EncodeError: for a type the journal cannot hold exactly, naming the type and where it is.
    """
    return _enc(value, where, 0)


def encode_args(args: tuple[Any, ...], where: Place) -> list[Any]:
    """`encode(list(args), where)`, with the commonest arguments (plain scalars) copied at once."""
    if all_plain(args):
        return list(args)
    return _enc(list(args), where, 0)  # type: ignore[no-any-return]


def all_plain(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether every item is a scalar the journal holds as it is (so the items need no encoding)."""
    for x in items:
        tx = type(x)
        if not (
            (tx is str and x.isascii())
            or (tx is int and _INT_MIN <= x <= _INT_MAX)
            or tx is bool
            or x is None
            or (tx is float and math.isfinite(x))
        ):
            return False
    return True


def _check_str(v: str, where: Place) -> str:
    if not v.isascii():
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            place = _place(where)
            raise EncodeError(
                f"{place}: a str with a lone surrogate cannot be recorded; encode it as bytes",
                type_name="str",
                where=place,
            ) from None
    return v


def _enc(v: Any, where: Place, depth: int) -> Any:
    t = type(v)
    if t is str:
        return v if v.isascii() else _check_str(v, where)
    if t is bool or v is None:
        return v
    if t is int:
        if _INT_MIN <= v <= _INT_MAX:
            return v
        return {"$int": _int_text(v)}
    if t is float:
        if math.isfinite(v):
            return v
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if depth > _MAX_DEPTH:
        place = _place(where)
        raise EncodeError(f"{place}: nested deeper than {_MAX_DEPTH} levels", type_name=t.__name__, where=place)
    d = depth + 1
    if t is list:
        if all_plain(v):  # a list of plain scalars, the commonest arguments, is copied as it is
            return v.copy()
        return [_enc(x, (where, "[]", i), d) for i, x in enumerate(v)]
    if t is dict:
        for k in v:
            if type(k) is not str or k[:1] == "$" or not k.isascii():
                if type(k) is str and k[:1] != "$" and _check_str(k, (where, " key", None)):
                    continue
                return {
                    "$dict": [[_enc(k, (where, " key", None), d), _enc(x, (where, "[k]", k), d)] for k, x in v.items()]
                }
        return {k: _enc(x, (where, "[k]", k), d) for k, x in v.items()}
    if t is tuple:
        return {"$tuple": [_enc(x, (where, "[]", i), d) for i, x in enumerate(v)]}
    if t is bytes:
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if t is set or t is frozenset:
        items = [_enc(x, (where, " item", None), d) for x in v]
        # Sets have no order; sorting by the encoded bytes makes the record canonical.
        items.sort(key=orjson.dumps)
        return {"$set" if t is set else "$frozenset": items}
    if t is dt.datetime:
        return _enc_temporal("$datetime", v)
    if t is dt.date:
        return {"$date": v.isoformat()}
    if t is dt.time:
        return _enc_temporal("$time", v)
    if t is dt.timedelta:
        return {"$timedelta": [v.days, v.seconds, v.microseconds]}
    if t is Decimal:
        return {"$decimal": str(v)}
    if t is uuid.UUID:
        return {"$uuid": str(v)}
    if isinstance(v, enum.Enum):
        return {"$enum": class_ref(t), "v": _enc(v.value, (where, ".", "value"), d)}
    if isinstance(v, BaseException):
        return encode_exception(v, where, d)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        fields = {f.name: _enc(getattr(v, f.name), (where, ".", f.name), d) for f in dataclasses.fields(v)}
        return {"$dataclass": class_ref(t), "v": fields}
    if _is_namedtuple(v):
        return {"$namedtuple": class_ref(t), "v": [_enc(x, (where, "[]", i), d) for i, x in enumerate(v)]}
    if _is_pydantic(v):
        fields = {name: _enc(getattr(v, name), (where, ".", name), d) for name in type(v).model_fields}
        return {"$pydantic": class_ref(t), "v": fields}
    codec = _codec_for(t)
    if codec is not None:
        try:
            plain = codec[1](v)
        except EncodeError:
            raise
        except Exception as err:  # a codec that fails: its error names the value it failed on
            place = _place(where)
            raise EncodeError(
                f"{place}: the codec {codec[0]!r} could not record this {t.__module__}.{t.__qualname__} "
                f"({type(err).__name__}: {err})",
                type_name=f"{t.__module__}.{t.__qualname__}",
                where=place,
            ) from err
        return {"$ext": codec[0], "v": _enc(plain, (where, f" ({codec[0]})", None), d)}
    place = _place(where)
    raise EncodeError(
        f"{place}: values of type {t.__module__}.{t.__qualname__} cannot be recorded; "
        "return or pass JSON-like values, dataclasses, enums or other types `flux spec values` lists, "
        "or register a codec for the type with flux.codecs.register_codec",
        type_name=f"{t.__module__}.{t.__qualname__}",
        where=place,
    )


# -- codecs for other types (SPEC.md 3, "$ext") ---------------------------------------------------

_CODECS: dict[type, tuple[str, Callable[[Any], Any]]] = {}  # class -> (name, encode)
_DECODERS_EXT: dict[str, Callable[[Any], Any]] = {}  # name -> decode
# Codecs this package ships for libraries it does not depend on: loaded when a value of the
# library is met (so the library is imported already), never by what a journal says.
_BUILTIN_EXT = {"numpy": "flux._engine.codec_numpy", "pandas": "flux._engine.codec_numpy"}


def register_codec(cls: type, name: str, encode: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
    """Makes values of `cls` (and its subclasses) recordable: `encode(value)` returns a value
    the journal can hold (section 3), recorded as `{"$ext": name, "v": ...}`, and `decode` of
    what comes back rebuilds the value. Register it before recording or replaying such values
    (at import time of the module that defines `cls`). Never pickle in a codec.

    Raises:
        ValueError: for an empty name, or a name registered for another class.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"codec name {name!r} must be a non-empty str")
    for known, (other, _) in _CODECS.items():
        if other == name and known is not cls:
            raise ValueError(f"codec name {name!r} is already registered for {class_ref(known)}")
    _CODECS[cls] = (name, encode)
    _DECODERS_EXT[name] = decode


def _codec_for(t: type) -> tuple[str, Callable[[Any], Any]] | None:
    codec = _CODECS.get(t)
    if codec is not None:
        return codec
    root = t.__module__.partition(".")[0]
    if root in _BUILTIN_EXT:
        _load_builtin(root)
    for cls in t.__mro__[1:]:
        codec = _CODECS.get(cls)
        if codec is not None:
            return codec
    return _CODECS.get(t)


def _load_builtin(root: str) -> None:
    """Registers the codecs this package ships for library `root`, which is imported already."""
    import importlib

    module = importlib.import_module(_BUILTIN_EXT[root])
    module.ensure(root)


def _dec_ext(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
    if not isinstance(p, str):
        raise DecodeError(f"malformed $ext value {p!r}")
    decoder = _DECODERS_EXT.get(p)
    if decoder is None:
        root = p.partition(".")[0]
        builtin = _BUILTIN_EXT.get(root)
        if builtin is not None and root in sys.modules:
            _load_builtin(root)
            decoder = _DECODERS_EXT.get(p)
        if decoder is None:
            hint = f"import {root} before replaying" if builtin is not None else (
                "register its codec with flux.codecs.register_codec before replaying"
            )
            raise DecodeError(f"the journal holds a {p!r} value but no codec for it is loaded; {hint}")
    return decoder(decode(tree.get("v"), resolve))


def _int_text(v: int) -> str:
    """Decimal digits, or hexadecimal (`0x...`) beyond what Python converts to decimal text
    (4,300 digits by default): every integer is recorded exactly, in time linear in its size."""
    if v.bit_length() < 14_000:  # 4,214 decimal digits at most: always within the default limit
        return str(v)
    return ("-0x" if v < 0 else "0x") + format(abs(v), "x")


def _int_of(text: Any) -> int:
    if not isinstance(text, str):
        raise DecodeError(f"malformed $int value {text!r}")
    digits = text[1:] if text[:1] == "-" else text
    if digits.startswith("0x"):
        return int(text, 16)
    return int(text)


def _enc_temporal(tag: str, v: dt.datetime | dt.time) -> dict[str, Any]:
    out: dict[str, Any] = {tag: v.isoformat()}
    key = getattr(v.tzinfo, "key", None)  # zoneinfo.ZoneInfo keeps its name; isoformat keeps only the offset
    if isinstance(key, str):
        out["tz"] = key
    elif v.tzinfo is not None:
        offset = v.utcoffset()
        if offset is not None and (offset.microseconds or offset.seconds % 60):
            # Python's ISO parser drops offsets finer than a minute; keep the exact one.
            out["off"] = [offset.days, offset.seconds, offset.microseconds]
        if type(v.tzinfo) is dt.timezone and offset is not None:
            name = v.tzinfo.tzname(None)
            if name != dt.timezone(offset).tzname(None):
                out["tzname"] = name  # timezone(offset, "CET") keeps its name
    if v.fold:
        out["fold"] = 1
    return out


_flux_dirs: tuple[str, ...] = ()


def _user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """A traceback from its first frame outside Flux's own code: the engine's frames that run
    the workflow or the task say nothing to the user (the last frame is always kept)."""
    global _flux_dirs
    if not _flux_dirs:
        flux = sys.modules.get("flux")
        dirs = [os.path.dirname(os.path.abspath(__file__))]
        where = getattr(flux, "__file__", None)
        if isinstance(where, str):
            dirs.append(os.path.dirname(os.path.abspath(where)))
        _flux_dirs = tuple(d + os.sep for d in dirs)
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(_flux_dirs):
        tb = tb.tb_next
    return tb


def encode_exception(exc: BaseException, where: Place = "error", depth: int = 0) -> dict[str, Any]:
    """Records an exception: class, message, arguments and attributes (when recordable) and
    traceback text."""
    try:
        args: Any = [_enc(a, (where, ".args", None), depth + 1) for a in exc.args]
    except EncodeError:
        args = None
    frames = _user_frames(exc.__traceback__)
    tb = "".join(traceback.format_exception(type(exc), exc, frames)) if frames is not None else ""
    out: dict[str, Any] = {"$error": class_ref(type(exc)), "msg": str(exc), "args": args, "tb": tb}
    if type(exc).__module__ not in _TRUSTED_ERROR_MODULES:
        # Rebuilt without running its class's code, a user's exception gets its attributes back
        # from here (the class's __init__ is never called on replay).
        attrs = {k: v for k, v in vars(exc).items() if not k.startswith("__")}
        if attrs:
            try:
                out["attrs"] = {k: _enc(v, (where, ".", k), depth + 1) for k, v in attrs.items()}
            except EncodeError:
                pass
    cause = exc.__cause__
    if cause is not None and depth < 8 and not any(cause is a for a in exc.args):
        out["cause"] = encode_exception(cause, (where, ".__cause__", None), depth + 1)
    return out


# Exceptions of these modules are rebuilt by calling their class with the recorded arguments: their
# constructors are known. Any other exception class is rebuilt without running its code.
_TRUSTED_ERROR_MODULES = frozenset({"builtins", "flux.errors"})


def decode(tree: Any, resolve: Resolver = find_class) -> Any:
    """Rebuilds the value a tree was encoded from.

    Raises:
        DecodeError: for an unknown tag, a malformed tagged object, or a class not imported here.
    """
    t = type(tree)
    if t is list:
        return [decode(x, resolve) for x in tree]
    if t is dict:
        if tree:
            first = next(iter(tree))
            if first[:1] == "$":
                return _dec_tagged(first, tree, resolve)
        return {k: decode(x, resolve) for k, x in tree.items()}
    return tree


def _need_class(ref: Any, resolve: Resolver, kind: str, check: Callable[[type], bool]) -> type[Any]:
    if not isinstance(ref, str):
        raise DecodeError(f"malformed {kind} reference {ref!r}")
    cls = resolve(ref)
    if cls is None:
        raise DecodeError(
            f"the journal holds a {kind} of class {ref} but no imported module defines it; "
            "import the module that defines it before replaying"
        )
    # Only the kind of class the tag names is ever built: a journal cannot make decoding call
    # the constructor of an arbitrary class.
    if not check(cls):
        raise DecodeError(f"the journal says {ref} is a {kind}, but it is not one")
    return cls


def _dec_tagged(tag: str, tree: dict[str, Any], resolve: Resolver) -> Any:
    p = tree[tag]
    try:
        handler = _DECODERS[tag]
    except KeyError:
        raise DecodeError(f"unknown value tag {tag!r}") from None
    try:
        return handler(p, tree, resolve)
    except DecodeError:
        raise
    except Exception as err:
        raise DecodeError(f"malformed {tag} value {p!r}: {err}") from err


def _dec_temporal(parse: Callable[[str], Any]) -> Callable[[Any, dict[str, Any], Resolver], Any]:
    def run(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
        value = parse(_text(p))
        if "tz" in tree:
            from zoneinfo import ZoneInfo

            value = value.replace(tzinfo=ZoneInfo(tree["tz"]))
        elif "off" in tree or "tzname" in tree:
            if "off" in tree:
                days, seconds, micros = tree["off"]
                offset = dt.timedelta(days=days, seconds=seconds, microseconds=micros)
            else:
                offset = value.utcoffset()
            if "tzname" in tree:
                value = value.replace(tzinfo=dt.timezone(offset, str(tree["tzname"])))
            else:
                value = value.replace(tzinfo=dt.timezone(offset))
        if tree.get("fold"):
            value = value.replace(fold=1)
        return value

    return run


def _dec_enum(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
    cls = _need_class(p, resolve, "enum", lambda c: issubclass(c, enum.Enum))
    value = decode(tree["v"], resolve)
    # The member is looked up among the class's members; the class's own hooks (`_missing_`, a
    # metaclass `__call__`) never run.
    for member in cls.__members__.values():
        if type(member.value) is type(value) and member.value == value:
            return member
    raise DecodeError(f"{p} has no member of value {value!r}")


def _dec_dataclass(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
    cls: type[object] = _need_class(p, resolve, "dataclass", dataclasses.is_dataclass)
    obj = object.__new__(cls)  # neither the class's __new__ nor its __init__ runs
    for name, x in tree["v"].items():
        # object.__setattr__ works for frozen dataclasses and skips __init__ side effects.
        object.__setattr__(obj, name, decode(x, resolve))
    return obj


def _dec_namedtuple(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
    cls = _need_class(p, resolve, "namedtuple", _is_plain_namedtuple)
    values = [decode(x, resolve) for x in tree["v"]]
    if len(values) != len(cls._fields):
        raise DecodeError(f"{p} has {len(cls._fields)} fields, the journal recorded {len(values)} values")
    return tuple.__new__(cls, values)


def _dec_pydantic(p: Any, tree: dict[str, Any], resolve: Resolver) -> Any:
    cls = _need_class(
        p, resolve, "pydantic model", lambda c: hasattr(c, "model_fields") and hasattr(c, "model_validate")
    )
    # Validated as any input to the model is: a journal can hand it no value it would refuse.
    fields = {k: decode(x, resolve) for k, x in tree["v"].items()}
    try:
        if _validate_by_name(cls):
            return cls.model_validate(fields, by_name=True)
        return cls.model_validate(_by_alias(cls, fields))
    except Exception as err:  # pydantic's ValidationError, said as a DecodeError
        raise DecodeError(f"the recorded {p} does not validate as one: {err}") from err


def _by_alias(cls: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """Recorded fields (by name) keyed as a pydantic before 2.11 validates them: by alias."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        info = cls.model_fields.get(name)
        alias = getattr(info, "validation_alias", None) or getattr(info, "alias", None)
        out[alias if isinstance(alias, str) else name] = value
    return out


def _validate_by_name(cls: Any) -> bool:
    """Whether this pydantic accepts `by_name=` (2.11 and later): recorded fields use names, not
    aliases."""
    import inspect

    try:
        return "by_name" in inspect.signature(cls.model_validate).parameters
    except (TypeError, ValueError):
        return False


def _dec_error(p: Any, tree: dict[str, Any], resolve: Resolver) -> BaseException:
    message = str(tree.get("msg", ""))
    tb = str(tree.get("tb", ""))
    cls = resolve(p) if isinstance(p, str) else None
    exc: BaseException
    if cls is not None and issubclass(cls, BaseException):
        raw_args = tree.get("args")
        args = tuple(decode(raw_args, resolve)) if isinstance(raw_args, list) else (message,)
        built: BaseException | None = None
        if cls.__module__ in _TRUSTED_ERROR_MODULES:
            try:
                built = cls(*args)
            except Exception:  # noqa: BLE001 - a class whose __init__ wants other arguments is built without it
                built = None
        if built is None:
            built = _bare_exception(cls)
            built.args = args
            attrs = tree.get("attrs")
            if isinstance(attrs, dict):
                for name, value in attrs.items():
                    if isinstance(name, str) and not name.startswith("__"):
                        object.__setattr__(built, name, decode(value, resolve))
        exc = built
    else:
        exc = RecordedError(str(p).rpartition(":")[2] or str(p), message, tb)
    exc.__flux_traceback__ = tb  # type: ignore[attr-defined]  # the recorded traceback, carried along
    if isinstance(tree.get("cause"), dict):
        exc.__cause__ = _dec_error(tree["cause"].get("$error"), tree["cause"], resolve)
    elif exc.args and isinstance(exc.args[0], BaseException) and exc.__cause__ is None:
        exc.__cause__ = exc.args[0]
    return exc


def _bare_exception(cls: type[BaseException]) -> BaseException:
    """An instance of `cls` made by the `__new__` of its nearest built-in base, so no code of the
    class itself runs."""
    base = next(b for b in cls.__mro__ if b.__module__ == "builtins")
    return base.__new__(cls)  # type: ignore[call-overload,no-any-return]  # a built-in base builds any subclass


def _list(p: Any) -> list[Any]:
    """The items of a tagged collection, which the encoder always writes as a JSON array (a
    ValueError here becomes the DecodeError naming the tag)."""
    if type(p) is not list:
        raise ValueError(f"expected a list, not {type(p).__name__}")
    return p


def _pairs(p: Any) -> list[Any]:
    """The [key, value] pairs of a `$dict`."""
    pairs = _list(p)
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise ValueError(f"expected [key, value] pairs, not {pair!r}")
    return pairs


def _text(p: Any) -> str:
    if type(p) is not str:
        raise ValueError(f"expected a string, not {type(p).__name__}")
    return p


def _timedelta(p: Any) -> dt.timedelta:
    if type(p) is not list or len(p) != 3 or any(type(x) is not int for x in p):
        raise ValueError("expected [days, seconds, microseconds]")
    return dt.timedelta(days=p[0], seconds=p[1], microseconds=p[2])


_DECODERS: dict[str, Callable[[Any, dict[str, Any], Resolver], Any]] = {
    "$int": lambda p, t, r: _int_of(p),
    "$float": lambda p, t, r: float(p) if p in ("nan", "inf", "-inf") else _bad(p),
    "$dict": lambda p, t, r: {decode(k, r): decode(x, r) for k, x in _pairs(p)},
    "$tuple": lambda p, t, r: tuple(decode(x, r) for x in _list(p)),
    "$set": lambda p, t, r: {decode(x, r) for x in _list(p)},
    "$frozenset": lambda p, t, r: frozenset(decode(x, r) for x in _list(p)),
    "$bytes": lambda p, t, r: base64.b64decode(_text(p).encode("ascii"), validate=True),
    "$datetime": _dec_temporal(dt.datetime.fromisoformat),
    "$date": lambda p, t, r: dt.date.fromisoformat(_text(p)),
    "$time": _dec_temporal(dt.time.fromisoformat),
    "$timedelta": lambda p, t, r: _timedelta(p),
    "$decimal": lambda p, t, r: Decimal(_text(p)),
    "$uuid": lambda p, t, r: uuid.UUID(_text(p)),
    "$enum": _dec_enum,
    "$dataclass": _dec_dataclass,
    "$namedtuple": _dec_namedtuple,
    "$pydantic": _dec_pydantic,
    "$error": _dec_error,
    "$ext": _dec_ext,
}


def _bad(p: Any) -> Any:
    raise DecodeError(f"malformed $float value {p!r}")
