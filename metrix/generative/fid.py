"""FID: Frechet distance between Inception feature Gaussians of real and generated images."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Shaped

from metrix.backbones.resize import check_fid_mode
from metrix.core import numerics
from metrix.core.fields import nested_field
from metrix.core.keys import Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import MeanCovState
from metrix.generative.features import _PRECISIONS, _check_width, _features, _side_mask
from metrix.generative.frechet import frechet_distance


class ReferenceStats:
    """Fixed statistics of a reference set: mean ``mu`` (d,) and covariance ``sigma`` (d, d).

    Hashable (by content digest), so it can be part of a metric's configuration:
    ``FID(real_stats=ReferenceStats.load("cifar10_train.npz"))``. Stored in float64. Files
    are ``.npz`` with keys ``mu`` and ``sigma``, the layout of pytorch-fid / clean-fid
    reference statistics; :meth:`save` adds ``sha256`` (of the float64 bytes of ``mu`` then
    ``sigma``), which :meth:`load` checks when present, so an edited or truncated file is
    refused instead of giving a wrong FID. ``sigma`` must be finite and symmetric; a file's
    ``sigma`` must also be positive semi-definite (eigenvalues above ``-1e-6 * max``).
    """

    __slots__ = ("_digest", "mu", "sha256", "sigma")

    def __init__(self, mu, sigma):
        mu = np.array(mu, dtype=np.float64)
        sigma = np.array(sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(
                f"ReferenceStats needs mu (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}"
            )
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError("ReferenceStats: mu and sigma must be finite (found NaN or inf)")
        scale = max(float(np.abs(sigma).max(initial=0.0)), np.finfo(np.float64).tiny)
        if np.abs(sigma - sigma.T).max(initial=0.0) > 1e-6 * scale:
            raise ValueError("ReferenceStats: sigma is not symmetric, so it is not a covariance")
        mu.setflags(write=False)
        sigma.setflags(write=False)
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "sha256", hashlib.sha256(mu.tobytes() + sigma.tobytes()).hexdigest())
        object.__setattr__(self, "_digest", self.sha256)

    def __setattr__(self, name, value):
        raise AttributeError("ReferenceStats is immutable")

    @property
    def num_features(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReferenceStats:
        """Read ``mu`` and ``sigma`` from an ``.npz`` (pytorch-fid / clean-fid layout), checking
        the recorded ``sha256`` when there is one and that ``sigma`` is a covariance."""
        path = os.fspath(path)
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if missing:
                raise KeyError(
                    f"{path}: FID statistics need keys 'mu' and 'sigma'; found {data.files}"
                )
            recorded = str(data["sha256"]) if "sha256" in data.files else None
            try:
                stats = cls(data["mu"], data["sigma"])
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
        if recorded is not None and recorded != stats.sha256:
            raise ValueError(
                f"{path}: mu/sigma do not match the sha256 recorded in the file (edited or "
                "corrupted): recompute the statistics"
            )
        eigenvalues = np.linalg.eigvalsh(stats.sigma)
        if eigenvalues.min() < -1e-6 * max(eigenvalues.max(), np.finfo(np.float64).tiny):
            raise ValueError(
                f"{path}: sigma has a negative eigenvalue ({eigenvalues.min():.3g}), so it is not "
                "a covariance matrix: recompute the statistics"
            )
        return stats

    def save(self, path: str | os.PathLike) -> str:
        """Write ``mu``, ``sigma`` (float64) and their ``sha256`` to an ``.npz``; returns the path."""
        path = os.fspath(path)
        np.savez(path, mu=self.mu, sigma=self.sigma, sha256=np.array(self.sha256))
        return path if path.endswith(".npz") else path + ".npz"

    def __hash__(self):
        return hash(self._digest)

    def __eq__(self, other):
        return isinstance(other, ReferenceStats) and other._digest == self._digest

    def __repr__(self):
        return f"ReferenceStats(d={self.num_features}, sha256={self.sha256[:12]})"


class FID(Metric):
    """Fréchet Inception Distance between the real and generated feature distributions.

    ``FID = ||mu_r - mu_g||^2 + tr(S_r) + tr(S_g) - 2 tr sqrt(S_r S_g)`` with the means and
    (ddof = 1) covariances of the two sets (:func:`frechet_distance`).

    State: two :class:`~metrix.core.states.MeanCovState` (``real``, ``generated``): count, mean and
    scatter matrix, Chan-merged, O(d^2) memory whatever the number of rows.

    Inputs (all optional per batch): ``real`` / ``generated`` as ``(N, num_features)``
    features, or NHWC images with ``params`` (the InceptionV3 runs on them, ``tap`` picks the
    features); masks ``real_mask``, ``generated_mask`` and ``mask`` (both sides). ``mode``
    is the image pipeline (``"legacy_pytorch"``: pytorch-fid's bilinear resize, the default;
    ``"clean"``: clean-fid's antialiased bicubic; :func:`metrix.backbones.inception.preprocess`).

    A fixed reference side: ``real_stats=ReferenceStats(...)`` (or
    :meth:`with_real_stats` / :meth:`with_real_stats_file`) makes the real statistics part of
    the configuration, so they survive any reset; ``real`` inputs are then refused. Save the
    statistics of a state with ``state.real_stats().save(path)`` / ``state.generated_stats()``.

    ``precision``: ``"float64"`` (default: the final formula in float64 LAPACK on the host,
    through ``jax.pure_callback`` under ``jit``) or ``"float32"`` (JAX on the device); the
    accumulated statistics are float32 either way. Measured against scipy's float64
    ``sqrtm`` on the same statistics (decaying-spectrum ReLU features, both sides close),
    d = 2048, N = 5000: float64 relative error 4e-9 (the float32 result's rounding),
    float32 8e-8. On CPU the default is also the faster one (``benchmarks/fid.py`` times it
    against scipy ``sqrtm`` as pytorch-fid uses it and torchmetrics' ``eigvals``; the float32
    option is an SVD). With fewer rows than dimensions the
    counts bound the covariance ranks, so the known-zero eigenvalues add nothing.
    ``compute`` of fewer than 2 rows on a side is NaN.
    """

    required_one_of = (("real", "generated"),)

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
    mode: str = "legacy_pytorch"

    def __post_init__(self):
        check_fid_mode(self.mode, "FID")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.real_stats is not None and self.real_stats.num_features != self.num_features:
            raise ValueError(
                f"real_stats have {self.real_stats.num_features} features but "
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
        real_mask: Shaped[Array, "nr"] | None = None,
        generated_mask: Shaped[Array, "ng"] | None = None,
        mask: Shaped[Array, "n"] | None = None,
        params: Any = None,
    ) -> State:
        if real is not None and self.real_stats is not None:
            raise ValueError("the real side is fixed by real_stats; pass only generated=")
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
            keep = _side_mask(mask, side_mask, feats.shape[0], side)
            sides[side] = MeanCovState.from_rows(feats, mask=keep, parent=self)
        return self.State(parent=self, **sides)


__all__ = [
    "FID",
    "ReferenceStats",
]
