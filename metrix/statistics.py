"""Statistics of any array: Average, Sum, Std, Min, Max, Norm, Histogram, Quantiles.

Each reduces over all (unmasked) elements; masks follow boolean indexing and may cover the
leading axes only (``mask[b]`` selects ``values[b, ...]``).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

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
from metrix.core.weights import checked_weights


class Average(Metric):
    """Weighted mean of all unmasked elements: ``sum(w m x) / sum(w m)`` (NaN if empty).

    Counts are exact past 2^31 elements (double-float accumulation). ``weights`` covers the
    leading axes of ``values`` (:mod:`metrix.core.weights`): a negative, NaN or infinite
    unmasked weight is refused eagerly (NaN under jit).
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
        if weights is None:
            return self.State.from_values(values, mask=mask)
        # Negative / NaN / infinite kept weights: refused eagerly, NaN under jit.
        w, keep = checked_weights(weights, jnp.shape(values), mask)
        return self.State.from_values(values, mask=keep, weights=w)


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
    result does not depend on how examples are split. ``ord`` is 1, 2, ``inf`` or ``None``
    (the default: 2, and the Frobenius norm over a pair of axes, as numpy); with an int or
    tuple ``axis``, any order ``numpy.linalg.norm`` takes there.

    Kauldron's ``kd.metrics.Norm`` (``jnp.linalg.norm`` along ``axis``, then averaged):

    * ``tensor`` is another name for ``values``.
    * ``axis``: an int or a tuple of one or two ints: ``norms = jnp.linalg.norm(x, ord,
      axis, keepdims=True)`` of one array (a matrix norm for two axes, as numpy), averaged
      over every other element (``mask`` covers the leading axes of ``norms``). ``None``:
      the norm of the whole input, as the default. ``"auto"`` (default): the whole input,
      or Kauldron's ``-1`` when the metric reads the ``tensor`` key (and not ``per_example``).
    * ``aggregation_type``: ``"average"`` (or ``None``) averages the norms, as above;
      ``"concat"`` accumulates ``sum_i norm_i^p`` (a p-norm, ``p > 0``) over every merged
      norm and computes ``(sum_i norm_i^p)^(1/p)``: the norm of all the merged inputs
      concatenated (of every leaf, in a ``TreeReduce``). 0 when nothing was accumulated.
    * merging states of ``axis=None`` with ``aggregation_type=None`` warns (a ``UserWarning``):
      the merged value is the mean of the norms, not the norm of the concatenation.
    """

    values: Key = REQUIRED
    mask: Key | None = None
    # Kauldron's name for the input.
    tensor: Key | None = None
    key_aliases: ClassVar[dict[str, str]] = {"tensor": "values"}
    # None (numpy's and Kauldron's default) is 2 for vectors and Frobenius for two axes;
    # an explicit 2 over two axes is numpy's spectral norm.
    ord: float | Literal["fro", "nuc"] | None = None
    per_example: bool = False
    axis: int | tuple[int, ...] | None | Literal["auto"] = "auto"
    aggregation_type: Literal["average", "concat"] | None = None

    def __post_init__(self):
        _check_norm_config(self)

    class State(AverageState):
        """``AverageState`` of the norms (``aggregation_type="concat"``: of ``norm^p``)."""

        def _merges_by_fields(self) -> bool:
            return True  # merge below only adds a warning: the fields' collectives still hold

        def merge(self, other):
            parent = self.parent if self.parent is not None else other.parent
            if _averages_whole_norms(parent):
                warnings.warn(
                    "Norm(axis=None): merged states average their norms (of each leaf in a "
                    "TreeReduce, of each step); for the norm of everything concatenated set "
                    "aggregation_type='concat', or set aggregation_type='average' to silence "
                    "this warning.",
                    UserWarning,
                    stacklevel=2,
                )
            return super().merge(other)

        def compute(self):
            parent = self.parent
            if parent is None or parent.aggregation_type != "concat":
                return super().compute()
            # (sum_i norm_i^p)^(1/p): no division, the norm of the concatenation.
            return numerics.df_value(self.total) ** (1.0 / _power(parent.ord))

    def resolved_axis(self):
        """The axis the norm runs along: ``"auto"`` resolved (``-1`` with the ``tensor`` key)."""
        if self.axis != "auto":
            return self.axis
        # Kauldron code names its input `tensor` and means Kauldron's default axis=-1.
        return -1 if self.tensor is not None and not self.per_example else None

    def get_state(self, values: Any, mask: Shaped[Array, "*m"] | None = None) -> State:
        axis = self.resolved_axis()
        if axis is not None:
            norms = _norms_along(values, self.ord, axis)
        elif self.per_example:
            norms = tree_norm(values, _power(self.ord), axis_start=1)
        else:
            if mask is not None:
                raise ValueError(
                    "Norm: a mask selects examples and needs per_example=True or an int axis"
                )
            norms = tree_norm(values, _power(self.ord))
        if self.aggregation_type == "concat":
            norms = norms ** _power(self.ord)
        return self.State.from_values(norms, mask=mask)


def _averages_whole_norms(norm) -> bool:
    """Kauldron's ``axis=None`` without an ``aggregation_type``: merges average whole norms,
    which a TreeReduce user may have meant as the norm of every leaf (hence a warning)."""
    return (
        norm is not None and norm.axis is None and norm.aggregation_type is None
        and not norm.per_example
    )


def _power(ord):
    """The ``p`` of a p-norm: Kauldron's (numpy's) ``None`` and ``"fro"`` are 2."""
    return 2 if ord is None or ord == "fro" else ord


_WHOLE_ORDS = (None, 1, 2, float("inf"))  # tree_norm's
_MATRIX_ORDS = (None, "fro", "nuc", 1, -1, 2, -2, float("inf"), float("-inf"))  # numpy's


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_norm_config(norm: Norm) -> None:
    axis = norm.resolved_axis()
    if axis is not None:
        axes = axis if isinstance(axis, tuple) else (axis,)
        if not (1 <= len(axes) <= 2 and all(isinstance(a, int) and not isinstance(a, bool) for a in axes)):
            raise ValueError(
                f"Norm: axis must be an int, a tuple of one or two ints, None or 'auto', got {axis!r}"
            )
        matrix = len(axes) == 2
    if norm.per_example and norm.axis not in ("auto", None):
        raise ValueError(
            f"Norm: per_example=True and axis={norm.axis!r} both choose the axes of the norm; "
            "set one of them"
        )
    if axis is None and norm.ord not in _WHOLE_ORDS:
        raise ValueError(
            f"Norm: ord must be 1, 2, inf or None for the norm of the whole input, got "
            f"{norm.ord!r} (other orders of numpy's norm need an int or tuple axis)"
        )
    if axis is not None and matrix and norm.ord not in _MATRIX_ORDS:
        raise ValueError(f"Norm: ord={norm.ord!r} is not a matrix norm of numpy's (axis={axis!r}); use one of {_MATRIX_ORDS}")
    if axis is not None and not matrix and not (norm.ord is None or _is_number(norm.ord)):
        raise ValueError(f"Norm: ord={norm.ord!r} is not a vector norm of numpy's (axis={axis!r}); use a number or None")
    if norm.aggregation_type not in (None, "average", "concat"):
        raise ValueError(
            f"Norm: aggregation_type must be 'average', 'concat' or None, got {norm.aggregation_type!r}"
        )
    if norm.aggregation_type == "concat":
        _check_concat(norm.ord, axis is not None and matrix, axis)


def _check_concat(ord, matrix: bool, axis) -> None:
    """``(sum_i norm_i^p)^(1/p)`` is the norm of the concatenation only for p-norms, p > 0."""
    if matrix and ord not in (None, "fro"):
        raise ValueError(
            f"Norm: aggregation_type='concat' with the matrix norm ord={ord!r} over "
            f"axis={axis!r} has no concatenated value; use ord=None (Frobenius)"
        )
    if ord == float("inf"):
        raise ValueError(
            "Norm: aggregation_type='concat' with ord=inf: the norm of the concatenation is "
            "the largest norm, which a sum of powers cannot give; use mx.Max of the norms"
        )
    if not matrix and ord is not None and not ord > 0:
        raise ValueError(
            f"Norm: aggregation_type='concat' needs a p-norm with p > 0, got ord={ord!r}"
        )


def _norms_along(values, ord, axis):
    """``jnp.linalg.norm(values, ord, axis, keepdims=True)`` of one array, in float32 or wider."""
    leaves = jax.tree.leaves(values)
    if len(leaves) != 1 or not hasattr(leaves[0], "ndim") or leaves[0] is not values:
        raise ValueError(
            f"Norm: axis={axis!r} takes one array, got a {type(values).__name__}; wrap the "
            "metric in mx.TreeReduce (or mx.TreeMap) for a pytree, or use axis=None"
        )
    x = jnp.asarray(values)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)


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
