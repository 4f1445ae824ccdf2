"""Distances, similarities and pair masks between embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST
_REDUCTIONS = ("mean", "sum", "mean_nonzero")
_DISTANCES = ("euclidean", "squared_euclidean", "cosine")
# Work budget (floats) of one step of the chunked all-triplet loop.
_TRIPLET_CHUNK_ELEMENTS = 1 << 22


# ---------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
    """``x / max(||x||, eps)`` (torch ``F.normalize``'s convention; finite at 0)."""
    norm = safe_norm(x, axis=axis, keepdims=True)
    return x / jnp.maximum(norm, eps)


def safe_sqrt(x):
    """``sqrt(max(x, 0))`` with a zero (not infinite/NaN) gradient at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def safe_norm(x, axis: int = -1, keepdims: bool = False):
    """Euclidean norm with a zero gradient at the origin."""
    return safe_sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=keepdims))


def _prepare(x, distance: str, normalize: bool):
    x = jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    if normalize or distance == "cosine":
        x = l2_normalize(x)
    return x


def pairwise_distances(x, y=None, *, distance: str = "euclidean", normalize: bool = False):
    """Distance matrix ``D[i, j] = dist(x_i, y_j)`` (``y = x`` when omitted).

    ``distance``: ``"euclidean"`` ``||x - y||`` (safe square root), ``"squared_euclidean"``
    ``||x - y||^2`` or ``"cosine"`` ``1 - cos(x, y)``. ``normalize`` L2-normalises the rows
    first (pytorch-metric-learning's ``LpDistance`` default). Squared distances use
    ``|x|^2 + |y|^2 - 2 x.y`` (as ``torch.cdist`` does for large inputs), clipped at 0, and
    the diagonal of a self-distance matrix is exactly 0.
    """
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
    same = y is None
    x = _prepare(x, distance, normalize)
    y = x if same else _prepare(y, distance, normalize)
    dots = jnp.matmul(x, y.T, precision=_HIGHEST)
    if distance == "cosine":
        return 1.0 - dots
    sq = jnp.sum(x * x, -1)[:, None] + jnp.sum(y * y, -1)[None, :] - 2.0 * dots
    sq = jnp.maximum(sq, 0.0)
    if same:
        sq = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, sq)
    return sq if distance == "squared_euclidean" else safe_sqrt(sq)


def _row_distances(x, idx_a, idx_b, distance: str, normalize: bool):
    """``dist(x[idx_a], x[idx_b])`` row by row (the distances of mined tuples)."""
    x = _prepare(x, distance, normalize)
    a, b = x[idx_a], x[idx_b]
    if distance == "cosine":
        return 1.0 - jnp.sum(a * b, -1)
    sq = jnp.sum(jnp.square(a - b), -1)
    return sq if distance == "squared_euclidean" else safe_sqrt(sq)


def cosine_similarities(x):
    """``S[i, j] = cos(x_i, x_j)`` of L2-normalised rows."""
    x = l2_normalize(jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32)))
    return jnp.matmul(x, x.T, precision=_HIGHEST)


def pair_masks(labels, mask=None):
    """``(positive, negative)`` boolean ``(N, N)`` masks of the pairs inside a batch.

    Positive: ``i != j`` with equal labels; negative: different labels. Masked-out
    examples belong to no pair.
    """
    labels = jnp.asarray(labels)
    n = labels.shape[0]
    keep = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask).astype(bool).reshape(n)
    both = keep[:, None] & keep[None, :]
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(n, dtype=bool) & both
    return positive, ~same & both


__all__ = [
    "pairwise_distances",
    "pair_masks",
]
