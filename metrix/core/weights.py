"""Real-valued sample weights: sklearn's ``sample_weight`` as a metric input.

A metric with a ``weights`` input weighs each unmasked element ``i`` by ``w_i``: a mean
becomes ``sum_i m_i w_i x_i / sum_i m_i w_i``, a count becomes a sum of weights. Masks stay
boolean and select first (a masked-out element, whatever its weight, changes nothing);
weights then weigh what the mask kept. ``weights=None`` is all ones, bit for bit the
unweighted metric.

Shapes: ``weights`` covers the *leading* axes of what it weighs, as a mask does
(``weights[b]`` weighs every element of ``x[b, ...]``; size-1 axes broadcast).

Invalid weights (docs/inputs.md): a negative, NaN or infinite weight on an unmasked element
has no meaning as a sample weight (sklearn's metrics compute with negative weights, which
can put an AUC outside [0, 1]). Eagerly it is refused, naming the metric (added by the
``Metric`` error boundary) and ``weights``; under ``jit`` :func:`checked_weights` returns the
weights with those entries made NaN, so every weighted sum, and the value, is NaN.
Confusion counts leave such an element out and count it in their ``invalid`` field
instead, so their ``compute()`` refuses as for a bad label.
"""

from __future__ import annotations

import jax.numpy as jnp

from metrix.core import numerics
from metrix.core.masks import broadcast_leading, broadcast_mask
from metrix.core.refuse import refuse
from metrix.core.states import AverageState


def broadcast_weights(weights, shape):
    """``weights`` as float32 (or wider) broadcast to ``shape`` over the leading axes.

    ``None`` gives ones. Booleans and integers are read as numbers (``True`` is 1).
    """
    shape = tuple(shape)
    if weights is None:
        return jnp.ones(shape, jnp.float32)
    w = jnp.asarray(weights)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        w = w.astype(jnp.float32)
    return broadcast_leading(numerics.widen(w), shape, "argument 'weights'")


def checked_weights(weights, shape, mask=None):
    """``(w, keep)``: the weights broadcast to ``shape`` and the boolean mask of ``shape``.

    ``w`` is 0 where the mask drops an element (so a masked-out NaN weight changes nothing).
    An unmasked weight that is negative, NaN or infinite raises ``ValueError`` eagerly; under
    a trace it becomes NaN in ``w`` (the weighted value is then NaN).
    """
    keep = broadcast_mask(mask, shape)
    w = broadcast_weights(weights, shape)
    if weights is None:
        return jnp.where(keep, w, 0), keep
    return jnp.where(keep, refuse_bad_weights(w, keep, "elements"), 0), keep


def invalid_weights(w):
    """Where a sample weight is invalid: negative, NaN or infinite."""
    return ~(jnp.isfinite(w) & (w >= 0))


def invalid_weights_message(what: str = "examples"):
    """The error text of :func:`refuse` for ``n`` invalid weights on unmasked ``what``."""
    return (
        lambda n: f"argument 'weights' holds {n} negative, NaN or infinite weight(s) on unmasked "
        f"{what}; sample weights must be finite and >= 0 (mask {what} out instead)."
    )


def refuse_bad_weights(w, keep, what: str = "examples"):
    """``w`` with its kept negative, NaN or infinite weights refused: a ``ValueError`` eagerly,
    NaN under a trace (so the weighted value is NaN)."""
    bad = keep & invalid_weights(w)
    refuse(jnp.sum(bad, dtype=jnp.int32), None, invalid_weights_message(what))
    return jnp.where(bad, jnp.nan, w)


def weighted_checked_state(cls, values, bad, *, message, mask=None, weights=None, parent=None):
    """A :class:`~metrix.core.states.CheckedAverageState` subclass ``cls`` of one batch, weighted.

    ``sum_i w_i v_i / sum_i w_i`` over the unmasked elements that are not ``bad`` (bad
    elements raise eagerly with ``message(count)``; under jit they are left out and counted in
    ``invalid``). ``weights=None`` is ``cls.from_checked`` (exact integer counts).
    """
    if weights is None:
        return cls.from_checked(values, bad, message=message, mask=mask, parent=parent)
    keep = broadcast_mask(mask, jnp.shape(values))
    bad = keep & jnp.broadcast_to(bad, keep.shape)
    invalid = numerics.count_true(bad)
    refuse(numerics.df_value(invalid), None, message)
    w, used = checked_weights(weights, keep.shape, keep & ~bad)
    base = AverageState.from_values(values, mask=used, weights=w)
    return cls(parent=parent, total=base.total, count=base.count, invalid=invalid)


__all__ = [
    "broadcast_weights",
    "checked_weights",
    "invalid_weights",
    "invalid_weights_message",
    "refuse_bad_weights",
    "weighted_checked_state",
]
