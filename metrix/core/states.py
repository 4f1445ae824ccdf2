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
    EMPTY,
    TruncateKind,
    chan_m2_field,
    chan_mean_field,
    concat_field,
    exact_sum_field,
    last_field,
    max_field,
    min_field,
    static_field,
)
from metrix.core.masks import broadcast_mask
from metrix.core.refuse import metric_name, refuse
from metrix.core.state import AutoState, AutoStateOutput, State, to_host

_HIGHEST = jax.lax.Precision.HIGHEST


def _float(x):
    """Inputs of any dtype in float32 or wider: half floats are never summed in half."""
    return numerics.widen(x)


def _is_flag(x) -> bool:
    return jnp.asarray(x).dtype == jnp.bool_


class SumState(State):
    """Exact running sum of all (unmasked) elements: ``sum_i m_i x_i``."""

    total: jax.Array = exact_sum_field()

    @classmethod
    def from_values(cls, values, *, mask=None, parent: Any = None):
        keep = broadcast_mask(mask, jnp.shape(values))
        if _is_flag(values):  # a count: exact integer reduction
            return cls(parent=parent, total=numerics.count_true(keep & values))
        values = _float(values)
        return cls(parent=parent, total=numerics.df_sum(jnp.where(keep, values, 0)))

    def compute(self):
        return numerics.df_value(self.total)


class AverageState(State):
    """Weighted, masked mean: ``sum_i w_i m_i x_i / sum_i w_i m_i``.

    Masks mean boolean indexing (a masked-out element, even NaN, changes nothing); both sums
    are double-floats, so counts stay exact past 2^24 and 2^31. The mean of no elements is NaN.
    Values of any dtype are summed in float32 or wider (bfloat16/float16 are upcast first);
    in one batch, unweighted counts and sums of booleans are exact integer reductions and
    other sums are chunked double-float sums (:func:`metrix.core.numerics.df_sum`).
    """

    total: jax.Array = exact_sum_field()
    count: jax.Array = exact_sum_field()

    @classmethod
    def from_values(cls, values, *, mask=None, weights=None, parent: Any = None):
        keep = broadcast_mask(mask, jnp.shape(values))
        if weights is None:
            count = numerics.count_true(keep)
            if _is_flag(values):  # fractions of booleans (accuracies): exact counts on top
                total = numerics.count_true(keep & values)
            else:
                total = numerics.df_sum(jnp.where(keep, _float(values), 0))
            return cls(parent=parent, total=total, count=count)
        values = _float(values)
        w = jnp.where(keep, jnp.broadcast_to(_float(weights), values.shape), 0)
        total = numerics.df_sum(jnp.where(keep, values * w, 0))
        return cls(parent=parent, total=total, count=numerics.df_sum(w))

    def compute(self):
        return numerics.df_divide(self.total, self.count)

    @property
    def exact_count(self):
        """The accumulated weight (element count when unweighted) as an exact host number."""
        return numerics.df_to_python(self.count)


class CheckedAverageState(AverageState):
    """An :class:`AverageState` of per-element results that also counts invalid elements.

    The input policy (docs/inputs.md) in one state: an unmasked element flagged ``bad`` (a
    NaN score, a label out of range) raises eagerly in ``from_checked``; under ``jit`` it is
    left out of the mean and counted in ``invalid`` (exact), and ``compute()`` is refused:
    NaN under ``jit``, an error when computed eagerly.
    """

    invalid: jax.Array = exact_sum_field()

    @classmethod
    def from_checked(cls, values, bad, *, message, mask=None, parent: Any = None):
        """``values`` averaged over the unmasked elements that are not ``bad``.

        ``message(count)``: the error text for ``count`` bad elements (raised eagerly).
        """
        keep = broadcast_mask(mask, jnp.shape(values))
        bad = keep & jnp.broadcast_to(bad, keep.shape)
        invalid = numerics.count_true(bad)
        refuse(numerics.df_value(invalid), None, message)
        base = AverageState.from_values(values, mask=keep & ~bad)
        return cls(parent=parent, total=base.total, count=base.count, invalid=invalid)

    def compute(self):
        return refuse(
            numerics.df_value(self.invalid),
            super().compute(),
            lambda _: f"{metric_name(self)}: {numerics.df_to_python(self.invalid)} input "
            "element(s) were invalid (a NaN score or a label out of range; left out of the "
            "counts under jit); the value is refused.",
        )


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
        count = numerics.count_true(keep)
        n = numerics.df_value(count)
        # Two passes inside the batch: mean first, then squared deviations from it.
        mean = jnp.sum(jnp.where(keep, values, 0)) / jnp.maximum(n, 1).astype(values.dtype)
        m2 = jnp.sum(jnp.where(keep, jnp.square(values - mean), 0))
        return cls(parent=parent, count=count, mean=mean, m2=m2)

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
        count = numerics.count_true(keep)
        n = numerics.df_value(count)
        xm = jnp.where(keep[:, None], x, 0)
        mean = jnp.sum(xm, axis=0) / jnp.maximum(n, 1)
        centred = jnp.where(keep[:, None], x - mean, 0)
        m2 = jnp.matmul(centred.T, centred, precision=_HIGHEST)
        return cls(parent=parent, count=count, mean=mean, m2=m2)

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
        # int32 counts in the batch (a float32 scatter-add stops counting at 2^24).
        counts = numerics.bincount(idx, num_bins, where=inside)
        return cls(
            parent=parent,
            counts=numerics.df_from_int(counts),
            below=numerics.count_true(below),
            above=numerics.count_true(above),
            nan=numerics.count_true(keep & is_nan),
        )

    def compute(self):
        return numerics.df_value(self.counts)


class CollectState(BufferState):
    """Rows of one array kept in a fixed-capacity buffer (see :class:`BufferState`)."""

    values: jax.Array = concat_field(item_shape=lambda m: getattr(m, "item_shape", None))

    def compute(self):
        return self.check_capacity(self.values)


class EmptyState(State):
    """A state without data: ``merge`` keeps it, ``compute()`` is ``{}`` (Kauldron's
    ``EmptyState``; the state of :class:`metrix.NoopMetric`)."""

    compile_eager_compute = False

    def compute(self) -> dict:
        return {}


class CollectFirstState(AutoState):
    """The first ``keep_first`` rows (leading axis) of every field, in arrival order.

    Kauldron's ``CollectFirstState``: fields are declared by annotation alone
    (``images: Float["n h w 3"]``) and each is a truncate field cut to ``keep_first``
    rows, so ``merge(a, b)`` is ``concatenate([a, b])[:keep_first]`` per field and a single
    state is cut at ``compute()`` too. ``keep_first`` is static (``EMPTY`` in ``empty()``:
    taken from the other state on merge). ``compute()`` gives the rows as numpy arrays when
    run eagerly (host-side summaries), traced arrays under ``jit``.
    """

    _undeclared_field_kind = TruncateKind(num_field="keep_first")
    compile_eager_compute = False

    keep_first: int = static_field(default=EMPTY)

    def compute(self) -> AutoStateOutput:
        out = AutoState.compute(self)
        return AutoStateOutput({name: to_host(value) for name, value in out.items()})


__all__ = [
    "AverageState",
    "CheckedAverageState",
    "CollectFirstState",
    "CollectState",
    "EmptyState",
    "HistogramState",
    "LastState",
    "MaxState",
    "MeanCovState",
    "MinState",
    "SumState",
    "WelfordState",
    "chan_merge",
]
