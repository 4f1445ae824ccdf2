"""Kauldron-style typing shorthands, so Kauldron metric code runs with only imports changed.

``Float["*b n"]`` is short for jaxtyping's ``Float[Array, "*b n"]``. ``typechecked`` is kept
for compatibility: the Metric base already checks the jaxtyping annotations of ``get_state``
and ``get_values`` (see :mod:`metrix.core.typecheck`), so it only marks the method.
"""

from __future__ import annotations

import jaxtyping
from jaxtyping import Array


class _Shorthand:
    def __init__(self, dtype):
        self._dtype = dtype

    def __getitem__(self, dims: str):
        return self._dtype[Array, dims]


Float = _Shorthand(jaxtyping.Float)
Int = _Shorthand(jaxtyping.Int)
Integer = _Shorthand(jaxtyping.Integer)
Bool = _Shorthand(jaxtyping.Bool)
Num = _Shorthand(jaxtyping.Num)
Shaped = _Shorthand(jaxtyping.Shaped)


def typechecked(fn):
    """Compatibility marker: metrix's Metric base already checks the annotations."""
    fn.__metrix_typechecked__ = True
    return fn
