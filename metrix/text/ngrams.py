"""N-gram matching shared by :mod:`~metrix.text.bleu` and :mod:`~metrix.text.chrf`.

Two implementations of the same counts:

* host (strings): ``collections.Counter`` of n-gram tuples per text, as the metrics'
  definitions are written (Python ints, exact);
* jit-safe (padded integer ids): :func:`ngram_match_counts`, exact integer names for
  n-grams (dense ranks, one sort per order) and a histogram of them per sequence.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metrix.core import numerics
from metrix.core.masks import broadcast_mask
from metrix.core.refuse import metric_name, refuse

MISSING_SACREBLEU = "{metric} needs sacrebleu ({what}): pip install metrix[nlg]"


def import_sacrebleu(metric: str, what: str):
    """The ``sacrebleu`` module, imported on first use (its import is slow), or an
    ``ImportError`` saying how to install it."""
    try:
        import sacrebleu
        import sacrebleu.metrics
    except ImportError as err:
        raise ImportError(MISSING_SACREBLEU.format(metric=metric, what=what)) from err
    return sacrebleu


# -- host side ------------------------------------------------------------------------------


def word_ngrams(tokens: Sequence[str], max_order: int) -> collections.Counter:
    """Counts of every n-gram (tuples of tokens) of orders ``1 .. max_order``."""
    counts: collections.Counter = collections.Counter()
    for n in range(1, max_order + 1):
        counts.update(zip(*(tokens[k:] for k in range(n))))
    return counts


def clipped_matches(hyp: collections.Counter, ref: collections.Counter) -> int:
    """``sum_g min(hyp[g], ref[g])``: the hypothesis n-grams the reference covers."""
    if len(ref) < len(hyp):
        return sum(min(c, hyp[g]) for g, c in ref.items() if g in hyp)
    return sum(min(c, ref[g]) for g, c in hyp.items() if g in ref)


def df_from_python_int(n) -> jax.Array:
    """Python ints (an int or a nested list of them, each below 2^48) as exact double-floats:
    ``hi`` the float32 rounding, ``lo`` the remainder (exact in float32 below 2^48)."""
    values = np.asarray(n, dtype=np.int64)
    hi = values.astype(np.float32)
    lo = (values - hi.astype(np.int64)).astype(np.float32)
    return jnp.asarray(np.stack([hi, lo], axis=-1))


def pad_sequences(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id sequences padded at the end to ``(B, L)`` int32 ids and a boolean mask (L >= 1)."""
    width = max([len(s) for s in sequences], default=0) or 1
    ids = np.zeros((len(sequences), width), np.int32)
    mask = np.zeros((len(sequences), width), bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = True
    return ids, mask


def pad_references(
    references: Sequence[Sequence[Sequence[int]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several id sequences per example padded to ``(B, R, L)`` ids and mask, and the
    ``(B, R)`` reference mask (False where an example has fewer than ``R`` references)."""
    count = max([len(r) for r in references], default=0) or 1
    width = max([len(s) for r in references for s in r], default=0) or 1
    ids = np.zeros((len(references), count, width), np.int32)
    mask = np.zeros(ids.shape, bool)
    present = np.zeros(ids.shape[:2], bool)
    for row, refs in enumerate(references):
        present[row, : len(refs)] = True
        for k, seq in enumerate(refs):
            ids[row, k, : len(seq)] = seq
            mask[row, k, : len(seq)] = True
    return ids, mask, present


class Vocabulary:
    """Token -> id, growing as tokens are seen (one vocabulary for a whole batch)."""

    def __init__(self):
        self.ids: dict = {}

    def encode(self, tokens) -> list[int]:
        ids = self.ids
        return [ids.setdefault(t, len(ids)) for t in tokens]


# -- jit-safe side --------------------------------------------------------------------------


def compact(ids, mask):
    """Valid tokens moved to the front of the last axis (stable), and their count.

    ``mask`` (same shape as ``ids``, or ``None`` for all valid) may hold any pattern: masked
    tokens are removed as with boolean indexing.
    """
    ids = jnp.asarray(ids)
    if mask is None:
        return ids, jnp.full(ids.shape[:-1], ids.shape[-1], jnp.int32)
    mask = broadcast_mask(mask, ids.shape)
    order = jnp.argsort(~mask, axis=-1, stable=True)
    return jnp.take_along_axis(ids, order, axis=-1), jnp.sum(mask, axis=-1, dtype=jnp.int32)


def _dense_ranks(*keys, bound: int | None = None):
    """Dense ranks ``(B, T)`` int32 of the tuples ``keys[0][b, t], keys[1][b, t], ...`` within
    each row: equal tuples get equal ranks, all in ``[0, T)`` (one lexicographic sort).

    ``bound``: every key is known to lie in ``[0, bound)``. When the tuple and the position
    then fit one int32, they are sorted packed as one number (a sort without payload, several
    times faster on CPU); the position comes back as the remainder.
    """
    batch, size = keys[0].shape
    iota = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32), (batch, size))
    if bound is not None and bound ** len(keys) * size < 2**31:
        packed = functools.reduce(lambda acc, k: acc * bound + k, keys[1:], keys[0]) * size + iota
        ordered = jnp.sort(packed, axis=1)
        perm, tuples = ordered % size, [ordered // size]
    else:
        *tuples, perm = jax.lax.sort((*keys, iota), dimension=1, num_keys=len(keys))
    changed = functools.reduce(jnp.logical_or, [k[:, 1:] != k[:, :-1] for k in tuples])
    run = jnp.cumsum(jnp.pad(changed, ((0, 0), (1, 0))), axis=1, dtype=jnp.int32)
    rows = jnp.arange(batch)[:, None]
    return jnp.zeros((batch, size), jnp.int32).at[rows, perm].set(run)


def _shift(pred, refs, k: int):
    """Each sequence moved ``k`` positions left (its end padded with 0): the token ``k`` after."""

    def shift(x):
        cut = x[..., k:]
        return jnp.pad(cut, [(0, 0)] * (x.ndim - 1) + [(0, x.shape[-1] - cut.shape[-1])])

    return shift(pred), shift(refs)


def ngram_match_counts(pred, pred_len, refs, ref_len, present, max_order: int):
    """Clipped n-gram matches of each hypothesis against its references (jit-safe).

    ``pred (B, L)`` / ``refs (B, R, M)`` integer ids with their valid tokens at the front
    (:func:`compact`), ``pred_len (B,)`` / ``ref_len (B, R)`` their lengths, ``present (B, R)``
    which references exist. Returns int32 counts for orders ``n = 1 .. max_order``:

    * ``pred_total (B, N)``: hypothesis n-grams, ``max(len - n + 1, 0)``;
    * ``ref_total (B, R, N)``: the same for each reference;
    * ``matches (B, R, N)``: ``sum_g min(c_h(g), c_r(g))`` against each reference (chrF);
    * ``matches_max (B, N)``: ``sum_g min(c_h(g), max_r c_r(g))`` over the present
      references (BLEU's clipping by the largest reference count).

    How: every n-gram of an example (hypothesis and references together, ``T = L + R M``
    positions) gets an exact integer name, the dense rank of the pair (its (n-1)-gram's name,
    the name of its last token), so n-grams are equal exactly when their names are; a
    histogram of the names per sequence, ``(B, T, 1 + R)``, then gives ``c_h`` and ``c_r``.
    Each order costs one sort of ``T`` pairs and one scatter-add: ``O(N T log T)``.
    """
    batch, length = pred.shape
    refs_count, width = refs.shape[1:]
    segment = jnp.concatenate(
        [  # which sequence each position belongs to: 0 hyp, 1 + r refs
            jnp.zeros(length, jnp.int32),
            jnp.repeat(jnp.arange(1, refs_count + 1), width),
        ]
    )
    rows = jnp.arange(batch)[:, None]

    def joined(p, r):
        return jnp.concatenate([p, r.reshape(batch, refs_count * width)], axis=1)

    def split(x):
        return x[:, :length], x[:, length:].reshape(batch, refs_count, width)

    unigram = _dense_ranks(joined(pred, refs).astype(jnp.int32))
    names = unigram
    pred_pos, ref_pos = jnp.arange(length), jnp.arange(width)
    out = {"pred_total": [], "ref_total": [], "matches": [], "matches_max": []}
    for n in range(1, max_order + 1):
        if n > 1:
            last = joined(*_shift(*split(unigram), n - 1))
            names = _dense_ranks(names, last, bound=names.shape[1])
        pred_count = jnp.maximum(pred_len - n + 1, 0)
        ref_count = jnp.maximum(ref_len - n + 1, 0)
        valid = joined(pred_pos < pred_count[:, None], ref_pos < ref_count[..., None])
        histogram = jnp.zeros((batch, valid.shape[1], refs_count + 1), jnp.int32)
        histogram = histogram.at[rows, names, segment].add(valid.astype(jnp.int32))
        in_hyp, in_refs = histogram[..., :1], histogram[..., 1:]  # (B, T, 1), (B, T, R)
        most = jnp.max(jnp.where(present[:, None, :], in_refs, 0), axis=-1)
        out["pred_total"].append(pred_count)
        out["ref_total"].append(ref_count)
        out["matches"].append(jnp.sum(jnp.minimum(in_hyp, in_refs), axis=1))
        out["matches_max"].append(jnp.sum(jnp.minimum(in_hyp[..., 0], most), axis=1))
    return {k: jnp.stack(v, axis=-1).astype(jnp.int32) for k, v in out.items()}


def reference_inputs(pred_ids, pred_mask, target_ids, target_mask, reference_mask, mask):
    """The id path's inputs, checked and compacted (jit-safe): ``pred, pred_len, refs,
    ref_len, present, keep`` for :func:`ngram_match_counts`.

    ``keep (B,)`` is ``mask`` without the examples that have no reference at all (every
    ``reference_mask`` entry False): those are refused, an error eagerly, left out under jit
    (``invalid`` counts them, so that ``compute`` is NaN).
    """
    if target_ids.shape[0] != pred_ids.shape[0]:
        raise ValueError(
            f"pred_ids has {pred_ids.shape[0]} examples but target_ids {target_ids.shape[0]}"
        )
    pred, pred_len = compact(pred_ids, pred_mask)
    refs, ref_len = compact(target_ids, target_mask)
    present = broadcast_mask(reference_mask, refs.shape[:2])
    keep = broadcast_mask(mask, pred_len.shape)
    orphan = ~jnp.any(present, axis=1)
    invalid = jnp.sum(keep & orphan, dtype=jnp.int32)
    refuse(
        invalid,
        None,
        lambda n: (
            f"reference_mask: {n} example(s) have no reference (every entry False); "
            "give each example at least one (left out under jit, and the value NaN)"
        ),
    )
    return pred, pred_len, refs, ref_len, present, keep & ~orphan, invalid


def refuse_unreferenced(state, score):
    """``score``, refused (raised eagerly, NaN under jit) when ``state.invalid`` counts examples
    that had no reference: BLEU's and CHRF's shared rule."""
    return refuse(
        numerics.df_value(state.invalid),
        score,
        lambda _: (
            f"{metric_name(state)}: {numerics.df_to_python(state.invalid)} "
            "example(s) had no reference (left out under jit); the value is refused."
        ),
    )


__all__ = [
    "compact",
    "ngram_match_counts",
    "pad_references",
    "pad_sequences",
    "reference_inputs",
    "refuse_unreferenced",
]
