"""k-NN manifold metrics: precision/recall and density/coverage, in row blocks.

Memory. The published definitions use ``N x N`` (radii) and ``N x M`` (memberships) distance
matrices: ~10 GB of float32 each at the usual 50,000 samples. Here every matrix is formed one
block of ``chunk_size`` rows at a time (``lax.map`` / ``lax.scan``), so that the peak working
memory of a call with ``N`` real and ``M`` generated rows of ``d`` features is about

    4 d (N + M)  +  16 chunk_size max(N, M)   bytes

(float32 centred copies of both sides, and a ``chunk_size x max(N, M)`` block of distances
with up to three same-sized intermediates): 1.5 GiB at N = M = 50,000, d = 2048 and the
default ``chunk_size=1024``; XLA's compiled figure on CPU is 1.2 GiB, against 30-38 GiB for
the unchunked formula (``python -m benchmarks.manifold_memory`` prints both). Values are
those of the unchunked formula: each distance is computed by the same expression (XLA may
round a block's matrix product 1 ulp away from the full one's, so only a pair within 1 ulp
of a radius could count differently), and the memberships are counted row by row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from metrix.generative.features import _HIGHEST, PairedFeatures, _PairedFeatureMetric

DEFAULT_CHUNK_SIZE = 1024

# ---------------------------------------------------------------------------------------
# Distances, one block of rows at a time
# ---------------------------------------------------------------------------------------


def _block_distances(a, sq_a, b, sq_b):
    """Euclidean distances ``(len(a), len(b))`` of rows already centred (``sq_*``: squared
    norms), centred first to limit the cancellation of ``|a|^2 + |b|^2 - 2 a.b``."""
    sq = sq_a[:, None] + sq_b[None, :] - 2 * jnp.matmul(a, b.T, precision=_HIGHEST)
    return jnp.sqrt(jnp.maximum(sq, 0))


def _centred(x, centre):
    x = x - centre
    return x, jnp.sum(x * x, axis=1)


def _check_chunk_size(chunk_size) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int (rows per block), got {chunk_size!r}")
    return chunk_size


def _blocks(n: int, chunk_size: int):
    """Block size, block count and the first row of each block. The last block is shifted
    back to end at row ``n`` (it overlaps the one before, instead of padding a copy of the
    rows): row ``r`` belongs to block ``r // size`` and sits at ``r - start[r // size]``."""
    size = min(chunk_size, n)
    count = -(-n // size)
    start = jnp.minimum(jnp.arange(count) * size, n - size)
    return size, count, start


def _per_row(blocked, starts, size: int, n: int):
    """Rows ``(n,)`` of a per-block output ``(count, size)`` (see :func:`_blocks`)."""
    rows = jnp.arange(n)
    block = rows // size
    return blocked[block, rows - starts[block]]


def _knn_radii(x, valid, k: int, centre, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Distance of each row to its k-th nearest *other* valid row (prdc's radius).

    One ``chunk_size x N`` block of distances at a time; the self-distance is exactly 0 and
    invalid (e.g. padding) rows are never neighbours. Rows that are not valid get a radius
    too (ignored by the callers).
    """
    n = x.shape[0]
    if k + 1 > n:
        raise ValueError(f"k-NN radii with k={k} need more than k rows, got an array of {n}")
    xc, sq = _centred(x, centre)
    size, _, starts = _blocks(n, chunk_size)
    cols = jnp.arange(n)

    def block(start):
        a = jax.lax.dynamic_slice_in_dim(xc, start, size)
        sq_a = jax.lax.dynamic_slice_in_dim(sq, start, size)
        d = _block_distances(a, sq_a, xc, sq)
        d = jnp.where((start + jnp.arange(size))[:, None] == cols[None, :], 0, d)
        d = jnp.where(valid[None, :], d, jnp.inf)
        return -jax.lax.top_k(-d, k + 1)[0][:, k]  # the (k+1)-th smallest counts the row itself

    return _per_row(jax.lax.map(block, starts), starts, size, n)


def _manifold_counts(real, real_valid, gen, gen_valid, k: int, chunk_size: int, recall: bool):
    """The per-row memberships behind all four values, real rows one block at a time.

    Returns ``balls_holding`` (M,) int32: how many real k-NN balls hold each generated row;
    ``ball_hit`` (N,) bool: the real row's ball holds a generated row; and, when ``recall``,
    ``in_gen`` (N,) bool: the real row lies in some generated row's ball (else None). Strict
    ``<`` on the radii; pairs with an invalid row never count.
    """
    centre = jnp.sum(jnp.where(real_valid[:, None], real, 0), axis=0) / jnp.maximum(
        jnp.sum(real_valid), 1
    )
    real_radii = _knn_radii(real, real_valid, k, centre, chunk_size)
    gen_radii = _knn_radii(gen, gen_valid, k, centre, chunk_size) if recall else None
    rc, sq_r = _centred(real, centre)
    gc, sq_g = _centred(gen, centre)
    n = real.shape[0]
    size, count, starts = _blocks(n, chunk_size)

    def block(holding, b):
        start = starts[b]
        rows = start + jnp.arange(size)
        # a row of the shifted last block already counted by the block before is not fresh
        fresh = (rows >= b * size) & real_valid[rows]
        d = _block_distances(
            jax.lax.dynamic_slice_in_dim(rc, start, size),
            jax.lax.dynamic_slice_in_dim(sq_r, start, size),
            gc,
            sq_g,
        )
        pair = fresh[:, None] & gen_valid[None, :]
        inside_real = pair & (d < real_radii[rows][:, None])  # generated j inside real ball i
        holding = holding + jnp.sum(inside_real, axis=0, dtype=jnp.int32)
        hits = [jnp.any(inside_real, axis=1)]
        if recall:
            hits.append(jnp.any(pair & (d < gen_radii[None, :]), axis=1))  # i in gen ball j
        return holding, tuple(hits)

    zeros = jnp.zeros(gen.shape[:1], jnp.int32)
    holding, hits = jax.lax.scan(block, zeros, jnp.arange(count))
    hits = [_per_row(h, starts, size, n) for h in hits]
    return holding, hits[0], (hits[1] if recall else None)


def _masked_mean(x, valid):
    return jnp.sum(jnp.where(valid, x, 0), dtype=jnp.float32) / jnp.sum(valid, dtype=jnp.float32)


def _prepare(real, generated, real_valid, generated_valid):
    real, generated = jnp.asarray(real, jnp.float32), jnp.asarray(generated, jnp.float32)
    rv = jnp.ones(real.shape[:1], bool) if real_valid is None else jnp.asarray(real_valid, bool)
    gv = (
        jnp.ones(generated.shape[:1], bool)
        if generated_valid is None
        else jnp.asarray(generated_valid, bool)
    )
    return real, generated, rv, gv


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def precision_recall(
    real,
    generated,
    *,
    k: int = 3,
    real_valid=None,
    generated_valid=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    The real manifold is the union of balls around real rows with radius the distance to
    their k-th nearest real neighbour; precision is the fraction of generated rows inside it,
    recall the fraction of real rows inside the generated manifold. Strict ``<`` on the
    radius, as the ``prdc`` package. Rows with ``*_valid`` False are ignored.

    ``real`` (N, d) and ``generated`` (M, d) need more than ``k`` rows each. Distances are
    formed ``chunk_size`` rows at a time: peak memory about ``4 d (N + M) + 16 chunk_size
    max(N, M)`` bytes (1.5 GiB at N = M = 50,000, d = 2048, the default 1024), with the same
    values as the full ``N x N``, ``M x M`` and ``N x M`` matrices.
    """
    _check_chunk_size(chunk_size)
    real, generated, rv, gv = _prepare(real, generated, real_valid, generated_valid)
    holding, _, in_gen = _manifold_counts(real, rv, generated, gv, k, chunk_size, recall=True)
    return {
        "precision": _masked_mean(holding > 0, gv),
        "recall": _masked_mean(in_gen, rv),
    }


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def density_coverage(
    real,
    generated,
    *,
    k: int = 5,
    real_valid=None,
    generated_valid=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
):
    """Density and coverage (Naeem et al. 2020) with k-NN balls around real rows.

    ``density = 1/(k M) sum_j sum_i [d(g_j, r_i) < rad_k(r_i)]`` (how many real balls contain
    each generated row, normalised so that it is about 1 for matching distributions);
    ``coverage = 1/N sum_i [min_j d(r_i, g_j) < rad_k(r_i)]`` (fraction of real balls that
    hold at least one generated row). Strict ``<`` as the ``prdc`` package. Memory and
    ``chunk_size`` as :func:`precision_recall` (only the real radii are needed here).
    """
    _check_chunk_size(chunk_size)
    real, generated, rv, gv = _prepare(real, generated, real_valid, generated_valid)
    holding, ball_hit, _ = _manifold_counts(real, rv, generated, gv, k, chunk_size, recall=False)
    return {
        "density": _masked_mean(holding.astype(jnp.float32), gv) / k,
        "coverage": _masked_mean(ball_hit, rv),
    }


class _NearestNeighbourMetric(_PairedFeatureMetric):
    """Shared inputs and state of the k-NN manifold metrics: two feature buffers.

    Subclasses set ``k`` and ``_measure(real, generated, k=, real_valid=, generated_valid=,
    chunk_size=)``.
    """

    k: int = 3
    tap: str = "2048"
    chunk_size: int = DEFAULT_CHUNK_SIZE

    _measure: ClassVar[Callable[..., Any]]
    _value_names: ClassVar[tuple[str, ...]]

    def __post_init__(self):
        super().__post_init__()
        _check_chunk_size(self.chunk_size)
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be a positive int (neighbours), got {self.k!r}")

    class State(PairedFeatures):
        def compute(self):
            m = self.parent
            ok = self._check_counts(m.k + 1, f"k-NN radii with k={m.k}")
            rows = min(self.real.features.shape[0], self.generated.features.shape[0])
            if rows <= m.k:  # buffers too small for any radius: NaN (refused above when eager)
                nan = jnp.full((), jnp.nan, jnp.float32)
                return self._finish({key: nan for key in type(m)._value_names}, ok)
            values = type(m)._measure(
                self.real.features,
                self.generated.features,
                k=m.k,
                real_valid=self.real.valid_mask(),
                generated_valid=self.generated.valid_mask(),
                chunk_size=m.chunk_size,
            )
            return self._finish(values, ok)


class PrecisionRecall(_NearestNeighbourMetric):
    """Improved precision and recall (Kynkäänniemi et al. 2019), ``k``-NN manifolds (k = 3).

    Value ``{"precision", "recall"}`` in [0, 1] from :func:`precision_recall` over all
    buffered rows (padding rows of the buffers are never neighbours). State: two
    :class:`FeatureBuffer` of ``capacity`` rows (default 10,000). ``compute`` forms the
    distance matrices ``chunk_size`` rows at a time (default 1024): peak memory about
    ``8 d capacity + 16 chunk_size capacity`` bytes (1.5 GiB at capacity 50,000 and d = 2048,
    instead of ~10 GB per full matrix and 30 GiB in all); a smaller ``chunk_size`` uses less
    memory in more steps. Each side needs more than ``k`` rows (``ValueError`` eagerly, NaN
    under ``jit``). Inputs as :class:`FID`.
    """

    k: int = 3
    _measure = staticmethod(precision_recall)
    _value_names = ("precision", "recall")


class DensityCoverage(_NearestNeighbourMetric):
    """Density and coverage (Naeem et al. 2020), ``k``-NN balls around real rows (k = 5).

    Value ``{"density", "coverage"}`` from :func:`density_coverage` (coverage in [0, 1],
    density >= 0, about 1 for matching distributions). State, memory (``chunk_size``) and
    inputs as :class:`PrecisionRecall`.
    """

    k: int = 5
    _measure = staticmethod(density_coverage)
    _value_names = ("density", "coverage")


__all__ = [
    "DensityCoverage",
    "PrecisionRecall",
    "density_coverage",
    "precision_recall",
]
