"""Statistics of any array: Average, Sum, Std, Min, Max, Norm, Histogram, Quantiles.

Each reduces over all (unmasked) elements; masks follow boolean indexing and may cover the
leading axes only (``mask[b]`` selects ``values[b, ...]``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Num, Shaped

from metrix.core import numerics
from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.states import (
    AverageState,
    HistogramState,
    MaxState,
    MinState,
    SumState,
    WelfordState,
)


class Average(Metric):
    """Weighted mean of all unmasked elements: ``sum(w m x) / sum(w m)`` (NaN if empty).

    Counts are exact past 2^31 elements (double-float accumulation).
    """

    values: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None

    State = AverageState

    def get_state(
        self,
        values: Num[Array, "..."],
        mask: Shaped[Array, "..."] | None = None,
        weights: Num[Array, "..."] | None = None,
    ) -> State:
        return self.State.from_values(values, mask=mask, weights=weights)


class Sum(Metric):
    """Sum of all unmasked elements (double-float accumulation)."""

    values: Key = REQUIRED
    mask: Key | None = None

    State = SumState

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Std(Metric):
    """Standard deviation of all unmasked elements (Welford/Chan, numerically stable).

    ``std = sqrt(M2 / (n - ddof))`` with ``M2 = sum (x - mean)^2``; the state also gives
    ``mean``, ``variance()``, ``sem()`` (flax nnx ``Welford`` uses ddof=0, the default).
    """

    values: Key = REQUIRED
    mask: Key | None = None
    ddof: int = 0

    class State(WelfordState):
        def compute(self):
            return self.std(self.parent.ddof if self.parent is not None else 0)

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Min(Metric):
    """Smallest unmasked element (+inf for none; NaN propagates)."""

    values: Key = REQUIRED
    mask: Key | None = None

    State = MinState

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


class Max(Metric):
    """Largest unmasked element (-inf for none; NaN propagates)."""

    values: Key = REQUIRED
    mask: Key | None = None

    State = MaxState

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, mask=mask)


# ---------------------------------------------------------------------------------------
# Norm of an array or a pytree (gradients, parameters, activations)
# ---------------------------------------------------------------------------------------


def tree_norm(tree, ord: float = 2, axis_start: int = 0):
    """Norm of all the leaves of ``tree`` taken together, over axes ``axis_start`` onwards.

    ``ord=2``: ``sqrt(sum x^2)`` (the global gradient norm of ``optax.global_norm``),
    ``ord=1``: ``sum |x|``, ``ord=inf``: ``max |x|``. With ``axis_start=1`` every leaf's
    leading axis is kept: one norm per example.
    """
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(tree)]
    if not leaves:
        raise ValueError("tree_norm: the tree has no array leaves")

    def reduce(x, fn):
        x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        return fn(x, axis=tuple(range(axis_start, x.ndim)))

    if ord == 2:
        return jnp.sqrt(sum(reduce(x, lambda v, axis: jnp.sum(jnp.square(v), axis=axis)) for x in leaves))
    if ord == 1:
        return sum(reduce(x, lambda v, axis: jnp.sum(jnp.abs(v), axis=axis)) for x in leaves)
    if ord == float("inf"):
        return jnp.max(jnp.stack([reduce(x, lambda v, axis: jnp.max(jnp.abs(v), axis=axis, initial=0)) for x in leaves]), axis=0)
    raise ValueError(f"tree_norm: ord must be 1, 2 or inf, got {ord!r}")


class Norm(Metric):
    """Norm of an array or pytree, averaged: e.g. the global L2 gradient norm averaged over steps.

    ``per_example=False`` (default): each ``get_state`` call contributes one value, the norm
    of all leaves together (``sqrt(sum of squares)`` for ``ord=2``, as ``optax.global_norm``),
    and ``compute()`` is the mean of those values over merged calls (steps, devices).
    ``per_example=True``: every leaf's leading axis indexes examples; each example's norm
    over its remaining axes (all leaves together) is averaged over unmasked examples, so the
    result does not depend on how examples are split. ``ord`` is 1, 2 or ``inf``.
    """

    values: Key = REQUIRED
    mask: Key | None = None
    ord: float = 2
    per_example: bool = False

    def __post_init__(self):
        if self.ord not in (1, 2, float("inf")):
            raise ValueError(f"Norm: ord must be 1, 2 or inf, got {self.ord!r}")

    State = AverageState

    def get_state(self, values: Any, mask: Shaped[Array, "*m"] | None = None) -> State:
        if not self.per_example:
            if mask is not None:
                raise ValueError("Norm: a mask selects examples and needs per_example=True")
            return self.State.from_values(tree_norm(values, self.ord))
        norms = tree_norm(values, self.ord, axis_start=1)
        return self.State.from_values(norms, mask=mask)


# ---------------------------------------------------------------------------------------
# Histogram and approximate quantiles
# ---------------------------------------------------------------------------------------


def _check_bins(num_bins, low, high):
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    if not low < high:
        raise ValueError(f"needs low < high, got low={low!r}, high={high!r}")


class Histogram(Metric):
    """Counts of unmasked values in ``num_bins`` equal-width bins over ``[low, high]``.

    ``compute()`` is the ``(num_bins,)`` counts (exact, double-float); the state also keeps
    the values below ``low``, above ``high`` and NaN (``state.below``/``above``/``nan``).
    ``metric.edges()`` gives the ``num_bins + 1`` bin edges, as ``numpy.histogram``.
    """

    values: Key = REQUIRED
    mask: Key | None = None
    num_bins: int = 10
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        _check_bins(self.num_bins, self.low, self.high)

    State = HistogramState

    def edges(self):
        return jnp.linspace(self.low, self.high, self.num_bins + 1)

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, num_bins=self.num_bins, low=self.low, high=self.high, mask=mask)


def quantiles_from_histogram(state: HistogramState, quantiles, low: float, high: float):
    """Approximate quantiles from histogram counts (NaNs ignored).

    For ``q``, the target rank is ``t = q (n - 1)`` (numpy's ``linear`` convention, 0-based)
    and ``r = floor(t)``. The estimate lies in the bin holding the order statistic
    ``x_(r)``, interpolated linearly inside it, so **for values inside [low, high]**::

        |estimate - x_(r)| <= (high - low) / num_bins

    i.e. within one bin width of numpy's ``quantile(..., method="lower")``, and within one
    bin width of ``method="linear"`` whenever ``x_(r)`` and ``x_(r+1)`` share a bin (dense
    data). Ranks falling among values below ``low`` / above ``high`` give ``low`` / ``high``.
    NaN when there are no values.
    """
    counts = numerics.df_value(state.counts)
    below, above = numerics.df_value(state.below), numerics.df_value(state.above)
    num_bins = counts.shape[-1]
    width = (high - low) / num_bins
    n = below + jnp.sum(counts) + above
    cumulative = below + jnp.cumsum(counts)  # values <= the end of each bin
    q = jnp.asarray(quantiles, jnp.float32)
    t = q * (n - 1)
    r = jnp.floor(t)
    bin_index = jnp.clip(jnp.sum(cumulative[None, :] <= r[:, None], axis=-1), 0, num_bins - 1)
    in_bin = counts[bin_index]
    before = cumulative[bin_index] - in_bin
    fraction = jnp.clip((t - before + 0.5) / jnp.maximum(in_bin, 1), 0.0, 1.0)
    estimate = low + width * (bin_index + fraction)
    estimate = jnp.where(r < below, low, jnp.where(r >= below + jnp.sum(counts), high, estimate))
    return jnp.where(n > 0, estimate, jnp.nan)


class Quantiles(Metric):
    """Approximate quantiles of all unmasked values from a mergeable fixed-bin histogram.

    ``compute()`` returns one value per entry of ``quantiles`` (in [0, 1]). Error bound (see
    :func:`quantiles_from_histogram`): for values inside ``[low, high]`` each estimate is
    within ``(high - low) / num_bins`` of the lower order statistic of numpy's quantile.
    Memory is ``O(num_bins)`` whatever the number of values; merging is exact.
    """

    values: Key = REQUIRED
    mask: Key | None = None
    quantiles: tuple[float, ...] = (0.5,)
    num_bins: int = 1024
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        _check_bins(self.num_bins, self.low, self.high)
        if not all(0.0 <= q <= 1.0 for q in self.quantiles):
            raise ValueError(f"Quantiles: quantiles must lie in [0, 1], got {self.quantiles!r}")

    class State(HistogramState):
        def compute(self):
            p = self.parent
            return quantiles_from_histogram(self, p.quantiles, p.low, p.high)

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(values, num_bins=self.num_bins, low=self.low, high=self.high, mask=mask)


__all__ = [
    "Average",
    "Histogram",
    "Max",
    "Min",
    "Norm",
    "Quantiles",
    "Std",
    "Sum",
    "quantiles_from_histogram",
    "tree_norm",
]
