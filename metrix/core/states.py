"""The standard states every metric reuses.

Each is a short :class:`~metrix.core.state.State` subclass: field declarations, a ``from_*``
constructor for one batch, and ``compute``. Metrics subclass them (``class State(AverageState)``)
to get a readable name such as ``Accuracy.State``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import (
    chan_m2_field,
    chan_mean_field,
    concat_field,
    exact_sum_field,
    last_field,
    max_field,
    min_field,
)
from metrix.core.masks import broadcast_mask
from metrix.core.state import State

_HIGHEST = jax.lax.Precision.HIGHEST


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


class SumState(State):
    """Exact running sum of all (unmasked) elements: ``sum_i m_i x_i``."""

    total: jax.Array = exact_sum_field()

    @classmethod
    def from_values(cls, values, *, mask=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape)
        total = jnp.sum(jnp.where(keep, values, 0))
        return cls(parent=parent, total=numerics.df_from(total))

    def compute(self):
        return numerics.df_value(self.total)


class AverageState(State):
    """Weighted, masked mean: ``sum_i w_i m_i x_i / sum_i w_i m_i``.

    Masks mean boolean indexing (a masked-out element, even NaN, changes nothing); both sums
    are double-floats, so counts stay exact past 2^24 and 2^31. The mean of no elements is NaN.
    """

    total: jax.Array = exact_sum_field()
    count: jax.Array = exact_sum_field()

    @classmethod
    def from_values(cls, values, *, mask=None, weights=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape)
        if weights is None:
            w = keep.astype(values.dtype)
        else:
            w = jnp.where(keep, jnp.broadcast_to(_float(weights), values.shape), 0)
        total = jnp.sum(jnp.where(keep, values * w, 0))
        count = jnp.sum(w)
        return cls(parent=parent, total=numerics.df_from(total), count=numerics.df_from(count))

    def compute(self):
        return numerics.df_divide(self.total, self.count)

    @property
    def exact_count(self):
        """The accumulated weight (element count when unweighted) as an exact host number."""
        return numerics.df_to_python(self.count)


def chan_merge(count_a, mean_a, m2_a, count_b, mean_b, m2_b, outer=False):
    """Chan et al.'s parallel update of (count, mean, M2); counts are double-floats.

    ``delta = mean_b - mean_a``, ``mean = mean_a + delta n_b / n``,
    ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n``. Never forms E[x^2] - E[x]^2.
    """
    n_a, n_b = numerics.df_value(count_a), numerics.df_value(count_b)
    n = n_a + n_b
    frac_b = jnp.where(n > 0, n_b / jnp.where(n > 0, n, 1), 0)
    delta = mean_b - mean_a
    mean = mean_a + delta * frac_b
    scale = n_a * frac_b
    if outer:
        correction = jnp.outer(delta, delta) * scale
    else:
        correction = delta * delta * scale
    return numerics.df_add(count_a, count_b), mean, m2_a + m2_b + correction


class WelfordState(State):
    """Count, mean and M2 = sum (x - mean)^2 of all unmasked elements (Chan-merged).

    ``variance = M2 / (n - ddof)``, ``std = sqrt(variance)``, ``sem = std / sqrt(n)``
    (population statistics, ``ddof=0``, as flax nnx ``Welford``).
    """

    count: jax.Array = exact_sum_field()
    mean: jax.Array = chan_mean_field()
    m2: jax.Array = chan_m2_field()

    @classmethod
    def from_values(cls, values, *, mask=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape)
        n = jnp.sum(keep, dtype=jnp.float32)
        # Two passes inside the batch: mean first, then squared deviations from it.
        mean = jnp.sum(jnp.where(keep, values, 0)) / jnp.maximum(n, 1)
        m2 = jnp.sum(jnp.where(keep, jnp.square(values - mean), 0))
        return cls(parent=parent, count=numerics.df_from(n), mean=mean, m2=m2)

    def variance(self, ddof: int = 0):
        n = numerics.df_value(self.count)
        return self.m2 / (n - ddof)

    def std(self, ddof: int = 0):
        return jnp.sqrt(self.variance(ddof))

    def sem(self, ddof: int = 0):
        return self.std(ddof) / jnp.sqrt(numerics.df_value(self.count))

    def compute(self):
        return {"mean": self.mean, "std": self.std(), "variance": self.variance(), "sem": self.sem()}


class MeanCovState(State):
    """Vector mean and scatter matrix M2 = sum (x - mean)(x - mean)^T over rows (Chan-merged).

    O(d^2) memory whatever the number of rows; ``covariance = M2 / (n - 1)``. The scatter
    product uses ``precision=HIGHEST`` (TF32 on GPUs would ruin FID).
    """

    count: jax.Array = exact_sum_field()
    mean: jax.Array = chan_mean_field(shape=lambda m: (m.num_features,), covariance=True)
    m2: jax.Array = chan_m2_field(shape=lambda m: (m.num_features, m.num_features), covariance=True)

    @classmethod
    def from_rows(cls, x, *, mask=None, parent: Any = None):
        x = _float(x)
        if x.ndim != 2:
            raise ValueError(f"MeanCovState.from_rows expects (N, d) rows, got shape {x.shape}")
        keep = jnp.ones(x.shape[:1], bool) if mask is None else jnp.asarray(mask, bool).reshape(x.shape[:1])
        n = jnp.sum(keep, dtype=jnp.float32)
        xm = jnp.where(keep[:, None], x, 0)
        mean = jnp.sum(xm, axis=0) / jnp.maximum(n, 1)
        centred = jnp.where(keep[:, None], x - mean, 0)
        m2 = jnp.matmul(centred.T, centred, precision=_HIGHEST)
        return cls(parent=parent, count=numerics.df_from(n), mean=mean, m2=m2)

    def covariance(self, ddof: int = 1):
        return self.m2 / (numerics.df_value(self.count) - ddof)

    def compute(self):
        return {"mean": self.mean, "covariance": self.covariance()}


class MinState(State):
    """Smallest unmasked element (+inf when there is none; NaN propagates)."""

    value: jax.Array = min_field()

    @classmethod
    def from_values(cls, values, *, mask=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape)
        return cls(parent=parent, value=jnp.min(jnp.where(keep, values, jnp.inf), initial=jnp.inf))

    def compute(self):
        return self.value


class MaxState(State):
    """Largest unmasked element (-inf when there is none; NaN propagates)."""

    value: jax.Array = max_field()

    @classmethod
    def from_values(cls, values, *, mask=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape)
        return cls(parent=parent, value=jnp.max(jnp.where(keep, values, -jnp.inf), initial=-jnp.inf))

    def compute(self):
        return self.value


class LastState(State):
    """The most recently merged value: ``merge(a, b)`` is b unless b is empty."""

    value: jax.Array = last_field(shape=None)
    seen: jax.Array = max_field(dtype=jnp.bool_)

    @classmethod
    def from_value(cls, value, *, parent: Any = None):
        return cls(parent=parent, value=jnp.asarray(value), seen=jnp.asarray(True))

    def compute(self):
        return self.value


class HistogramState(State):
    """Counts of values in ``num_bins`` equal-width bins over ``[low, high)`` (exact counts).

    Values below ``low`` / at or above ``high`` / NaN are counted apart (``below``,
    ``above``, ``nan``) so nothing is lost; ``high`` itself falls in the last bin, as numpy.
    """

    counts: jax.Array = exact_sum_field(shape=lambda m: (m.num_bins,))
    below: jax.Array = exact_sum_field()
    above: jax.Array = exact_sum_field()
    nan: jax.Array = exact_sum_field()

    @classmethod
    def from_values(cls, values, *, num_bins: int, low: float, high: float, mask=None, parent: Any = None):
        values = _float(values)
        keep = broadcast_mask(mask, values.shape).reshape(-1)
        v = values.reshape(-1)
        is_nan = jnp.isnan(v)
        below = keep & (v < low)
        above = keep & (v > high)
        inside = keep & ~is_nan & ~below & ~above
        width = (high - low) / num_bins
        idx = jnp.clip(jnp.floor((v - low) / width).astype(jnp.int32), 0, num_bins - 1)
        counts = jnp.zeros((num_bins,), jnp.float32).at[jnp.where(inside, idx, num_bins)].add(1.0, mode="drop")
        return cls(
            parent=parent,
            counts=numerics.df_from(counts),
            below=numerics.df_from(jnp.sum(below, dtype=jnp.float32)),
            above=numerics.df_from(jnp.sum(above, dtype=jnp.float32)),
            nan=numerics.df_from(jnp.sum(keep & is_nan, dtype=jnp.float32)),
        )

    def compute(self):
        return numerics.df_value(self.counts)


class CollectState(BufferState):
    """Rows of one array kept in a fixed-capacity buffer (see :class:`BufferState`)."""

    values: jax.Array = concat_field(item_shape=lambda m: getattr(m, "item_shape", None))

    def compute(self):
        return self.check_capacity(self.values)


__all__ = [
    "SumState",
    "AverageState",
    "WelfordState",
    "MeanCovState",
    "MinState",
    "MaxState",
    "LastState",
    "HistogramState",
    "CollectState",
    "chan_merge",
]
