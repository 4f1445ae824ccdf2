"""Miners: which pairs and triplets of a batch a loss should look at."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from metrix.core.metric import named_errors
from metrix.metric_learning.distances import _DISTANCES, pair_masks, pairwise_distances

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

    Built by hand from three index arrays (the seed API's ``MinedIndices(a, p, n)``),
    ``valid`` defaults to every slot valid; the three arrays must have the same shape.
    """

    anchors: jax.Array
    positives: jax.Array
    negatives: jax.Array
    valid: jax.Array | None = None
    num_found: jax.Array | None = None

    def __post_init__(self):
        # jax rebuilds this node from leaves that may be tracers or placeholders
        # (tree_map / transforms): only fill in `valid` when a caller left it unset.
        if self.valid is not None:
            return
        shapes = [getattr(c, "shape", None) for c in (self.anchors, self.positives, self.negatives)]
        if any(s is None for s in shapes):
            raise TypeError(
                "MinedIndices: anchors, positives and negatives must be arrays when valid is "
                "not given"
            )
        if not shapes[0] == shapes[1] == shapes[2]:
            raise ValueError(
                f"MinedIndices: anchors, positives and negatives must have the same shape, got "
                f"{tuple(shapes[0])}, {tuple(shapes[1])} and {tuple(shapes[2])}"
            )
        object.__setattr__(self, "valid", jnp.ones(shapes[0], dtype=bool))

    def __len__(self) -> int:
        return int(self.anchors.shape[0])

    def to_numpy(self):
        """The valid triplets as a host ``(T, 3)`` int array (eager only)."""
        import numpy as np

        keep = np.asarray(self.valid)
        cols = [np.asarray(c)[keep] for c in (self.anchors, self.positives, self.negatives)]
        return np.stack(cols, axis=1)


def _check_distance(distance):
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")


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
        with named_errors(type(self).__name__):  # a miner is no Metric: name it here
            _check_distance(self.distance)

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


__all__ = [
    "BatchHardMiner",
    "HardNegativeMiner",
    "MinedIndices",
    "SemiHardMiner",
    "TripletMarginMiner",
]
