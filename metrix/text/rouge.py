"""ROUGE-N, ROUGE-L and ROUGE-Lsum (precision, recall, F-measure), averaged over pairs.

Every ROUGE type reduces one (prediction, reference) pair to three integers, its *counts*:
``hits``, the prediction's total and the reference's total, and
``P = hits / pred_total``, ``R = hits / target_total`` (0 when the total is 0),
``F = 2 P R / (P + R)`` (0 when ``P + R = 0``):

* ``rougeN``: clipped n-gram overlap ``sum_g min(count_pred(g), count_ref(g))`` over the
  n-gram totals of each side;
* ``rougeL``: the longest common subsequence (LCS) length over the token counts;
* ``rougeLsum``: summary-level LCS (Lin 2004, section 3.2), texts split into sentences on
  newlines: for each reference sentence the union of its LCS with every predicted sentence,
  each token counted at most as often as it occurs on both sides (ROUGE-1.5.5's rule).

Tokenization (rouge_score's tokenizer: lowercase, non-alphanumerics to spaces, Porter
stemming of tokens longer than 3 characters when ``use_stemmer``) and the counting run on the
host; the state, exact sums of per-pair ``(P, R, F)`` and of the pair count, merges,
allreduces and checkpoints like any other. :func:`rouge_counts` is the host step on its own:
run it in the input pipeline and pass its ``(B, K, 3)`` counts to ``ROUGE(counts=...)``, the
jit-safe path.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Integer, Shaped

from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import metric_name, refuse
from metrix.core.state import State
from metrix.text.error_rates import text_pairs

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_ROUGE_N = re.compile(r"rouge([1-9])$")
_MISSING = "ROUGE needs rouge-score (its tokenizer and Porter stemmer): pip install metrix[nlg]"


# -- tokenization: rouge_score's, with a memoised stemmer -------------------------------------


class _CachedStemmer:
    """nltk's Porter stemmer (as rouge_score builds it) with a cache: a corpus repeats words."""

    def __init__(self, stemmer):
        self.stem = functools.lru_cache(maxsize=1 << 16)(stemmer.stem)


@functools.cache
def _tokenizer(use_stemmer: bool):
    try:
        from nltk.stem import porter
        from rouge_score import tokenize
    except ImportError as err:
        raise ImportError(_MISSING) from err
    stemmer = _CachedStemmer(porter.PorterStemmer()) if use_stemmer else None
    return functools.partial(tokenize.tokenize, stemmer=stemmer)


# -- counts of one pair ----------------------------------------------------------------------------


def _ngram_hits(pred: list[str], ref: list[str], n: int) -> tuple[int, int, int]:
    pred_grams = collections.Counter(zip(*(pred[i:] for i in range(n))))
    ref_grams = collections.Counter(zip(*(ref[i:] for i in range(n))))
    hits = sum(min(c, pred_grams[g]) for g, c in ref_grams.items())
    return hits, max(len(pred) - n + 1, 0), max(len(ref) - n + 1, 0)


def _lcs_columns(ref: list[str], can: list[str]) -> list[int]:
    """Bit-parallel LCS (Allison-Dix / Hyyro): the column bit vectors ``V_0 .. V_len(can)``.

    Bit ``i`` of ``V_j`` is 0 exactly where the DP table steps up between rows ``i`` and
    ``i + 1`` of column ``j``, so ``table[i][j] = i - popcount(V_j & (2^i - 1))``; one column
    costs a few big-integer operations instead of ``len(ref)`` Python steps.
    """
    full = (1 << len(ref)) - 1
    where: dict[str, int] = {}
    for i, token in enumerate(ref):
        where[token] = where.get(token, 0) | (1 << i)
    columns = [full]
    v = full
    for token in can:
        u = v & where.get(token, 0)
        v = ((v + u) | (v - u)) & full
        columns.append(v)
    return columns


def lcs_length(ref: Sequence[str], can: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    ref = list(ref)
    return len(ref) - _lcs_columns(ref, list(can))[-1].bit_count()


def _lcs_indices(ref: list[str], can: list[str]) -> list[int]:
    """Positions in ``ref`` of one LCS: the one rouge_score (ROUGE-1.5.5) reads out, walking
    back from the last cell, taking a match when the tokens agree and otherwise moving left
    (dropping a ``can`` token) only when that keeps a strictly longer LCS than moving up."""
    columns = _lcs_columns(ref, can)

    def table(i, j):
        return i - (columns[j] & ((1 << i) - 1)).bit_count()

    i, j, out = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            out.append(i - 1)
            i, j = i - 1, j - 1
        elif table(i, j - 1) > table(i - 1, j):
            j -= 1
        else:
            i -= 1
    return out


def _summary_hits(ref_sents: list[list[str]], can_sents: list[list[str]]) -> tuple[int, int, int]:
    m, n = sum(map(len, ref_sents)), sum(map(len, can_sents))
    if not m or not n:
        return 0, n, m
    left_ref = collections.Counter(t for s in ref_sents for t in s)
    left_can = collections.Counter(t for s in can_sents for t in s)
    hits = 0
    for ref in ref_sents:
        union = set()
        for can in can_sents:
            union.update(_lcs_indices(ref, can))
        for i in sorted(union):
            token = ref[i]
            if left_ref[token] > 0 and left_can[token] > 0:
                hits += 1
                left_ref[token] -= 1
                left_can[token] -= 1
    return hits, n, m


def _sentences(text: str, tokenize) -> list[list[str]]:
    return [tokenize(s) for s in text.split("\n") if s]


def _f_measure(hits: int, pred_total: int, target_total: int) -> float:
    """F of one pair, in float64 and in rouge_score's order of operations (so that choosing
    the best reference breaks ties exactly as it does)."""
    precision = hits / max(pred_total, 1)
    recall = hits / max(target_total, 1)
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _tokens(text: str, tokenize, summary: bool) -> tuple[list[str], list[list[str]] | None]:
    """The text's tokens and, for rougeLsum, its tokenized sentences. The tokens are the
    sentences' joined: a newline is a non-alphanumeric character, a separator like any
    other, so tokenizing the whole text gives the same list (each text is tokenized once)."""
    if not summary:
        return tokenize(text), None
    sentences = _sentences(text, tokenize)
    return [t for s in sentences for t in s], sentences


def _pair_counts(pred, ref, rouge_keys) -> list[tuple[int, int, int]]:
    """Counts of one pair for each key; ``pred`` and ``ref`` are :func:`_tokens` results."""
    (pred_tokens, pred_sentences), (ref_tokens, ref_sentences) = pred, ref
    out = []
    for key in rouge_keys:
        if key == "rougeL":
            out.append((lcs_length(ref_tokens, pred_tokens), len(pred_tokens), len(ref_tokens)))
        elif key == "rougeLsum":
            out.append(_summary_hits(ref_sentences, pred_sentences))
        else:
            out.append(_ngram_hits(pred_tokens, ref_tokens, int(key[5:])))
    return out


def rouge_counts(
    preds: Sequence[str],
    targets: Sequence[str | Sequence[str]],
    rouge_keys: Sequence[str] = ROUGE_KEYS,
    use_stemmer: bool = False,
) -> np.ndarray:
    """Per-pair ROUGE counts ``(B, K, 3)`` int64: ``[hits, pred_total, target_total]`` for each
    of the ``K`` ``rouge_keys`` (host code; see the module docstring).

    ``targets[k]`` is a string or a list of references: for each ROUGE type the reference
    with the highest F-measure is used (the first on ties), as rouge_score's ``score_multi``.
    """
    rouge_keys = _validated_keys(rouge_keys)
    tokenize = _tokenizer(bool(use_stemmer))
    summary = "rougeLsum" in rouge_keys
    out = np.zeros((len(preds), len(rouge_keys), 3), np.int64)
    for row, (pred, target) in enumerate(zip(preds, targets)):
        refs = [target] if isinstance(target, str) else target
        pred_tokens = _tokens(pred, tokenize, summary)
        per_ref = [
            _pair_counts(pred_tokens, _tokens(ref, tokenize, summary), rouge_keys) for ref in refs
        ]
        for col in range(len(rouge_keys)):
            scores = [_f_measure(*counts[col]) for counts in per_ref]
            out[row, col] = per_ref[scores.index(max(scores))][col]
    return out


def _validated_keys(rouge_keys) -> tuple[str, ...]:
    if isinstance(rouge_keys, str):
        rouge_keys = (rouge_keys,)
    keys = tuple(rouge_keys)
    bad = [k for k in keys if not (k in ("rougeL", "rougeLsum") or _ROUGE_N.match(str(k)))]
    if bad or not keys or len(set(keys)) != len(keys):
        raise ValueError(
            f"rouge_keys must be distinct names among rouge1 .. rouge9, rougeL, rougeLsum; "
            f"got {rouge_keys!r}"
        )
    return keys


# -- the metric ------------------------------------------------------------------------------


def _counts_state(metric, counts, mask):
    counts = jnp.asarray(counts, jnp.int32)
    hits, pred_total, target_total = counts[..., 0], counts[..., 1], counts[..., 2]
    bad = jnp.any((hits < 0) | (hits > pred_total) | (hits > target_total), axis=-1)
    keep = broadcast_mask(mask, bad.shape)
    invalid = jnp.sum(keep & bad, dtype=jnp.float32)
    refuse(
        invalid,
        None,
        lambda n: f"counts: {n} example(s) have hits < 0 or hits above a total "
        "(rows are [hits, pred_total, target_total], as rouge_counts gives); left out under jit",
    )
    keep = keep & ~bad
    h = hits.astype(jnp.float32)
    precision = jnp.where(pred_total > 0, h / jnp.maximum(pred_total, 1), 0.0)
    recall = jnp.where(target_total > 0, h / jnp.maximum(target_total, 1), 0.0)
    both = precision + recall
    f = jnp.where(both > 0, 2 * precision * recall / jnp.where(both > 0, both, 1), 0.0)
    values = jnp.stack([f, precision, recall], axis=-1)  # (B, K, 3)
    total = jnp.sum(jnp.where(keep[:, None, None], values, 0.0), axis=0)
    return metric.State(
        parent=metric,
        total=numerics.df_from(total),
        count=numerics.df_from(jnp.sum(keep, dtype=jnp.float32)),
        invalid=numerics.df_from(invalid),
    )


class ROUGE(Metric):
    """ROUGE F-measure, precision and recall, each the mean over pairs (0-1 scale).

    ``compute()`` gives, for every ``key`` in ``rouge_keys`` (default rouge1, rouge2, rougeL,
    rougeLsum; any of rouge1 .. rouge9 too), ``key`` (the F-measure), ``key_precision`` and
    ``key_recall``: ``mean_pairs F``, etc., with per-pair values as in the module docstring.
    Equal to ``rouge_score.rouge_scorer.RougeScorer(rouge_keys, use_stemmer).score`` (or
    ``score_multi`` for several references) averaged over pairs. The mean of no pairs is NaN.

    Inputs, one of:

    * ``preds``: ``B`` strings; ``targets``: ``B`` strings or lists of reference strings (for
      each ROUGE type the reference with the best F-measure, as ``score_multi``). rougeLsum
      splits texts into sentences on ``"\\n"``. Tokenized and counted on the host, with
      rouge_score's tokenizer (needs ``pip install metrix[nlg]``); not traceable.
    * ``counts (B, K, 3)`` integers, ``[hits, pred_total, target_total]`` per pair and key, as
      :func:`rouge_counts` gives: jit-safe. Rows with ``hits < 0`` or above a total are
      refused (an error eagerly; left out and the value NaN under jit).

    ``mask (B,)`` leaves pairs out.
    """

    required_one_of = (("preds", "counts"),)

    preds: Key | None = None
    targets: Key | None = None
    counts: Key | None = None
    mask: Key | None = None
    rouge_keys: tuple[str, ...] = ROUGE_KEYS
    use_stemmer: bool = False

    def __post_init__(self):
        object.__setattr__(self, "rouge_keys", _validated_keys(self.rouge_keys))
        if not isinstance(self.use_stemmer, bool):
            raise TypeError(f"use_stemmer must be True or False, got {self.use_stemmer!r}")

    class State(State):
        """Exact sums of per-pair ``(F, P, R)`` for each ROUGE key, and of the pair count."""

        total: jax.Array = exact_sum_field(shape=lambda m: (len(m.rouge_keys), 3))
        count: jax.Array = exact_sum_field()
        invalid: jax.Array = exact_sum_field()

        def compute(self):
            means = numerics.df_divide(self.total, self.count[None, None])
            means = refuse(
                numerics.df_value(self.invalid),
                means,
                lambda _: f"{metric_name(self)}: {numerics.df_to_python(self.invalid)} "
                "example(s) had invalid counts (left out under jit); the value is refused.",
            )
            out = {}
            for k, key in enumerate(self.parent.rouge_keys):
                out[key] = means[k, 0]
                out[f"{key}_precision"] = means[k, 1]
                out[f"{key}_recall"] = means[k, 2]
            return out

    def get_state(
        self,
        preds: Sequence[str] | None = None,
        targets: Sequence[str | Sequence[str]] | None = None,
        counts: Integer[Array, "b k 3"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> State:
        if counts is not None:
            if preds is not None or targets is not None:
                raise TypeError("pass either preds/targets (strings) or counts, not both")
            if counts.shape[1] != len(self.rouge_keys):
                raise ValueError(
                    f"counts has {counts.shape[1]} keys per pair but rouge_keys has "
                    f"{len(self.rouge_keys)} ({self.rouge_keys}); build it with rouge_counts"
                )
            return self.run_compiled(_counts_state, counts, mask)
        if preds is None or targets is None:
            raise TypeError("needs preds and targets (strings) or counts")
        preds, targets = text_pairs(preds, targets, mask)
        host = rouge_counts(preds, targets, self.rouge_keys, self.use_stemmer)
        return self.run_compiled(_counts_state, jnp.asarray(host), None)


__all__ = ["ROUGE", "ROUGE_KEYS", "lcs_length", "rouge_counts"]
