"""Recording values of other types: `register_codec(cls, name, encode, decode)` (SPEC.md 3).

    import flux.codecs

    flux.codecs.register_codec(
        Money, "shop.Money", lambda m: [str(m.amount), m.currency], lambda v: Money(Decimal(v[0]), v[1])
    )

`encode` turns a value into one the journal can hold (JSON-like values, and the other types of
SPEC.md section 3); `decode` rebuilds it. Register codecs when the module defining the type is
imported, so that replay finds them. numpy arrays and scalars and pandas DataFrames, Series,
indexes and timestamps have codecs already (install the `numpy` extra: `pip install
flux-replay[numpy]`, or `[pandas]`).
"""

from __future__ import annotations

from flux._engine.codec import register_codec

__all__ = ["register_codec"]
