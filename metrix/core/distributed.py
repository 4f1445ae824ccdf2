"""Merging states across devices and hosts: ``allreduce``, ``merge_stacked``, ``process_allreduce``.

Where each one runs:

* :func:`allreduce` runs *inside* ``jax.shard_map`` / ``jax.pmap`` (under ``jit``): every device
  holds the state of its shard; afterwards every device holds the merged state, typed
  *replicated* so ``shard_map(..., out_specs=P())`` passes JAX's default replication (VMA)
  checks.
* :func:`merge_stacked` merges a leading axis of stacked states (``pmap`` outputs, states built
  under ``vmap``/``scan`` over batches, states gathered from processes). Jit-able.
* :func:`process_allreduce` runs on the host, *outside* ``jit``, in every process of a
  multi-host job: it gathers each process's state (one blocking collective) and merges them
  in process order.

The collective used for a state is derived from its field declarations (no metric writes its
own); a state class with a merge that fields cannot express gets an exact closed form
registered with :func:`register_allreduce`, or falls back to gathering whole states. The result
always equals merging the devices' states one after the other in device order (to float
rounding; counts and buffers exactly).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import ExactSumKind, MaxKind, MinKind, NestedKind, SumKind
from metrix.core.state import State
from metrix.core.states import MeanCovState, WelfordState

AxisName = Any  # a mesh axis name or a tuple of them

_AllreduceRule = Callable[[State, AxisName], State]
_RULES: dict[type, _AllreduceRule] = {}


def _is_state(x) -> bool:
    return isinstance(x, State)


# ---------------------------------------------------------------------------------------
# merge_stacked: a leading axis of states
# ---------------------------------------------------------------------------------------


def _leading_length(tree) -> int | None:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return None
    lengths = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in lengths or len(lengths) != 1:
        raise ValueError(
            "merge_stacked needs states stacked along a leading axis (every array with the same "
            f"axis-0 length), got leaf shapes {[np.shape(x) for x in leaves]}"
        )
    return lengths.pop()


def _take(x, *, start, stop, step):
    return x[start:stop:step]


def _pairwise_fold(stacked, merge_pairs: Callable, length: int):
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


def _vmapped_merge(a: State, b: State) -> State:
    return jax.vmap(lambda x, y: x.merge(y))(a, b)


def _merge_stacked_field(kind, value, length: int):
    if isinstance(kind, SumKind):
        return jnp.sum(value, axis=0, dtype=value.dtype)
    if isinstance(kind, MinKind):
        return jnp.min(value, axis=0)
    if isinstance(kind, MaxKind):
        return jnp.max(value, axis=0)
    if isinstance(kind, ExactSumKind):
        return _pairwise_fold(value, numerics.df_add, length)
    if isinstance(kind, NestedKind):
        return tuple(map(_merge_stacked_state, value)) if isinstance(value, tuple) else _merge_stacked_state(value)
    return _pairwise_fold(value, jax.vmap(kind.merge), length)


def _merge_fields(state: State, merge_field, stack) -> dict:
    """Each data field merged on its own by ``merge_field(kind, value)``; truncate fields
    (which need the state for their length) as rows in stacking / device order, cut."""
    merged = {
        name: merge_field(state.field_kind(name), getattr(state, name))
        for name in state._data_fields
        if name not in state._state_aware_fields
    }
    for name in state._state_aware_fields:
        kind = state.field_kind(name)
        merged[name] = kind.fold_stacked(stack(getattr(state, name)), kind.num_rows(state))
    return merged


def _merge_stacked_state(state: State) -> State:
    length = _leading_length(state)
    if length is None:
        return state
    if length == 0:
        raise ValueError(f"merge_stacked: no {type(state).__qualname__} to merge (leading axis of length 0)")
    if type(state).merge is State.merge:
        # Fields merge independently: one reduction per field (sum, min, max over axis 0).
        merged = _merge_fields(
            state, lambda kind, value: _merge_stacked_field(kind, value, length), stack=lambda rows: rows
        )
        return state.replace(**merged)
    # Buffers and custom merges (Chan moments, "last"): a tree of the state's own merge.
    return _pairwise_fold(state, _vmapped_merge, length)


@jax.jit
def merge_stacked(states: Any) -> Any:
    """Merge states stacked along a leading axis, as merging them one after the other would.

    ``states`` is any pytree of states whose arrays all have a leading axis of the same length
    (a ``pmap`` output, a ``vmap``/``scan`` over batches, :func:`process_allreduce`'s
    gathered states). Field-wise states reduce each field over the axis (sum, min, max; exact
    double-float sums by a pairwise tree of TwoSums). Buffers and states with their own
    ``merge`` use a log2(n) tree of vmapped merges over pairs (0, 1), (2, 3), ..., which keeps
    the order of rows. Compiled with ``jax.jit`` (once per structure when called eagerly,
    inlined inside an enclosing ``jit``).
    """
    return jax.tree.map(_merge_stacked_state, states, is_leaf=_is_state)


# ---------------------------------------------------------------------------------------
# allreduce: inside shard_map / pmap
# ---------------------------------------------------------------------------------------


def register_allreduce(state_cls: type[State]) -> Callable[[_AllreduceRule], _AllreduceRule]:
    """Register ``rule(state, axis_name) -> merged state`` as the collective for ``state_cls``.

    The rule applies to subclasses too, as long as they keep ``state_cls.merge`` (a subclass
    with its own merge falls back to the generic paths). A state class may instead define a
    method ``_allreduce(self, axis_name)``. Rules must return values typed replicated across
    ``axis_name`` (results of ``psum``/``pmin``/``pmax`` or ``all_gather(..., to="invarying")``).
    """

    def decorator(rule: _AllreduceRule) -> _AllreduceRule:
        _RULES[state_cls] = rule
        return rule

    return decorator


def _find_rule(cls: type) -> _AllreduceRule | None:
    for base in cls.__mro__:
        rule = _RULES.get(base)
        if rule is not None and cls.merge is base.merge:
            return rule
    return None


def _gather(x, axis_name):
    """All devices' values stacked in device order, typed replicated (not device-varying)."""
    return lax.all_gather(x, axis_name, to="invarying")


def _exact_psum(x, axis_name):
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


def _allreduce_field(kind, value, axis_name):
    """One field across devices, by its merge kind:

    * sum: ``psum`` (one all-reduce, O(size) payload; float rounding only).
    * min / max: ``pmin`` / ``pmax`` (exact).
    * exact (double-float) sum: ``all_gather`` + pairwise TwoSum fold. ``psum`` of the hi and lo
      parts would round away the compensation that keeps counts exact; these fields are small
      (counts, totals, histograms), so gathering P copies costs little.
    * nested state: recurse with the inner state's own rule.
    """
    if isinstance(kind, SumKind):
        return lax.psum(value, axis_name)
    if isinstance(kind, MinKind):
        return lax.pmin(value, axis_name)
    if isinstance(kind, MaxKind):
        return lax.pmax(value, axis_name)
    if isinstance(kind, ExactSumKind):
        return _exact_fold(value, axis_name)
    if isinstance(kind, NestedKind):
        if isinstance(value, tuple):
            return tuple(_allreduce_state(v, axis_name) for v in value)
        return _allreduce_state(value, axis_name)
    gathered = _gather(value, axis_name)
    return _pairwise_fold(gathered, jax.vmap(kind.merge), gathered.shape[0])


def _exact_fold(value, axis_name):
    gathered = _gather(value, axis_name)
    return _pairwise_fold(gathered, numerics.df_add, gathered.shape[0])


@register_allreduce(State)
def _allreduce_fields(state: State, axis_name) -> State:
    """States whose fields merge independently: one collective per field (see _allreduce_field)."""
    merged = _merge_fields(
        state,
        lambda kind, value: _allreduce_field(kind, value, axis_name),
        stack=lambda rows: _gather(rows, axis_name),
    )
    return state.replace(**merged)


@register_allreduce(BufferState)
def _allreduce_buffer(state: BufferState, axis_name) -> BufferState:
    """Buffers: rows of device i land after those of devices 0..i-1, as a sequential merge.

    Each device gathers the P fill counts (P ints), places its own rows at offset
    ``sum_{j<i} count_j`` of an otherwise zero buffer and the buffers are ``psum``-ed as
    unsigned bit patterns (exact: each slot is nonzero on at most one device). Payload
    O(capacity) per device instead of the O(P * capacity) of gathering every buffer, and no
    merge tree afterwards. Rows past ``capacity`` are counted in ``dropped`` exactly.
    """
    capacity = state.capacity
    counts = _gather(state.count, axis_name)  # (P,) int32, device order
    me = lax.axis_index(axis_name)
    offset = jnp.sum(jnp.where(jnp.arange(counts.shape[0]) < me, counts, 0))
    rows = jnp.arange(capacity)
    destination = offset + rows
    target = jnp.where((rows < state.count) & (destination < capacity), destination, capacity)
    merged = {}
    for name in state._buffer_fields:
        value = getattr(state, name)
        placed = jnp.zeros_like(value).at[target].set(value, mode="drop")
        merged[name] = _exact_psum(placed, axis_name)
    total = jnp.sum(counts)
    stored = jnp.minimum(total, capacity)
    lost = numerics.df_from((total - stored).astype(jnp.float32))
    merged["count"] = stored.astype(state.count.dtype)
    merged["dropped"] = numerics.df_add(_exact_fold(state.dropped, axis_name), lost)
    for name in state._data_fields:
        if name not in merged:
            merged[name] = _allreduce_field(state.field_kind(name), getattr(state, name), axis_name)
    return state.replace(**merged)


def _chan_allreduce(state, axis_name, outer: bool):
    """Chan's moments in one pass of ``psum`` (exact counts, O(d^2) payload for covariances).

    With ``n = sum n_i`` (double-float, exact), ``mean = sum n_i mean_i / n`` and
    ``M2 = sum [M2_i + n_i (mean_i - mean)(mean_i - mean)^T]`` — the parallel-axis theorem,
    algebraically the same as folding Chan's pairwise merge, without ever forming
    E[x^2] - E[x]^2. Gathering all states instead would move P * d^2 numbers per device.
    """
    count = _exact_fold(state.count, axis_name)
    n = numerics.df_value(count)
    n_i = numerics.df_value(state.count)
    has_data = n > 0
    mean = lax.psum(n_i * state.mean, axis_name) / jnp.where(has_data, n, 1)
    mean = jnp.where(has_data, mean, 0)
    delta = state.mean - mean
    correction = jnp.outer(delta, delta) if outer else delta * delta
    # Empty devices have mean_i = 0 but n_i = 0: their correction vanishes.
    m2 = lax.psum(state.m2 + n_i * correction, axis_name)
    return state.replace(count=count, mean=mean, m2=m2)


register_allreduce(WelfordState)(functools.partial(_chan_allreduce, outer=False))
register_allreduce(MeanCovState)(functools.partial(_chan_allreduce, outer=True))


def _allreduce_gathered(state: State, axis_name) -> State:
    """Any state: gather every device's state (replicated) and merge them in device order."""
    return _merge_stacked_state(jax.tree.map(lambda x: _gather(x, axis_name), state))


def _allreduce_state(state: State, axis_name) -> State:
    if not isinstance(state, State):
        raise TypeError(
            f"allreduce merges metrix States, got a {type(state).__name__} leaf; build states "
            "with metric.get_state(...) or mx.get_states(...)"
        )
    hook = getattr(type(state), "_allreduce", None)
    if hook is not None:
        return hook(state, axis_name)
    rule = _find_rule(type(state))
    if rule is not None:
        return rule(state, axis_name)
    return _allreduce_gathered(state, axis_name)


def allreduce(states: Any, axis_name: AxisName) -> Any:
    """Merge a pytree of states across the devices of ``axis_name``; every device gets the result.

    Call it inside ``jax.shard_map`` or ``jax.pmap`` (``axis_name`` may be a tuple of mesh
    axes). The result equals merging the devices' states one after the other in device
    order, and is typed replicated: ``shard_map(..., out_specs=P())`` works with the default
    checks. Collectives follow each state's declaration, cheapest correct first:

    * a state class's own ``_allreduce(axis_name)`` method, or a rule registered with
      :func:`register_allreduce` (Welford and mean/covariance states: Chan's moments in one
      ``psum``, O(d^2) payload);
    * fields that merge independently: ``psum`` (sum), ``pmin``/``pmax`` (min/max),
      ``all_gather`` + exact TwoSum fold (double-float sums), recursion (nested states);
    * buffers: rows placed at their device's offset and ``psum``-ed bit-exactly;
    * any other state with a custom ``merge`` (e.g. ``LastState``): ``all_gather`` of the
      state and a log2(P) tree of its own merge, in device order.
    """
    return jax.tree.map(lambda s: _allreduce_state(s, axis_name), states, is_leaf=_is_state)


# ---------------------------------------------------------------------------------------
# process_allreduce: across hosts, outside jit
# ---------------------------------------------------------------------------------------


def _host_bytes(leaf) -> np.ndarray:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        raise ValueError(
            "process_allreduce merges per-process states, but got a global array spanning "
            "several processes: a state computed over a global mesh is already merged across "
            "processes (read it with multihost_utils.process_allgather(..., tiled=True))."
        )
    return np.asarray(leaf)


def process_allreduce(states: Any, *, to: str = "all") -> Any:
    """Merge a pytree of per-process states across all processes of a multi-host job.

    Every process must call it, in the same order relative to its other collectives, with
    states of the same structure, shapes and dtypes (it blocks until all have arrived). The
    leaves are packed into one byte buffer, gathered with
    ``jax.experimental.multihost_utils.process_allgather`` (a single blocking collective,
    bit-exact) and merged in process order with :func:`merge_stacked` on each process's
    default device. ``to="all"`` returns the merged states on every process; ``to="lead"``
    returns them on process 0 and ``None`` elsewhere (the others skip the merge). With one
    process the states come back unchanged.
    """
    if to not in ("all", "lead"):
        raise ValueError(f"process_allreduce: to must be 'all' or 'lead', got {to!r}")
    if jax.process_count() == 1:
        return states
    from jax.experimental import multihost_utils

    leaves, treedef = jax.tree.flatten(states)
    arrays = [_host_bytes(leaf) for leaf in leaves]
    if not arrays:
        return states if (to == "all" or jax.process_index() == 0) else None
    packed = np.concatenate([np.ascontiguousarray(a.reshape(-1)).view(np.uint8) for a in arrays])[None]
    # One row per process, concatenated in process order: (processes, bytes).
    gathered = np.asarray(multihost_utils.process_allgather(packed, tiled=True))
    if gathered.shape != (jax.process_count(), packed.shape[1]):
        raise ValueError(
            "process_allreduce: processes passed states of different sizes "
            f"(gathered {gathered.shape}, this process {packed.shape[1]} bytes)"
        )
    if to == "lead" and jax.process_index() != 0:
        return None
    stacked, start = [], 0
    for a in arrays:
        stop = start + a.nbytes
        chunk = np.ascontiguousarray(gathered[:, start:stop]).view(a.dtype)
        stacked.append(chunk.reshape((gathered.shape[0], *a.shape)))
        start = stop
    return merge_stacked(jax.tree.unflatten(treedef, stacked))


__all__ = ["allreduce", "merge_stacked", "process_allreduce", "register_allreduce"]
