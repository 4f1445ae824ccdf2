"""The field-kind base, the values a field may hold, and the fold / collective helpers.

:mod:`metrix.core.fields` builds the concrete kinds on these (and re-exports the public
names): ``FieldKind`` (the four operations of a kind), ``LeafwiseKind`` (values combined leaf
by leaf: arrays, pytrees of arrays, ``None`` for a left-out optional field, ``EMPTY``),
``EMPTY`` itself, ``MergeError``, and the helpers that fold a stacked axis or reduce across
devices.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metrix.core import numerics

_META = "metrix"


class MergeError(ValueError):
    """Two states cannot be merged (different configuration or structure)."""


# ---------------------------------------------------------------------------------------
# EMPTY: the identity of a field whose declaration does not fix its shape
# ---------------------------------------------------------------------------------------


class _EmptyValue:
    """The value of a field in ``empty()`` when its declaration cannot give a real identity
    (an ``AutoState`` concat or truncate field without ``item_shape``, a field declared with
    ``default=``, a nested state of unknown class): Kauldron's ``EMPTY``.

    It merges as the identity on either side (``merge(EMPTY, x) == x``), is a pytree node
    without leaves (so it passes through ``jit``, ``vmap`` and collectives), and a static
    field holding it takes the other state's value on merge. A state holding it has another
    tree structure than a real one: the first jitted merge with it traces once more.
    """

    __slots__ = ()
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self):
        return "EMPTY"

    def __reduce__(self):  # one instance, also after pickling
        return (_EmptyValue, ())


EMPTY: Any = _EmptyValue()
jax.tree_util.register_pytree_node(_EmptyValue, lambda e: ((), None), lambda aux, children: EMPTY)


def is_absent(value) -> bool:
    """``EMPTY`` or ``None``: a field value without arrays (passed through unchanged)."""
    return value is None or value is EMPTY


_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "<unset>"})()

_NOT_TRIVIAL = object()


def trivial_merge(state, name: str, mine, theirs, verb: str):
    """``merge`` of values where one side is EMPTY (the other side) or None (None with None
    only: an optional field one state carries and the other does not is an error, as in
    Kauldron); ``_NOT_TRIVIAL`` when both hold values."""
    if mine is EMPTY:
        return theirs
    if theirs is EMPTY:
        return mine
    if mine is None and theirs is None:
        return None
    if mine is None or theirs is None:
        raise MergeError(
            f"{type(state).__qualname__}.{name}: Cannot {verb} None and non-None values: one "
            "state holds None for this optional field and the other an array; the states of "
            "one metric must agree on which optional fields they fill."
        )
    return _NOT_TRIVIAL


def _is_value_leaf(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, bool))


def tree_binary(op, mine, theirs, what: str):
    """``op`` leaf by leaf over two pytrees of arrays; a single array on one side is
    broadcast over every leaf of the other (the declared scalar identity of ``empty()``
    against a pytree-valued field)."""
    if _is_value_leaf(mine) and _is_value_leaf(theirs):
        return op(mine, theirs)
    if _is_value_leaf(mine):
        return jax.tree.map(lambda y: op(mine, y), theirs)
    if _is_value_leaf(theirs):
        return jax.tree.map(lambda x: op(x, theirs), mine)
    try:
        return jax.tree.map(op, mine, theirs)
    except ValueError as err:
        raise MergeError(f"{what}: the two states' values have different tree structures ({err})") from None


def tree_unary(fn, value):
    """``fn`` on every array leaf of a field value; None and EMPTY pass through."""
    if is_absent(value):
        return value
    return fn(value) if _is_value_leaf(value) else jax.tree.map(fn, value)


# ---------------------------------------------------------------------------------------
# Folding a leading axis; collectives
# ---------------------------------------------------------------------------------------


def _take(x, *, start, stop, step):
    return x[start:stop:step]


def pairwise_fold(stacked, merge_pairs: Callable, length: int):
    """Fold a leading axis with a tree of merges: pairs (0,1), (2,3), ... then pairs of pairs.

    ``merge_pairs(a, b)`` merges two equally long stacks elementwise. An odd element at the end
    is carried to the next level unchanged, so the order of the elements is kept and merges
    that are not commutative (buffers, "last") come out as a left-to-right fold would.
    log2(length) levels, each one vectorised call.
    """
    while length > 1:
        paired = 2 * (length // 2)
        even = jax.tree.map(functools.partial(_take, start=0, stop=paired, step=2), stacked)
        odd = jax.tree.map(functools.partial(_take, start=1, stop=paired, step=2), stacked)
        merged = merge_pairs(even, odd)
        if length % 2:
            rest = jax.tree.map(functools.partial(_take, start=paired, stop=length, step=1), stacked)
            merged = jax.tree.map(lambda m, r: jnp.concatenate([m, r]), merged, rest)
        stacked, length = merged, paired // 2 + length % 2
    return jax.tree.map(lambda x: x[0], stacked)


def gather(x, axis_name):
    """All devices' values stacked in device order, typed replicated (not device-varying)."""
    return lax.all_gather(x, axis_name, to="invarying")


def exact_psum(x, axis_name):
    """``psum`` of values that are nonzero on at most one device, bit for bit.

    Adding zeros is exact except that ``-0.0 + 0.0 == +0.0``; summing the bit patterns as
    unsigned integers instead keeps every value (signed zeros and NaN payloads included).
    """
    dtype = jnp.dtype(x.dtype)
    if dtype == jnp.bool_:
        return lax.psum(x.astype(jnp.uint8), axis_name).astype(jnp.bool_)
    if jnp.issubdtype(dtype, jnp.integer):
        return lax.psum(x, axis_name)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}.get(dtype.itemsize)
    if unsigned is None or jnp.issubdtype(dtype, jnp.complexfloating):
        return lax.psum(x, axis_name)
    bits = lax.psum(lax.bitcast_convert_type(x, unsigned), axis_name)
    return lax.bitcast_convert_type(bits, dtype)


def exact_fold(stacked):
    """Exact (double-float TwoSum) sum of double-floats stacked on a leading axis."""
    return pairwise_fold(stacked, numerics.df_add, stacked.shape[0])


# ---------------------------------------------------------------------------------------
# The base kind
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """How one field merges, its identity, its fold over a stacked axis and its collective.

    ``shape`` and ``dtype`` describe the field for ``State.empty(parent)``; either may be a
    callable of the parent metric (e.g. ``lambda m: (m.num_classes,)``).
    """

    name: str
    shape: Any = ()
    dtype: Any = jnp.float32

    # -- values on their own (kinds that merge independently implement these) -----------
    def merge(self, a, b):
        raise NotImplementedError(f"{type(self).__name__}.merge")

    def identity(self, shape, dtype):
        return jnp.zeros(shape, dtype)

    def identity_like(self, x):
        return jnp.zeros_like(x)

    def fold(self, stacked):
        """Merge values stacked on a leading axis, in order (default: a tree of merges)."""
        return pairwise_fold(stacked, jax.vmap(self.merge), stacked.shape[0])

    def allreduce(self, value, axis_name):
        """Merge across devices (default: gather every device's value, then fold)."""
        return self.fold(gather(value, axis_name))

    # -- the field inside its states (what State calls) ---------------------------------
    def merge_field(self, name: str, a, b):
        return self.merge(getattr(a, name), getattr(b, name))

    def check_owner(self, state_cls: type, name: str) -> None:
        """Refuse, when ``state_cls`` is defined, a declaration it cannot merge."""

    def _merges_values(self) -> bool:
        return type(self).merge is not FieldKind.merge

    def fold_field(self, name: str, stacked):
        if self._merges_values():
            return self.fold(getattr(stacked, name))
        # A kind that reads other fields and writes only merge_field: a tree of whole-state
        # merges (correct for any kind; override fold_field for a cheaper one).
        length = jax.tree.leaves(stacked)[0].shape[0]
        return getattr(pairwise_fold(stacked, jax.vmap(lambda a, b: a.merge(b)), length), name)

    def allreduce_field(self, name: str, state, axis_name):
        if self._merges_values():
            return self.allreduce(getattr(state, name), axis_name)
        return self.fold_field(name, jax.tree.map(lambda x: gather(x, axis_name), state))

    def empty_field(self, name: str, state_cls: type, parent: Any, static: dict):
        shape, dtype = self.resolved_shape_dtype(parent, state_cls, name)
        return self.identity(shape, dtype)

    def empty_like_field(self, name: str, state):
        return self.identity_like(getattr(state, name))

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
class LeafwiseKind(FieldKind):
    """A kind whose values combine leaf by leaf: a field may hold one array, a pytree of
    arrays (``dict(a=..., b=...)``, merged key by key), ``None`` (an optional field left
    out: merges only with ``None``) or ``EMPTY`` (the identity)."""

    verb: str = "merge"

    def merge_field(self, name, a, b):
        mine, theirs = getattr(a, name), getattr(b, name)
        done = trivial_merge(a, name, mine, theirs, self.verb)
        if done is not _NOT_TRIVIAL:
            return done
        return tree_binary(self.merge, mine, theirs, f"{type(a).__qualname__}.{name}")

    def fold_field(self, name, stacked):
        return tree_unary(self.fold, getattr(stacked, name))

    def allreduce_field(self, name, state, axis_name):
        return tree_unary(lambda v: self.allreduce(v, axis_name), getattr(state, name))

    def empty_like_field(self, name, state):
        return tree_unary(self.identity_like, getattr(state, name))




# ---------------------------------------------------------------------------------------
# Rows along an axis (concat in an AutoState, truncate)
# ---------------------------------------------------------------------------------------


def _rows_axis(axis: int, ndim: int) -> int:
    return axis % ndim if ndim else 0


def concat_rows(x, y, axis: int):
    """``x`` then ``y`` along ``axis`` (numpy stays numpy: host-side summaries stay on host)."""
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return np.concatenate([x, y], axis=axis)
    return jnp.concatenate([x, y], axis=axis)


def unstack_rows(stacked, axis: int):
    """Values stacked on a new leading axis, their rows put one part after the other along
    ``axis`` (rows of part 0, then part 1, ...): the fold of concatenating merges."""
    if stacked.ndim < 2:
        raise ValueError(f"cannot concatenate 0-d values along axis {axis}")
    axis = _rows_axis(axis, stacked.ndim - 1)
    rows = jnp.moveaxis(stacked, 0, axis)  # (..., parts, rows, ...)
    shape = rows.shape[:axis] + (rows.shape[axis] * rows.shape[axis + 1],) + rows.shape[axis + 2 :]
    return rows.reshape(shape)


def _no_rows(shape, dtype, axis: int):
    """An array with zero rows along ``axis`` and ``shape`` (one row's shape) elsewhere."""
    shape = list(shape)
    shape.insert(axis if axis >= 0 else len(shape) + 1 + axis, 0)
    return jnp.zeros(tuple(shape), dtype)

