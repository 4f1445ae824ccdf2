"""k-NN manifold metrics: precision/recall and density/coverage."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from metrix.generative.features import _HIGHEST, PairedFeatures, _PairedFeatureMetric

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



class DensityCoverage(_NearestNeighbourMetric):
    """Density and coverage (Naeem et al. 2020), ``k``-NN balls around real rows (k = 5).

    Value ``{"density", "coverage"}`` from :func:`density_coverage`. State, memory and
    inputs as :class:`PrecisionRecall`.
    """

    k: int = 5
    _measure = staticmethod(density_coverage)



__all__ = [
    "DensityCoverage",
    "PrecisionRecall",
    "density_coverage",
    "precision_recall",
]
