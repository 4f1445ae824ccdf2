"""Kauldron's typing shorthands for transcribing seed 003 (``from kauldron.typing import ...``).

``Float["*b n"]`` is Kauldron's short form of jaxtyping's ``Float[Array, "*b n"]``, and
``@typechecked`` checks annotated shapes. metrix checks ``get_state`` / ``get_values``
annotations itself (``metrix.typecheck``, at trace time), so ``typechecked`` here only marks
the method and returns it unchanged.
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
Bool = _Shorthand(jaxtyping.Bool)


def typechecked(fn):
    """A no-op marker: metrix's Metric base already checks the jaxtyping annotations."""
    fn.__metrix_typechecked__ = True
    return fn
