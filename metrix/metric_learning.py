"""Metric-learning losses and miners, as mergeable metrics and pure functions.

A loss here is at the same time a training objective and an evaluation metric:

    loss_fn = mx.TripletMarginLoss(margin=0.2)
    loss = loss_fn(embeddings, labels)              # differentiable scalar (jax.grad works)
    s = loss_fn.get_state(embeddings, labels)       # state: merges over eval batches/devices

**State semantics.** Pair and triplet losses see pairs *inside* one batch only. Their state
holds, per loss term (e.g. the positive and the negative part of the contrastive loss), the
sum of the per-element losses and the number of elements the reduction divides by (all
valid elements for ``reduction="mean"``, those with a loss > 0 for ``"mean_nonzero"``). So
a merged state is the mean over *all pairs/triplets of all batches* (each formed within its
batch), and a single batch gives exactly the training loss. Metrics of this kind are not
split-invariant: splitting the same data differently forms different pairs.

**Batches without a valid pair/triplet** give 0 with zero gradient (never NaN); distances
use a safe square root (zero gradient at zero distance).

**Memory.** All-triplet losses never form an ``N^3`` tensor: the plain hinge sums each
anchor's losses analytically over its sorted negative distances (``O(N^2 log N)``), and
``smooth_loss`` / ``swap`` loop over chunks of anchors with rematerialised gradients.
``TripletMarginMiner`` finds each pair's negatives by binary search in sorted rows and
needs ``O(N^2 + capacity)`` memory.

**Reproducing pytorch-metric-learning (PML).** PML's defaults differ from the seed API's:
its ``LpDistance`` L2-normalises embeddings (pass ``normalize=True``), its triplet and
contrastive losses use ``AvgNonZeroReducer`` (``reduction="mean_nonzero"``), its
``TripletMarginLoss`` margin is 0.05, ``NTXentLoss`` temperature 0.07, and its ArcFace
margin is in degrees (``margin=np.radians(28.6)``). Each class says what to set.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix import numerics
from metrix.keys import REQUIRED, Key
from metrix.metric import Metric
from metrix.state import State, exact_sum_field

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


# ---------------------------------------------------------------------------------------
# Mined indices and miners
# ---------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MinedIndices:
    """Triplets ``(anchors[t], positives[t], negatives[t])`` where ``valid[t]``.

    Fixed-size arrays (int32 indices into the batch, a bool mask), so mining and the losses
    that consume the triplets run under ``jit``; invalid slots hold index 0 (unlike the seed
    API's variable-length arrays: select ``anchors[valid]`` or use :meth:`to_numpy`).
    ``num_found``: how many triplets qualified; more than ``valid.sum()`` when a miner's
    capacity truncated them (overflow is reported, never silent).
    """

    anchors: jax.Array
    positives: jax.Array
    negatives: jax.Array
    valid: jax.Array
    num_found: jax.Array | None = None

    def __len__(self) -> int:
        return int(self.anchors.shape[0])

    def to_numpy(self):
        """The valid triplets as a host ``(T, 3)`` int array (eager only)."""
        import numpy as np

        keep = np.asarray(self.valid)
        cols = [np.asarray(c)[keep] for c in (self.anchors, self.positives, self.negatives)]
        return np.stack(cols, axis=1)


def _check_distance(owner, distance):
    if distance not in _DISTANCES:
        raise ValueError(f"{owner}: distance must be one of {_DISTANCES}, got {distance!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Miner:
    """Shared configuration of the miners: the distance they rank by.

    ``mine(embeddings, labels, mask=None)`` (or calling the miner) returns
    :class:`MinedIndices`; it is jit-able and never differentiated. pytorch-metric-learning's
    miners rank by ``LpDistance`` of normalised embeddings: pass ``normalize=True``.
    """

    distance: str = "euclidean"
    normalize: bool = False

    def __post_init__(self):
        _check_distance(type(self).__name__, self.distance)

    def _distances(self, embeddings, labels, mask):
        embeddings = jax.lax.stop_gradient(jnp.asarray(embeddings))
        d = pairwise_distances(embeddings, distance=self.distance, normalize=self.normalize)
        pos, neg = pair_masks(labels, mask)
        return d, pos, neg

    def __call__(self, embeddings, labels, mask=None) -> MinedIndices:
        return self.mine(embeddings, labels, mask)


def _num_valid(valid):
    return jnp.sum(valid, dtype=jnp.int32)


def _pair_grid(n):
    anchors = jnp.repeat(jnp.arange(n, dtype=jnp.int32), n)
    others = jnp.tile(jnp.arange(n, dtype=jnp.int32), n)
    return anchors, others


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchHardMiner(_Miner):
    """For every anchor, its farthest positive and its closest negative (N slots).

    A slot is valid when the anchor has a positive and a negative. Same triplets as
    pytorch-metric-learning's ``BatchHardMiner`` (with ``normalize=True``).
    """

    def mine(self, embeddings, labels, mask=None) -> MinedIndices:
        d, pos, neg = self._distances(embeddings, labels, mask)
        hardest_pos = jnp.argmax(jnp.where(pos, d, -jnp.inf), axis=1).astype(jnp.int32)
        hardest_neg = jnp.argmin(jnp.where(neg, d, jnp.inf), axis=1).astype(jnp.int32)
        valid = jnp.any(pos, 1) & jnp.any(neg, 1)
        anchors = jnp.arange(d.shape[0], dtype=jnp.int32)
        return MinedIndices(anchors, hardest_pos, hardest_neg, valid, _num_valid(valid))


@dataclasses.dataclass(frozen=True, kw_only=True)
class HardNegativeMiner(_Miner):
    """For every (anchor, positive) pair, the negative closest to the anchor (N^2 slots).

    Slot ``a * N + p`` holds pair ``(a, p)``; valid when ``p`` is a positive of ``a`` and
    ``a`` has a negative.
    """

    def mine(self, embeddings, labels, mask=None) -> MinedIndices:
        d, pos, neg = self._distances(embeddings, labels, mask)
        n = d.shape[0]
        closest = jnp.argmin(jnp.where(neg, d, jnp.inf), axis=1).astype(jnp.int32)
        anchors, positives = _pair_grid(n)
        valid = pos.reshape(-1) & jnp.repeat(jnp.any(neg, 1), n)
        return MinedIndices(anchors, positives, closest[anchors], valid, _num_valid(valid))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SemiHardMiner(_Miner):
    """For every (anchor, positive) pair, the closest semi-hard negative (N^2 slots).

    Semi-hard (FaceNet): ``d(a, p) < d(a, n) < d(a, p) + margin``; of those, the one
    closest to the anchor. Slot ``a * N + p``; valid when such a negative exists. Found by
    a binary search in each anchor's sorted negative distances (``O(N^2 log N)``, no
    ``N^3`` tensor).
    """

    margin: float = 1.0

    def mine(self, embeddings, labels, mask=None) -> MinedIndices:
        d, pos, neg = self._distances(embeddings, labels, mask)
        n = d.shape[0]
        order = jnp.argsort(jnp.where(neg, d, jnp.inf), axis=1)
        sorted_d = jnp.take_along_axis(jnp.where(neg, d, jnp.inf), order, axis=1)
        # first negative strictly farther than the positive
        first = jax.vmap(lambda row, q: jnp.searchsorted(row, q, side="right"))(sorted_d, d)
        first = jnp.minimum(first, n - 1)
        candidate_d = jnp.take_along_axis(sorted_d, first, axis=1)
        candidate = jnp.take_along_axis(order, first, axis=1).astype(jnp.int32)
        semi_hard = (candidate_d > d) & (candidate_d < d + self.margin)
        anchors, positives = _pair_grid(n)
        valid = (pos & semi_hard).reshape(-1)
        return MinedIndices(anchors, positives, candidate.reshape(-1), valid, _num_valid(valid))


def _argsort_rows(x):
    """``(sorted rows, stable order)`` of float32 rows, sorted through int32 keys (as
    :func:`_sort_rows`, faster than a float sort on CPU); ties keep index order."""
    keys = jax.lax.bitcast_convert_type(x, jnp.int32)
    flip = jnp.int32(0x7FFFFFFF)
    keys = jnp.where(keys < 0, keys ^ flip, keys)
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, 1)
    keys, order = jax.lax.sort((keys, iota), dimension=1, is_stable=True, num_keys=1)
    return jax.lax.bitcast_convert_type(jnp.where(keys < 0, keys ^ flip, keys), jnp.float32), order


def _count_margin_prefix(sorted_rows, d_ap, bound):
    """``#{j : sorted_rows[a, j] - d_ap[a, p] <= bound}`` for every ``(a, p)``.

    A binary search on the predicate itself (not on ``d_ap + bound``), so a triplet's
    margin ``d_an - d_ap`` is rounded exactly as pytorch-metric-learning rounds it; the
    predicate is monotone along a sorted row because rounding is.
    """
    n_cols = sorted_rows.shape[1]

    def per_row(row, queries):
        lo = jnp.zeros(queries.shape, jnp.int32)
        hi = jnp.full(queries.shape, n_cols, jnp.int32)

        def step(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) // 2
            ok = (mid < hi) & (row[jnp.minimum(mid, n_cols - 1)] - queries <= bound)
            return jnp.where(ok, mid + 1, lo), jnp.where(ok, hi, mid)

        return jax.lax.fori_loop(0, n_cols.bit_length(), step, (lo, hi))[0]

    return jax.vmap(per_row)(sorted_rows, d_ap)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TripletMarginMiner(_Miner):
    """Triplets by their margin ``m_t = d(a, n) - d(a, p)`` (pytorch-metric-learning's rule).

    ``type_of_triplets``: ``"all"`` ``m_t <= margin`` (violating the margin), ``"hard"``
    ``m_t <= 0``, ``"semihard"`` ``0 < m_t <= margin``, ``"easy"`` ``m_t > margin``.
    Slots hold the triplets packed to the front, grouped by ``(a, p)`` in lexicographic
    order and, within a pair, by increasing ``d(a, n)`` (hardest negative first; ties by
    index). ``capacity`` bounds the slots (``None``: ``N^3``, every possible triplet,
    which only small batches afford); when it truncates, the leading pairs keep theirs.

    Memory ``O(N^2 + capacity)``, work ``O(N^2 log N + capacity log N)``: for an
    ``(a, p)`` pair the selected negatives are a contiguous run of the anchor's sorted
    negative distances, found by binary search, and each slot finds its pair by a binary
    search in the cumulative counts. No ``N^3`` tensor; ``N^3`` must stay below ``2^31``.
    """

    margin: float = 0.2
    type_of_triplets: str = "all"
    capacity: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.type_of_triplets not in ("all", "hard", "semihard", "easy"):
            raise ValueError(
                "TripletMarginMiner: type_of_triplets must be 'all', 'hard', 'semihard' or "
                f"'easy', got {self.type_of_triplets!r}"
            )

    def _negative_runs(self, d_ap, sorted_neg, num_neg):
        """Per ``(a, p)``: ``[start, stop)`` in a's sorted negatives of the selected ones."""
        def below(bound):  # how many negatives have m_t <= bound
            return jnp.minimum(_count_margin_prefix(sorted_neg, d_ap, bound), num_neg[:, None])

        none, every = jnp.zeros_like(d_ap, jnp.int32), jnp.broadcast_to(num_neg[:, None], d_ap.shape)
        if self.type_of_triplets == "all":
            return none, below(self.margin)
        if self.type_of_triplets == "hard":  # m_t <= margin and m_t <= 0
            return none, below(min(self.margin, 0.0))
        if self.type_of_triplets == "semihard":  # 0 < m_t <= margin
            start = below(0.0)
            return start, jnp.maximum(below(self.margin), start)
        return below(self.margin), every  # easy: m_t > margin

    def mine(self, embeddings, labels, mask=None) -> MinedIndices:
        n = jnp.shape(embeddings)[0]
        if n**3 >= 2**31:
            raise ValueError(f"TripletMarginMiner: batch of {n} has N^3 >= 2^31 triplets (int32 slots)")
        d, pos, neg = self._distances(embeddings, labels, mask)
        size = n**3 if self.capacity is None else self.capacity
        sorted_neg, order = _argsort_rows(jnp.where(neg, d, jnp.inf))
        num_neg = jnp.sum(neg, axis=1, dtype=jnp.int32)
        start, stop = self._negative_runs(d, sorted_neg, num_neg)
        counts = jnp.where(pos, stop - start, 0).reshape(-1)
        ends = jnp.cumsum(counts)  # slots of pair q are [ends[q] - counts[q], ends[q])
        slots = jnp.arange(size, dtype=jnp.int32)
        pair = jnp.minimum(jnp.searchsorted(ends, slots, side="right"), n * n - 1).astype(jnp.int32)
        rank = slots - (ends[pair] - counts[pair])
        anchors, positives = pair // n, pair % n
        column = jnp.minimum(start.reshape(-1)[pair] + rank, n - 1)
        negatives = order[anchors, column]
        valid = slots < ends[-1]
        zero = jnp.zeros_like(slots)
        slots_of = [jnp.where(valid, i, zero) for i in (anchors, positives, negatives)]
        return MinedIndices(*slots_of, valid, ends[-1])


# ---------------------------------------------------------------------------------------
# The state: sums and counts of loss terms
# ---------------------------------------------------------------------------------------


class LossTermsState(State):
    """Per loss term k: the sum of per-element losses and the count the reduction divides by.

    ``compute()``: ``sum_k total_k / count_k`` (``reduction`` "mean"/"mean_nonzero"; a term
    with count 0 contributes 0) or ``sum_k total_k`` ("sum"). Sums and counts are
    double-floats (exact counts) and stay differentiable.
    """

    total: jax.Array = exact_sum_field(shape=lambda m: (m.num_terms,))
    count: jax.Array = exact_sum_field(shape=lambda m: (m.num_terms,))

    @classmethod
    def from_terms(cls, totals, counts, parent: Any = None):
        totals = jnp.stack([jnp.asarray(t, jnp.float32) for t in totals])
        counts = jnp.stack([jnp.asarray(c, jnp.float32) for c in counts])
        return cls(parent=parent, total=numerics.df_from(totals), count=numerics.df_from(counts))

    def compute(self):
        reduction = getattr(self.parent, "reduction", "mean")
        if reduction == "sum":
            return jnp.sum(numerics.df_value(self.total))
        counted = self.count[..., 0] > 0
        safe = jnp.where(counted[..., None], self.count, jnp.array([1.0, 0.0], jnp.float32))
        means = jnp.where(counted, numerics.df_divide(self.total, safe), 0.0)
        return jnp.sum(means)


def _check_reduction(owner, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(f"{owner}: reduction must be one of {allowed}, got {reduction!r}")


def _count(valid, losses, reduction):
    """What the reduction divides by: valid elements, or those with a loss > 0."""
    if reduction == "mean_nonzero":
        valid = valid & (losses > 0)
    return jnp.sum(valid, dtype=jnp.float32)


def _masked_sum(valid, values):
    return jnp.sum(jnp.where(valid, values, 0.0))


class MetricLearningLoss(Metric):
    """Base of the losses on embeddings and labels (keys, reduction, terms)."""

    num_terms: ClassVar[int] = 1

    def __post_init__(self):
        _check_reduction(type(self).__name__, getattr(self, "reduction", "mean"))
        if hasattr(self, "distance"):
            _check_distance(type(self).__name__, self.distance)

    class State(LossTermsState):
        pass


def _keep(n, mask):
    return jnp.ones((n,), bool) if mask is None else jnp.asarray(mask).astype(bool).reshape(n)


def _mined_valid(indices: MinedIndices, keep):
    return (
        jnp.asarray(indices.valid, bool)
        & keep[indices.anchors]
        & keep[indices.positives]
        & keep[indices.negatives]
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

    class State(LossTermsState):
        pass

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
        return self.State.from_terms(totals, counts)


# ---------------------------------------------------------------------------------------
# Triplet margin
# ---------------------------------------------------------------------------------------


def _sort_rows(x):
    """Each row of ``x`` sorted ascending.

    float32 rows sort through order-preserving int32 keys: XLA's CPU sort of int32 is
    about 4x faster than of float32 (no NaN-aware comparator). NaNs are not expected.
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

    class State(LossTermsState):
        pass

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
        return self.State.from_terms([total], [count])


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

    class State(LossTermsState):
        pass

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        total, count = ntxent_terms(
            embeddings, labels, temperature=self.temperature, mask=mask, reduction=self.reduction
        )
        return self.State.from_terms([total], [count])


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

    class State(LossTermsState):
        pass

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = supcon_losses(embeddings, labels, temperature=self.temperature, mask=mask)
        return self.State.from_terms([_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)])


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

    class State(LossTermsState):
        pass

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = multi_similarity_losses(
            embeddings, labels, alpha=self.alpha, beta=self.beta, base=self.base, mask=mask
        )
        return self.State.from_terms([_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)])


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

    class State(LossTermsState):
        pass

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        losses, valid = circle_losses(embeddings, labels, m=self.m, gamma=self.gamma, mask=mask)
        return self.State.from_terms([_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)])


# ---------------------------------------------------------------------------------------
# Losses with trainable weights: ArcFace, CosFace, ProxyNCA, ProxyAnchor
# ---------------------------------------------------------------------------------------


class _WeightedLoss(MetricLearningLoss):
    """Shared input handling of the losses whose trainable weights are passed as ``params``."""

    def _check_params(self, params, name, shape):
        if not isinstance(params, dict) or name not in params:
            raise TypeError(
                f"{type(self).__name__}: params must be a dict with {name!r} (create it with "
                f"{type(self).__name__}.init(rng)), got {type(params).__name__}"
            )
        got = tuple(params[name].shape)
        if got != shape:
            raise ValueError(f"{type(self).__name__}: params[{name!r}] has shape {got}, expected {shape}")
        return params[name]


def _cosine_logits(embeddings, class_vectors):
    """``cos(e_i, w_c)`` for class vectors as rows of ``class_vectors`` (C, d)."""
    e = l2_normalize(jnp.asarray(embeddings, jnp.float32))
    w = l2_normalize(jnp.asarray(class_vectors, jnp.float32))
    return jnp.matmul(e, w.T, precision=_HIGHEST)


def additive_angular_margin(cosine, margin: float):
    """ArcFace's target logit ``cos(theta + m)``, kept monotonic past ``theta = pi - m``.

    ``cos(theta + m) = c cos m - sin(theta) sin m`` with a safe ``sin(theta) = sqrt(1 - c^2)``
    (no ``acos``: finite gradients at ``|c| = 1``); for ``theta > pi - m`` it is
    ``c - m sin m`` (pytorch-metric-learning's continuation).
    """
    sin = safe_sqrt(1.0 - jnp.square(cosine))
    with_margin = cosine * math.cos(margin) - sin * math.sin(margin)
    return jnp.where(cosine >= -math.cos(margin), with_margin, cosine - margin * math.sin(margin))


def margin_softmax_losses(embeddings, labels, weights, *, margin, scale, kind):
    """Per-example cross-entropy of scaled cosine logits with a margin on the target class.

    ``weights``: ``(embedding_dim, num_classes)`` (pytorch-metric-learning's ``W`` layout).
    ``kind="arcface"``: target ``cos(theta + m)``; ``"cosface"``: ``cos(theta) - m``.
    """
    cosine = _cosine_logits(embeddings, jnp.asarray(weights).T)
    onehot = jax.nn.one_hot(labels, cosine.shape[1], dtype=bool)
    if kind == "arcface":
        target = additive_angular_margin(cosine, margin)
    else:
        target = cosine - margin
    logits = scale * jnp.where(onehot, target, cosine)
    return -jnp.sum(jnp.where(onehot, jax.nn.log_softmax(logits, axis=1), 0.0), axis=1)


class _MarginSoftmaxLoss(_WeightedLoss):
    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    reduction: str = "mean"

    _kind: ClassVar[str] = ""

    def init(self, rng) -> dict:
        """``{"weights": (embedding_dim, num_classes)}`` standard normal (PML's init)."""
        return {"weights": jax.random.normal(rng, (self.embedding_dim, self.num_classes), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ):
        weights = self._check_params(params, "weights", (self.embedding_dim, self.num_classes))
        losses = margin_softmax_losses(
            embeddings, labels, weights, margin=self.margin, scale=self.scale, kind=self._kind
        )
        valid = _keep(embeddings.shape[0], mask)
        return self.State.from_terms([_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)])


class ArcFaceLoss(_MarginSoftmaxLoss):
    """ArcFace (Deng et al. 2019): softmax over ``scale * cos`` with ``cos(theta + margin)``
    for the target class; mean over examples.

    Class weights are a pytree ``params = loss.init(rng)`` = ``{"weights": (d, C)}`` passed
    as an input, so ``jax.grad`` reaches them: ``loss(embeddings, labels, params)``.
    ``margin`` is in radians (PML's ``ArcFaceLoss`` takes degrees: 28.6 deg = 0.5 rad).
    """

    margin: float = 0.5
    scale: float = 64.0
    _kind: ClassVar[str] = "arcface"

    class State(LossTermsState):
        pass


class CosFaceLoss(_MarginSoftmaxLoss):
    """CosFace (Wang et al. 2018): softmax over ``scale * cos`` with ``cos(theta) - margin``
    for the target class; mean over examples. Weights as :class:`ArcFaceLoss`.
    """

    margin: float = 0.35
    scale: float = 64.0
    _kind: ClassVar[str] = "cosface"

    class State(LossTermsState):
        pass


def proxy_nca_losses(embeddings, labels, proxies, *, softmax_scale: float = 1.0):
    """ProxyNCA per example: ``-log softmax_c(-scale ||e^ - p^_c||^2)[y]`` (unit vectors).

    ``proxies``: ``(num_classes, embedding_dim)``. As pytorch-metric-learning, the target
    proxy is part of the softmax's denominator.
    """
    e = l2_normalize(jnp.asarray(embeddings, jnp.float32))
    p = l2_normalize(jnp.asarray(proxies, jnp.float32))
    sq = jnp.maximum(
        jnp.sum(e * e, 1)[:, None] + jnp.sum(p * p, 1)[None, :] - 2 * jnp.matmul(e, p.T, precision=_HIGHEST),
        0.0,
    )
    log_probs = jax.nn.log_softmax(-softmax_scale * sq, axis=1)
    return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=1)[:, 0]


class ProxyNCALoss(_WeightedLoss):
    """ProxyNCA (Movshovitz-Attias et al. 2017): NCA against one learned proxy per class.

    ``params = loss.init(rng)`` = ``{"proxies": (num_classes, embedding_dim)}``; mean over
    examples. Matches PML's ``ProxyNCALoss(softmax_scale=1)`` (squared distances between
    normalised vectors), which drops examples whose probability underflows to 0; here they
    count with their (large, finite) loss.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    softmax_scale: float = 1.0
    reduction: str = "mean"

    class State(LossTermsState):
        pass

    def init(self, rng) -> dict:
        """``{"proxies": (num_classes, embedding_dim)}`` standard normal (PML's init)."""
        return {"proxies": jax.random.normal(rng, (self.num_classes, self.embedding_dim), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        proxies = self._check_params(params, "proxies", (self.num_classes, self.embedding_dim))
        losses = proxy_nca_losses(embeddings, labels, proxies, softmax_scale=self.softmax_scale)
        valid = _keep(embeddings.shape[0], mask)
        return self.State.from_terms([_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)])


def proxy_anchor_terms(embeddings, labels, proxies, *, margin=0.1, alpha=32.0, mask=None):
    """Proxy-Anchor (Kim et al. 2020) sums over classes ``c`` with cosines ``s_ic``::

        pos_c = log(1 + sum_{i: y_i = c}  exp(-alpha (s_ic - margin)))
        neg_c = log(1 + sum_{i: y_i != c} exp( alpha (s_ic + margin)))

    Returns ``((sum_c pos_c, sum_c neg_c), (#classes present, num_classes))``; the loss is
    ``sum pos / #present + sum neg / num_classes``.
    """
    num_classes = proxies.shape[0]
    keep = _keep(embeddings.shape[0], mask)
    s = _cosine_logits(embeddings, proxies)
    member = jax.nn.one_hot(labels, num_classes, dtype=bool) & keep[:, None]
    other = ~jax.nn.one_hot(labels, num_classes, dtype=bool) & keep[:, None]
    pos = _log1p_sum_exp(-alpha * (s - margin), member, axis=0)
    neg = _log1p_sum_exp(alpha * (s + margin), other, axis=0)
    present = jnp.sum(jnp.any(member, axis=0), dtype=jnp.float32)
    classes = jnp.where(jnp.any(keep), float(num_classes), 0.0)
    return (jnp.sum(pos), jnp.sum(neg)), (present, classes)


class ProxyAnchorLoss(_WeightedLoss):
    """Proxy-Anchor loss (Kim et al. 2020): every proxy is an anchor against the batch.

    ``params = loss.init(rng)`` = ``{"proxies": (num_classes, embedding_dim)}``. The loss
    is ``mean over present classes of pos_c + mean over all classes of neg_c`` (see
    :func:`proxy_anchor_terms`), as PML's ``ProxyAnchorLoss(margin=0.1, alpha=32)``
    (``scale`` here is PML's ``alpha``). Merged states pool the class sums and counts of
    all batches.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    margin: float = 0.1
    scale: float = 32.0

    num_terms: ClassVar[int] = 2

    class State(LossTermsState):
        pass

    def init(self, rng) -> dict:
        """``{"proxies": ...}`` Kaiming-normal with fan_out = num_classes (PML's init)."""
        std = math.sqrt(2.0 / self.num_classes)
        return {"proxies": std * jax.random.normal(rng, (self.num_classes, self.embedding_dim), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        proxies = self._check_params(params, "proxies", (self.num_classes, self.embedding_dim))
        totals, counts = proxy_anchor_terms(
            embeddings, labels, proxies, margin=self.margin, alpha=self.scale, mask=mask
        )
        return self.State.from_terms(totals, counts)


__all__ = [
    "MinedIndices",
    "BatchHardMiner",
    "HardNegativeMiner",
    "SemiHardMiner",
    "TripletMarginMiner",
    "LossTermsState",
    "ContrastiveLoss",
    "TripletMarginLoss",
    "NTXentLoss",
    "SupConLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "ArcFaceLoss",
    "CosFaceLoss",
    "ProxyNCALoss",
    "ProxyAnchorLoss",
    "pairwise_distances",
    "pair_masks",
    "contrastive_terms",
    "triplet_margin_terms",
    "ntxent_terms",
    "supcon_losses",
    "multi_similarity_losses",
    "circle_losses",
    "margin_softmax_losses",
    "proxy_nca_losses",
    "proxy_anchor_terms",
]
