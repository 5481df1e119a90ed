"""Codecs for numpy arrays and scalars and pandas DataFrames, Series and indexes (SPEC.md 3).

Loaded by the codec when it meets a value of one of these libraries, which is then imported
already; importing this module imports numpy, and pandas only if it is imported. Values are
kept exactly, never pickled: an array as its dtype, shape and raw bytes (C order), or its
elements one by one for object arrays; a DataFrame as its index, its columns (an index too) and
one array per column, each with its own dtype.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

import numpy as np

from flux._engine.codec import register_codec

__all__ = ["ensure"]

_pandas_registered = False


def ensure(root: str) -> None:
    """Registers the codecs of library `root` ("numpy" or "pandas") if it is imported."""
    global _pandas_registered
    if root == "pandas" and not _pandas_registered and "pandas" in sys.modules:
        _pandas_registered = True
        _register_pandas()


def _array(a: np.ndarray[Any, Any]) -> dict[str, Any]:
    dtype = a.dtype
    if dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"numpy arrays of structured dtype {dtype} are not supported")
    if dtype.kind == "O":
        return {"dtype": "O", "shape": list(a.shape), "items": a.ravel(order="C").tolist()}
    data = np.ascontiguousarray(a).tobytes(order="C")
    return {"dtype": dtype.str, "shape": list(a.shape), "data": base64.b64encode(data).decode("ascii")}


def _from_array(v: dict[str, Any]) -> np.ndarray[Any, Any]:
    shape = tuple(v["shape"])
    if v["dtype"] == "O":
        out = np.empty(len(v["items"]), dtype=object)
        for i, item in enumerate(v["items"]):
            out[i] = item
        return out.reshape(shape)
    raw = base64.b64decode(v["data"].encode("ascii"), validate=True)
    return np.frombuffer(raw, dtype=np.dtype(v["dtype"])).reshape(shape).copy()


def _scalar(x: np.generic) -> dict[str, Any]:
    return _array(np.asarray(x))


def _from_scalar(v: dict[str, Any]) -> Any:
    return _from_array(v)[()]


register_codec(np.ndarray, "numpy.ndarray", _array, _from_array)
register_codec(np.generic, "numpy.scalar", _scalar, _from_scalar)


def _register_pandas() -> None:
    import pandas as pd  # type: ignore[import-untyped, import-not-found, unused-ignore]  # no annotations shipped

    def values(series: Any) -> dict[str, Any]:
        """One column's values with its dtype: numpy dtypes as arrays, pandas' own dtypes
        (category, nullable integers, strings, time zones) by their name and elements."""
        dtype = series.dtype
        if isinstance(dtype, np.dtype):
            return {"array": _array(series.to_numpy())}
        if isinstance(dtype, pd.CategoricalDtype):
            return {
                "categorical": {
                    "categories": index(dtype.categories),
                    "codes": _array(np.asarray(series.cat.codes if hasattr(series, "cat") else series.codes)),
                    "ordered": bool(dtype.ordered),
                }
            }
        items = [None if pd.isna(x) else x for x in series.astype(object).tolist()]
        return {"dtype": str(dtype), "items": items}

    def from_values(v: dict[str, Any]) -> Any:
        if "array" in v:
            return _from_array(v["array"])
        if "categorical" in v:
            c = v["categorical"]
            return pd.Categorical.from_codes(
                _from_array(c["codes"]), categories=from_index(c["categories"]), ordered=c["ordered"]
            )
        return pd.array(v["items"], dtype=v["dtype"])

    def index(ix: Any) -> dict[str, Any]:
        if isinstance(ix, pd.MultiIndex):
            return {
                "multi": [index(ix.get_level_values(i)) for i in range(ix.nlevels)],
                "names": list(ix.names),
            }
        if isinstance(ix, pd.RangeIndex):
            return {"range": [ix.start, ix.stop, ix.step], "name": ix.name}
        return {"values": values(pd.Series(ix, copy=False)), "name": ix.name}

    def from_index(v: dict[str, Any]) -> Any:
        if "multi" in v:
            levels = [from_index(level) for level in v["multi"]]
            return pd.MultiIndex.from_arrays(levels, names=v["names"])
        if "range" in v:
            start, stop, step = v["range"]
            return pd.RangeIndex(start, stop, step, name=v["name"])
        return pd.Index(from_values(v["values"]), name=v["name"], tupleize_cols=False)

    def frame(df: Any) -> dict[str, Any]:
        return {
            "index": index(df.index),
            "columns": index(df.columns),
            "data": [values(df.iloc[:, i]) for i in range(df.shape[1])],
        }

    def from_frame(v: dict[str, Any]) -> Any:
        columns = from_index(v["columns"])
        ix = from_index(v["index"])
        data = {i: pd.Series(from_values(col), index=ix, copy=False) for i, col in enumerate(v["data"])}
        out = pd.DataFrame(data, index=ix)
        out.columns = columns
        return out

    def series(s: Any) -> dict[str, Any]:
        return {"index": index(s.index), "values": values(s), "name": s.name}

    def from_series(v: dict[str, Any]) -> Any:
        return pd.Series(from_values(v["values"]), index=from_index(v["index"]), name=v["name"])

    def timestamp(t: Any) -> dict[str, Any]:
        return {"value": t.value, "tz": str(t.tz) if t.tz is not None else None, "unit": t.unit}

    def from_timestamp(v: dict[str, Any]) -> Any:
        return pd.Timestamp(v["value"], tz=v["tz"]).as_unit(v["unit"]) if v["tz"] is None else (
            pd.Timestamp(v["value"], tz="UTC").tz_convert(v["tz"]).as_unit(v["unit"])
        )

    register_codec(pd.DataFrame, "pandas.DataFrame", frame, from_frame)
    register_codec(pd.Series, "pandas.Series", series, from_series)
    register_codec(pd.Index, "pandas.Index", index, from_index)
    register_codec(pd.Timestamp, "pandas.Timestamp", timestamp, from_timestamp)

