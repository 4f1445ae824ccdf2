"""Field kinds: how each field of a State merges, its identity, its fold and its collective."""

from __future__ import annotations

import dataclasses
import operator
import types
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from metrix.core import numerics

if TYPE_CHECKING:  # only for annotations: state.py imports this module
    from metrix.core.state import State

_META = "metrix"


# ---------------------------------------------------------------------------------------
# Field kinds
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """How one field merges, and how to build its identity for ``empty()``.

    ``shape`` and ``dtype`` describe the field for ``State.empty(parent)``; either may be a
    callable of the parent metric (e.g. ``lambda m: (m.num_classes,)``).
    """

    name: str
    shape: Any = ()
    dtype: Any = jnp.float32

    # -- merging two values -------------------------------------------------------------
    def merge(self, a, b):
        raise NotImplementedError

    def identity_like(self, x):
        raise NotImplementedError

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        shape = self.shape(parent) if isinstance(self.shape, types.FunctionType) else self.shape
        dtype = self.dtype(parent) if isinstance(self.dtype, types.FunctionType) else self.dtype
        if shape is None:
            raise ValueError(
                f"{state_cls.__qualname__}.{field_name}: its shape depends on the data and the "
                f"metric {type(parent).__name__} does not declare it; build the identity from a "
                "real state with `state.empty_like()` instead of `metric.empty()`."
            )
        return tuple(shape), jnp.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class SumKind(FieldKind):
    name: str = "sum"

    def merge(self, a, b):
        return a + b

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class ExactSumKind(FieldKind):
    """A double-float sum: value stored as ``(..., 2)`` float32 (hi, lo); see numerics."""

    name: str = "exact_sum"

    def merge(self, a, b):
        return numerics.df_add(a, b)

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros((*shape, 2), dtype)


def _lowest(dtype):
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if dtype == jnp.bool_:
        return False
    return jnp.iinfo(dtype).min


def _highest(dtype):
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.inf
    if dtype == jnp.bool_:
        return True
    return jnp.iinfo(dtype).max


@dataclasses.dataclass(frozen=True)
class MinKind(FieldKind):
    name: str = "min"

    def merge(self, a, b):
        return jnp.minimum(a, b)

    def identity_like(self, x):
        return jnp.full_like(x, _highest(x.dtype))

    def identity(self, shape, dtype):
        return jnp.full(shape, _highest(dtype), dtype)


@dataclasses.dataclass(frozen=True)
class MaxKind(FieldKind):
    name: str = "max"

    def merge(self, a, b):
        return jnp.maximum(a, b)

    def identity_like(self, x):
        return jnp.full_like(x, _lowest(x.dtype))

    def identity(self, shape, dtype):
        return jnp.full(shape, _lowest(dtype), dtype)


@dataclasses.dataclass(frozen=True)
class ConcatKind(FieldKind):
    """Rows appended into a fixed-capacity buffer; the owning state must be a BufferState.

    ``shape`` is the shape of one row (item); the buffer is ``(capacity, *shape)``.
    """

    name: str = "concat"

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def identity(self, shape, dtype):
        return jnp.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class NestedKind(FieldKind):
    """A State (or a tuple of States) inside a State: merges with the inner states' own rules."""

    name: str = "nested"
    state_cls: Any = None

    def merge(self, a, b):
        if isinstance(a, tuple):
            return tuple(x.merge(y) for x, y in zip(a, b, strict=True))
        return a.merge(b)

    def identity_like(self, x):
        if isinstance(x, tuple):
            return tuple(s.empty_like() for s in x)
        return x.empty_like()


@dataclasses.dataclass(frozen=True)
class TruncateKind(FieldKind):
    """Rows concatenated along ``axis`` and cut to the first ``num`` (Kauldron's truncate).

    ``num`` is read from the state through the attribute path ``num_field`` (for example
    ``"parent.num_images"``), so it is static configuration. A value with no elements is the
    identity, whatever its shape: ``empty()`` knows the row shape only if ``shape`` (the
    shape of one row) is declared. Shapes grow until ``num`` rows are kept, then stay fixed,
    so a jitted merge traces at most a few times.
    """

    name: str = "truncate"
    num_field: str = ""
    axis: int = 0

    def num_rows(self, state) -> int:
        try:
            num = operator.attrgetter(self.num_field)(state)
        except AttributeError as err:
            raise AttributeError(
                f"{type(state).__qualname__}: truncate_field(num_field={self.num_field!r}) "
                f"cannot be read from the state ({err}); set the state's parent metric or "
                "the static field it names."
            ) from None
        if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 0:
            raise TypeError(
                f"{type(state).__qualname__}: num_field {self.num_field!r} must be a "
                f"non-negative int, got {num!r}"
            )
        return int(num)

    def truncate(self, value, num: int):
        if value.ndim == 0 or value.shape[self.axis] <= num:
            return value
        return lax.slice_in_dim(value, 0, num, axis=self.axis)

    def merge_in(self, state, a, b):
        num = self.num_rows(state)
        if jnp.size(a) == 0:
            return self.truncate(b, num)
        if jnp.size(b) == 0 or a.shape[self.axis] >= num:
            return self.truncate(a, num)
        return self.truncate(jnp.concatenate([a, b], axis=self.axis), num)

    def fold_stacked(self, stacked, num: int):
        """Merge values stacked on a new leading axis, in order (rows of 0, then 1, ...)."""
        if stacked.size == 0:
            return stacked[0]
        axis = self.axis % (stacked.ndim - 1)
        rows = jnp.moveaxis(stacked, 0, axis)  # (..., stack, rows, ...)
        shape = rows.shape[:axis] + (rows.shape[axis] * rows.shape[axis + 1],) + rows.shape[axis + 2 :]
        return self.truncate(rows.reshape(shape), num)

    def identity_like(self, x):
        return lax.slice_in_dim(x, 0, 0, axis=self.axis)

    def identity(self, shape, dtype):
        if shape is None:
            return jnp.zeros((0,), jnp.float32)
        shape = list(shape)
        shape.insert(self.axis if self.axis >= 0 else len(shape) + 1 + self.axis, 0)
        return jnp.zeros(tuple(shape), dtype)

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        if self.shape is None:
            return None, jnp.dtype(jnp.float32)
        return super().resolved_shape_dtype(parent, state_cls, field_name)


def _field(kind: FieldKind, default=dataclasses.MISSING, **kwargs) -> Any:
    return dataclasses.field(default=default, metadata={_META: kind}, **kwargs)


def sum_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by addition; identity 0."""
    return _field(SumKind(shape=shape, dtype=dtype))


def exact_sum_field(*, shape: Any = ()) -> Any:
    """A double-float sum (``(*shape, 2)`` float32), exact for integers up to 2^48."""
    return _field(ExactSumKind(shape=shape, dtype=jnp.float32))


def min_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by elementwise minimum; identity +inf (the dtype's max for ints)."""
    return _field(MinKind(shape=shape, dtype=dtype))


def max_field(*, shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A field merged by elementwise maximum; identity -inf (the dtype's min for ints)."""
    return _field(MaxKind(shape=shape, dtype=dtype))


def concat_field(*, item_shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """A fixed-capacity buffer of rows of shape ``item_shape`` (owner: a BufferState)."""
    return _field(ConcatKind(shape=item_shape, dtype=dtype))


def nested_field(state_cls: type[State] | None = None) -> Any:
    """A State inside a State; merges by the inner state's rules."""
    return _field(NestedKind(state_cls=state_cls))


def truncate_field(*, num_field: str, axis: int = 0, item_shape: Any = None, dtype: Any = jnp.float32) -> Any:
    """Rows kept up to the first ``num`` across merges; ``num`` read from ``num_field``.

    ``num_field`` is an attribute path from the state, e.g. ``"parent.num_images"`` (a field
    of the metric) or the name of a static field. ``item_shape`` (one row's shape, optional)
    lets ``empty()`` build an identity of the final shape.
    """
    if not isinstance(num_field, str) or not num_field:
        raise TypeError(f"truncate_field needs num_field, an attribute path string; got {num_field!r}")
    return _field(TruncateKind(shape=item_shape, dtype=dtype, num_field=num_field, axis=axis))


def static_field(default: Any = dataclasses.MISSING) -> Any:
    """Configuration kept in the pytree definition (hashable); must be equal to merge."""
    return dataclasses.field(default=default, metadata={_META: "static"})


__all__ = [
    "FieldKind",
    "sum_field",
    "exact_sum_field",
    "min_field",
    "max_field",
    "concat_field",
    "truncate_field",
    "nested_field",
    "static_field",
]
