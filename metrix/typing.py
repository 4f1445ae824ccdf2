"""Kauldron-style typing shorthands, so Kauldron metric code runs with only imports changed.

``Float["*b n"]`` is short for jaxtyping's ``Float[Array, "*b n"]``. ``typechecked`` is kept
for compatibility: the Metric base already checks the jaxtyping annotations of ``get_state``
and ``get_values`` (see :mod:`metrix.core.typecheck`), so it only marks the method.

A bare shorthand in a union (``Float | None``, ``Float | Int``) stands for an array of that
dtype and any shape, ``Float[Array, "..."]``, so the union is an ordinary ``typing.Union`` of
jaxtyping types that typeguard checks like any other annotation.
"""

from __future__ import annotations

import typing

import jaxtyping
from jaxtyping import Array


class _Shorthand:
    """``Float`` and friends: subscript with a shape string, or use in a ``|`` union."""

    def __init__(self, dtype):
        self._dtype = dtype
        # One type object for the bare meaning (jaxtyping builds a new class per subscript),
        # so ``Float | Float`` collapses and unions of the same shorthands compare equal.
        self._any_shape = dtype[Array, "..."]

    def __getitem__(self, dims: str):
        return self._dtype[Array, dims]

    def any_shape(self):
        """The jaxtyping type this shorthand means when used bare: this dtype, any shape."""
        return self._any_shape

    # Python evaluates ``Float | None`` in a class body or signature when the module does not
    # defer annotations; without these, Kauldron-style optional fields fail at import.
    # ``typing.Union`` rather than ``|``: it also takes string forward references.
    def __or__(self, other):
        return typing.Union[self.any_shape(), _as_annotation(other)]  # noqa: UP007

    def __ror__(self, other):
        return typing.Union[_as_annotation(other), self.any_shape()]  # noqa: UP007

    def __repr__(self) -> str:
        return f"metrix.typing.{self._dtype.__name__}"


def _as_annotation(other):
    """``None`` and shorthands made into what ``typing.Union`` accepts."""
    if isinstance(other, _Shorthand):
        return other.any_shape()
    return type(None) if other is None else other


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
