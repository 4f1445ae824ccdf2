"""Regression metrics: errors, explained variance, correlations.

Inputs are ``preds`` and ``targets`` of equal shape; ``mask`` covers their leading axes
(boolean-indexing semantics: a masked-out element, even NaN, changes nothing). ``weights``
(optional, real-valued, sklearn's ``sample_weight``) covers the leading axes too and weighs
what the mask kept (:mod:`metrix.core.weights`): ``MSE``, ``RMSE``, ``MAE``, ``MAPE``,
``SMAPE`` and the moment metrics take it. A negative, NaN or infinite unmasked weight is
refused eagerly (NaN under jit).

* Element-wise errors (``MSE``, ``RMSE``, ``MAE``, ``MAPE``, ``SMAPE``, ``MaxError``) reduce
  over every unmasked element with exact (double-float) sums.
* Moment-based metrics (``R2Score``, ``ExplainedVariance``, ``PearsonCorrCoef``,
  ``ConcordanceCorrCoef``) keep a :class:`CoMomentState`: count, means and the centred
  co-moment matrix of ``(preds, targets, targets - preds)``, merged with Chan's parallel
  formulas. They never form ``E[x^2] - E[x]^2``, so a label offset of 1e4 costs nothing.
  With ``num_outputs=None`` all elements are one variable; with ``num_outputs=d`` the inputs
  are ``(*b, d)`` and every output gets its own statistics.
* ``SpearmanCorrCoef`` is exact: it keeps the pairs in a fixed-capacity buffer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import chan_m2_field, chan_mean_field, concat_field, exact_sum_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import AverageState, MaxState
from metrix.core.weights import checked_weights

_HIGHEST = jax.lax.Precision.HIGHEST
# torchmetrics' floor for |target| in MAPE and |target| + |pred| in SMAPE (float32-safe).
_PERCENT_EPS = 1.17e-6
_MULTIOUTPUT = ("uniform_average", "raw_values", "variance_weighted")


def _float(x):
    """float32 or wider: errors of half-precision inputs are formed in float32."""
    return numerics.widen(x)


# ---------------------------------------------------------------------------------------
# Element-wise errors (pure functions)
# ---------------------------------------------------------------------------------------


def squared_error(preds, targets):
    """``(targets - preds)^2`` element-wise."""
    return jnp.square(_float(targets) - _float(preds))


def absolute_error(preds, targets):
    """``|targets - preds|`` element-wise."""
    return jnp.abs(_float(targets) - _float(preds))


def absolute_percentage_error(preds, targets, eps: float = _PERCENT_EPS):
    """``|targets - preds| / max(|targets|, eps)`` element-wise (a fraction, not percent)."""
    targets = _float(targets)
    return absolute_error(preds, targets) / jnp.maximum(jnp.abs(targets), eps)


def symmetric_absolute_percentage_error(preds, targets, eps: float = _PERCENT_EPS):
    """``2 |targets - preds| / max(|targets| + |preds|, eps)`` element-wise (in [0, 2])."""
    preds, targets = _float(preds), _float(targets)
    denom = jnp.maximum(jnp.abs(targets) + jnp.abs(preds), eps)
    return 2.0 * absolute_error(preds, targets) / denom


def _check_same_shape(preds, targets):
    if preds.shape != targets.shape:
        raise ValueError(f"preds {preds.shape} and targets {targets.shape} must have one shape")


class _ElementwiseError(Metric):
    """Mean of an element-wise error over all unmasked elements (exact sums; NaN if none).

    With ``weights``: ``sum_i w_i e_i / sum_i w_i`` over the unmasked elements (sklearn's
    ``sample_weight``); all-zero weights give NaN (sklearn raises there).
    """

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None

    State = AverageState

    def errors(self, preds, targets):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_state(
        self,
        preds: Float[Array, "*b"],
        targets: Float[Array, "*b"],
        mask: Shaped[Array, "*m"] | None = None,
        weights: Shaped[Array, "*w"] | None = None,
    ) -> State:
        _check_same_shape(preds, targets)
        errors = self.errors(preds, targets)
        if weights is None:  # the unweighted path keeps its exact integer counts
            return self.State.from_values(errors, mask=mask)
        w, keep = checked_weights(weights, errors.shape, mask)
        return self.State.from_values(errors, mask=keep, weights=w)


class MSE(_ElementwiseError):
    """Mean squared error: ``mean((targets - preds)^2)`` over unmasked elements."""

    def errors(self, preds, targets):
        return squared_error(preds, targets)


class RMSE(_ElementwiseError):
    """Root mean squared error: ``sqrt(mean((targets - preds)^2))`` (over all batches merged;
    weighted: ``sqrt(sum w (t - p)^2 / sum w)``, sklearn's ``root_mean_squared_error``)."""

    class State(AverageState):
        def compute(self):
            return jnp.sqrt(super().compute())

    def errors(self, preds, targets):
        return squared_error(preds, targets)


class MAE(_ElementwiseError):
    """Mean absolute error: ``mean(|targets - preds|)``."""

    def errors(self, preds, targets):
        return absolute_error(preds, targets)


class MAPE(_ElementwiseError):
    """Mean absolute percentage error: ``mean(|t - p| / max(|t|, eps))`` as a fraction.

    ``eps = 1.17e-6`` (torchmetrics'; sklearn uses float64's eps, which float32 cannot use),
    so a zero target gives a huge but finite error, as in both.
    """

    eps: float = _PERCENT_EPS

    def errors(self, preds, targets):
        return absolute_percentage_error(preds, targets, self.eps)


class SMAPE(_ElementwiseError):
    """Symmetric MAPE: ``mean(2 |t - p| / max(|t| + |p|, eps))`` (in [0, 2], torchmetrics')."""

    eps: float = _PERCENT_EPS

    def errors(self, preds, targets):
        return symmetric_absolute_percentage_error(preds, targets, self.eps)


class MaxError(Metric):
    """Largest absolute error ``max |targets - preds|`` (-inf for no elements; NaN propagates)."""

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None

    State = MaxState

    def get_state(
        self,
        preds: Float[Array, "*b"],
        targets: Float[Array, "*b"],
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        _check_same_shape(preds, targets)
        return self.State.from_values(absolute_error(preds, targets), mask=mask)


class CosineSimilarity(Metric):
    """Mean over unmasked rows of ``<p, t> / max(|p| |t|, eps)`` along the last axis.

    Inputs are ``(*b, d)``; a zero vector has similarity 0. The mean of no rows is NaN.
    """

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None
    eps: float = 1e-8

    State = AverageState

    def get_state(
        self,
        preds: Float[Array, "*b d"],
        targets: Float[Array, "*b d"],
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        return self.State.from_values(cosine_similarity(preds, targets, self.eps), mask=mask)


def cosine_similarity(preds, targets, eps: float = 1e-8):
    """``<p, t> / max(|p| |t|, eps)`` along the last axis."""
    preds, targets = _float(preds), _float(targets)
    dot = jnp.sum(preds * targets, axis=-1)
    norms = jnp.linalg.norm(preds, axis=-1) * jnp.linalg.norm(targets, axis=-1)
    return dot / jnp.maximum(norms, eps)


# ---------------------------------------------------------------------------------------
# Co-moments: count, means and centred co-moments of (preds, targets, targets - preds)
# ---------------------------------------------------------------------------------------

PRED, TARGET, RESIDUAL = 0, 1, 2


def _output_shape(metric) -> tuple[int, ...]:
    num_outputs = getattr(metric, "num_outputs", None)
    return () if num_outputs is None else (int(num_outputs),)


def _as_rows(preds, targets, mask, num_outputs, weights=None):
    """Flatten to ``(N,)`` (one variable) or ``(N, d)`` rows, with the mask as rows too
    (and, given ``weights``, the checked weights as rows: ``(p, t, keep, w)``).

    Rows are float32 (or wider) whatever the input dtype, so states have the dtypes of
    ``empty()`` (no retrace, no merge mismatch for bfloat16 inputs).
    """
    preds, targets = _float(preds), _float(targets)
    dtype = jnp.promote_types(jnp.promote_types(preds.dtype, targets.dtype), jnp.float32)
    preds, targets = preds.astype(dtype), targets.astype(dtype)
    _check_same_shape(preds, targets)
    if weights is None:
        # no mask: ``keep`` is None (every row; no selects on the hot path)
        keep, w = (None if mask is None else broadcast_mask(mask, preds.shape)), None
    else:
        w, keep = checked_weights(weights, preds.shape, mask)
    rows = (-1,) if num_outputs is None else (-1, num_outputs)
    if num_outputs is None:
        return preds.reshape(-1), targets.reshape(-1), _rows(keep, rows), _rows(w, rows)
    if preds.ndim < 1 or preds.shape[-1] != num_outputs:
        raise ValueError(
            f"num_outputs={num_outputs} needs inputs of shape (*b, {num_outputs}), got {preds.shape}"
        )
    return preds.reshape(rows), targets.reshape(rows), _rows(keep, rows), _rows(w, rows)


def _rows(x, rows):
    return None if x is None else x.reshape(rows)


class CoMomentState(State):
    """Weight, means and co-moment matrix of ``z = (preds, targets, targets - preds)``.

    ``count = sum w`` (the number of rows when unweighted), ``mean[..., i] = sum w z_i / sum w``
    and ``m2[..., i, j] = sum w (z_i - mean_i)(z_j - mean_j)``, per output (shape ``()`` or
    ``(d,)`` before the trailing variable axes); ``samples`` counts the rows whatever their
    weight (sklearn's ``n_samples``). Merged with Chan's formulas, weights as counts:
    ``delta = mean_b - mean_a``, ``M2 = M2_a + M2_b + delta delta^T n_a n_b / n``.
    The residual is tracked as its own variable so ``sum w (t - p)^2 = M2_rr + n mean_r^2``
    never cancels, however close the predictions are.
    """

    count: jax.Array = exact_sum_field(shape=_output_shape)
    mean: jax.Array = chan_mean_field(shape=lambda m: (*_output_shape(m), 3), covariance=True)
    m2: jax.Array = chan_m2_field(shape=lambda m: (*_output_shape(m), 3, 3), covariance=True)
    samples: jax.Array = exact_sum_field(shape=_output_shape)

    @classmethod
    def from_rows(cls, preds, targets, keep=None, weights=None, *, parent: Any = None):
        """From ``(N, *out)`` rows, a boolean ``keep`` of the same shape (``None``: every row)
        and optional ``weights`` (0 where not kept; see
        :func:`metrix.core.weights.checked_weights`).

        Each of the three variables is reduced on its own (six products for the symmetric
        co-moment matrix) rather than as an ``(N, 3)`` stack through a matrix product: plain
        fused reductions, ~3x faster on CPU and more accurate (a float32 dot over 10^5 rows
        rounded to 2e-5 relative; these sums to 2e-7).
        """
        def kept(x):
            return x if keep is None else jnp.where(keep, x, 0)

        if keep is None:  # unmasked: no selects, an exact static count
            samples = numerics.df_from_int(jnp.full(preds.shape[1:], preds.shape[0], jnp.int32))
        else:
            samples = numerics.count_true(keep, axis=0)  # exact past 2^24 rows in one batch
        w = None if weights is None else kept(weights).astype(preds.dtype)
        count = samples if w is None else numerics.df_from(jnp.sum(w, axis=0))
        n = numerics.df_value(count)
        safe_n = jnp.where(n > 0, n, 1)

        # Two passes: the (weighted) means, then (weighted) products of deviations from them.
        variables = (preds, targets, targets - preds)
        means = [jnp.sum(kept(z if w is None else w * z), axis=0) / safe_n for z in variables]
        centred = [kept(z - m) for z, m in zip(variables, means)]
        left = centred if w is None else [w * c for c in centred]
        m2 = [[None] * 3 for _ in range(3)]
        for i in range(3):
            for j in range(i, 3):
                m2[i][j] = m2[j][i] = jnp.sum(left[i] * centred[j], axis=0)
        mean = jnp.stack(means, axis=-1)
        m2 = jnp.stack([jnp.stack(row, axis=-1) for row in m2], axis=-2)
        return cls(parent=parent, count=count, mean=mean, m2=m2, samples=samples)

    # -- derived statistics (per output) ----------------------------------------------
    @property
    def n(self):
        """The total weight (the number of rows when unweighted)."""
        return numerics.df_value(self.count)

    @property
    def num_samples(self):
        """The number of rows, whatever their weights."""
        return numerics.df_value(self.samples)

    def sum_squared_error(self):
        """``sum w (t - p)^2 = M2_rr + n mean_r^2``."""
        return self.m2[..., RESIDUAL, RESIDUAL] + self.n * jnp.square(self.mean[..., RESIDUAL])

    def total_sum_of_squares(self):
        """``sum w (t - mean_t)^2``."""
        return self.m2[..., TARGET, TARGET]

    def compute(self):
        return {"count": self.n, "mean": self.mean, "m2": self.m2, "samples": self.num_samples}


def _score_from_ratio(numerator, denominator):
    """``1 - num / den`` with sklearn's ``force_finite``: den 0 gives 1 if num is 0, else 0.

    NaN in either (a NaN input or weight) stays NaN: comparisons with NaN are false, so the
    ``force_finite`` branch would otherwise turn it into a plausible 1.0.
    """
    safe = jnp.where(denominator > 0, denominator, 1)
    score = jnp.where(
        denominator > 0, 1 - numerator / safe, jnp.where(numerator > 0, 0.0, 1.0)
    )
    return jnp.where(jnp.isnan(numerator) | jnp.isnan(denominator), jnp.nan, score)


def _average_outputs(raw, weights, multioutput):
    if multioutput == "raw_values" or raw.ndim == 0:
        return raw
    if multioutput == "uniform_average":
        return jnp.mean(raw, axis=-1)
    total = jnp.sum(weights, axis=-1)
    # sklearn: all-constant targets fall back to the uniform average.
    weighted = jnp.sum(raw * weights, axis=-1) / jnp.where(total > 0, total, 1)
    return jnp.where(total > 0, weighted, jnp.mean(raw, axis=-1))


def r2_from_moments(state: CoMomentState, multioutput: str = "uniform_average", adjusted: int = 0):
    """Coefficient of determination ``R2 = 1 - SSE / SST`` from co-moments.

    ``SSE = sum (t - p)^2``, ``SST = sum (t - mean_t)^2``. A constant target (SST = 0) gives
    1 when the predictions are exact and 0 otherwise (sklearn's ``force_finite``).
    ``multioutput``: ``"uniform_average"`` (mean over outputs), ``"raw_values"`` or
    ``"variance_weighted"`` (weights SST). ``adjusted = k > 0`` applies
    ``1 - (1 - R2)(n - 1) / (n - k - 1)`` with ``n`` the number of samples (NaN if n <= k + 1).
    Fewer than two samples give NaN. With weights every sum is weighted (sklearn's
    ``sample_weight``); ``n`` above is still the number of samples.
    """
    raw = _score_from_ratio(state.sum_squared_error(), state.total_sum_of_squares())
    # undefined below two samples (sklearn: NaN), counted as rows whatever their weights
    raw = jnp.where(state.num_samples >= 2, raw, jnp.nan)
    r2 = _average_outputs(raw, state.total_sum_of_squares(), multioutput)
    if adjusted:
        n = jnp.max(state.num_samples)
        dof = n - adjusted - 1
        r2 = jnp.where(dof > 0, 1 - (1 - r2) * (n - 1) / jnp.where(dof > 0, dof, 1), jnp.nan)
    return r2


def explained_variance_from_moments(state: CoMomentState, multioutput: str = "uniform_average"):
    """``1 - Var(t - p) / Var(t)`` from co-moments (constant targets and < 2 samples as in
    :func:`r2_from_moments`)."""
    raw = _score_from_ratio(state.m2[..., RESIDUAL, RESIDUAL], state.total_sum_of_squares())
    raw = jnp.where(state.num_samples >= 2, raw, jnp.nan)
    return _average_outputs(raw, state.total_sum_of_squares(), multioutput)


def pearson_from_moments(state: CoMomentState):
    """``r = C_pt / sqrt(M2_pp M2_tt)``, clipped to [-1, 1]; NaN for a constant input."""
    c = state.m2[..., PRED, TARGET]
    denom = jnp.sqrt(state.m2[..., PRED, PRED] * state.m2[..., TARGET, TARGET])
    r = jnp.clip(c / jnp.where(denom > 0, denom, 1), -1.0, 1.0)
    return jnp.where(denom > 0, r, jnp.nan)


def concordance_from_moments(state: CoMomentState, ddof: int = 0):
    """Lin's ``ccc = 2 s_pt / (s_p^2 + s_t^2 + (mean_p - mean_t)^2)`` with moments over ``n - ddof``.

    ``ddof=0`` is Lin's definition; torchmetrics uses ``ddof=1``. NaN for no data.
    """
    denom_n = state.n - ddof
    cov = state.m2[..., PRED, TARGET] / denom_n
    var_p = state.m2[..., PRED, PRED] / denom_n
    var_t = state.m2[..., TARGET, TARGET] / denom_n
    gap = state.mean[..., PRED] - state.mean[..., TARGET]
    return 2 * cov / (var_p + var_t + jnp.square(gap))


class _MomentMetric(Metric):
    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None
    num_outputs: int | None = None

    State = CoMomentState

    def get_state(
        self,
        preds: Float[Array, "*b"],
        targets: Float[Array, "*b"],
        mask: Shaped[Array, "*m"] | None = None,
        weights: Shaped[Array, "*w"] | None = None,
    ) -> State:
        p, t, keep, w = _as_rows(preds, targets, mask, self.num_outputs, weights)
        return self.State.from_rows(p, t, keep, w)


def _check_multioutput(multioutput):
    if multioutput not in _MULTIOUTPUT:
        raise ValueError(f"multioutput must be one of {_MULTIOUTPUT}, got {multioutput!r}")


class R2Score(_MomentMetric):
    """Coefficient of determination ``1 - sum (t - p)^2 / sum (t - mean_t)^2`` (see
    :func:`r2_from_moments`; ``multioutput`` and ``adjusted`` as in sklearn / torchmetrics).

    Chan-merged co-moments keep it exact at any label offset.
    """

    multioutput: str = "uniform_average"
    adjusted: int = 0

    def __post_init__(self):
        _check_multioutput(self.multioutput)
        if self.adjusted < 0:
            raise ValueError(f"R2Score: adjusted must be >= 0, got {self.adjusted}")

    class State(CoMomentState):
        def compute(self):
            return r2_from_moments(self, self.parent.multioutput, self.parent.adjusted)


class ExplainedVariance(_MomentMetric):
    """``1 - Var(t - p) / Var(t)`` (see :func:`explained_variance_from_moments`)."""

    multioutput: str = "uniform_average"

    def __post_init__(self):
        _check_multioutput(self.multioutput)

    class State(CoMomentState):
        def compute(self):
            return explained_variance_from_moments(self, self.parent.multioutput)


class PearsonCorrCoef(_MomentMetric):
    """Pearson's ``r`` per output (see :func:`pearson_from_moments`; NaN for constant inputs)."""

    class State(CoMomentState):
        def compute(self):
            return pearson_from_moments(self)


class ConcordanceCorrCoef(_MomentMetric):
    """Lin's concordance correlation per output (see :func:`concordance_from_moments`)."""

    ddof: int = 0

    class State(CoMomentState):
        def compute(self):
            return concordance_from_moments(self, self.parent.ddof)


# ---------------------------------------------------------------------------------------
# Spearman: exact ranks of the buffered pairs
# ---------------------------------------------------------------------------------------


def average_ranks(x, valid):
    """1-based ranks of ``x[valid]`` with ties averaged (scipy's ``rankdata``), jit-safe.

    Entries outside ``valid`` get meaningless ranks. Sort once; each value's rank is the
    mean of the first and last positions of its tie group: ``(left + 1 + right) / 2``.
    """
    count = jnp.sum(valid, dtype=jnp.int32)
    ordered = jnp.sort(jnp.where(valid, x, jnp.inf))
    left = jnp.searchsorted(ordered, x, side="left")
    # Padding sits at +inf after every valid value; clip so valid +infs do not tie with it.
    right = jnp.minimum(jnp.searchsorted(ordered, x, side="right"), count)
    return (left + 1 + right).astype(jnp.float32) / 2


def _masked_pearson(x, y, valid):
    n = jnp.sum(valid, dtype=jnp.float32)
    mx_ = jnp.sum(jnp.where(valid, x, 0)) / jnp.maximum(n, 1)
    my_ = jnp.sum(jnp.where(valid, y, 0)) / jnp.maximum(n, 1)
    dx, dy = jnp.where(valid, x - mx_, 0), jnp.where(valid, y - my_, 0)
    denom = jnp.sqrt(jnp.sum(dx * dx) * jnp.sum(dy * dy))
    r = jnp.clip(jnp.sum(dx * dy) / jnp.where(denom > 0, denom, 1), -1.0, 1.0)
    return jnp.where(denom > 0, r, jnp.nan)


def spearman_corrcoef(preds, targets, valid=None):
    """Spearman's rho: Pearson's r of the average ranks of ``preds[valid]`` and ``targets[valid]``.

    1-D inputs (vmap for several outputs). NaN for a constant input or any NaN value.
    """
    preds, targets = _float(preds), _float(targets)
    valid = jnp.ones(preds.shape, bool) if valid is None else valid
    rho = _masked_pearson(average_ranks(preds, valid), average_ranks(targets, valid), valid)
    has_nan = jnp.any(valid & (jnp.isnan(preds) | jnp.isnan(targets)))
    return jnp.where(has_nan, jnp.nan, rho)


class SpearmanCorrCoef(Metric):
    """Spearman's rank correlation, exact (ties averaged as scipy), from buffered pairs.

    Keeps up to ``capacity`` (pred, target) pairs (per output with ``num_outputs=d``);
    more raise :class:`~metrix.CapacityOverflowError` at ``compute()`` (NaN under jit).
    """

    preds: Key = REQUIRED
    targets: Key = REQUIRED
    mask: Key | None = None
    capacity: int = 4096
    num_outputs: int | None = None

    class State(BufferState):
        preds: jax.Array = concat_field(item_shape=_output_shape)
        targets: jax.Array = concat_field(item_shape=_output_shape)

        def compute(self):
            valid = self.valid_mask()
            p, t = self.preds, self.targets
            if p.ndim == 1:
                rho = spearman_corrcoef(p, t, valid)
            else:
                rho = jax.vmap(spearman_corrcoef, in_axes=(1, 1, None))(p, t, valid)
            return self.check_capacity(rho)

    def get_state(
        self,
        preds: Float[Array, "*b"],
        targets: Float[Array, "*b"],
        mask: Shaped[Array, "*m"] | None = None,
    ) -> State:
        p, t, keep, _ = _as_rows(preds, targets, mask, self.num_outputs)
        if self.num_outputs is not None:
            # A row is one example with all its outputs: the mask must not split it.
            if mask is not None and jnp.ndim(mask) >= preds.ndim:
                raise ValueError("SpearmanCorrCoef: with num_outputs the mask covers examples, not outputs")
            keep = None if keep is None else keep[:, 0]
        return self.State.from_rows(capacity=self.capacity, mask=keep, parent=self, preds=p, targets=t)


__all__ = [
    "MAE",
    "MAPE",
    "MSE",
    "RMSE",
    "SMAPE",
    "CoMomentState",
    "ConcordanceCorrCoef",
    "CosineSimilarity",
    "ExplainedVariance",
    "MaxError",
    "PearsonCorrCoef",
    "R2Score",
    "SpearmanCorrCoef",
    "absolute_error",
    "absolute_percentage_error",
    "average_ranks",
    "concordance_from_moments",
    "cosine_similarity",
    "explained_variance_from_moments",
    "pearson_from_moments",
    "r2_from_moments",
    "spearman_corrcoef",
    "squared_error",
    "symmetric_absolute_percentage_error",
]
