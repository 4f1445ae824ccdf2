"""Field kinds: each declares, for one field of a State, the whole of how it combines.

A field kind is the single place that knows how its values combine. ``State.merge``,
``State.empty``/``empty_like``, :func:`metrix.merge_stacked` and :func:`metrix.allreduce` are
loops over the fields that call the kind's four operations (Kauldron's per-field mergers and
torchmetrics' ``dist_reduce_fx`` are the models):

======================= ============================== ========== ========================
kind (constructor)      merge(a, b)                    identity   collective (allreduce)
======================= ============================== ========== ========================
``sum_field``           ``a + b``                      ``0``      ``psum``
``exact_sum_field``     double-float TwoSum (exact)    ``0``      gather + TwoSum tree
``min_field``           ``minimum(a, b)``              ``+inf``   ``pmin``
``max_field``           ``maximum(a, b)``              ``-inf``   ``pmax``
``concat_field``        rows of b after those of a     no rows    rows placed at the
                        (fixed capacity, BufferState)             device's offset, psum
                        (growing, AutoState: concat)   ``EMPTY``  gather + concatenate
``truncate_field``      rows of a then b, first num    no rows    gather + fold
``nested_field``        ``a.merge(b)``                 ``empty``  the inner state's own
``last_field``          b where b was seen, else a     ``0``      gather + fold
``chan_mean_field``     Chan: ``a + (b - a) n_b / n``  ``0``      ``psum`` of ``n_i mean_i``
``chan_m2_field``       Chan: ``M2_a + M2_b + d d^T    ``0``      ``psum`` (parallel-axis
                        n_a n_b / n``                             theorem)
``static_field``        must be equal (treedef)        unchanged  unchanged
======================= ============================== ========== ========================

In an :class:`~metrix.AutoState` (Kauldron's), a field may also hold a pytree of arrays
(merged leaf by leaf), ``None`` (a field declared ``default=None`` and left out: merges only
with ``None``) or :data:`EMPTY` (the identity of a field whose declaration lacks a shape).

The four operations of a kind, each on the states it combines (so a kind may read the other
fields it depends on, e.g. a buffer's fill count or a Chan mean's count):

* ``merge_field(name, a, b)``: the field of ``a.merge(b)`` (``a`` already carries the parent);
* ``empty_field(name, state_cls, parent, static)``: its identity, from the declaration;
* ``fold_field(name, stacked)``: the field of the merge of states stacked on a leading axis,
  in order (the same as merging them left to right, to float rounding);
* ``allreduce_field(name, state, axis_name)``: the same across the devices of ``axis_name``
  inside ``shard_map``/``pmap``, with a result typed replicated.

Kinds whose values merge on their own implement the value-level ``merge(a, b)``; the default
``fold`` is then a log2(n) tree of vmapped merges and the default ``allreduce`` gathers the
devices' values and folds them, so a new kind is correct with ``merge`` alone and overrides
``fold``/``allreduce`` only to be cheaper. A kind that reads other fields writes
``merge_field``; its default fold and collective are trees of whole-state merges.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metrix.core import numerics
from metrix.core.kinds import (  # noqa: F401  (re-exported: the kinds' base and helpers)
    _META,
    _NOT_TRIVIAL,
    _UNSET,
    EMPTY,
    FieldKind,
    LeafwiseKind,
    MergeError,
    _no_rows,
    _rows_axis,
    concat_rows,
    exact_fold,
    exact_psum,
    gather,
    is_absent,
    pairwise_fold,
    tree_binary,
    tree_unary,
    trivial_merge,
    unstack_rows,
)

# ---------------------------------------------------------------------------------------
# Independent kinds: sum, exact sum, min, max
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SumKind(LeafwiseKind):
    """``a + b``; one ``psum`` across devices (float rounding only)."""

    name: str = "sum"
    verb: str = "sum"

    def merge(self, a, b):
        return a + b

    def fold(self, stacked):
        return jnp.sum(stacked, axis=0, dtype=stacked.dtype)

    def allreduce(self, value, axis_name):
        return lax.psum(value, axis_name)


@dataclasses.dataclass(frozen=True)
class ExactSumKind(LeafwiseKind):
    """A double-float sum: value stored as ``(..., 2)`` float32 (hi, lo); see numerics.

    Across devices the values are gathered and summed by a TwoSum tree: a ``psum`` of the hi
    and lo parts would round away the compensation that keeps counts exact. These fields are
    small (counts, totals, histograms), so gathering P copies costs little.
    """

    name: str = "exact_sum"
    verb: str = "sum"

    def merge(self, a, b):
        return numerics.df_add(a, b)

    def identity(self, shape, dtype):
        return jnp.zeros((*shape, 2), dtype)

    def fold(self, stacked):
        return exact_fold(stacked)


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
class MinKind(LeafwiseKind):
    """Elementwise minimum; identity +inf (the dtype's max for ints); ``pmin`` (exact)."""

    name: str = "min"
    verb: str = "take the minimum of"

    def merge(self, a, b):
        return jnp.minimum(a, b)

    def identity(self, shape, dtype):
        return jnp.full(shape, _highest(dtype), dtype)

    def identity_like(self, x):
        return jnp.full_like(x, _highest(x.dtype))

    def fold(self, stacked):
        return jnp.min(stacked, axis=0)

    def allreduce(self, value, axis_name):
        return lax.pmin(value, axis_name)


@dataclasses.dataclass(frozen=True)
class MaxKind(LeafwiseKind):
    """Elementwise maximum; identity -inf (the dtype's min for ints); ``pmax`` (exact)."""

    name: str = "max"
    verb: str = "take the maximum of"

    def merge(self, a, b):
        return jnp.maximum(a, b)

    def identity(self, shape, dtype):
        return jnp.full(shape, _lowest(dtype), dtype)

    def identity_like(self, x):
        return jnp.full_like(x, _lowest(x.dtype))

    def fold(self, stacked):
        return jnp.max(stacked, axis=0)

    def allreduce(self, value, axis_name):
        return lax.pmax(value, axis_name)


# ---------------------------------------------------------------------------------------
# States inside states
# ---------------------------------------------------------------------------------------


def _is_state(x) -> bool:
    return hasattr(x, "_merge_stacked") and hasattr(x, "_data_fields")


def _each(value, fn):
    """``fn`` on every State of a State, a tuple or any pytree of States."""
    if is_absent(value):
        return value
    return jax.tree.map(fn, value, is_leaf=_is_state)


@dataclasses.dataclass(frozen=True)
class NestedKind(FieldKind):
    """A State, or any pytree of States (a tuple, a dict: Kauldron's ``TreeState``), inside a
    State: merges with the inner states' own rules, state by state. ``EMPTY`` is the
    identity (the value in ``empty()`` when the declaration names no State class)."""

    name: str = "nested"
    state_cls: Any = None

    def merge(self, a, b):
        if _is_state(a):
            return a.merge(b)
        try:
            return jax.tree.map(lambda x, y: x.merge(y), a, b, is_leaf=_is_state)
        except ValueError as err:
            raise MergeError(f"nested states of different tree structures ({err})") from None

    def merge_field(self, name, a, b):
        mine, theirs = getattr(a, name), getattr(b, name)
        done = trivial_merge(a, name, mine, theirs, "merge")
        return self.merge(mine, theirs) if done is _NOT_TRIVIAL else done

    def identity_like(self, x):
        return _each(x, lambda s: s.empty_like())

    def fold(self, stacked):
        return _each(stacked, lambda s: s._merge_stacked())

    def allreduce(self, value, axis_name):
        return _each(value, lambda s: s._allreduce(axis_name))

    def empty_field(self, name, state_cls, parent, static):
        if self.state_cls is None:
            if getattr(state_cls, "_shapeless_identities", False):
                return EMPTY
            raise ValueError(
                f"{state_cls.__qualname__}.{name}: nested_field() needs its State class "
                "for empty(); pass nested_field(TheState)."
            )
        return self.state_cls.empty(parent)


# ---------------------------------------------------------------------------------------
# Rows: fixed-capacity buffers (BufferState) and truncated rows (AutoState)
# ---------------------------------------------------------------------------------------


def _buffer_counts(state):
    return state.capacity, state.count


def _place_stacked(values, counts, capacity: int):
    """Rows of P stacked buffers ``(P, capacity, ...)`` one after the other in one buffer."""
    offsets = jnp.cumsum(counts) - counts  # rows before buffer p
    rows = jnp.arange(capacity)
    destination = offsets[:, None] + rows[None, :]
    valid = (rows[None, :] < counts[:, None]) & (destination < capacity)
    target = jnp.where(valid, destination, capacity).reshape(-1)  # capacity = dropped
    flat = values.reshape((-1, *values.shape[2:]))
    return jnp.zeros(values.shape[1:], values.dtype).at[target].set(flat, mode="drop")



def _grows(state_cls) -> bool:
    """Whether concat fields of ``state_cls`` grow (AutoState) rather than fill a buffer."""
    return "capacity" not in state_cls._static_fields


@dataclasses.dataclass(frozen=True)
class ConcatKind(FieldKind):
    """Rows concatenated across merges. Two owners, two representations:

    * in a :class:`~metrix.BufferState` (``capacity`` static field): rows appended into a
      fixed-capacity buffer. ``shape`` is the shape of one row (item); the buffer is
      ``(capacity, *shape)``. Merging puts b's first ``capacity - count_a`` rows after a's
      ``count_a`` rows (O(capacity)). Across devices, each device places its rows at offset
      ``sum_{j<i} count_j`` of an otherwise zero buffer and the buffers are ``psum``-ed as
      unsigned bit patterns (exact: each slot is nonzero on at most one device): O(capacity)
      payload, no merge tree. One shape for every state: merges inside ``jit``, ``scan`` and
      ``shard_map``.
    * in an :class:`~metrix.AutoState` (Kauldron's ``concat_field``): the value (an array or
      a pytree of arrays) grows, ``merge(a, b) = concatenate([a, b], axis)``, leaf by leaf.
      Works eagerly and under ``jit``, but every merge changes the shape (a retrace per new
      shape, no ``scan`` carry) and costs O(rows so far): for long evaluations use a
      BufferState. The identity of ``empty()`` is ``EMPTY`` unless ``item_shape`` is given.
    """

    name: str = "concat"
    axis: int = 0

    # -- which representation -------------------------------------------------------------
    def check_owner(self, state_cls, name):
        if _grows(state_cls):
            if not getattr(state_cls, "_shapeless_identities", False):
                raise TypeError(
                    f"{state_cls.__qualname__}.{name}: concat_field needs a fixed capacity "
                    "in a plain State (to merge under jit); subclass mx.BufferState (a "
                    "fixed-capacity buffer with a fill count) or mx.AutoState (rows that "
                    "grow on every merge, as Kauldron's AutoState)."
                )
        elif self.axis != 0:
            raise TypeError(
                f"{state_cls.__qualname__}.{name}: a BufferState buffer holds rows along axis "
                f"0; concat_field(axis={self.axis}) is for an mx.AutoState."
            )

    # -- growing rows (AutoState) ---------------------------------------------------------
    def _grow(self, name, a, b):
        mine, theirs = getattr(a, name), getattr(b, name)
        done = trivial_merge(a, name, mine, theirs, "concatenate")
        if done is not _NOT_TRIVIAL:
            return done
        return tree_binary(
            lambda x, y: concat_rows(x, y, self.axis), mine, theirs, f"{type(a).__qualname__}.{name}"
        )

    def merge_field(self, name, a, b):
        if _grows(type(a)):
            return self._grow(name, a, b)
        capacity, n_a = _buffer_counts(a)
        kept_b = jnp.minimum(b.count, capacity - n_a)
        source = jnp.arange(capacity) - n_a
        from_b = (source >= 0) & (source < kept_b)
        mine, theirs = getattr(a, name), getattr(b, name)
        take = jnp.take(theirs, jnp.clip(source, 0, capacity - 1), axis=0)
        return jnp.where(from_b.reshape((-1,) + (1,) * (mine.ndim - 1)), take, mine)

    def fold_field(self, name, stacked):
        if _grows(type(stacked)):
            return tree_unary(lambda v: unstack_rows(v, self.axis), getattr(stacked, name))
        return _place_stacked(getattr(stacked, name), stacked.count, stacked.capacity)

    def allreduce_field(self, name, state, axis_name):
        if _grows(type(state)):
            return tree_unary(lambda v: unstack_rows(gather(v, axis_name), self.axis), getattr(state, name))
        capacity = state.capacity
        counts = gather(state.count, axis_name)  # (P,) int32, device order
        me = lax.axis_index(axis_name)
        offset = jnp.sum(jnp.where(jnp.arange(counts.shape[0]) < me, counts, 0))
        rows = jnp.arange(capacity)
        destination = offset + rows
        target = jnp.where((rows < state.count) & (destination < capacity), destination, capacity)
        value = getattr(state, name)
        placed = jnp.zeros_like(value).at[target].set(value, mode="drop")
        return exact_psum(placed, axis_name)

    def empty_field(self, name, state_cls, parent, static):
        if _grows(state_cls):
            if self.shape is _UNSET:
                return EMPTY
            shape, dtype = self.resolved_shape_dtype(parent, state_cls, name)
            return _no_rows(shape, dtype, self.axis)
        shape, dtype = self.resolved_shape_dtype(parent, state_cls, name)
        return jnp.zeros((static["capacity"], *shape), dtype)

    def empty_like_field(self, name, state):
        value = getattr(state, name)
        if _grows(type(state)):
            return tree_unary(lambda v: lax.slice_in_dim(v, 0, 0, axis=_rows_axis(self.axis, v.ndim)), value)
        return jnp.zeros_like(value)

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        if self.shape is _UNSET:  # a buffer of scalar rows
            return (), jnp.dtype(self.dtype)
        return super().resolved_shape_dtype(parent, state_cls, field_name)


@dataclasses.dataclass(frozen=True)
class FillCountKind(FieldKind):
    """A buffer's fill count: rows stored, ``min(count_a + count_b, capacity)`` (int32)."""

    name: str = "fill_count"
    dtype: Any = jnp.int32

    def merge_field(self, name, a, b):
        return jnp.minimum(a.count + b.count, a.capacity).astype(a.count.dtype)

    def fold_field(self, name, stacked):
        return jnp.minimum(jnp.sum(stacked.count), stacked.capacity).astype(stacked.count.dtype)

    def allreduce_field(self, name, state, axis_name):
        total = jnp.sum(gather(state.count, axis_name))
        return jnp.minimum(total, state.capacity).astype(state.count.dtype)


@dataclasses.dataclass(frozen=True)
class DroppedKind(ExactSumKind):
    """Rows a buffer could not hold (exact): the sum of the parts' drops plus the rows that
    did not fit when they were put together, ``max(count_a + count_b - capacity, 0)``."""

    name: str = "dropped"

    def merge_field(self, name, a, b):
        lost = jnp.maximum(a.count + b.count - a.capacity, 0)
        return numerics.df_add(numerics.df_add(a.dropped, b.dropped), numerics.df_from_int(lost))

    def fold_field(self, name, stacked):
        lost = jnp.maximum(jnp.sum(stacked.count) - stacked.capacity, 0)
        return numerics.df_add(exact_fold(stacked.dropped), numerics.df_from_int(lost))

    def allreduce_field(self, name, state, axis_name):
        total = jnp.sum(gather(state.count, axis_name))
        lost = jnp.maximum(total - state.capacity, 0)
        return numerics.df_add(exact_fold(gather(state.dropped, axis_name)), numerics.df_from_int(lost))


@dataclasses.dataclass(frozen=True)
class TruncateKind(FieldKind):
    """Rows concatenated along ``axis`` and cut to the first ``num`` (Kauldron's truncate).

    ``num`` is read from the state through the attribute path ``num_field`` (for example
    ``"parent.num_images"``), so it is static configuration. A value with no elements is the
    identity, whatever its shape, and so is ``EMPTY`` (what ``empty()`` holds when the shape
    of one row, ``shape``, is not declared); ``None`` (an optional field left out) merges
    only with ``None``. Shapes grow until ``num`` rows are kept, then stay fixed, so a
    jitted merge traces at most a few times.
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
        if is_absent(value) or value.ndim == 0 or value.shape[self.axis] <= num:
            return value
        return lax.slice_in_dim(value, 0, num, axis=_rows_axis(self.axis, value.ndim))

    def merge_field(self, name, a, b):
        mine, theirs = getattr(a, name), getattr(b, name)
        if is_absent(mine) or is_absent(theirs):
            done = trivial_merge(a, name, mine, theirs, "concatenate (& truncate)")
            return done if is_absent(done) else self.truncate(done, self.num_rows(a))
        num = self.num_rows(a)
        if jnp.size(mine) == 0:
            return self.truncate(theirs, num)
        if jnp.size(theirs) == 0 or mine.shape[self.axis] >= num:
            return self.truncate(mine, num)
        return self.truncate(concat_rows(mine, theirs, self.axis), num)

    def _fold_rows(self, stacked_rows, num: int):
        """Rows of values stacked on a new leading axis, in order (rows of 0, then 1, ...)."""
        if is_absent(stacked_rows):
            return stacked_rows
        if stacked_rows.size == 0:
            return stacked_rows[0]
        return self.truncate(unstack_rows(stacked_rows, self.axis), num)

    def fold_field(self, name, stacked):
        return self._fold_rows(getattr(stacked, name), self.num_rows(stacked))

    def allreduce_field(self, name, state, axis_name):
        value = getattr(state, name)
        if is_absent(value):
            return value
        return self._fold_rows(gather(value, axis_name), self.num_rows(state))

    def identity_like(self, x):
        if is_absent(x):
            return x
        return lax.slice_in_dim(x, 0, 0, axis=_rows_axis(self.axis, x.ndim))

    def identity(self, shape, dtype):
        if shape is None:
            return jnp.zeros((0,), jnp.float32)
        return _no_rows(shape, dtype, self.axis)

    def empty_field(self, name, state_cls, parent, static):
        if self.shape is None and getattr(state_cls, "_shapeless_identities", False):
            return EMPTY
        return super().empty_field(name, state_cls, parent, static)

    def resolved_shape_dtype(self, parent, state_cls, field_name):
        if self.shape is None:
            return None, jnp.dtype(jnp.float32)
        return super().resolved_shape_dtype(parent, state_cls, field_name)


# ---------------------------------------------------------------------------------------
# Fields that read other fields: the last value seen, Chan's moments
# ---------------------------------------------------------------------------------------


def _align(weight, ndim: int):
    """``weight`` with trailing unit axes up to ``ndim``: a per-part (or per-element) count or
    flag lined up with the leading axes of the values it weighs."""
    return jnp.reshape(weight, jnp.shape(weight) + (1,) * (ndim - jnp.ndim(weight)))


def _last_of(values, seen):
    """Fold of ``where(seen_b, b, a)`` over a leading axis: per element, the value of the last
    part that saw it (the first part's when none did, as a left fold keeps it)."""
    seen = jnp.broadcast_to(_align(seen, values.ndim), values.shape)
    length = values.shape[0]
    last = length - 1 - jnp.argmax(seen[::-1], axis=0)
    index = jnp.where(jnp.any(seen, axis=0), last, 0)
    return jnp.take_along_axis(values, index[None], axis=0)[0]


@dataclasses.dataclass(frozen=True)
class LastKind(FieldKind):
    """The most recently merged value: b's where b's ``seen_field`` is set, else a's
    (elementwise when ``seen`` has elements)."""

    name: str = "last"
    seen_field: str = "seen"

    def merge_field(self, name, a, b):
        theirs = getattr(b, name)
        seen = _align(getattr(b, self.seen_field), jnp.ndim(theirs))
        return jnp.where(seen, theirs, getattr(a, name))

    def fold_field(self, name, stacked):
        return _last_of(getattr(stacked, name), getattr(stacked, self.seen_field))

    def allreduce_field(self, name, state, axis_name):
        values, seen = (gather(getattr(state, n), axis_name) for n in (name, self.seen_field))
        return _last_of(values, seen)


def _chan_terms(counts_a, counts_b):
    """Chan's pairwise weights ``n_b / n`` and ``n_a n_b / n`` (0 where ``n = 0``)."""
    n_a, n_b = numerics.df_value(counts_a), numerics.df_value(counts_b)
    n = n_a + n_b
    frac_b = jnp.where(n > 0, n_b / jnp.where(n > 0, n, 1), 0)
    return frac_b, n_a * frac_b


def _outer(kind, delta):
    return delta[..., :, None] * delta[..., None, :] if kind.covariance else delta * delta


def _pooled_mean(n_i, means, total):
    """``sum_i n_i mean_i / n`` over a leading axis of parts (0 where there is no data)."""
    has_data = total > 0
    pooled = jnp.sum(_align(n_i, means.ndim) * means, axis=0)
    mean = pooled / _align(jnp.where(has_data, total, 1), pooled.ndim)
    return jnp.where(_align(has_data, pooled.ndim), mean, 0)


@dataclasses.dataclass(frozen=True)
class ChanMeanKind(FieldKind):
    """A mean merged with Chan et al.'s update, weighted by the double-float ``count_field``:
    ``mean = mean_a + (mean_b - mean_a) n_b / n``. The count's axes line up with the leading
    axes of the mean (a scalar count weighs every element; with ``covariance`` the mean has a
    trailing variable axis the count lacks). Across devices: one ``psum`` of ``n_i mean_i``
    divided by the exact total count."""

    name: str = "chan_mean"
    count_field: str = "count"
    covariance: bool = False

    def merge_field(self, name, a, b):
        mine, theirs = getattr(a, name), getattr(b, name)
        frac_b, _ = _chan_terms(getattr(a, self.count_field), getattr(b, self.count_field))
        return mine + (theirs - mine) * _align(frac_b, mine.ndim)

    def fold_field(self, name, stacked):
        counts = getattr(stacked, self.count_field)
        total = numerics.df_value(exact_fold(counts))
        return _pooled_mean(numerics.df_value(counts), getattr(stacked, name), total)

    def allreduce_field(self, name, state, axis_name):
        total = numerics.df_value(exact_fold(gather(getattr(state, self.count_field), axis_name)))
        mean = getattr(state, name)
        n_i = numerics.df_value(getattr(state, self.count_field))
        pooled = lax.psum(_align(n_i, mean.ndim) * mean, axis_name)
        has_data = total > 0
        pooled = pooled / _align(jnp.where(has_data, total, 1), mean.ndim)
        return jnp.where(_align(has_data, mean.ndim), pooled, 0)


@dataclasses.dataclass(frozen=True)
class ChanM2Kind(FieldKind):
    """Sum of squared deviations (or the scatter matrix) merged with Chan et al.'s update:
    ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n``, ``delta = mean_b - mean_a`` (never
    ``E[x^2] - E[x]^2``). Folded and allreduced with the parallel-axis theorem,
    ``M2 = sum_i [M2_i + n_i (mean_i - mean)(mean_i - mean)^T]``: one ``psum`` of O(d^2)
    values (the pooled mean's own ``psum`` is the mean field's, shared by XLA)."""

    name: str = "chan_m2"
    count_field: str = "count"
    mean_field: str = "mean"
    covariance: bool = False

    def merge_field(self, name, a, b):
        mine = getattr(a, name)
        _, scale = _chan_terms(getattr(a, self.count_field), getattr(b, self.count_field))
        delta = getattr(b, self.mean_field) - getattr(a, self.mean_field)
        return mine + getattr(b, name) + _outer(self, delta) * _align(scale, mine.ndim)

    def _deviations(self, n_i, means, m2s, mean):
        """``M2_i + n_i (mean_i - mean)(mean_i - mean)^T`` per part (parts without data have
        ``mean_i = 0`` but ``n_i = 0``: their correction vanishes)."""
        return m2s + _align(n_i, m2s.ndim) * _outer(self, means - mean)

    def fold_field(self, name, stacked):
        counts = getattr(stacked, self.count_field)
        n_i, means = numerics.df_value(counts), getattr(stacked, self.mean_field)
        mean = _pooled_mean(n_i, means, numerics.df_value(exact_fold(counts)))
        return jnp.sum(self._deviations(n_i, means, getattr(stacked, name), mean), axis=0)

    def allreduce_field(self, name, state, axis_name):
        pooled = ChanMeanKind(count_field=self.count_field, covariance=self.covariance)
        mean = pooled.allreduce_field(self.mean_field, state, axis_name)
        n_i = numerics.df_value(getattr(state, self.count_field))
        return lax.psum(self._deviations(n_i, getattr(state, self.mean_field), getattr(state, name), mean), axis_name)


# ---------------------------------------------------------------------------------------
# Field constructors (what states declare)
# ---------------------------------------------------------------------------------------


def _field(kind: FieldKind, default=dataclasses.MISSING, **kwargs) -> Any:
    return dataclasses.field(default=default, metadata={_META: kind}, **kwargs)


def sum_field(*, shape: Any = (), dtype: Any = jnp.float32, default: Any = dataclasses.MISSING) -> Any:
    """A field merged by addition (leaf by leaf for a pytree value); identity 0.

    ``default=None`` makes the field optional (Kauldron's ``sum_field(default=None)``): a
    state without it holds ``None``, which merges only with ``None``.
    """
    return _field(SumKind(shape=shape, dtype=dtype), default)


def exact_sum_field(*, shape: Any = (), default: Any = dataclasses.MISSING) -> Any:
    """A double-float sum (``(*shape, 2)`` float32), exact for integers up to 2^48.

    Build its value with :func:`metrix.core.numerics.df_from` (a float32 array -> ``(..., 2)``).
    """
    return _field(ExactSumKind(shape=shape, dtype=jnp.float32), default)


def min_field(*, shape: Any = (), dtype: Any = jnp.float32, default: Any = dataclasses.MISSING) -> Any:
    """A field merged by elementwise minimum; identity +inf (the dtype's max for ints)."""
    return _field(MinKind(shape=shape, dtype=dtype), default)


def max_field(*, shape: Any = (), dtype: Any = jnp.float32, default: Any = dataclasses.MISSING) -> Any:
    """A field merged by elementwise maximum; identity -inf (the dtype's min for ints)."""
    return _field(MaxKind(shape=shape, dtype=dtype), default)


def concat_field(
    *, item_shape: Any = _UNSET, dtype: Any = jnp.float32, axis: int = 0, default: Any = dataclasses.MISSING
) -> Any:
    """Rows concatenated across merges (see :class:`ConcatKind`).

    In a :class:`~metrix.BufferState`: a fixed-capacity buffer of rows of shape
    ``item_shape`` (scalar rows when not given). In an :class:`~metrix.AutoState`
    (Kauldron's ``concat_field(axis=...)``): the value, an array or a pytree of arrays,
    grows along ``axis``; ``item_shape`` (optional) gives ``empty()`` real shapes.
    """
    return _field(ConcatKind(shape=item_shape, dtype=dtype, axis=axis), default)


def fill_count_field() -> Any:
    """A BufferState's fill count (rows stored, int32, at most ``capacity``)."""
    return _field(FillCountKind())


def dropped_field() -> Any:
    """A BufferState's exact count of the rows that did not fit."""
    return _field(DroppedKind())


def nested_field(state_cls: type | None = None, *, default: Any = dataclasses.MISSING) -> Any:
    """A State (or a pytree of States) inside a State; merges by the inner states' rules
    (Kauldron's ``state_field``)."""
    return _field(NestedKind(state_cls=state_cls), default)


def truncate_field(
    *,
    num_field: str,
    axis: int = 0,
    item_shape: Any = None,
    dtype: Any = jnp.float32,
    default: Any = dataclasses.MISSING,
) -> Any:
    """Rows kept up to the first ``num`` across merges; ``num`` read from ``num_field``.

    ``num_field`` is an attribute path from the state, e.g. ``"parent.num_images"`` (a field
    of the metric) or the name of a static field. ``item_shape`` (one row's shape, optional)
    lets ``empty()`` build an identity of the final shape.
    """
    if not isinstance(num_field, str) or not num_field:
        raise TypeError(f"truncate_field needs num_field, an attribute path string; got {num_field!r}")
    return _field(TruncateKind(shape=item_shape, dtype=dtype, num_field=num_field, axis=axis), default)


def last_field(*, seen_field: str = "seen", shape: Any = (), dtype: Any = jnp.float32) -> Any:
    """The value of the last merged state whose boolean ``seen_field`` is set."""
    return _field(LastKind(shape=shape, dtype=dtype, seen_field=seen_field))


def chan_mean_field(*, count_field: str = "count", shape: Any = (), covariance: bool = False) -> Any:
    """A mean merged with Chan's update, weighted by the exact ``count_field``."""
    return _field(ChanMeanKind(shape=shape, count_field=count_field, covariance=covariance))


def chan_m2_field(
    *, count_field: str = "count", mean_field: str = "mean", shape: Any = (), covariance: bool = False
) -> Any:
    """Squared deviations (``covariance=True``: the scatter matrix over the trailing axis of
    the means) merged with Chan's update."""
    return _field(ChanM2Kind(shape=shape, count_field=count_field, mean_field=mean_field, covariance=covariance))


def static_field(default: Any = dataclasses.MISSING) -> Any:
    """Configuration kept in the pytree definition (hashable); must be equal to merge."""
    return dataclasses.field(default=default, metadata={_META: "static"})


__all__ = [
    "EMPTY",
    "FieldKind",
    "MergeError",
    "chan_m2_field",
    "chan_mean_field",
    "concat_field",
    "dropped_field",
    "exact_sum_field",
    "fill_count_field",
    "last_field",
    "max_field",
    "min_field",
    "nested_field",
    "static_field",
    "sum_field",
    "truncate_field",
]
