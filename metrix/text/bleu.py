"""Corpus BLEU (Papineni et al. 2002) as sacreBLEU defines it, on its 0-100 scale.

The corpus statistics are sums over examples: ``c`` the hypothesis tokens, ``r`` the
reference length, for every example the length of the reference closest to its hypothesis
(the shorter one on ties), and for each order ``n = 1 .. N`` ``m_n``, the hypothesis
n-grams matched (each n-gram type counted at most as often as it occurs in the reference
where it occurs most), and ``t_n``, the hypothesis n-grams. Then

    BLEU = 100 * BP * exp( (1 / N') * sum_{n <= N'} log p_n ),   p_n = m_n / t_n,
    BP   = 1 if c >= r, exp(1 - r / c) if 0 < c < r, 0 if c = 0,

with ``N' = N``, or with ``effective_order`` the orders before the first with ``t_n = 0``.
The score is 0 when nothing matches, when an order ``n <= N'`` has ``t_n = 0``, or when some
``p_n = 0`` is not smoothed. Smoothing of a zero ``m_n`` (Chen & Cherry 2014, as sacreBLEU):
``exp`` (the default, mteval-v13a's: ``p_n = 1 / (2^k t_n)`` for the ``k``-th such order),
``floor`` (``p_n = smooth_value / t_n``, default 0.1), ``add-k`` (``m_n + k`` over ``t_n + k``
for ``n >= 2``, default ``k = 1``), ``none``.

The state is the statistics as exact double-float sums (``matches``, ``totals`` of shape
``(N,)``, ``pred_length``, ``ref_length``): it merges, allreduces and checkpoints like any
other, and ``compute()`` is jit-safe. Tokenization (sacreBLEU's own tokenizers) and n-gram
counting run on the host for strings; padded integer ids run under jit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Integer, Shaped

from metrix.core import numerics
from metrix.core.fields import exact_sum_field
from metrix.core.keys import Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.text import ngrams
from metrix.text.error_rates import text_pairs

SMOOTH_METHODS = ("exp", "floor", "add-k", "none")
_SMOOTH_DEFAULTS = {"exp": None, "floor": 0.1, "add-k": 1.0, "none": None}
# sacreBLEU 2.x's tokenizer names (checked at construction without importing sacrebleu,
# whose import is slow; the ones needing extra packages fail in sacrebleu when first used).
TOKENIZERS = (
    "13a",
    "none",
    "intl",
    "char",
    "zh",
    "ja-mecab",
    "ko-mecab",
    "spm",
    "flores101",
    "flores200",
    "spBLEU-1K",
)


# -- host side: tokens and statistics ---------------------------------------------------------


@functools.cache
def _tokenizer(name: str):
    sacrebleu = ngrams.import_sacrebleu("BLEU", "its tokenizers")
    return sacrebleu.metrics.BLEU(tokenize=name).tokenizer


def bleu_tokens(text: str, tokenize: str = "13a", lowercase: bool = False) -> list[str]:
    """The tokens BLEU counts: lowercased if asked, trailing whitespace stripped, sacreBLEU's
    ``tokenize`` tokenizer, split on whitespace (host code, needs sacrebleu)."""
    if lowercase:
        text = text.lower()
    return _tokenizer(tokenize)(text.rstrip()).split()


def _closest_length(hyp_len: int, ref_lens: list[int]) -> int:
    # sacreBLEU's choice: the smallest |hyp - ref|, then the shorter reference.
    return min(ref_lens, key=lambda r: (abs(hyp_len - r), r))


def _segment_statistics(hyp: list[str], refs: list[list[str]], order: int) -> list[int]:
    counts = ngrams.word_ngrams(hyp, order)
    best = ngrams.word_ngrams(refs[0], order)
    for ref in refs[1:]:  # the most occurrences of each n-gram in any one reference
        for gram, count in ngrams.word_ngrams(ref, order).items():
            best[gram] = max(best[gram], count)
    matches = [0] * order
    for gram, count in counts.items():
        if gram in best:
            matches[len(gram) - 1] += min(count, best[gram])
    totals = [max(len(hyp) - n + 1, 0) for n in range(1, order + 1)]
    return [len(hyp), _closest_length(len(hyp), [len(r) for r in refs]), *matches, *totals]


def bleu_statistics(
    preds: Sequence[str],
    targets: Sequence[str | Sequence[str]],
    max_ngram_order: int = 4,
    tokenize: str = "13a",
    lowercase: bool = False,
) -> np.ndarray:
    """Per-example BLEU statistics ``(B, 2 + 2N)`` int64 (host code, needs sacrebleu):
    ``[pred_length, ref_length, matches_1 .. matches_N, totals_1 .. totals_N]`` (see the module
    docstring). ``targets[k]`` is a string or a list of reference strings (any number >= 1)."""
    out = np.zeros((len(preds), 2 + 2 * max_ngram_order), np.int64)
    for row, (pred, target) in enumerate(zip(preds, targets)):
        refs = [target] if isinstance(target, str) else list(target)
        hyp = bleu_tokens(pred, tokenize, lowercase)
        ref_tokens = [bleu_tokens(r, tokenize, lowercase) for r in refs]
        out[row] = _segment_statistics(hyp, ref_tokens, max_ngram_order)
    return out


def bleu_token_ids(
    preds: Sequence[str],
    targets: Sequence[str | Sequence[str]],
    tokenize: str = "13a",
    lowercase: bool = False,
) -> dict[str, np.ndarray]:
    """The id-path inputs of :class:`BLEU` for a batch of strings (host code): tokens as
    :func:`bleu_tokens` gives them, one vocabulary for the batch, padded. Returns
    ``pred_ids``/``pred_mask (B, L)``, ``target_ids``/``target_mask (B, R, M)`` and
    ``reference_mask (B, R)`` (R the most references of an example)."""
    vocab = ngrams.Vocabulary()
    hyps = [vocab.encode(bleu_tokens(p, tokenize, lowercase)) for p in preds]
    refs = [
        [
            vocab.encode(bleu_tokens(r, tokenize, lowercase))
            for r in ([t] if isinstance(t, str) else t)
        ]
        for t in targets
    ]
    pred_ids, pred_mask = ngrams.pad_sequences(hyps)
    target_ids, target_mask, reference_mask = ngrams.pad_references(refs)
    return {
        "pred_ids": pred_ids,
        "pred_mask": pred_mask,
        "target_ids": target_ids,
        "target_mask": target_mask,
        "reference_mask": reference_mask,
    }


# -- the score from the statistics (jit-safe) -------------------------------------------------


def _bleu_from_df(
    matches, totals, pred_length, ref_length, smooth_method, smooth_value, effective_order
):
    """BLEU from double-float statistics (``matches``/``totals (N, 2)``, lengths ``(2,)``)."""
    order = matches.shape[-2]
    nothing_matched = jnp.all(numerics.df_value(matches) == 0)
    if smooth_method == "add-k":
        k = jnp.where(jnp.arange(order) > 0, jnp.float32(smooth_value), 0.0)
        matches = numerics.df_add(matches, numerics.df_from(k))
        totals = numerics.df_add(totals, numerics.df_from(k))
    m, t = numerics.df_value(matches), numerics.df_value(totals)
    # sacreBLEU stops at the first order without n-grams: it and later orders stay at p = 0.
    alive = jnp.cumprod(t > 0).astype(bool)
    safe_totals = jnp.where(alive[:, None], totals, numerics.df_from(jnp.ones(order)))
    ratio = numerics.df_divide(matches, safe_totals)
    zero = alive & (m == 0)
    if smooth_method == "exp":
        halvings = jnp.cumsum(zero).astype(jnp.float32)
        ratio = jnp.where(zero, 1.0 / (2.0**halvings * jnp.where(alive, t, 1.0)), ratio)
    elif smooth_method == "floor":
        ratio = jnp.where(zero, jnp.float32(smooth_value) / jnp.where(alive, t, 1.0), ratio)
    ratio = jnp.where(alive, ratio, 0.0)
    # effective_order: the orders before the first without n-grams (all of them when even
    # unigrams are missing, as sacreBLEU's loop leaves it).
    used = jnp.sum(alive) if effective_order else order
    used = jnp.where(used > 0, used, order)
    included = jnp.arange(order) < used
    any_zero = jnp.any(included & (ratio <= 0))
    logs = jnp.where(included, jnp.log(jnp.where(ratio > 0, ratio, 1.0)), 0.0)
    geometric_mean = jnp.exp(jnp.sum(logs) / jnp.maximum(used, 1))
    # BP = exp(1 - r / c) = exp(-(r - c) / c), the difference formed exactly.
    pred_ok = numerics.df_value(pred_length) > 0
    shortfall = numerics.df_add(ref_length, -pred_length)
    short = numerics.df_value(shortfall) > 0
    safe_pred = jnp.where(pred_ok, pred_length, numerics.df_from(1.0))
    penalty = jnp.exp(-numerics.df_divide(shortfall, safe_pred))
    bp = jnp.where(short, jnp.where(pred_ok, penalty, 0.0), 1.0)
    return jnp.where(nothing_matched | any_zero, 0.0, 100.0 * bp * geometric_mean)


def bleu_score(
    matches,
    totals,
    pred_length,
    ref_length,
    smooth_method: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = False,
):
    """BLEU (0-100) from summed statistics: ``matches``/``totals (N,)``, the two lengths
    scalars (integers, or floats holding integers; see the module docstring). Jit-safe."""
    _check_smoothing(smooth_method, smooth_value)
    value = _SMOOTH_DEFAULTS[smooth_method] if smooth_value is None else smooth_value

    def df(x):
        x = jnp.asarray(x)
        return (
            numerics.df_from_int(x) if jnp.issubdtype(x.dtype, jnp.integer) else numerics.df_from(x)
        )

    return _bleu_from_df(
        df(matches),
        df(totals),
        df(pred_length),
        df(ref_length),
        smooth_method,
        value,
        effective_order,
    )


def _check_smoothing(smooth_method, smooth_value):
    if smooth_method not in SMOOTH_METHODS:
        raise ValueError(f"smooth_method must be one of {SMOOTH_METHODS}, got {smooth_method!r}")
    if smooth_value is not None and (
        isinstance(smooth_value, bool)
        or not isinstance(smooth_value, (int, float))
        or not smooth_value >= 0
    ):
        raise ValueError(f"smooth_value must be a number >= 0 or None, got {smooth_value!r}")


# -- the metric -------------------------------------------------------------------------------


def _ids_state(metric, pred_ids, pred_mask, target_ids, target_mask, reference_mask, mask):
    pred, pred_len, refs, ref_len, present, keep, invalid = ngrams.reference_inputs(
        pred_ids, pred_mask, target_ids, target_mask, reference_mask, mask
    )
    order = metric.max_ngram_order
    counts = ngrams.ngram_match_counts(pred, pred_len, refs, ref_len, present, order)
    far = jnp.int32(np.iinfo(np.int32).max)
    distance = jnp.where(present, jnp.abs(ref_len - pred_len[:, None]), far)
    nearest = distance == jnp.min(distance, axis=1, keepdims=True)
    closest = jnp.min(jnp.where(present & nearest, ref_len, far), axis=1)

    def total(x):  # (B, ...) int32 -> the kept examples' sum as a double-float
        keep_x = keep.reshape(keep.shape + (1,) * (x.ndim - 1))
        return numerics.df_from_int(jnp.sum(jnp.where(keep_x, x, 0), axis=0))

    return metric.State(
        parent=metric,
        matches=total(counts["matches_max"]),
        totals=total(counts["pred_total"]),
        pred_length=total(pred_len),
        ref_length=total(closest),
        invalid=numerics.df_from_int(invalid),
    )


class BLEU(Metric):
    """Corpus BLEU, sacreBLEU's (``sacrebleu.corpus_bleu(...).score``), on the 0-100 scale.

    ``BLEU = 100 * BP * exp(mean_n log p_n)`` with ``p_n`` the clipped n-gram precisions of
    the whole corpus and ``BP`` the brevity penalty (formula, smoothing and edge cases in the
    module docstring). Options as sacreBLEU names them: ``max_ngram_order=4``,
    ``smooth_method`` (``"exp"``, ``"floor"``, ``"add-k"``, ``"none"``) with ``smooth_value``
    (``None``: 0.1 for floor, 1 for add-k), ``effective_order``, and for strings
    ``tokenize="13a"`` (sacreBLEU's tokenizer names, :data:`TOKENIZERS`) and ``lowercase``.

    Inputs, one of:

    * ``preds``: ``B`` strings; ``targets``: ``B`` strings, or lists of reference strings (any
      number >= 1 per example, varying). Tokenized with sacreBLEU's tokenizer and counted on
      the host (needs ``pip install metrix[nlg]``); not traceable.
    * token ids, jit-safe: ``pred_ids (B, L)`` with ``pred_mask (B, L)``, ``target_ids
      (B, R, M)`` (``R`` references per example) with ``target_mask (B, R, M)`` (True = a
      token; masked tokens are removed wherever they are) and ``reference_mask (B, R)``
      (False = no such reference, for examples with fewer than ``R``; a present reference
      with no token is an empty reference). Masks default to all True. :func:`bleu_token_ids`
      builds them from strings; ``tokenize``/``lowercase`` do not apply to ids. An example
      with no present reference is refused (an error eagerly; left out, value NaN, under jit).

    ``mask (B,)`` leaves examples out. Returns a scalar; an empty corpus (nothing seen, or
    only empty hypotheses) scores 0.0, which is what sacreBLEU's formula gives on zero
    statistics (``sacrebleu.corpus_bleu`` itself refuses an empty list).
    """

    required_one_of = (("preds", "pred_ids"),)

    preds: Key | None = None
    targets: Key | None = None
    pred_ids: Key | None = None
    pred_mask: Key | None = None
    target_ids: Key | None = None
    target_mask: Key | None = None
    reference_mask: Key | None = None
    mask: Key | None = None
    max_ngram_order: int = 4
    smooth_method: Literal["exp", "floor", "add-k", "none"] = "exp"
    smooth_value: float | None = None
    effective_order: bool = False
    tokenize: str = "13a"
    lowercase: bool = False

    def __post_init__(self):
        order = self.max_ngram_order
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"max_ngram_order must be an integer >= 1, got {order!r}")
        _check_smoothing(self.smooth_method, self.smooth_value)
        if self.tokenize not in TOKENIZERS:
            raise ValueError(
                f"tokenize must be one of sacreBLEU's {TOKENIZERS}, got {self.tokenize!r}"
            )
        for name in ("effective_order", "lowercase"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

    class State(State):
        """Exact sums of BLEU's corpus statistics (see the module docstring)."""

        matches: jax.Array = exact_sum_field(shape=lambda m: (m.max_ngram_order,))
        totals: jax.Array = exact_sum_field(shape=lambda m: (m.max_ngram_order,))
        pred_length: jax.Array = exact_sum_field()
        ref_length: jax.Array = exact_sum_field()
        invalid: jax.Array = exact_sum_field()

        def compute(self):
            m = self.parent
            value = _SMOOTH_DEFAULTS[m.smooth_method] if m.smooth_value is None else m.smooth_value
            score = _bleu_from_df(
                self.matches,
                self.totals,
                self.pred_length,
                self.ref_length,
                m.smooth_method,
                value,
                m.effective_order,
            )
            return ngrams.refuse_unreferenced(self, score)

    def get_state(
        self,
        preds: Sequence[str] | None = None,
        targets: Sequence[str | Sequence[str]] | None = None,
        pred_ids: Integer[Array, "b lp"] | None = None,
        pred_mask: Shaped[Array, "b lp"] | None = None,
        target_ids: Integer[Array, "b r lt"] | None = None,
        target_mask: Shaped[Array, "b r lt"] | None = None,
        reference_mask: Shaped[Array, "b r"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> State:
        ids = (pred_ids, pred_mask, target_ids, target_mask, reference_mask)
        if any(x is not None for x in ids):
            if preds is not None or targets is not None:
                raise TypeError(
                    "pass either preds/targets (strings) or pred_ids/target_ids, not both"
                )
            if pred_ids is None or target_ids is None:
                raise TypeError("the id path needs both pred_ids (B, L) and target_ids (B, R, M)")
            return self.run_compiled(_ids_state, *ids, mask)
        if preds is None or targets is None:
            raise TypeError("needs preds and targets (strings) or pred_ids and target_ids")
        preds, targets = text_pairs(preds, targets, mask)
        stats = bleu_statistics(preds, targets, self.max_ngram_order, self.tokenize, self.lowercase)
        sums = [int(x) for x in stats.sum(axis=0)] if len(stats) else [0] * stats.shape[1]
        order = self.max_ngram_order
        return self.State(
            parent=self,
            matches=ngrams.df_from_python_int(sums[2 : 2 + order]),
            totals=ngrams.df_from_python_int(sums[2 + order :]),
            pred_length=ngrams.df_from_python_int(sums[0]),
            ref_length=ngrams.df_from_python_int(sums[1]),
            invalid=ngrams.df_from_python_int(0),
        )


__all__ = [
    "BLEU",
    "SMOOTH_METHODS",
    "TOKENIZERS",
    "bleu_score",
    "bleu_statistics",
    "bleu_token_ids",
    "bleu_tokens",
]
