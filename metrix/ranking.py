"""Ranking / retrieval metrics: DCG, NDCG, MRR, MAP, PrecisionAtK, RecallAtK, HitRate.

Each query is a row: ``scores`` and ``relevance`` of shape ``(*b, items)``. Lists of
different lengths are padded and ``item_mask`` (same shape, True for real items) removes the
padding; ``mask`` (``*b``) removes whole queries. Every metric computes one value per query
and keeps the exact mean over unmasked queries, so it merges across batches and devices.

Items are ranked by decreasing score; ties keep the items' order in the row (NDCG instead
averages the gains of tied items, as sklearn's ``ndcg_score``). ``k=None`` means the whole
list. A query with no relevant item scores 0 (torchmetrics' default); ``skip_empty=True``
leaves such queries out of the mean instead. Binary metrics count ``relevance > 0`` as
relevant; DCG and NDCG use the graded relevance as gains (linear by default, as sklearn;
``gain="exponential"``: ``2^rel - 1``, as metrax's ``DCGAtK`` / ``NDCGAtK``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.states import AverageState


def _item_mask(item_mask, shape):
    return jnp.ones(shape, bool) if item_mask is None else jnp.asarray(item_mask, bool)


def ranked_relevance(scores, relevance, item_mask=None):
    """Binary relevance of each row's real items sorted by decreasing score (padding last, 0)."""
    valid = _item_mask(item_mask, scores.shape)
    key = jnp.where(valid, -scores.astype(jnp.float32), jnp.inf)
    order = jnp.argsort(key, axis=-1, stable=True)
    relevant = valid & (relevance > 0)
    return jnp.take_along_axis(relevant, order, axis=-1).astype(jnp.float32)


def _cutoff(k, valid):
    """Per query cut-off: ``k``, or the number of real items when ``k`` is None."""
    if k is None:
        return jnp.sum(valid, axis=-1).astype(jnp.float32)
    return jnp.full(valid.shape[:-1], float(k), jnp.float32)


def _top_k(num_items, k, valid):
    position = jnp.arange(num_items, dtype=jnp.float32)
    return position < _cutoff(k, valid)[..., None]


def precision_at_k(scores, relevance, k=None, item_mask=None, adaptive_k: bool = False):
    """``(# relevant among the top k) / k`` per query (k = list length when None).

    ``adaptive_k=True`` divides by ``min(k, # real items)`` instead, so a list shorter than
    ``k`` is not penalised (torchmetrics' ``adaptive_k``; metrax's and keras-rs' rule).
    """
    valid = _item_mask(item_mask, scores.shape)
    ranked = ranked_relevance(scores, relevance, valid)
    hits = jnp.sum(ranked * _top_k(scores.shape[-1], k, valid), axis=-1)
    cutoff = _cutoff(k, valid)
    if adaptive_k:
        cutoff = jnp.minimum(cutoff, _cutoff(None, valid))
    return hits / jnp.maximum(cutoff, 1)


def recall_at_k(scores, relevance, k=None, item_mask=None):
    """``(# relevant among the top k) / (# relevant)`` per query; 0 without relevant items."""
    valid = _item_mask(item_mask, scores.shape)
    ranked = ranked_relevance(scores, relevance, valid)
    hits = jnp.sum(ranked * _top_k(scores.shape[-1], k, valid), axis=-1)
    total = jnp.sum(ranked, axis=-1)
    return jnp.where(total > 0, hits / jnp.maximum(total, 1), 0.0)


def hit_rate(scores, relevance, k=None, item_mask=None):
    """1 if any relevant item is among the top k, else 0."""
    valid = _item_mask(item_mask, scores.shape)
    ranked = ranked_relevance(scores, relevance, valid)
    hits = jnp.sum(ranked * _top_k(scores.shape[-1], k, valid), axis=-1)
    return (hits > 0).astype(jnp.float32)


def reciprocal_rank(scores, relevance, k=None, item_mask=None):
    """``1 / rank`` of the first relevant item (1-based) if it is in the top k, else 0."""
    valid = _item_mask(item_mask, scores.shape)
    ranked = ranked_relevance(scores, relevance, valid) * _top_k(scores.shape[-1], k, valid)
    first = jnp.argmax(ranked > 0, axis=-1)
    return jnp.where(jnp.any(ranked > 0, axis=-1), 1.0 / (first + 1.0), 0.0)


def average_precision(scores, relevance, k=None, item_mask=None):
    """``AP@k = (1 / R_k) sum_{i <= k, rel_i} P@i`` with ``R_k`` the relevant items in the top k.

    (torchmetrics' ``retrieval_average_precision``; with ``k=None`` the usual AP.) 0 when no
    relevant item is in the top k.
    """
    valid = _item_mask(item_mask, scores.shape)
    ranked = ranked_relevance(scores, relevance, valid) * _top_k(scores.shape[-1], k, valid)
    precision_at_i = jnp.cumsum(ranked, axis=-1) / jnp.arange(1, scores.shape[-1] + 1)
    hits = jnp.sum(ranked, axis=-1)
    return jnp.where(hits > 0, jnp.sum(precision_at_i * ranked, axis=-1) / jnp.maximum(hits, 1), 0.0)


_GAINS = ("linear", "exponential")


def relevance_gains(relevance, gain: str = "linear"):
    """The gain of each graded relevance: ``rel`` (``"linear"``, sklearn's ``dcg_score``) or
    ``2^rel - 1`` (``"exponential"``, metrax's ``DCGAtK``; Burges et al. 2005), float32."""
    relevance = jnp.asarray(relevance).astype(jnp.float32)
    if gain == "linear":
        return relevance
    if gain == "exponential":
        return jnp.exp2(relevance) - 1.0
    raise ValueError(f"gain must be one of {_GAINS}, got {gain!r}")


def _dcg_in_order(scores, gains, k, valid):
    """DCG with ties kept in item order (a stable sort: metrax, sklearn's ``ignore_ties``)."""
    n = scores.shape[-1]
    key = jnp.where(valid, -scores.astype(jnp.float32), jnp.inf)
    order = jnp.argsort(key, axis=-1, stable=True)
    ranked = jnp.take_along_axis(jnp.where(valid, gains.astype(jnp.float32), 0.0), order, -1)
    discount = 1.0 / jnp.log2(jnp.arange(n, dtype=jnp.float32) + 2.0)
    return jnp.sum(jnp.where(_top_k(n, k, valid), ranked * discount, 0.0), axis=-1)


def dcg(scores, gains, k=None, item_mask=None, ignore_ties: bool = False):
    """``sum_i gain_i / log2(rank_i + 1)`` over the top k, tied items sharing their discounts.

    A group of tied items at ranks ``[l, r)`` each gets the mean discount over those ranks
    (sklearn's tie handling): ``(D[r] - D[l]) / (r - l)`` with ``D`` the cumulative discounts.
    ``ignore_ties=True`` ranks tied items in their order in the row instead (faster).
    """
    valid = _item_mask(item_mask, scores.shape)
    if ignore_ties:
        return _dcg_in_order(scores, gains, k, valid)
    n = scores.shape[-1]
    key = jnp.where(valid, -scores.astype(jnp.float32), jnp.inf)
    ordered = jnp.sort(key, axis=-1)
    count = jnp.sum(valid, axis=-1, keepdims=True)
    search = jnp.vectorize(lambda a, v, side: jnp.searchsorted(a, v, side=side), signature="(n),(n)->(n)", excluded={2})
    left = search(ordered, key, "left")
    right = jnp.minimum(search(ordered, key, "right"), count)
    discount = 1.0 / jnp.log2(jnp.arange(n, dtype=jnp.float32) + 2.0)
    discount = jnp.where(_top_k(n, k, valid), discount, 0.0)
    cumulative = jnp.concatenate([jnp.zeros(discount.shape[:-1] + (1,)), jnp.cumsum(discount, axis=-1)], axis=-1)
    shared = (jnp.take_along_axis(cumulative, right, -1) - jnp.take_along_axis(cumulative, left, -1)) / jnp.maximum(
        right - left, 1
    )
    return jnp.sum(jnp.where(valid, gains.astype(jnp.float32) * shared, 0.0), axis=-1)


def ndcg(scores, relevance, k=None, item_mask=None, gain="linear", ignore_ties=False):
    """``DCG@k / ideal DCG@k`` (sklearn's ``ndcg_score`` with the default linear gains); 0 if
    the ideal is 0."""
    valid = _item_mask(item_mask, scores.shape)
    gains = jnp.where(valid, relevance_gains(relevance, gain), 0.0)
    actual = dcg(scores, gains, k, valid, ignore_ties)
    # The ideal ranking sorts by the gains themselves (ties there do not change the sum).
    ideal = dcg(jnp.where(valid, gains, -jnp.inf), gains, k, valid, ignore_ties=True)
    return jnp.where(ideal > 0, actual / jnp.where(ideal > 0, ideal, 1), 0.0)


class _PerQuery(Metric):
    scores: Key = REQUIRED
    relevance: Key = REQUIRED
    mask: Key | None = None
    item_mask: Key | None = None
    k: int | None = None
    skip_empty: bool = False

    eager_compile = True  # one compiled program per (metric, shapes): no op-by-op dispatch

    State = AverageState

    def __post_init__(self):
        if self.k is not None and (not isinstance(self.k, int) or self.k < 1):
            raise ValueError(f"k must be a positive int or None, got {self.k!r}")

    def per_query(self, scores, relevance, item_mask):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_state(
        self,
        scores: Float[Array, "*b n"],
        relevance: Shaped[Array, "*b n"],
        mask: Shaped[Array, "*m"] | None = None,
        item_mask: Shaped[Array, "*b n"] | None = None,
    ) -> State:
        valid = _item_mask(item_mask, scores.shape)
        keep = broadcast_mask(mask, scores.shape[:-1])
        if self.skip_empty:
            keep = keep & jnp.any(valid & (relevance > 0), axis=-1)
        values = self.per_query(scores, relevance, valid)
        # A NaN score has no rank: the query's value is NaN (so is the mean), never a finite
        # number computed from wherever the sort happened to put it. Masked items do not count.
        unrankable = jnp.any(valid & jnp.isnan(scores), axis=-1)
        values = jnp.where(unrankable, jnp.nan, values)
        return self.State.from_values(values, mask=keep)


class _GainMetric(_PerQuery):
    gain: str = "linear"
    ignore_ties: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.gain not in _GAINS:
            raise ValueError(f"gain must be one of {_GAINS}, got {self.gain!r}")


class DCG(_GainMetric):
    """Mean discounted cumulative gain over queries: ``DCG@k = sum_{i <= k} g_i / log2(i + 1)``.

    ``i`` is the 1-based rank by decreasing score, ``g_i`` the gain of the item's graded
    relevance: ``rel`` (``gain="linear"``, sklearn's ``dcg_score``) or ``2^rel - 1``
    (``gain="exponential"``, metrax's ``DCGAtK``). Tied scores share the mean discount of
    their ranks (sklearn); ``ignore_ties=True`` ranks them in item order (metrax, whose
    ``argsort`` is stable). Inputs ``scores`` / ``relevance`` ``(*b, items)``, ``item_mask``
    (padding), ``mask`` (queries). Returns the float32 mean over kept queries, unbounded
    (in gain units); jit-safe, nothing host-side. metrax takes several ``ks`` at once: use
    one ``DCG(k=...)`` per cut-off.
    """

    def per_query(self, scores, relevance, item_mask):
        gains = relevance_gains(relevance, self.gain)
        return dcg(scores, gains, self.k, item_mask, self.ignore_ties)


class NDCG(_GainMetric):
    """Mean normalised DCG@k over queries (see :func:`ndcg`; graded relevance as gains, linear
    unless ``gain="exponential"``; ties as :class:`DCG`)."""

    def per_query(self, scores, relevance, item_mask):
        return ndcg(scores, relevance, self.k, item_mask, self.gain, self.ignore_ties)


class MRR(_PerQuery):
    """Mean reciprocal rank of the first relevant item (within the top k when set)."""

    def per_query(self, scores, relevance, item_mask):
        return reciprocal_rank(scores, relevance, self.k, item_mask)


class MAP(_PerQuery):
    """Mean average precision over queries (see :func:`average_precision`)."""

    def per_query(self, scores, relevance, item_mask):
        return average_precision(scores, relevance, self.k, item_mask)


class PrecisionAtK(_PerQuery):
    """Mean over queries of ``(# relevant in the top k) / k``.

    ``adaptive_k=True``: ``/ min(k, # real items)`` (torchmetrics' ``adaptive_k``; metrax's
    ``PrecisionAtK`` and keras-rs divide so), for lists shorter than ``k``.
    """

    adaptive_k: bool = False

    def per_query(self, scores, relevance, item_mask):
        return precision_at_k(scores, relevance, self.k, item_mask, self.adaptive_k)


class RecallAtK(_PerQuery):
    """Mean over queries of ``(# relevant in the top k) / (# relevant)``."""

    def per_query(self, scores, relevance, item_mask):
        return recall_at_k(scores, relevance, self.k, item_mask)


class HitRate(_PerQuery):
    """Fraction of queries with at least one relevant item in the top k."""

    def per_query(self, scores, relevance, item_mask):
        return hit_rate(scores, relevance, self.k, item_mask)


__all__ = [
    "DCG",
    "MAP",
    "MRR",
    "NDCG",
    "HitRate",
    "PrecisionAtK",
    "RecallAtK",
    "average_precision",
    "dcg",
    "hit_rate",
    "ndcg",
    "precision_at_k",
    "ranked_relevance",
    "recall_at_k",
    "reciprocal_rank",
    "relevance_gains",
]
