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

Nothing here knows a state or a field kind: each function is a loop over states, and each
state a loop over its fields, each field combined by its kind's fold or collective
(:mod:`metrix.core.fields`). The result always equals merging the states one after the other
in stacking / device / process order (to float rounding; counts and buffers exactly).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from metrix.core.state import State

AxisName = Any  # a mesh axis name or a tuple of them


def _is_state(x) -> bool:
    return isinstance(x, State)


def _require_state(x) -> State:
    if not isinstance(x, State):
        raise TypeError(
            f"allreduce merges metrix States, got a {type(x).__name__} leaf; build states "
            "with metric.get_state(...) or mx.get_states(...)"
        )
    return x


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


@functools.lru_cache(maxsize=256)
def _empty_layout(metric) -> tuple | None:
    """``(treedef, leaf ranks)`` of ``metric.empty()`` (traced abstractly once per metric)."""
    try:
        single = jax.eval_shape(metric.empty)
    except Exception:  # noqa: BLE001 - a metric whose empty needs inputs: nothing to compare
        return None
    return jax.tree.structure(single), tuple(np.ndim(x) for x in jax.tree.leaves(single))


def _check_stacked_like_empty(state: State, length: int) -> None:
    """Every leaf must be the unstacked state's leaf with one more leading axis.

    Without this, an unstacked state whose arrays happen to share an axis-0 length (the
    (hi, lo) pairs of a double-float count, a (C, C) confusion matrix) would be folded as
    if it were ``length`` states: a plausible, wrong value.
    """
    metric = getattr(state, "parent", None)
    if metric is None:
        return
    try:
        single = _empty_layout(metric)
    except TypeError:  # an unhashable configuration: trace its empty state each time
        single = _empty_layout.__wrapped__(metric)
    if single is None or jax.tree.structure(state) != single[0]:
        return  # e.g. a shapeless placeholder empty; the kinds check what they fold
    for got, want_ndim in zip(jax.tree.leaves(state), single[1]):
        # Ranks, not shapes: rows of a collect/truncate field vary in number from state to state.
        if np.ndim(got) != want_ndim + 1:
            raise ValueError(
                f"merge_stacked needs {type(state).__qualname__} states stacked on a leading axis "
                f"(jnp.stack, vmap, scan, pmap), but a leaf has shape {tuple(np.shape(got))} where "
                f"one state's leaf has rank {want_ndim}: this looks like a single, unstacked "
                "state (merge it with .merge, or stack states first)"
            )


def _merge_stacked_state(state: State) -> State:
    length = _leading_length(state)
    if length is None:
        return state
    _check_stacked_like_empty(state, length)
    if length == 0:
        raise ValueError(f"merge_stacked: no {type(state).__qualname__} to merge (leading axis of length 0)")
    return state._merge_stacked()


@jax.jit
def merge_stacked(states: Any) -> Any:
    """Merge states stacked along a leading axis, as merging them one after the other would.

    ``states`` is any pytree of states whose arrays all have a leading axis of the same length
    (a ``pmap`` output, a ``vmap``/``scan`` over batches, :func:`process_allreduce`'s
    gathered states). Each field folds by its kind: sums, minima and maxima reduce over the
    axis, exact double-float sums by a pairwise tree of TwoSums, buffer rows are placed one
    device after the other, Chan moments pool by the parallel-axis theorem. Compiled with
    ``jax.jit`` (once per structure when called eagerly, inlined inside an enclosing ``jit``).
    """
    return jax.tree.map(_merge_stacked_state, states, is_leaf=_is_state)


# ---------------------------------------------------------------------------------------
# allreduce: inside shard_map / pmap
# ---------------------------------------------------------------------------------------


def allreduce(states: Any, axis_name: AxisName) -> Any:
    """Merge a pytree of states across the devices of ``axis_name``; every device gets the result.

    Call it inside ``jax.shard_map`` or ``jax.pmap`` (``axis_name`` may be a tuple of mesh
    axes). The result equals merging the devices' states one after the other in device
    order, and is typed replicated: ``shard_map(..., out_specs=P())`` works with the default
    checks. Each field uses its kind's collective, cheapest correct first: ``psum`` (sums),
    ``pmin``/``pmax``, ``all_gather`` + exact TwoSum fold (double-float sums), rows placed at
    their device's offset and ``psum``-ed bit-exactly (buffers), one ``psum`` of Chan's pooled
    moments (O(d^2) payload for covariances), recursion (nested states). A state class that
    writes its own ``merge`` is gathered and folded with it, unless it also defines
    ``_allreduce(self, axis_name)``.
    """
    return jax.tree.map(lambda s: _require_state(s)._allreduce(axis_name), states, is_leaf=_is_state)


def register_allreduce(state_cls: type[State]) -> Callable:
    """Use ``rule(state, axis_name) -> merged state`` as the collective of ``state_cls``.

    The rule becomes the class's ``_allreduce`` method; a subclass that writes its own
    ``merge`` does not inherit it (it gets the gathered path of its own merge). Rules must
    return values typed replicated across ``axis_name`` (results of ``psum``/``pmin``/``pmax``
    or ``all_gather(..., to="invarying")``).
    """

    def decorator(rule: Callable) -> Callable:
        previous = state_cls._allreduce  # what subclasses with their own merge keep using

        def _allreduce(self, axis_name):
            if type(self).merge is not state_cls.merge:
                return previous(self, axis_name)
            return rule(self, axis_name)

        state_cls._allreduce = _allreduce
        return rule

    return decorator


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
