"""Generative-model metrics: FID, KID, Inception Score, precision/recall, density/coverage.

Every metric compares a *real* and a *generated* set of feature vectors (rows of ``(N, d)``)
or, for FID/KID/precision-recall/density-coverage, images: give NHWC images (uint8 in
[0, 255] or float in [0, 1]) together with ``params``, the FID InceptionV3 params from
:func:`metrix.backbones.inception.load_params`, and the network runs inside ``get_state``
(its ``tap``, default the 2048-d pool3 features). The params are an *input* of
``get_state`` (principle 8): pass them to your jitted step, they are never baked into a
compiled program.

Inputs per batch (all optional, so a batch may bring only real rows, only generated rows,
or both): ``real``, ``generated``, their masks ``real_mask`` / ``generated_mask`` (boolean
``(N,)``, boolean-indexing semantics) and ``mask``, a shorthand applied to both sides
(for batches that carry one real and one generated row per example).

============================  =====================================  ======================
metric                        state                                  value
============================  =====================================  ======================
:class:`FID`                  two Chan-merged mean/scatter states     scalar
                              (O(d^2) memory whatever N)
:class:`KID`                  two fixed-capacity feature buffers      ``{"mean", "std"}``
:class:`InceptionScore`       a buffer of log-probabilities           ``{"mean", "std"}``
:class:`PrecisionRecall`      two fixed-capacity feature buffers      ``{"precision", "recall"}``
:class:`DensityCoverage`      two fixed-capacity feature buffers      ``{"density", "coverage"}``
============================  =====================================  ======================

Buffers hold ``capacity`` rows per side (a config field, see each docstring); rows past it
are counted, and ``compute`` then raises :class:`~metrix.CapacityOverflowError` eagerly
(NaN under ``jit``). Buffers keep rows in arrival order, so states merged in data order give
the same buffers, hence the same values, for any batching (KID's random subsets and the
Inception Score's splits are defined on that order).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Shaped

from metrix import numerics
from metrix.keys import Key
from metrix.metric import Metric
from metrix.state import BufferState, State, concat_field, nested_field
from metrix.states import MeanCovState

__all__ = [
    "FID",
    "KID",
    "DensityCoverage",
    "InceptionScore",
    "PrecisionRecall",
    "ReferenceStats",
    "density_coverage",
    "frechet_distance",
    "inception_score",
    "kid_subset_indices",
    "polynomial_mmd",
    "precision_recall",
]

_HIGHEST = jax.lax.Precision.HIGHEST
_PRECISIONS = ("float32", "float64")


# ---------------------------------------------------------------------------------------
# Shared input handling
# ---------------------------------------------------------------------------------------


def _features(metric, x, params, side: str):
    """``x`` as (N, d) float features: rows as given, or images run through InceptionV3."""
    if x.ndim == 2:
        return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
    if x.ndim == 4:
        if params is None:
            raise TypeError(
                f"{type(metric).__name__}: {side} has shape {x.shape} (NHWC images), so "
                "get_state() needs params= (FID InceptionV3 params from "
                "metrix.backbones.inception.load_params)."
            )
        from metrix.backbones.inception import inception_features  # flax only when needed

        return inception_features(params, x, taps=(metric.tap,))[metric.tap]
    raise ValueError(
        f"{type(metric).__name__}: {side} must be (N, d) features or (N, H, W, C) images, "
        f"got shape {x.shape}"
    )


def _side_mask(mask, side_mask, n: int, name: str):
    """The mask of one side: ``side_mask & mask`` (either may be None)."""
    out = None
    for m in (mask, side_mask):
        if m is None:
            continue
        m = jnp.asarray(m)
        m = m if m.dtype == jnp.bool_ else m != 0
        if m.shape != (n,):
            raise ValueError(f"{name}: a mask of shape {m.shape} does not cover {n} rows")
        out = m if out is None else out & m
    return out


def _check_width(metric, feats, side: str):
    if feats.shape[-1] != metric.num_features:
        raise ValueError(
            f"{type(metric).__name__}: {side} features have {feats.shape[-1]} dimensions but "
            f"the metric has num_features={metric.num_features}"
        )


def _is_tracer(*xs) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


# ---------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------


def _rank_mask(size: int, rank, xp):
    """True for the ``size - rank`` smallest (leading, ascending order) eigenvalues."""
    return xp.arange(size) < size - rank


def _trace_sqrt_product_f32(sigma1, sigma2, rank1, rank2):
    """``tr sqrt(S1 S2)`` as a nuclear norm, in float32 (jit-able).

    With square-root factors ``S_k = A_k A_k^T``, ``S1 S2`` is similar to
    ``(A1^T A2)(A1^T A2)^T``, so its eigenvalues are the squared singular values of
    ``A1^T A2`` and ``tr sqrt(S1 S2) = sum_i sigma_i(A1^T A2)`` (singular values only).
    Singular values carry an absolute error ~eps * sigma_max, while the eigenvalues of the
    symmetric ``A1^T S2 A1`` would square the condition number (and ``sqrt`` of their
    float32 round-off costs ~3e-4 each): measured on d = 512 decaying-spectrum statistics,
    relative error 2e-6 instead of 7e-4.

    The factors are Cholesky factors (``d^3/3`` flops each) when both covariances are
    known to be full rank and the factorizations succeed; otherwise (a rank below ``d``,
    or a Cholesky that meets a non-positive pivot and returns NaN) ``lax.cond`` takes
    ``A_k = U_k diag(sqrt l_k)`` from ``eigh``, where negative eigenvalues are round-off and
    clamp to 0 and those known to be zero (beyond the rank ``n - 1``) are set to exactly 0.
    Both factorizations have a backward error ~eps ||S_k||, so the value is as accurate
    either way; Cholesky saves two eigendecompositions.
    """
    d = sigma1.shape[0]

    def eigh_factor(sigma, rank):
        evals, evecs = jnp.linalg.eigh(sigma)
        evals = jnp.where(_rank_mask(d, rank, jnp), 0, jnp.clip(evals, 0, None))
        return evecs * jnp.sqrt(evals)[None, :]

    chol1, chol2 = jnp.linalg.cholesky(sigma1), jnp.linalg.cholesky(sigma2)
    use_cholesky = (rank1 == d) & (rank2 == d) & jnp.isfinite(chol1).all() & jnp.isfinite(chol2).all()
    factor1, factor2 = jax.lax.cond(
        use_cholesky,
        lambda: (chol1, chol2),
        lambda: (eigh_factor(sigma1, rank1), eigh_factor(sigma2, rank2)),
    )
    cross = jnp.matmul(factor1.T, factor2, precision=_HIGHEST)
    return jnp.sum(jnp.linalg.svd(cross, compute_uv=False))


def _trace_sqrt_product_f64(sigma1, sigma2, rank1: int, rank2: int) -> np.float64:
    """``tr sqrt(S1 S2)`` in float64 on the host: one pivoted Cholesky, two products,
    eigenvalues only.

    The side of smaller rank is factored, ``P^T S1 P = L L^T`` (LAPACK ``pstrf``, pivoted
    Cholesky: it stops at the numerical rank ``k``, so ``L`` is ``d x k`` and a singular
    covariance costs less, never a NaN). ``S1 S2`` is similar to the symmetric PSD
    ``M = L^T (P^T S2 P) L`` (k x k) on its non-zero spectrum, so
    ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(M))``: eigenvalues only (``syevd`` with
    ``jobz='N'``: a tridiagonal reduction and ``sterf``, no eigenvectors). ``k`` is capped
    at the known rank ``rank1``; negative eigenvalues are round-off and clamp to 0, and the
    ``k - rank2`` smallest (known zeros when S2 has rank ``rank2 < k``) are set to exactly 0.
    In float64 the squared condition number of ``M`` costs nothing measurable: sqrt of an
    eigenvalue's round-off is ~1e-8 of ``sqrt(lambda_max)``.

    Cost at full rank: ``d^3/3`` (Cholesky) + ``d^3`` (``sygst``: ``L^T S2 L`` exploiting
    symmetry) + ``4/3 d^3`` (tridiagonal reduction, half of it matrix-vector products bound
    by memory bandwidth) flops, ~2.7 d^3 in all, against ~25 d^3 for ``sqrtm`` (a complex
    Schur decomposition) and ~10 d^3 for the general ``eigvals(S1 S2)``. The tridiagonal
    reduction dominates the time (its matrix-vector half runs at memory speed).
    """
    from scipy.linalg import lapack  # scipy is only needed for this host path

    if rank2 < rank1:  # tr sqrt(S1 S2) = tr sqrt(S2 S1): factor the side of smaller rank
        sigma1, sigma2, rank1, rank2 = sigma2, sigma1, rank2, rank1
    d = sigma1.shape[0]
    if rank1 == d:
        # Full rank expected: plain Cholesky (no pivot search, no permutation of S2) when S1
        # is numerically positive definite; pstrf below handles the rest.
        factor, info = lapack.dpotrf(sigma1, lower=1, clean=1)
        if info == 0:
            m, info = lapack.dsygst(sigma2, factor, itype=2, lower=1, overwrite_a=0)
            if info != 0:  # pragma: no cover - only for malformed arguments
                raise ValueError(f"LAPACK dsygst: argument {-info} is invalid")
            return _sum_sqrt_eigenvalues(m, d, rank2)
    factor, pivots, rank, info = lapack.dpstrf(sigma1, lower=1)
    if info < 0:  # pragma: no cover - only for malformed arguments
        raise ValueError(f"LAPACK dpstrf: argument {-info} is invalid")
    k = min(int(rank), rank1)
    if k == 0:
        return np.float64(0.0)
    order = pivots - 1  # LAPACK pivots are 1-based
    sigma2 = sigma2[np.ix_(order, order)]
    if k == sigma1.shape[0]:
        # full rank: sygst (itype 2) forms the lower half of L^T S2 L in d^3 flops, a quarter
        # of two general products (measured 2x faster than them single-threaded)
        m, info = lapack.dsygst(sigma2, np.tril(factor), itype=2, lower=1, overwrite_a=1)
        if info != 0:  # pragma: no cover - only for malformed arguments
            raise ValueError(f"LAPACK dsygst: argument {-info} is invalid")
    else:  # pstrf leaves the unfactored remainder above/after column k
        lower = np.tril(factor)[:, :k]
        m = lower.T @ (sigma2 @ lower)  # k x k, cheap when the rank is small
    return _sum_sqrt_eigenvalues(m, k, rank2)


def _sum_sqrt_eigenvalues(m, k: int, rank2: int) -> np.float64:
    """``sum sqrt(lambda_i(M))`` over the lower triangle of the k x k PSD ``M``: eigenvalues
    only; negative ones are round-off (clamped to 0), and the ``k - rank2`` smallest are
    known zeros when S2 has rank ``rank2 < k`` (set to exactly 0)."""
    from scipy.linalg import eigvalsh

    evals = eigvalsh(m, lower=True, driver="evd", overwrite_a=True, check_finite=False)
    evals = np.clip(evals, 0, None)
    evals[: k - min(k, rank2)] = 0  # ascending: the known-zero eigenvalues come first
    return np.sum(np.sqrt(evals))


def _frechet_distance_f64_host(mu1, sigma1, mu2, sigma2, rank1, rank2):
    """The Fréchet distance in float64 numpy/LAPACK on the host (a float64 scalar, NaN
    for non-finite statistics)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if not all(np.isfinite(x).all() for x in (mu1, sigma1, mu2, sigma2)):
        return np.float64(np.nan)  # e.g. the covariance of fewer than two rows
    tr_covmean = _trace_sqrt_product_f64(sigma1, sigma2, int(rank1), int(rank2))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return np.float64(max(value, 0.0))


def _rank(num_samples, d: int, xp):
    """Upper bound of a sample covariance's rank: ``min(d, n - 1)`` (``d`` when n is unknown)."""
    if num_samples is None:
        return xp.asarray(d, xp.int32)
    n = xp.asarray(num_samples)
    return xp.clip(xp.round(n).astype(xp.int32) - 1, 0, d)


def frechet_distance(
    mu1, sigma1, mu2, sigma2, *, precision: str = "float64", num_samples1=None, num_samples2=None
):
    """Fréchet distance between N(mu1, S1) and N(mu2, S2) (FID on Inception statistics).

    ``d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)``, with ``tr sqrt(S1 S2)``
    from a Cholesky-type factor ``S1 = L L^T``: the sum of the square roots of the
    eigenvalues of the symmetric PSD ``L^T S2 L`` (float64, :func:`_trace_sqrt_product_f64`),
    or the sum of the singular values of ``L1^T L2`` (float32,
    :func:`_trace_sqrt_product_f32`). Exact (no ``sqrtm`` iteration, no complex
    eigenvalues), defined for singular covariances (fewer samples than dimensions), and
    clamped at 0 against round-off. ``num_samples1`` / ``num_samples2`` (optional, the rows
    behind each covariance) bound the ranks by ``n - 1``, so the known-zero eigenvalues of
    singular covariances contribute exactly 0 instead of ``sqrt(round-off)``.

    ``precision="float64"`` (default): float64 numpy/LAPACK on the host, through
    ``jax.pure_callback`` under ``jit`` (so it stays jit-able; it returns float32). Eagerly,
    float64 numpy inputs are used as they are; under ``jit`` they arrive as float32 (JAX
    without x64). It is both the more accurate and, on CPU, the faster path: one pivoted
    Cholesky, two matrix products and a tridiagonal reduction (eigenvalues only).
    ``precision="float32"``: JAX on the device, all products ``HIGHEST``; Cholesky factors
    and a singular-value decomposition (values only), so float32 round-off is not squared.
    Measured at d = 2048 against scipy's float64 ``sqrtm`` on decaying-spectrum statistics
    of two close distributions (``benchmarks/fid.py``): relative error 4e-9 (float64; the
    rounding of the float32 result) and 8e-8 to 4e-7 (float32, depending on the data).
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    d = np.shape(sigma1)[0]
    if precision == "float64":
        if not _is_tracer(mu1, sigma1, mu2, sigma2, num_samples1, num_samples2):
            # eager: float64 numpy inputs are used as they are
            r1, r2 = _rank(num_samples1, d, np), _rank(num_samples2, d, np)
            return jnp.float32(_frechet_distance_f64_host(mu1, sigma1, mu2, sigma2, r1, r2))
        return jax.pure_callback(
            lambda *a: np.float32(_frechet_distance_f64_host(*a)),
            jax.ShapeDtypeStruct((), jnp.float32),
            mu1,
            sigma1,
            mu2,
            sigma2,
            _rank(num_samples1, d, jnp),
            _rank(num_samples2, d, jnp),
        )
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    r1, r2 = _rank(num_samples1, d, jnp), _rank(num_samples2, d, jnp)
    return _frechet_distance_f32(f32(mu1), f32(sigma1), f32(mu2), f32(sigma2), r1, r2)


@jax.jit
def _frechet_distance_f32(mu1, sigma1, mu2, sigma2, rank1, rank2):
    diff = mu1 - mu2
    tr_covmean = _trace_sqrt_product_f32(sigma1, sigma2, rank1, rank2)
    value = jnp.dot(diff, diff, precision=_HIGHEST) + (
        jnp.trace(sigma1) + jnp.trace(sigma2) - 2 * tr_covmean
    )
    return jnp.maximum(value, 0.0)  # negative round-off clamps to 0


class ReferenceStats:
    """Fixed statistics of a reference set: mean ``mu`` (d,) and covariance ``sigma`` (d, d).

    Hashable (by content digest), so it can be part of a metric's configuration:
    ``FID(real_stats=ReferenceStats.load("cifar10_train.npz"))``. Stored in float64. Files
    are ``.npz`` with keys ``mu`` and ``sigma``, the layout of pytorch-fid / clean-fid
    reference statistics.
    """

    __slots__ = ("_digest", "mu", "sigma")

    def __init__(self, mu, sigma):
        mu = np.array(mu, dtype=np.float64)
        sigma = np.array(sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(
                f"ReferenceStats needs mu (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}"
            )
        mu.setflags(write=False)
        sigma.setflags(write=False)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        digest = hashlib.sha1(mu.tobytes() + sigma.tobytes()).hexdigest()
        object.__setattr__(self, "_digest", digest)

    def __setattr__(self, name, value):
        raise AttributeError("ReferenceStats is immutable")

    @property
    def num_features(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStats:
        """Read ``mu`` and ``sigma`` from an ``.npz`` (pytorch-fid / clean-fid layout)."""
        with np.load(os.fspath(path)) as data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if missing:
                raise KeyError(
                    f"{path}: FID statistics need keys 'mu' and 'sigma'; found {data.files}"
                )
            return cls(data["mu"], data["sigma"])

    def save(self, path: str | os.PathLike) -> str:
        """Write ``mu`` and ``sigma`` (float64) to an ``.npz``; returns the path."""
        path = os.fspath(path)
        np.savez(path, mu=self.mu, sigma=self.sigma)
        return path if path.endswith(".npz") else path + ".npz"

    def __hash__(self):
        return hash(self._digest)

    def __eq__(self, other):
        return isinstance(other, ReferenceStats) and other._digest == self._digest

    def __repr__(self):
        return f"ReferenceStats(d={self.num_features}, sha1={self._digest[:10]})"


class FID(Metric):
    """Fréchet Inception Distance between the real and generated feature distributions.

    ``FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr sqrt(S_r S_g)`` with the means and
    (ddof = 1) covariances of the two sets (:func:`frechet_distance`).

    State: two :class:`~metrix.states.MeanCovState` (``real``, ``generated``): count, mean and
    scatter matrix, Chan-merged, O(d^2) memory whatever the number of rows.

    Inputs (all optional per batch): ``real`` / ``generated`` as ``(N, num_features)``
    features, or NHWC images with ``params`` (the InceptionV3 runs on them, ``tap`` picks the
    features); masks ``real_mask``, ``generated_mask`` and ``mask`` (both sides).

    A fixed reference side: ``real_stats=ReferenceStats(...)`` (or
    :meth:`with_real_stats` / :meth:`with_real_stats_file`) makes the real statistics part of
    the configuration, so they survive any reset; ``real`` inputs are then refused. Save the
    statistics of a state with ``state.real_stats().save(path)`` / ``state.generated_stats()``.

    ``precision``: ``"float64"`` (default: the final formula in float64 LAPACK on the host,
    through ``jax.pure_callback`` under ``jit``) or ``"float32"`` (JAX on the device); the
    accumulated statistics are float32 either way. Measured against scipy's float64
    ``sqrtm`` on the same statistics (decaying-spectrum ReLU features, both sides close),
    d = 2048, N = 5000: float64 relative error 4e-9 (the float32 result's rounding),
    float32 8e-8. On CPU the default is also the faster one (2 cores, idle, interleaved
    runs of ``benchmarks/fid.py``): 0.64 s against 8.1 s for scipy ``sqrtm`` (pytorch-fid)
    and 2.0 s for torchmetrics' ``eigvals`` (1.20 / 9.42 / 2.83 s with every library on one
    thread); the float32 option takes 1.1 s (an SVD). With fewer rows than dimensions the
    counts bound the covariance ranks, so the known-zero eigenvalues add nothing.
    ``compute`` of fewer than 2 rows on a side is NaN.
    """

    real: Key | None = None
    generated: Key | None = None
    real_mask: Key | None = None
    generated_mask: Key | None = None
    mask: Key | None = None
    params: Key | None = None
    num_features: int = 2048
    tap: str = "2048"
    real_stats: ReferenceStats | None = None
    precision: str = "float64"

    def __post_init__(self):
        if self.precision not in _PRECISIONS:
            raise ValueError(f"FID: precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.real_stats is not None and self.real_stats.num_features != self.num_features:
            raise ValueError(
                f"FID: real_stats have {self.real_stats.num_features} features but "
                f"num_features={self.num_features}"
            )

    @classmethod
    def with_real_stats(cls, mu, sigma, **config) -> FID:
        """An FID whose real side is fixed to ``N(mu, sigma)`` (``num_features`` from ``mu``)."""
        stats = ReferenceStats(mu, sigma)
        return cls(
            real_stats=stats, num_features=config.pop("num_features", stats.num_features), **config
        )

    @classmethod
    def with_real_stats_file(cls, path: str | os.PathLike, **config) -> FID:
        """An FID whose real side is read from an ``.npz`` with keys ``mu`` and ``sigma``."""
        stats = ReferenceStats.load(path)
        return cls(
            real_stats=stats, num_features=config.pop("num_features", stats.num_features), **config
        )

    class State(State):
        real: MeanCovState = nested_field(MeanCovState)
        generated: MeanCovState = nested_field(MeanCovState)

        def real_statistics(self):
            """``(mu, sigma)`` of the real side (the fixed ``real_stats`` when configured)."""
            fixed = self.parent.real_stats if self.parent is not None else None
            if fixed is not None:
                return jnp.asarray(fixed.mu, jnp.float32), jnp.asarray(fixed.sigma, jnp.float32)
            return self.real.mean, self.real.covariance()

        def generated_statistics(self):
            return self.generated.mean, self.generated.covariance()

        def real_stats(self) -> ReferenceStats:
            """The real statistics as :class:`ReferenceStats` (eager; save with ``.save(path)``)."""
            fixed = self.parent.real_stats if self.parent is not None else None
            return fixed if fixed is not None else ReferenceStats(*self.real_statistics())

        def generated_stats(self) -> ReferenceStats:
            return ReferenceStats(*self.generated_statistics())

        def compute(self):
            metric = self.parent
            precision = metric.precision if metric is not None else "float64"
            fixed = metric.real_stats if metric is not None else None
            if precision == "float64" and fixed is not None:
                mu1, sigma1 = fixed.mu, fixed.sigma  # keep the file's float64 values
            else:
                mu1, sigma1 = self.real_statistics()
            mu2, sigma2 = self.generated_statistics()
            n_real = None if fixed is not None else numerics.df_value(self.real.count)
            n_gen = numerics.df_value(self.generated.count)
            value = frechet_distance(
                mu1,
                sigma1,
                mu2,
                sigma2,
                precision=precision,
                num_samples1=n_real,
                num_samples2=n_gen,
            )
            # A covariance needs 2 rows (ddof = 1); fewer on a side gives NaN, never a number.
            enough = n_gen >= 2
            if fixed is None:
                enough &= n_real >= 2
            return jnp.where(enough, value, jnp.nan)

    def get_state(
        self,
        real: Shaped[Array, "nr ..."] | None = None,
        generated: Shaped[Array, "ng ..."] | None = None,
        real_mask: Shaped[Array, nr] | None = None,
        generated_mask: Shaped[Array, ng] | None = None,
        mask: Shaped[Array, n] | None = None,
        params: Any = None,
    ) -> State:
        if real is not None and self.real_stats is not None:
            raise ValueError("FID: the real side is fixed by real_stats; pass only generated=")
        sides = {}
        for side, x, side_mask in (
            ("real", real, real_mask),
            ("generated", generated, generated_mask),
        ):
            if x is None:
                sides[side] = MeanCovState.empty(self)
                continue
            feats = _features(self, x, params, side)
            _check_width(self, feats, side)
            keep = _side_mask(mask, side_mask, feats.shape[0], f"FID {side}")
            sides[side] = MeanCovState.from_rows(feats, mask=keep, parent=self)
        return self.State(parent=self, **sides)


# ---------------------------------------------------------------------------------------
# Feature buffers (KID, precision/recall, density/coverage)
# ---------------------------------------------------------------------------------------


class FeatureBuffer(BufferState):
    """Rows of ``num_features`` features in a fixed-capacity buffer (``capacity`` rows)."""

    features: jax.Array = concat_field(item_shape=lambda m: (m.num_features,))


class PairedFeatures(State):
    """Real and generated :class:`FeatureBuffer` side by side."""

    real: FeatureBuffer = nested_field(FeatureBuffer)
    generated: FeatureBuffer = nested_field(FeatureBuffer)

    @classmethod
    def from_inputs(cls, metric, real, generated, real_mask, generated_mask, mask, params):
        sides = {}
        for side, x, side_mask in (
            ("real", real, real_mask),
            ("generated", generated, generated_mask),
        ):
            if x is None:
                sides[side] = FeatureBuffer.empty(metric)
                continue
            feats = _features(metric, x, params, side).astype(jnp.float32)
            _check_width(metric, feats, side)
            keep = _side_mask(mask, side_mask, feats.shape[0], f"{type(metric).__name__} {side}")
            sides[side] = FeatureBuffer.from_rows(
                capacity=metric.capacity, mask=keep, parent=metric, features=feats
            )
        return cls(parent=metric, **sides)

    def _check_counts(self, minimum: int, what: str):
        """Raise eagerly when a side has fewer than ``minimum`` rows; False (NaN) under jit."""
        counts = (self.real.count, self.generated.count)
        if not _is_tracer(*counts):
            for side, c in zip(("real", "generated"), counts):
                if int(c) < minimum:
                    raise ValueError(
                        f"{type(self.parent).__name__}: {what} needs at least {minimum} {side} rows, "
                        f"got {int(c)}"
                    )
        return (self.real.count >= minimum) & (self.generated.count >= minimum)

    def _finish(self, values: dict, ok):
        values = {k: jnp.where(ok, v, jnp.nan) for k, v in values.items()}
        return self.generated.check_capacity(self.real.check_capacity(values))


# ---------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("degree", "gamma", "coef"))
def polynomial_mmd(x, y, *, degree: int = 3, gamma: float | None = None, coef: float = 1.0):
    """Unbiased MMD^2 with the polynomial kernel ``k(a, b) = (gamma a.b + coef)^degree``.

    ``MMD^2 = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1))
    - 2 sum_{i,j} k(x_i, y_j) / (m n)`` (Binkowski et al. 2018); ``gamma`` defaults to
    ``1 / d``. Products use ``precision=HIGHEST``; sums go row by row, then over rows.
    """
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    gamma = 1.0 / d if gamma is None else gamma

    def kernel(a, b):
        return (jnp.matmul(a, b.T, precision=_HIGHEST) * gamma + coef) ** degree

    def off_diagonal_sum(k):
        return jnp.sum(jnp.sum(k, axis=1) - jnp.diagonal(k))

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    return (
        off_diagonal_sum(k_xx) / (m * (m - 1))
        + off_diagonal_sum(k_yy) / (n * (n - 1))
        - 2 * jnp.sum(jnp.sum(k_xy, axis=1)) / (m * n)
    )


@functools.partial(jax.jit, static_argnums=(0, 3, 4, 5))
def kid_subset_indices(
    seed: int, count_real, count_generated, capacity: int, num_subsets: int, subset_size: int
):
    """Row indices ``(num_subsets, subset_size)`` per side of KID's random subsets.

    Each subset is drawn uniformly *without replacement* from the first ``count`` rows
    (subsets are independent of each other), from ``jax.random.key(seed)``: each row gets a
    uniform priority and the ``subset_size`` smallest are taken. Deterministic given the
    seed, the counts and the capacity; jit-able.
    """
    key_real, key_gen = jax.random.split(jax.random.key(seed))

    def pick(key, count):
        priority = jax.random.uniform(key, (num_subsets, capacity))
        priority = jnp.where(jnp.arange(capacity)[None, :] < count, priority, jnp.inf)
        return jax.lax.top_k(-priority, subset_size)[1]

    return pick(key_real, count_real), pick(key_gen, count_generated)


@functools.partial(
    jax.jit, static_argnames=("seed", "num_subsets", "subset_size", "degree", "gamma", "coef")
)
def _kid_scores(
    real,
    count_real,
    generated,
    count_generated,
    *,
    seed,
    num_subsets,
    subset_size,
    degree,
    gamma,
    coef,
):
    """MMD^2 of each random subset, one subset at a time (``lax.map`` bounds the memory)."""
    idx_r, idx_g = kid_subset_indices(
        seed, count_real, count_generated, real.shape[0], num_subsets, subset_size
    )

    def one(indices):
        i, j = indices
        return polynomial_mmd(real[i], generated[j], degree=degree, gamma=gamma, coef=coef)

    return jax.lax.map(one, (idx_r, idx_g))


class _PairedFeatureMetric(Metric):
    """Inputs shared by the buffer-based generative metrics (KID, PrecisionRecall, ...).

    Features ``(N, d)`` or NHWC images (then the InceptionV3 ``tap`` runs with ``params``)
    for each side, per-side masks and a ``mask`` for both; rows go to two
    :class:`FeatureBuffer` of ``capacity`` rows. Subclasses define ``State.compute``.
    """

    real: Key | None = None
    generated: Key | None = None
    real_mask: Key | None = None
    generated_mask: Key | None = None
    mask: Key | None = None
    params: Key | None = None
    num_features: int = 2048
    capacity: int = 10_000

    class State(PairedFeatures):
        pass

    def get_state(
        self,
        real: Shaped[Array, "nr ..."] | None = None,
        generated: Shaped[Array, "ng ..."] | None = None,
        real_mask: Shaped[Array, nr] | None = None,
        generated_mask: Shaped[Array, ng] | None = None,
        mask: Shaped[Array, n] | None = None,
        params: Any = None,
    ) -> State:
        return self.State.from_inputs(
            self, real, generated, real_mask, generated_mask, mask, params
        )


class KID(_PairedFeatureMetric):
    """Kernel Inception Distance: unbiased polynomial-kernel MMD^2 averaged over random subsets.

    For each of ``num_subsets`` subsets, ``subset_size`` real and ``subset_size`` generated
    rows are drawn without replacement (:func:`kid_subset_indices`, seed ``seed``) and
    :func:`polynomial_mmd` (``degree`` 3, ``gamma`` = 1/d, ``coef`` 1) is evaluated; the value
    is ``{"mean", "std"}`` over subsets (std with ddof = 0, as torchmetrics). This is
    torchmetrics' / torch-fidelity's estimator; their subsets come from torch's RNG, so
    values agree in distribution, not digit for digit.

    State: two :class:`FeatureBuffer` of ``capacity`` rows each (default 10,000 rows of
    ``num_features`` float32: ~80 MB per side at d = 2048); overflow is counted and refused
    at ``compute``. The subsets depend on the order of the buffered rows: states merged in
    data order give the same value for any batching. Fewer than ``subset_size`` rows on a
    side raises ``ValueError`` eagerly (NaN under ``jit``). Inputs as :class:`FID`.
    """

    num_subsets: int = 100
    subset_size: int = 1000
    degree: int = 3
    gamma: float | None = None
    coef: float = 1.0
    seed: int = 0
    tap: str = "2048"

    class State(PairedFeatures):
        def compute(self):
            m = self.parent
            ok = self._check_counts(m.subset_size, f"KID with subset_size={m.subset_size}")
            scores = _kid_scores(
                self.real.features,
                self.real.count,
                self.generated.features,
                self.generated.count,
                seed=m.seed,
                num_subsets=m.num_subsets,
                subset_size=min(m.subset_size, m.capacity),
                degree=m.degree,
                gamma=m.gamma,
                coef=m.coef,
            )
            return self._finish({"mean": jnp.mean(scores), "std": jnp.std(scores)}, ok)



# ---------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("splits",))
def inception_score(log_probs, *, splits: int = 10, count=None):
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` per split; ``{"mean", "std"}`` over splits.

    ``log_probs`` are ``(N, C)`` log class probabilities (rows past ``count`` are ignored).
    Split ``s`` holds rows ``[floor(s N / splits), floor((s + 1) N / splits))`` in order (the
    original Salimans et al. code and torch-fidelity); ``p(y)`` is the mean probability of
    the split, and std has ddof = 0. Splits with no rows (N < splits) make the values NaN.
    """
    log_probs = jnp.asarray(log_probs, jnp.float32)
    capacity = log_probs.shape[0]
    n = capacity if count is None else count
    rows = jnp.arange(capacity)
    starts = (jnp.arange(splits + 1) * n) // splits
    split_id = jnp.searchsorted(starts, rows, side="right") - 1
    split_id = jnp.where(rows < n, split_id, splits)  # past the fill: a dropped segment
    probs = jnp.exp(log_probs)
    probs = jnp.where((rows < n)[:, None], probs, 0)
    sizes = (starts[1:] - starts[:-1]).astype(jnp.float32)
    marginal = (
        jax.ops.segment_sum(probs, split_id, num_segments=splits + 1)[:splits] / sizes[:, None]
    )
    log_marginal = jnp.log(marginal)
    # p log p is 0 where p = 0 (also keeps -inf log-probabilities of zero probabilities out).
    terms = jnp.where(
        probs > 0, probs * (log_probs - log_marginal[jnp.minimum(split_id, splits - 1)]), 0
    )
    kl = jnp.sum(terms, axis=1)
    mean_kl = jax.ops.segment_sum(kl, split_id, num_segments=splits + 1)[:splits] / sizes
    scores = jnp.exp(mean_kl)
    return {"mean": jnp.mean(scores), "std": jnp.std(scores)}


class LogProbBuffer(BufferState):
    """Log class probabilities ``(num_classes,)`` per example, in a fixed-capacity buffer."""

    log_probs: jax.Array = concat_field(item_shape=lambda m: (m.num_classes,))


class InceptionScore(Metric):
    """Inception Score of generated samples from their class probabilities or logits.

    Give ``probs`` ``(N, C)`` (rows summing to 1) or ``logits`` ``(N, C)`` (softmax is
    taken); ``C = num_classes`` (default 1008, the FID Inception's ``logits`` tap). Value:
    :func:`inception_score` with ``splits`` (default 10) over the buffered rows **in
    order**: split ``s`` is rows ``[floor(s N / splits), floor((s + 1) N / splits))`` of all
    N rows seen, so the value does not depend on how batches were merged (given the data
    order). No shuffling (torchmetrics shuffles before splitting, so its per-split scores
    differ; with ``splits=1`` they agree).

    State: a :class:`LogProbBuffer` of ``capacity`` rows (default 50,000 x 1008 float32,
    ~200 MB); overflow is refused at ``compute``.
    """

    probs: Key | None = None
    logits: Key | None = None
    mask: Key | None = None
    num_classes: int = 1008
    splits: int = 10
    capacity: int = 50_000

    class State(LogProbBuffer):
        def compute(self):
            value = inception_score(self.log_probs, splits=self.parent.splits, count=self.count)
            return self.check_capacity(value)

    def get_state(
        self,
        probs: Float[Array, "n c"] | None = None,
        logits: Float[Array, "n c"] | None = None,
        mask: Shaped[Array, n] | None = None,
    ) -> State:
        if (probs is None) == (logits is None):
            raise TypeError("InceptionScore.get_state() needs exactly one of probs= or logits=")
        values = probs if probs is not None else logits
        if values.shape[-1] != self.num_classes:
            raise ValueError(
                f"InceptionScore: inputs have {values.shape[-1]} classes but num_classes={self.num_classes}"
            )
        if logits is not None:
            log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        else:
            log_probs = jnp.log(probs.astype(jnp.float32))
        return self.State.from_rows(
            capacity=self.capacity, mask=mask, parent=self, log_probs=log_probs
        )


# ---------------------------------------------------------------------------------------
# k-NN manifold metrics: precision/recall, density/coverage
# ---------------------------------------------------------------------------------------


def _pairwise_distances(a, b, centre):
    """Euclidean distances ``(len(a), len(b))`` (centred first, to limit cancellation)."""
    a, b = a - centre, b - centre
    sq = (
        jnp.sum(a * a, axis=1)[:, None]
        + jnp.sum(b * b, axis=1)[None, :]
        - 2 * jnp.matmul(a, b.T, precision=_HIGHEST)
    )
    return jnp.sqrt(jnp.maximum(sq, 0))


def _knn_radii(x, valid, k: int, centre):
    """Distance of each row to its k-th nearest *other* valid row (prdc's radius)."""
    d = _pairwise_distances(x, x, centre)
    d = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0, d)  # self-distance is exactly 0
    d = jnp.where(valid[None, :], d, jnp.inf)
    return -jax.lax.top_k(-d, k + 1)[0][:, k]  # the (k+1)-th smallest counts the row itself


def _manifold_terms(real, real_valid, gen, gen_valid, k: int):
    centre = jnp.sum(jnp.where(real_valid[:, None], real, 0), axis=0) / jnp.maximum(
        jnp.sum(real_valid), 1
    )
    real_radii = _knn_radii(real, real_valid, k, centre)
    gen_radii = _knn_radii(gen, gen_valid, k, centre)
    d_rg = _pairwise_distances(real, gen, centre)
    pair = real_valid[:, None] & gen_valid[None, :]
    inside_real = pair & (d_rg < real_radii[:, None])  # generated j inside real ball i
    inside_gen = pair & (d_rg < gen_radii[None, :])  # real i inside generated ball j
    return d_rg, real_radii, inside_real, inside_gen, pair


def _masked_mean(x, valid):
    return jnp.sum(jnp.where(valid, x, 0), dtype=jnp.float32) / jnp.sum(valid, dtype=jnp.float32)


@functools.partial(jax.jit, static_argnames=("k",))
def precision_recall(real, generated, *, k: int = 3, real_valid=None, generated_valid=None):
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    The real manifold is the union of balls around real rows with radius the distance to
    their k-th nearest real neighbour; precision is the fraction of generated rows inside it,
    recall the fraction of real rows inside the generated manifold. Strict ``<`` on the
    radius, as the ``prdc`` package. Rows with ``*_valid`` False are ignored.
    """
    real, generated = jnp.asarray(real, jnp.float32), jnp.asarray(generated, jnp.float32)
    rv = jnp.ones(real.shape[:1], bool) if real_valid is None else real_valid
    gv = jnp.ones(generated.shape[:1], bool) if generated_valid is None else generated_valid
    _, _, inside_real, inside_gen, _ = _manifold_terms(real, rv, generated, gv, k)
    return {
        "precision": _masked_mean(jnp.any(inside_real, axis=0), gv),
        "recall": _masked_mean(jnp.any(inside_gen, axis=1), rv),
    }


@functools.partial(jax.jit, static_argnames=("k",))
def density_coverage(real, generated, *, k: int = 5, real_valid=None, generated_valid=None):
    """Density and coverage (Naeem et al. 2020) with k-NN balls around real rows.

    ``density = 1/(k M) sum_j sum_i [d(g_j, r_i) < rad_k(r_i)]`` (how many real balls contain
    each generated row, normalised so that it is about 1 for matching distributions);
    ``coverage = 1/N sum_i [min_j d(r_i, g_j) < rad_k(r_i)]`` (fraction of real balls that
    hold at least one generated row). Strict ``<`` as the ``prdc`` package.
    """
    real, generated = jnp.asarray(real, jnp.float32), jnp.asarray(generated, jnp.float32)
    rv = jnp.ones(real.shape[:1], bool) if real_valid is None else real_valid
    gv = jnp.ones(generated.shape[:1], bool) if generated_valid is None else generated_valid
    d_rg, real_radii, inside_real, _, pair = _manifold_terms(real, rv, generated, gv, k)
    nearest_gen = jnp.min(jnp.where(pair, d_rg, jnp.inf), axis=1)
    return {
        "density": _masked_mean(jnp.sum(inside_real, axis=0, dtype=jnp.float32), gv) / k,
        "coverage": _masked_mean(nearest_gen < real_radii, rv),
    }


class _NearestNeighbourMetric(_PairedFeatureMetric):
    """Shared inputs and state of the k-NN manifold metrics: two feature buffers.

    Subclasses set ``k`` and ``_measure(real, generated, k=, real_valid=, generated_valid=)``.
    """

    k: int = 3
    tap: str = "2048"

    _measure: ClassVar[Callable[..., Any]]

    class State(PairedFeatures):
        def compute(self):
            k = self.parent.k
            ok = self._check_counts(k + 1, f"k-NN radii with k={k}")
            values = type(self.parent)._measure(
                self.real.features,
                self.generated.features,
                k=k,
                real_valid=self.real.valid_mask(),
                generated_valid=self.generated.valid_mask(),
            )
            return self._finish(values, ok)



class PrecisionRecall(_NearestNeighbourMetric):
    """Improved precision and recall (Kynkäänniemi et al. 2019), ``k``-NN manifolds (k = 3).

    Value ``{"precision", "recall"}`` from :func:`precision_recall` over all buffered rows.
    State: two :class:`FeatureBuffer` of ``capacity`` rows (default 10,000); ``compute``
    forms ``capacity x capacity`` distance matrices (~400 MB each at 10,000). Each side
    needs more than ``k`` rows (``ValueError`` eagerly, NaN under ``jit``). Inputs as
    :class:`FID`.
    """

    k: int = 3
    _measure = staticmethod(precision_recall)

    class State(_NearestNeighbourMetric.State):
        pass


class DensityCoverage(_NearestNeighbourMetric):
    """Density and coverage (Naeem et al. 2020), ``k``-NN balls around real rows (k = 5).

    Value ``{"density", "coverage"}`` from :func:`density_coverage`. State, memory and
    inputs as :class:`PrecisionRecall`.
    """

    k: int = 5
    _measure = staticmethod(density_coverage)

    class State(_NearestNeighbourMetric.State):
        pass
