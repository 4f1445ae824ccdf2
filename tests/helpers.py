"""Shared test plumbing: accumulate a metric's state over several batches, merged from empty.

Reference tests check that a metric fed data in uneven batches, merged, equals a reference
computed on all the data at once. :func:`merged` does the feeding::

    merged(metric, splits=(0, 37, 160, 301), jit=True, preds=p, targets=t, mask=m)

splits ``p``, ``t`` and ``m`` along axis 0 into ``[0:37]``, ``[37:160]`` and ``[160:301]``,
takes one state per batch (``jax.jit(metric.get_state)`` when ``jit``), merges them into
``metric.empty()`` in order and returns the computed value (a jitted compute when ``jit``).
:func:`accumulate` is the same and returns the merged state instead.

Inputs split along axis 0 are positional (``*args``) or keyword (``**inputs``); an input
may be ``None`` (passed as ``None`` to every batch) or a pytree (every leaf is split).
``shared`` holds keyword inputs passed whole to every batch (e.g. trainable parameters).
Instead of ``splits``, ``batches`` gives the batches themselves: each a dict of keyword
inputs or a tuple of positional ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax

Batch = tuple[tuple[Any, ...], dict[str, Any]]  # (positional inputs, keyword inputs)


def _cut(value: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of every leaf of ``value`` (``None`` stays ``None``)."""
    return jax.tree.map(lambda leaf: leaf[start:stop], value)


def split(splits: Sequence[int], *args: Any, **inputs: Any) -> list[Batch]:
    """One ``(args, inputs)`` batch per pair of consecutive cut points in ``splits``."""
    return [
        (
            tuple(_cut(a, start, stop) for a in args),
            {k: _cut(v, start, stop) for k, v in inputs.items()},
        )
        for start, stop in itertools.pairwise(splits)
    ]


def _as_batch(batch: Mapping[str, Any] | tuple[Any, ...]) -> Batch:
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, tuple):
        return batch, {}
    raise TypeError(
        f"a batch is a dict of keyword inputs or a tuple of positional inputs, got {type(batch)}"
    )


def accumulate(
    metric: Any,
    *args: Any,
    splits: Sequence[int] | None = None,
    batches: Iterable[Mapping[str, Any] | tuple[Any, ...]] | None = None,
    jit: bool = False,
    jit_merge: bool = False,
    shared: Mapping[str, Any] | None = None,
    **inputs: Any,
) -> Any:
    """The state of ``metric`` over the batches, merged in order into ``metric.empty()``.

    The batches are ``args`` / ``inputs`` cut along axis 0 at ``splits``, or ``batches``
    (then no ``args`` / ``inputs``). ``jit`` jits ``get_state``; ``jit_merge`` jits merge.
    """
    if (splits is None) == (batches is None):
        raise TypeError("give exactly one of splits= and batches=")
    if batches is None:
        calls = split(splits, *args, **inputs)
    elif args or inputs:
        raise TypeError("with batches=, the inputs are in the batches")
    else:
        calls = [_as_batch(b) for b in batches]
    get_state = jax.jit(metric.get_state) if jit else metric.get_state
    merge = jax.jit(lambda a, b: a.merge(b)) if jit_merge else (lambda a, b: a.merge(b))
    shared = dict(shared or {})
    state = metric.empty()
    for batch_args, batch_inputs in calls:
        state = merge(state, get_state(*batch_args, **batch_inputs, **shared))
    return state


def merged(
    metric: Any,
    *args: Any,
    splits: Sequence[int] | None = None,
    batches: Iterable[Mapping[str, Any] | tuple[Any, ...]] | None = None,
    jit: bool = False,
    shared: Mapping[str, Any] | None = None,
    **inputs: Any,
) -> Any:
    """The value of :func:`accumulate`'s state: ``jax.jit``-ed compute when ``jit``, else eager.

    ``jit`` also jits ``get_state`` (merges stay eager).
    """
    state = accumulate(
        metric, *args, splits=splits, batches=batches, jit=jit, shared=shared, **inputs
    )
    # A fresh function per call (as get_state's bound method): no compile cache across calls.
    return jax.jit(lambda s: s.compute())(state) if jit else state.compute()
