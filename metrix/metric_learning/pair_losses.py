"""Losses over pairs and triplets of a batch: contrastive, triplet, NT-Xent, SupCon, multi-similarity, circle."""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.state import State
from metrix.metric_learning.distances import (
    _HIGHEST,
    _TRIPLET_CHUNK_ELEMENTS,
    _prepare,
    _row_distances,
    cosine_similarities,
    pair_masks,
    pairwise_distances,
)
from metrix.metric_learning.miners import MinedIndices
from metrix.metric_learning.terms import (
    LossTermsState,
    MetricLearningLoss,
    _count,
    _keep,
    _masked_sum,
    _nonfinite_rows,
    _mined_valid,
)

# ---------------------------------------------------------------------------------------
# Contrastive
# ---------------------------------------------------------------------------------------


def contrastive_terms(
    embeddings,
    labels,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    distance: str = "euclidean",
    normalize: bool = False,
    mask=None,
    indices: MinedIndices | None = None,
    reduction: str = "mean",
):
    """``((pos_sum, neg_sum), (pos_count, neg_count))`` of the contrastive loss.

    Positive pairs: ``relu(d - pos_margin)``; negative pairs: ``relu(neg_margin - d)``
    (Hadsell et al. 2006 with margins, as pytorch-metric-learning). All ordered pairs of
    the batch, or the pairs ``(a, p)`` and ``(a, n)`` of mined triplets.
    """
    n = embeddings.shape[0]
    keep = _keep(n, mask)
    if indices is None:
        # masked rows are zeroed: a NaN there must not reach the gradient's matmul
        x = jnp.where(keep[:, None], _prepare(embeddings, distance, normalize), 0.0)
        margins = [jnp.asarray(m, x.dtype) for m in (pos_margin, neg_margin)]  # may be traced
        sums = _contrastive_all_pairs(
            x, jnp.asarray(labels), keep, *margins, distance, reduction == "mean_nonzero"
        )
        return sums[:2], sums[2:]
    else:
        valid = _mined_valid(indices, keep)
        d_pos = _row_distances(embeddings, indices.anchors, indices.positives, distance, normalize)
        d_neg = _row_distances(embeddings, indices.anchors, indices.negatives, distance, normalize)
        pos = neg = valid
    pos_losses = jax.nn.relu(d_pos - pos_margin)
    neg_losses = jax.nn.relu(neg_margin - d_neg)
    totals = (_masked_sum(pos, pos_losses), _masked_sum(neg, neg_losses))
    counts = (_count(pos, pos_losses, reduction), _count(neg, neg_losses, reduction))
    return totals, counts


def _symmetric_distance_tangent(x, x_dot, distance):
    """``D_dot`` up to symmetry: ``sum(W * D_dot) == sum(W * T)`` for every symmetric ``W``.

    ``D = pairwise_distances(x)`` is symmetric, so only the symmetric part of its tangent
    matters against a symmetric weight: with ``M = x_dot x^T`` (one matmul, whose transpose
    ``W x`` is the gradient's only matmul; the form ``x x_dot^T`` would transpose to the
    slower ``W^T x``), ``T = -2 M`` for cosine and ``2 (s_i - 2 M)`` with
    ``s_i = 2 x_i . x_dot_i`` for the squared distance (its chain to ``d = sqrt(sq)`` is
    the caller's ``1 / (2 d)``).
    """
    if distance == "cosine":
        return -2.0 * jnp.matmul(x_dot, x.T, precision=_HIGHEST)
    s = 2.0 * jnp.sum(x * x_dot, axis=1)
    # 2 s_i - 4 M_ij as one product [x_dot, -s/2] [x, 1]^T: the gradient's matmul then
    # also yields the row sums of the weight (no separate N x N reduction)
    u = jnp.concatenate([x_dot, -0.5 * s[:, None]], axis=1)
    v = jnp.concatenate([x, jnp.ones_like(x[:, :1])], axis=1)
    return -4.0 * jnp.matmul(u, v.T, precision=_HIGHEST)


def _distance_slope(d, distance):
    """``dd/dsq`` (``1 / (2 d)``, 0 at ``d = 0``: the safe root) or 1 (squared, cosine).

    For the squared distance 0 marks a clipped (or diagonal) entry, whose derivative is 0.
    """
    if distance == "euclidean":
        return jnp.where(d > 0, 0.5 / jnp.where(d > 0, d, 1.0), 0.0)
    if distance == "squared_euclidean":
        return jnp.where(d > 0, 1.0, 0.0)
    return jnp.ones_like(d)


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6))
def _contrastive_all_pairs(x, labels, keep, pos_margin, neg_margin, distance, count_nonzero):
    """``(pos_sum, neg_sum, pos_count, neg_count)`` over all ordered pairs of a batch.

    One program: a matmul for the distances, ``N x N`` passes for the hinge sums, and an
    analytic derivative (custom JVP, so forward and reverse mode work) whose reverse mode
    is one ``N x N`` pass and one matmul: the pair masks and the distances are symmetric,
    so the gradient is a single product ``W [x, 1]`` where autodiff of ``x x^T`` forms
    ``W x`` and ``W^T x``. ``x`` is prepared (normalised) and zero in masked rows; the
    margins are differentiable too (``-#active positive pairs``, ``+#active negative``).
    """
    return _contrastive_all_pairs_values(x, labels, keep, pos_margin, neg_margin, distance, count_nonzero)[0]


def _contrastive_all_pairs_values(x, labels, keep, pos_margin, neg_margin, distance, count_nonzero):
    d = pairwise_distances(x, distance=distance)
    pos, neg = pair_masks(labels, keep)
    pos_active = pos & (d > pos_margin)  # relu(d - m_pos) > 0
    neg_active = neg & (d < neg_margin)  # relu(m_neg - d) > 0
    sums = (
        jnp.sum(jnp.where(pos_active, d - pos_margin, 0.0)),
        jnp.sum(jnp.where(neg_active, neg_margin - d, 0.0)),
        jnp.sum(pos_active if count_nonzero else pos, dtype=jnp.float32),
        jnp.sum(neg_active if count_nonzero else neg, dtype=jnp.float32),
    )
    return jnp.stack(sums), (d, pos_active, neg_active)


@_contrastive_all_pairs.defjvp
def _contrastive_all_pairs_jvp(distance, count_nonzero, primals, tangents):
    x, labels, keep, pos_margin, neg_margin = primals
    x_dot, _, _, pos_margin_dot, neg_margin_dot = tangents
    out, (d, pos_active, neg_active) = _contrastive_all_pairs_values(
        x, labels, keep, pos_margin, neg_margin, distance, count_nonzero
    )
    slope = _distance_slope(d, distance)
    # d(loss)/d(D): +1 on active positive pairs, -1 on active negative ones (symmetric)
    weight_pos = jnp.where(pos_active, slope, 0.0)
    weight_neg = jnp.where(neg_active, -slope, 0.0)
    t = _symmetric_distance_tangent(x, x_dot, distance)
    zero = jnp.zeros((), out.dtype)
    pos_dot = jnp.sum(weight_pos * t) - jnp.sum(pos_active, dtype=out.dtype) * pos_margin_dot
    neg_dot = jnp.sum(weight_neg * t) + jnp.sum(neg_active, dtype=out.dtype) * neg_margin_dot
    return out, jnp.stack([pos_dot, neg_dot, zero, zero]).astype(out.dtype)


class ContrastiveLoss(MetricLearningLoss):
    """Contrastive loss: ``reduce(relu(d_ap - pos_margin)) + reduce(relu(neg_margin - d_an))``.

    Pulls same-class pairs within ``pos_margin`` and pushes different-class pairs beyond
    ``margin`` (the negative margin). The two parts are reduced separately and added, as in
    pytorch-metric-learning. PML's defaults: ``ContrastiveLoss(margin=1.0, pos_margin=0.0,
    normalize=True, reduction="mean_nonzero")``. Accepts ``indices`` from a miner.

    Cost (all pairs): one ``N x N x d`` matmul for the distances and one for the gradient
    (an analytic derivative using the symmetry of the pair masks), ``O(N^2)`` memory.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    indices: Key | None = None
    mask: Key | None = None
    margin: float = 1.0
    pos_margin: float = 0.0
    distance: str = "euclidean"
    normalize: bool = False
    reduction: str = "mean"

    num_terms: ClassVar[int] = 2


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        indices: MinedIndices | None = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        totals, counts = contrastive_terms(
            embeddings, labels, pos_margin=self.pos_margin, neg_margin=self.margin,
            distance=self.distance, normalize=self.normalize, mask=mask, indices=indices,
            reduction=self.reduction,
        )
        return self.State.from_terms(totals, counts, invalid=_nonfinite_rows(embeddings, mask))


# ---------------------------------------------------------------------------------------
# Triplet margin
# ---------------------------------------------------------------------------------------


def _sort_rows(x):
    """Each row of ``x`` sorted ascending.

    float32 rows sort through order-preserving int32 keys: XLA's CPU sort of int32 is
    much faster than of float32 (no NaN-aware comparator). NaNs are not expected.
    """
    if x.dtype != jnp.float32:
        return jnp.sort(x, axis=1)
    keys = jax.lax.bitcast_convert_type(x, jnp.int32)
    flip = jnp.int32(0x7FFFFFFF)
    keys = jnp.where(keys < 0, keys ^ flip, keys)  # negative floats: reverse their order
    keys = jnp.sort(keys, axis=1)
    return jax.lax.bitcast_convert_type(jnp.where(keys < 0, keys ^ flip, keys), jnp.float32)


def _searchsorted_rows(sorted_rows, queries, side):
    return jax.vmap(lambda row, q: jnp.searchsorted(row, q, side=side))(sorted_rows, queries)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _triplet_hinge_sorted(d, pos, neg, margin):
    """All-triplet hinge sums per anchor over its sorted negative distances.

    For anchor a and positive p with ``t = d_ap + margin``, the negatives with ``d_an < t``
    are a prefix ``s[:k]`` of a's sorted negative distances, so
    ``sum_n relu(t - d_an) = k t - cumsum(s)[k]`` (``O(N^2 log N)``, ``O(N^2)`` memory).
    Returns (sum of losses, number of triplets, number with a loss > 0). The derivative is
    analytic (a custom JVP, so forward and reverse mode both work): ``dL/dd_ap = k_ap`` and
    ``dL/dd_an = -#{p : d_an < d_ap + margin}``.
    """
    return _triplet_hinge_sorted_values(d, pos, neg, margin)[0]


def _triplet_hinge_sorted_values(d, pos, neg, margin):
    n = d.shape[0]
    s = _sort_rows(jnp.where(neg, d, jnp.inf))
    prefix = jnp.cumsum(jnp.where(jnp.isfinite(s), s, 0.0), axis=1)
    prefix = jnp.concatenate([jnp.zeros((n, 1), prefix.dtype), prefix], axis=1)
    t = d + margin
    k = _searchsorted_rows(s, t, "left")
    sums = k.astype(d.dtype) * t - jnp.take_along_axis(prefix, k, axis=1)
    num_neg = jnp.sum(neg, axis=1, dtype=jnp.float32)
    total = _masked_sum(pos, sums)
    count_all = jnp.sum(jnp.where(pos, num_neg[:, None], 0.0))
    count_nonzero = jnp.sum(jnp.where(pos, k, 0), dtype=jnp.float32)
    return (total, count_all, count_nonzero), k


@_triplet_hinge_sorted.defjvp
def _triplet_hinge_sorted_jvp(margin, primals, tangents):
    d, pos, neg = primals
    d_dot = tangents[0]
    out, k = _triplet_hinge_sorted_values(d, pos, neg, margin)
    # for each (a, n): how many positives p of a have d_an < d_ap + margin
    t_sorted = _sort_rows(jnp.where(pos, d + margin, jnp.inf))
    num_pos = jnp.sum(pos, axis=1)
    active = num_pos[:, None] - _searchsorted_rows(t_sorted, d, "right")
    grad = jnp.where(pos, k, 0).astype(d.dtype) - jnp.where(neg, active, 0).astype(d.dtype)
    total_dot = jnp.sum(grad * d_dot)
    return out, (total_dot, jnp.zeros_like(out[1]), jnp.zeros_like(out[2]))


def _triplet_chunked(d, pos, neg, margin, smooth, swap):
    """All-triplet sums looping over chunks of anchors (never an N^3 tensor).

    Each anchor's (P, N) block is formed, reduced and, in the backward pass, recomputed
    (``jax.checkpoint``), so memory stays ``O(chunk N^2)``.
    """
    n = d.shape[0]

    @jax.checkpoint
    def per_anchor(a):
        v = d[a][:, None] - (jnp.minimum(d[a][None, :], d) if swap else d[a][None, :]) + margin
        losses = jax.nn.softplus(v) if smooth else jax.nn.relu(v)
        valid = pos[a][:, None] & neg[a][None, :]
        return (
            _masked_sum(valid, losses),
            jnp.sum(valid, dtype=jnp.float32),
            jnp.sum(valid & (losses > 0), dtype=jnp.float32),
        )

    chunk = max(1, min(n, _TRIPLET_CHUNK_ELEMENTS // max(n * n, 1)))
    total, count_all, count_nonzero = jax.lax.map(per_anchor, jnp.arange(n), batch_size=chunk)
    return jnp.sum(total), jnp.sum(count_all), jnp.sum(count_nonzero)


def triplet_margin_terms(
    embeddings,
    labels,
    *,
    margin: float = 0.2,
    swap: bool = False,
    smooth_loss: bool = False,
    distance: str = "euclidean",
    normalize: bool = False,
    mask=None,
    indices: MinedIndices | None = None,
    reduction: str = "mean",
):
    """``(sum of triplet losses, count)`` over all valid triplets or the mined ones.

    Per triplet: ``relu(d_ap - d_an + margin)`` (``softplus`` with ``smooth_loss``);
    ``swap`` uses ``min(d_an, d_pn)`` (Balntas et al. 2016). All triplets: ``a != p`` with
    equal labels, ``n`` with another label.
    """
    n = embeddings.shape[0]
    keep = _keep(n, mask)
    if indices is not None:
        valid = _mined_valid(indices, keep)
        a, p, ng = indices.anchors, indices.positives, indices.negatives
        ap = _row_distances(embeddings, a, p, distance, normalize)
        an = _row_distances(embeddings, a, ng, distance, normalize)
        if swap:
            an = jnp.minimum(an, _row_distances(embeddings, p, ng, distance, normalize))
        v = ap - an + margin
        losses = jax.nn.softplus(v) if smooth_loss else jax.nn.relu(v)
        return _masked_sum(valid, losses), _count(valid, losses, reduction)
    d = pairwise_distances(embeddings, distance=distance, normalize=normalize)
    pos, neg = pair_masks(labels, keep)
    if smooth_loss or swap:
        total, count_all, count_nonzero = _triplet_chunked(d, pos, neg, margin, smooth_loss, swap)
    else:
        total, count_all, count_nonzero = _triplet_hinge_sorted(d, pos, neg, margin)
    return total, count_nonzero if reduction == "mean_nonzero" else count_all


class TripletMarginLoss(MetricLearningLoss):
    """Triplet loss ``relu(d(a, p) - d(a, n) + margin)`` over all valid triplets of the batch.

    Or over mined triplets (``indices=miner.mine(embeddings, labels)``). ``swap`` replaces
    ``d(a, n)`` by ``min(d(a, n), d(p, n))``; ``smooth_loss`` uses ``softplus`` instead of
    the hinge. Reduction over triplets: ``"mean"`` (all valid triplets), ``"sum"`` or
    ``"mean_nonzero"``. PML's defaults: ``TripletMarginLoss(margin=0.05, normalize=True,
    reduction="mean_nonzero")``. Memory ``O(N^2)`` (no ``N^3`` tensor).
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    indices: Key | None = None
    mask: Key | None = None
    margin: float = 0.2
    swap: bool = False
    smooth_loss: bool = False
    distance: str = "euclidean"
    normalize: bool = False
    reduction: str = "mean"


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        indices: MinedIndices | None = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        total, count = triplet_margin_terms(
            embeddings, labels, margin=self.margin, swap=self.swap,
            smooth_loss=self.smooth_loss, distance=self.distance, normalize=self.normalize,
            mask=mask, indices=indices, reduction=self.reduction,
        )
        return self.State.from_terms([total], [count], invalid=_nonfinite_rows(embeddings, mask))


# ---------------------------------------------------------------------------------------
# Similarity-based pair losses: NT-Xent, SupCon, Multi-Similarity, Circle
# ---------------------------------------------------------------------------------------


def _masked_logsumexp(x, keep, axis=-1):
    """log sum_{keep} exp(x) along ``axis``; -inf where nothing is kept (finite gradients)."""
    big_negative = jnp.finfo(x.dtype).min
    xm = jnp.where(keep, x, big_negative)
    top = jax.lax.stop_gradient(jnp.max(xm, axis=axis, keepdims=True))
    sums = jnp.sum(jnp.where(keep, jnp.exp(xm - top), 0.0), axis=axis, keepdims=True)
    any_kept = jnp.any(keep, axis=axis, keepdims=True)
    out = jnp.where(any_kept, jnp.log(jnp.where(any_kept, sums, 1.0)) + top, -jnp.inf)
    return jnp.squeeze(out, axis)


def _log1p_sum_exp(x, keep, axis=-1):
    """``log(1 + sum_{keep} exp(x))`` (0 where nothing is kept)."""
    lse = _masked_logsumexp(x, keep, axis)
    return jnp.where(jnp.isfinite(lse), jax.nn.softplus(jnp.where(jnp.isfinite(lse), lse, 0.0)), 0.0)


def ntxent_terms(embeddings, labels, *, temperature: float = 0.5, mask=None, reduction="mean"):
    """NT-Xent / InfoNCE per positive pair ``(a, p)`` of cosine similarities ``s``::

        l_ap = -log( exp(s_ap / T) / (exp(s_ap / T) + sum_{n: y_n != y_a} exp(s_an / T)) )

    Returns ``(sum over positive pairs, count)``.
    """
    keep = _keep(embeddings.shape[0], mask)
    s = cosine_similarities(embeddings) / temperature
    pos, neg = pair_masks(labels, keep)
    lse_neg = _masked_logsumexp(s, neg, axis=1)  # -inf when an anchor has no negative
    losses = jnp.logaddexp(s, lse_neg[:, None]) - s
    return _masked_sum(pos, losses), _count(pos, losses, reduction)


class NTXentLoss(MetricLearningLoss):
    """NT-Xent (SimCLR, InfoNCE): temperature-scaled softmax over cosine similarities.

    Every positive pair ``(a, p)`` is a classification of ``p`` against the negatives of
    ``a``; the loss is the mean (or sum) over positive pairs. For SimCLR, give the two views
    of sample ``i`` the label ``i``. PML's default temperature is 0.07 (here 0.5, as the
    seed API); its reduction is this "mean".
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    temperature: float = 0.5
    reduction: str = "mean"


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        total, count = ntxent_terms(
            embeddings, labels, temperature=self.temperature, mask=mask, reduction=self.reduction
        )
        return self.State.from_terms([total], [count], invalid=_nonfinite_rows(embeddings, mask))


def supcon_losses(embeddings, labels, *, temperature: float = 0.1, mask=None):
    """Supervised contrastive loss per anchor (Khosla et al. 2020) and its validity.

    ``l_a = -mean_{p in P(a)} [ s_ap / T - log sum_{k != a} exp(s_ak / T) ]`` over the
    anchors with a positive (the batch must also hold a negative pair, else all are 0).
    """
    keep = _keep(embeddings.shape[0], mask)
    s = cosine_similarities(embeddings) / temperature
    pos, neg = pair_masks(labels, keep)
    log_denominator = _masked_logsumexp(s, pos | neg, axis=1)
    log_prob = s - jnp.where(jnp.isfinite(log_denominator), log_denominator, 0.0)[:, None]
    num_pos = jnp.sum(pos, axis=1)
    losses = -_masked_sum_rows(pos, log_prob) / jnp.maximum(num_pos, 1)
    valid = (num_pos > 0) & jnp.any(neg)
    return jnp.where(valid, losses, 0.0), valid


def _masked_sum_rows(keep, values):
    return jnp.sum(jnp.where(keep, values, 0.0), axis=1)


class SupConLoss(MetricLearningLoss):
    """Supervised contrastive loss (Khosla et al. 2020), mean over anchors with a positive.

    ``l_a = -1/|P(a)| sum_{p in P(a)} log( exp(s_ap/T) / sum_{k != a} exp(s_ak/T) )`` with
    cosine similarities. Matches pytorch-metric-learning's ``SupConLoss`` (temperature
    0.1, ``AvgNonZeroReducer``); 0 when the batch has no positive or no negative pair.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    temperature: float = 0.1
    reduction: str = "mean"


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = supcon_losses(embeddings, labels, temperature=self.temperature, mask=mask)
        return self.State.from_terms(
            [_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)],
            invalid=_nonfinite_rows(embeddings, mask),
        )


def multi_similarity_losses(embeddings, labels, *, alpha=2.0, beta=50.0, base=0.5, mask=None):
    """Multi-similarity loss per anchor (Wang et al. 2019), cosine similarities ``s``::

        l_a = 1/alpha log(1 + sum_p exp(-alpha (s_ap - base)))
            + 1/beta  log(1 + sum_n exp( beta (s_an - base)))
    """
    keep = _keep(embeddings.shape[0], mask)
    s = cosine_similarities(embeddings)
    pos, neg = pair_masks(labels, keep)
    pos_loss = _log1p_sum_exp(-alpha * (s - base), pos, axis=1) / alpha
    neg_loss = _log1p_sum_exp(beta * (s - base), neg, axis=1) / beta
    return pos_loss + neg_loss, keep


class MultiSimilarityLoss(MetricLearningLoss):
    """Multi-similarity loss (Wang et al. 2019), mean over (unmasked) anchors.

    Matches pytorch-metric-learning's ``MultiSimilarityLoss(alpha=2, beta=50, base=0.5)``
    (cosine similarity, mean over all anchors, those without pairs counting 0).
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    alpha: float = 2.0
    beta: float = 50.0
    base: float = 0.5
    reduction: str = "mean"


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = multi_similarity_losses(
            embeddings, labels, alpha=self.alpha, beta=self.beta, base=self.base, mask=mask
        )
        return self.State.from_terms(
            [_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)],
            invalid=_nonfinite_rows(embeddings, mask),
        )


def circle_losses(embeddings, labels, *, m: float = 0.4, gamma: float = 80.0, mask=None):
    """Circle loss per anchor (Sun et al. 2020), cosine similarities ``s``::

        l_a = softplus( logsumexp_p(-gamma a_p (s_ap - (1 - m)))
                      + logsumexp_n( gamma a_n (s_an - m)) )

    with the (constant, not differentiated) weights ``a_p = relu(1 + m - s_ap)`` and
    ``a_n = relu(s_an + m)``; valid for anchors with a positive and a negative.
    """
    keep = _keep(embeddings.shape[0], mask)
    s = cosine_similarities(embeddings)
    pos, neg = pair_masks(labels, keep)
    fixed = jax.lax.stop_gradient(s)
    logit_p = -gamma * jax.nn.relu(1 + m - fixed) * (s - (1 - m))
    logit_n = gamma * jax.nn.relu(fixed + m) * (s - m)
    lse_p = _masked_logsumexp(logit_p, pos, axis=1)
    lse_n = _masked_logsumexp(logit_n, neg, axis=1)
    valid = jnp.any(pos, 1) & jnp.any(neg, 1)
    both = jnp.where(valid, lse_p + lse_n, 0.0)
    return jnp.where(valid, jax.nn.softplus(both), 0.0), valid


class CircleLoss(MetricLearningLoss):
    """Circle loss (Sun et al. 2020), mean over anchors with a positive and a negative.

    Matches pytorch-metric-learning's ``CircleLoss(m=0.4, gamma=80)`` (cosine similarity,
    ``AvgNonZeroReducer``).
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    mask: Key | None = None
    m: float = 0.4
    gamma: float = 80.0
    reduction: str = "mean"


    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = circle_losses(embeddings, labels, m=self.m, gamma=self.gamma, mask=mask)
        return self.State.from_terms(
            [_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)],
            invalid=_nonfinite_rows(embeddings, mask),
        )


__all__ = [
    "ContrastiveLoss",
    "TripletMarginLoss",
    "NTXentLoss",
    "SupConLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "contrastive_terms",
    "triplet_margin_terms",
    "ntxent_terms",
    "supcon_losses",
    "multi_similarity_losses",
    "circle_losses",
]
