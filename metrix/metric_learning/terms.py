"""The state of every metric-learning loss: sums and counts of its loss terms."""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.metric import Metric
from metrix.core.refuse import refuse
from metrix.core.state import State
from metrix.metric_learning.distances import _REDUCTIONS
from metrix.metric_learning.miners import MinedIndices, _check_distance

# ---------------------------------------------------------------------------------------
# The state: sums and counts of loss terms
# ---------------------------------------------------------------------------------------


class LossTermsState(State):
    """Per loss term k: the sum of per-element losses and the count the reduction divides by.

    ``compute()``: ``sum_k total_k / count_k`` (``reduction`` "mean"/"mean_nonzero"; a term
    with count 0 contributes 0) or ``sum_k total_k`` ("sum"). Sums and counts are
    double-floats (exact counts) and stay differentiable.

    Invalid inputs (docs/inputs.md): an unmasked embedding row with a NaN or infinite entry
    raises eagerly in ``from_terms``; under ``jit`` the totals are NaN, so ``compute()`` is
    NaN (pytorch-metric-learning gives NaN too) instead of a plausible hinge value.
    """

    total: jax.Array = exact_sum_field(shape=lambda m: (m.num_terms,))
    count: jax.Array = exact_sum_field(shape=lambda m: (m.num_terms,))

    @classmethod
    def from_terms(cls, totals, counts, parent: Any = None, invalid=None):
        """``invalid``: the number of unmasked rows with non-finite embeddings (refused)."""
        totals = jnp.stack([jnp.asarray(t, jnp.float32) for t in totals])
        counts = jnp.stack([jnp.asarray(c, jnp.float32) for c in counts])
        if invalid is not None:
            refuse(
                invalid,
                None,
                lambda n: f"{n} unmasked embedding row(s) hold NaN or inf; mask them out or "
                "fix the embeddings.",
            )
            totals = jnp.where(invalid > 0, jnp.nan, totals)
        return cls(parent=parent, total=numerics.df_from(totals), count=numerics.df_from(counts))

    def compute(self):
        reduction = getattr(self.parent, "reduction", "mean")
        if reduction == "sum":
            return jnp.sum(numerics.df_value(self.total))
        counted = self.count[..., 0] > 0
        safe = jnp.where(counted[..., None], self.count, jnp.array([1.0, 0.0], jnp.float32))
        means = jnp.where(counted, numerics.df_divide(self.total, safe), 0.0)
        return jnp.sum(means)


def _check_reduction(reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")


def _count(valid, losses, reduction):
    """What the reduction divides by: valid elements, or those with a loss > 0."""
    if reduction == "mean_nonzero":
        valid = valid & (losses > 0)
    return jnp.sum(valid, dtype=jnp.float32)


def _masked_sum(valid, values):
    return jnp.sum(jnp.where(valid, values, 0.0))


class MetricLearningLoss(Metric):
    """Base of the losses on embeddings and labels (keys, reduction, terms)."""

    num_terms: ClassVar[int] = 1

    def __post_init__(self):
        _check_reduction(getattr(self, "reduction", "mean"))
        if hasattr(self, "distance"):
            _check_distance(self.distance)

    State = LossTermsState


def _nonfinite_rows(embeddings, mask):
    """Number of unmasked rows of ``embeddings`` with a NaN or infinite entry (int32)."""
    embeddings = jnp.asarray(embeddings)
    bad = ~jnp.all(jnp.isfinite(embeddings), axis=-1)
    return jnp.sum(_keep(embeddings.shape[0], mask) & bad, dtype=jnp.int32)


def _keep(n, mask):
    return jnp.ones((n,), bool) if mask is None else jnp.asarray(mask).astype(bool).reshape(n)


def _mined_valid(indices: MinedIndices, keep):
    return (
        jnp.asarray(indices.valid, bool)
        & keep[indices.anchors]
        & keep[indices.positives]
        & keep[indices.negatives]
    )


__all__ = [
    "LossTermsState",
]
