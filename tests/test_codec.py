"""The codec keeps value and type through a journal line; decoding never imports or runs code."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import os
import subprocess
import sys
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flux._engine.codec import class_ref, decode, encode, encode_exception, find_class
from flux._engine.errors import DecodeError, EncodeError, RecordedError

pydantic = pytest.importorskip("pydantic")

ROOT = Path(__file__).resolve().parent.parent


# -- types the codec must keep (module level, so `find_class` can see them) --------------------


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    PAIR = (1, 2)  # a value that is itself a tagged tree


@dataclasses.dataclass
class Box:
    label: Any
    items: Any


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


class Pair(NamedTuple):
    left: Any
    right: Any


class Loose(pydantic.BaseModel):
    a: Any
    b: Any


class Typed(pydantic.BaseModel):
    name: str
    when: dt.datetime
    tags: tuple[int, ...]
    ratio: float


class MyStr(str):
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class NeedsTwo(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(a, b)
        self.a = a
        self.b = b


class Recorder:
    """Not an enum, not a namedtuple: its constructor must never run during decoding."""

    calls: list[Any] = []

    def __init__(self, *args: Any) -> None:
        Recorder.calls.append(args)


class Aliased(pydantic.BaseModel):
    x: int = pydantic.Field(alias="X")


# -- comparing value and type -----------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal values of exactly the same type, all the way down (dict keys and set items too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, enum.Enum):
        return a is b
    if type(a) is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is Decimal:
        return a.as_tuple() == b.as_tuple()  # Decimal("1.0") == Decimal("1.00"), but not the same value
    if type(a) in (dt.datetime, dt.time):
        return a == b and a.fold == b.fold and a.tzinfo == b.tzinfo and a.utcoffset() == b.utcoffset()
    if isinstance(a, (list, tuple)):  # NamedTuple included: its exact type was checked above
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if type(a) in (set, frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, pydantic.BaseModel):
        return all(same(getattr(a, n), getattr(b, n)) for n in type(a).model_fields)
    return bool(a == b)


def has_nan(v: Any) -> bool:
    if type(v) is float:
        return math.isnan(v)
    if isinstance(v, (list, tuple, set, frozenset)):
        return any(has_nan(x) for x in v)
    if isinstance(v, dict):
        return any(has_nan(k) or has_nan(x) for k, x in v.items())
    if dataclasses.is_dataclass(v):
        return any(has_nan(getattr(v, f.name)) for f in dataclasses.fields(v))
    if isinstance(v, pydantic.BaseModel):
        return any(has_nan(getattr(v, n)) for n in type(v).model_fields)
    return False


def through_journal(value: Any) -> Any:
    """What a replay sees: the value encoded, written as JSON bytes, read back and decoded."""
    return decode(orjson.loads(orjson.dumps(encode(value))))


def test_same_tells_types_apart() -> None:
    assert same({1: [1.0]}, {1: [1.0]})
    assert not same(1, True)
    assert not same([1], (1,))
    assert not same({1: "a"}, {1.0: "a"})
    assert not same({(1, 2)}, {Pair(1, 2)})
    assert not same(0.0, -0.0)
    assert not same(Decimal("1.0"), Decimal("1.00"))
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert same(float("nan"), float("nan"))
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    one = dt.timezone(dt.timedelta(hours=1))
    assert not same(dt.datetime(2024, 1, 1, tzinfo=paris), dt.datetime(2024, 1, 1, tzinfo=one))


# -- strategies -------------------------------------------------------------------------------

fixed_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)),
)
zones = st.one_of(st.just(zoneinfo.ZoneInfo("Europe/Paris")), st.timezones())
tzinfos = st.one_of(st.none(), fixed_offsets, zones)
folds = st.sampled_from([0, 1])

datetimes = st.one_of(
    st.builds(lambda d, f: d.replace(fold=f), st.datetimes(), folds),
    st.datetimes(timezones=tzinfos),
    st.builds(lambda d, f: d.replace(fold=f), st.datetimes(timezones=zones), folds),
)
times = st.builds(lambda t, f: t.replace(fold=f), st.times(timezones=tzinfos), folds)

ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
    st.integers(min_value=-(2**300), max_value=2**300),
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),  # nan, inf and -0.0 included
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0]),
    st.text(),
    st.binary(),
    datetimes,
    st.dates(),
    times,
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.sampled_from(Color),
)


# Hypothesis writes strategy reprs into its events; wrapping keeps them short.
@st.composite
def scalars(draw: st.DrawFn) -> Any:
    return draw(_scalars)


_hashables = st.recursive(
    scalars(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.builds(Point, inner, inner),
        st.builds(Pair, inner, inner),
    ),
    max_leaves=8,
)


@st.composite
def hashables(draw: st.DrawFn) -> Any:
    return draw(_hashables)


str_keys = st.one_of(st.text(), st.text().map(lambda s: "$" + s))

values = st.recursive(
    hashables(),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(str_keys, inner, max_size=4),
        st.dictionaries(hashables(), inner, max_size=4),
        st.sets(hashables(), max_size=4),
        st.frozensets(hashables(), max_size=4),
        st.builds(Box, inner, inner),
        st.builds(Point, inner, inner),
        st.builds(Pair, inner, inner),
        st.builds(Loose, a=inner, b=inner),
        st.builds(
            Typed,
            name=st.text(),
            when=datetimes,
            tags=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3).map(tuple),
            ratio=st.floats(),
        ),
    ),
    max_leaves=20,
)


# -- the round trip ---------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(values)
@example(2**64)
@example(-(2**63) - 1)
@example(float("nan"))
@example(-0.0)
@example({"$int": "1"})
@example({"a": 1, "$b": 2})
@example({(1, 2): "t", 3: "i", "s": "s"})
@example(dt.datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))
@example(dt.time(12, 0, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")))
@example(Color.PAIR)
@example({Point(1, (2, 3)): Box("b", {1, 2}), Pair(1, 2): Point(b"x", frozenset({None}))})
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    decoded = through_journal(value)
    assert same(decoded, value), (value, decoded)
    if not has_nan(value):
        assert decoded == value


@pytest.mark.parametrize("text", ["NaN", "-NaN", "sNaN", "NaN123", "-sNaN4"])
def test_decimal_nan_round_trips(text: str) -> None:
    value = Decimal(text)
    decoded = through_journal({"d": value, "in": [value]})
    assert type(decoded["d"]) is Decimal and type(decoded["in"][0]) is Decimal
    assert decoded["d"].as_tuple() == value.as_tuple()
    assert str(decoded["in"][0]) == str(value)


common = st.dictionaries(
    st.text().filter(lambda k: not k.startswith("$")),
    st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text())),
)


@given(common)
def test_common_case_is_written_as_itself(value: dict[str, list[Any]]) -> None:
    tree = encode(value)
    assert tree == value
    assert same(tree, value)
    assert orjson.dumps(tree) == orjson.dumps(value)
    assert same(decode(orjson.loads(orjson.dumps(tree))), value)


# -- sets are canonical -----------------------------------------------------------------------


set_items = st.lists(st.one_of(st.integers(), st.text(), st.tuples(st.integers(), st.text())), unique=True, max_size=12)


@settings(deadline=None)
@given(st.data())
def test_sets_encode_to_the_same_bytes_whatever_the_insertion_order(data: st.DataObject) -> None:
    items = data.draw(set_items)
    shuffled = data.draw(st.permutations(items))
    for kind in (set, frozenset):
        first, second = kind(items), kind(shuffled)
        assert orjson.dumps(encode(first)) == orjson.dumps(encode(second))
        assert orjson.dumps(encode({"k": [first]})) == orjson.dumps(encode({"k": [second]}))


def test_sets_with_colliding_hashes_iterate_differently_but_encode_the_same() -> None:
    # 8, 16 and 24 share a slot in a small set table, so insertion order decides iteration order.
    first, second = set([8, 16, 24]), set([24, 16, 8])  # noqa: C405 - built in this insertion order
    assert list(first) != list(second)
    assert orjson.dumps(encode(first)) == orjson.dumps(encode(second))
    assert orjson.dumps(encode(frozenset(first))) == orjson.dumps(encode(frozenset(second)))


def test_sets_encode_the_same_across_hash_seeds() -> None:
    script = (
        "import orjson; from flux._engine.codec import encode; "
        "import sys; sys.stdout.buffer.write(orjson.dumps(encode({'alpha', 'beta', 'gamma', 'delta', ('x', 'y'), "
        "frozenset({'p', 'q', 'r'})})))"
    )
    outputs = set()
    orders = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, timeout=30)
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
        order = subprocess.run(
            [sys.executable, "-c", "print(list({'alpha', 'beta', 'gamma', 'delta'}))"],
            env=env,
            capture_output=True,
            timeout=30,
        )
        orders.add(order.stdout)
    assert len(orders) > 1, "hash seeds did not change set order; the test shows nothing"
    assert len(outputs) == 1


# -- exceptions -------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - hands back whatever it raised
        return caught


def test_exception_round_trips_as_its_class_with_message_and_traceback() -> None:
    exc = raised(ValueError("bad input 42"))
    tree = orjson.loads(orjson.dumps(encode({"error": exc})))
    decoded = decode(tree)["error"]
    assert type(decoded) is ValueError
    assert str(decoded) == "bad input 42"
    assert decoded.args == ("bad input 42",)
    tb = decoded.__flux_traceback__
    assert "Traceback (most recent call last)" in tb
    assert "raise exc" in tb
    assert tb.rstrip().endswith("ValueError: bad input 42")


def test_exception_with_constructor_arguments_round_trips() -> None:
    decoded = decode(orjson.loads(orjson.dumps(encode_exception(raised(NeedsTwo(3, 4))))))
    assert type(decoded) is NeedsTwo
    assert (decoded.a, decoded.b, decoded.args) == (3, 4, (3, 4))


def test_exception_with_unrecordable_arguments_keeps_its_class_and_message() -> None:
    exc = raised(KeyError(object()))
    tree = encode_exception(exc)
    assert tree["args"] is None
    decoded = decode(orjson.loads(orjson.dumps(tree)))
    assert type(decoded) is KeyError
    assert decoded.args == (str(exc),)
    assert decoded.__flux_traceback__ == tree["tb"]


def test_exception_of_a_class_that_cannot_be_found_decodes_to_recorded_error() -> None:
    class Vanished(Exception):
        pass

    exc = raised(Vanished("the disk is full"))
    assert "<locals>" in class_ref(Vanished)
    tree = orjson.loads(orjson.dumps(encode(exc)))
    decoded = decode(tree)
    assert type(decoded) is RecordedError
    assert decoded.type_name.endswith("Vanished")
    assert decoded.message == "the disk is full"
    assert "Vanished" in str(decoded) and "the disk is full" in str(decoded)
    assert "Vanished: the disk is full" in decoded.traceback_text
    assert decoded.__flux_traceback__ == decoded.traceback_text


# -- what cannot be recorded ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "where"),
    [
        ([1, 2, object()], "builtins.object", "value[2]"),
        ({"f": lambda: 0}, "function", "value['f']"),
        ((0, [MyStr("x")]), "MyStr", "value[1][0]"),
        ({"ok": 1, "bad": [1, {"deep": {1, 2}, "x": ...}]}, "ellipsis", "value['bad'][1]['x']"),
        (Box("a", [1, 2, object()]), "builtins.object", "value.items[2]"),
        (MyList([1]), "MyList", "value"),
    ],
)
def test_unsupported_values_raise_encode_error_naming_type_and_place(value: Any, type_name: str, where: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(value)
    message = str(info.value)
    assert type_name in message
    assert info.value.type_name.endswith(type_name)
    assert info.value.where == where
    assert message.startswith(f"{where}:")


def test_a_place_given_as_a_template_is_formatted_into_the_error() -> None:
    with pytest.raises(EncodeError) as info:
        encode([1, {"k": (2, object())}], (None, "task {!r} argument", "charge"))
    assert info.value.where == "task 'charge' argument[1]['k'][1]"
    assert str(info.value).startswith("task 'charge' argument[1]['k'][1]: values of type builtins.object")


# -- decoding never imports and never runs code -----------------------------------------------


@pytest.mark.parametrize("tag", ["$dataclass", "$enum", "$namedtuple", "$pydantic"])
@pytest.mark.parametrize("module", ["some_not_imported_mod", "this"])  # `this` exists and prints when imported
def test_decoding_a_class_from_a_module_not_imported_fails_without_importing(
    tag: str, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert module not in sys.modules
    payload: Any = [] if tag == "$namedtuple" else {}
    with pytest.raises(DecodeError) as info:
        decode({tag: f"{module}:X", "v": payload})
    assert f"{module}:X" in str(info.value)
    assert module not in sys.modules
    assert capsys.readouterr().out == ""


def test_decoding_an_error_from_a_module_not_imported_gives_recorded_error_without_importing() -> None:
    assert "this" not in sys.modules
    decoded = decode({"$error": "this:Oops", "msg": "m", "args": ["m"], "tb": "t"})
    assert type(decoded) is RecordedError
    assert decoded.type_name == "Oops"
    assert "this" not in sys.modules


def test_decoding_does_not_import_through_a_lazy_module_attribute() -> None:
    # concurrent.futures imports its `process` submodule lazily from its module __getattr__.
    script = (
        "import sys, concurrent.futures\n"
        "from flux._engine.codec import decode\n"
        "from flux._engine.errors import DecodeError\n"
        "assert 'concurrent.futures.process' not in sys.modules\n"
        "try:\n"
        "    value = decode({'$dataclass': 'concurrent.futures:ProcessPoolExecutor', 'v': {}})\n"
        "    print('decoded', type(value).__name__)\n"
        "except DecodeError:\n"
        "    print('refused')\n"
        "print('imported' if 'concurrent.futures.process' in sys.modules else 'not imported')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:2] == ["refused", "not imported"]


@pytest.mark.parametrize("tag", ["$enum", "$namedtuple"])
def test_decoding_does_not_call_constructors_of_other_kinds_of_class(tag: str) -> None:
    Recorder.calls.clear()
    payload: Any = ["echo", "hi"] if tag == "$enum" else [["echo", "hi"]]
    try:
        decode({tag: class_ref(Recorder), "v": payload})
    except DecodeError:
        pass
    assert Recorder.calls == []


def test_unknown_tag_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match=r"unknown value tag '\$nope'"):
        decode({"$nope": 1})
    with pytest.raises(DecodeError):
        decode([{"ok": {"$alsonope": [1]}}])


@pytest.mark.parametrize(
    "tree",
    [
        {"$int": "twelve"},
        {"$float": "1.5"},
        {"$bytes": "not base64!"},
        {"$date": "2024-13-40"},
        {"$uuid": "nope"},
        {"$decimal": "1,5"},
        {"$timedelta": "x"},
        {"$datetime": "2024-01-01T00:00:00", "tz": "No/Such_Zone"},
        {"$enum": 5, "v": 1},
        {"$enum": class_ref(Color), "v": "not a member"},
        # Right JSON, wrong shape: a string or an object is not the list a collection is written as.
        {"$set": "abc"},
        {"$frozenset": {"a": 1}},
        {"$tuple": "ab"},
        {"$dict": ["ab"]},
        {"$dict": [[1, 2, 3]]},
        {"$timedelta": [1, 2, "3"]},
        {"$decimal": 5},
        {"$uuid": 5},
        {"$datetime": 5},
        {"$bytes": 5},
    ],
)
def test_malformed_tagged_values_raise_decode_error(tree: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode(tree)


def test_a_collection_written_as_anything_but_a_list_is_malformed() -> None:
    with pytest.raises(DecodeError, match=r"malformed \$set value 'abc': expected a list, not str"):
        decode({"$set": "abc"})


def test_find_class_only_returns_classes_from_imported_modules() -> None:
    assert find_class(class_ref(Color)) is Color
    assert find_class(class_ref(Pair)) is Pair
    assert find_class("builtins:len") is None  # not a class
    assert find_class(f"{__name__}:") is None
    assert find_class(f"{__name__}:Color.RED") is None  # a member, not a class
    assert find_class("x_alias:Color", aliases={"x_alias": __name__}) is Color


# -- values the codec accepts but the journal cannot hold ------------------------------------


def nested_tuples(depth: int) -> Any:
    value: Any = ()
    for _ in range(depth):
        value = (value,)
    return value


@pytest.mark.parametrize("depth", [130, 199])
def test_values_within_the_depth_limit_can_be_written_as_json(depth: int) -> None:
    try:
        tree = encode(nested_tuples(depth))
    except EncodeError:
        return  # refusing is fine; accepting and then failing to write is not
    line = orjson.dumps({"seq": 3, "kind": "task_completed", "value": tree})
    assert same(decode(orjson.loads(line)["value"]), nested_tuples(depth))


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb"])
def test_strings_with_lone_surrogates_are_refused_or_kept(text: str) -> None:
    try:
        tree = encode({"s": text})
    except EncodeError as err:
        assert err.where == "value['s']"
        return
    assert decode(orjson.loads(orjson.dumps(tree))) == {"s": text}


def test_pydantic_model_with_field_alias_round_trips() -> None:
    value = Aliased(X=5)
    assert same(through_journal(value), value)


# -- values rebuilt without running code a journal can pick -------------------------------------


def test_integers_of_any_size_round_trip_exactly_and_fast() -> None:
    import time

    for value in (2**64 + 1, -(10**4299), 10**4300 + 7, -(3**60_000)):
        tree = encode(value)
        assert decode(tree) == value and type(decode(tree)) is int
    huge = 7**200_000
    tree = encode(huge)
    assert tree["$int"].startswith("0x") and decode(tree) == huge

    def best_of_three(value: int) -> float:
        times = []
        for _ in range(3):
            began = time.perf_counter()
            decode(encode(value))
            times.append(time.perf_counter() - began)
        return min(times)

    # Linear in the size, not the quadratic decimal text: 16 times the digits cost about 16
    # times as long (the quadratic way, 256 times); a ratio in one run, not a wall-clock bound.
    assert best_of_three(7**320_000) / best_of_three(7**20_000) < 64


class Tracked(NamedTuple):
    a: int
    b: str


class TrackedAndMore(Tracked):
    @property
    def loud(self) -> str:
        raise AssertionError("nothing of this class runs while decoding")


class Shade(enum.Enum):
    DARK = 1

    @classmethod
    def _missing_(cls, value: object) -> Any:
        raise AssertionError("_missing_ never runs while decoding")


@dataclasses.dataclass
class Built:
    x: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Built:
        raise AssertionError("__new__ never runs while decoding")


class Refused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        CALLS.append("init")
        super().__init__(f"refused with {code}")


CALLS: list[str] = []


def test_decoding_builds_values_without_calling_what_their_classes_define() -> None:
    assert decode(encode(Tracked(1, "x"))) == Tracked(1, "x")
    assert type(decode(encode(Tracked(1, "x")))) is Tracked
    with pytest.raises(EncodeError):  # a subclass of a NamedTuple may run code: not recordable
        encode(TrackedAndMore(1, "x"))
    forged = {"$namedtuple": class_ref(TrackedAndMore), "v": [1, "x"]}
    with pytest.raises(DecodeError, match="is not one"):
        decode(forged)
    uname = {"$namedtuple": "platform:uname_result", "v": ["a", "b", "c", "d", "e"]}
    import platform  # noqa: F401 - loaded, as it is in most processes

    with pytest.raises(DecodeError):
        decode(uname)
    assert decode(encode(Shade.DARK)) is Shade.DARK
    with pytest.raises(DecodeError, match="no member of value 2"):
        decode({"$enum": class_ref(Shade), "v": 2})
    assert decode({"$dataclass": class_ref(Built), "v": {"x": 3}}).x == 3
    tree = encode(Refused(7))
    CALLS.clear()
    rebuilt = decode(tree)
    assert type(rebuilt) is Refused and rebuilt.code == 7 and str(rebuilt) == "refused with 7"
    assert CALLS == []  # built from its recorded arguments and attributes; __init__ never ran


def test_a_pydantic_model_is_validated_when_rebuilt() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Priced(pydantic.BaseModel):
        amount: int

        @pydantic.field_validator("amount")
        @classmethod
        def positive(cls, value: int) -> int:
            if value < 0:
                raise ValueError("amount must be >= 0")
            return value

    globals()["Priced"] = Priced
    Priced.__module__ = __name__
    Priced.__qualname__ = "Priced"
    assert decode(encode(Priced(amount=3))) == Priced(amount=3)
    with pytest.raises(DecodeError, match="does not validate"):
        decode({"$pydantic": class_ref(Priced), "v": {"amount": -1}})
