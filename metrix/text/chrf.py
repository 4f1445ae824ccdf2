"""chrF and chrF++ (Popović 2015, 2017) as sacreBLEU defines them, on its 0-100 scale.

Statistics per order ``n`` (character n-grams ``n = 1 .. char_order``, then word n-grams
``n = 1 .. word_order``): ``h_n`` the hypothesis n-grams (0 when the reference has no
n-gram of that order), ``r_n`` the reference n-grams and ``m_n`` the clipped matches
``sum_g min(c_hyp(g), c_ref(g))``. Each example takes the statistics of its best reference,
the one with the highest sentence chrF (the first on ties), and the corpus sums them. With
``P_n = m_n / h_n`` and ``R_n = m_n / r_n`` over the *effective* orders (``h_n > 0`` and
``r_n > 0``), ``P`` and ``R`` their means,

    chrF = 100 * (1 + beta^2) P R / (beta^2 P + R)     (0 when P + R = 0),

or with ``eps_smoothing`` the mean over all orders of each order's F-score, ``P_n``, ``R_n``
and a vanishing denominator replaced by 1e-16 (chrF++.py's and NLTK's rule).

Character n-grams are taken over the text with its whitespace removed (``whitespace=False``,
the default) or kept; words are whitespace-separated, a punctuation mark at the end (else at
the start) of a word of two characters or more split off as a word of its own. The state is
the ``(char_order + word_order, 3)`` statistics as exact double-float sums; it merges,
allreduces and checkpoints like any other, and ``compute()`` is jit-safe. Strings are
counted on the host; padded integer ids (character codes, and word ids for chrF++) run
under jit.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

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

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # ASCII, as chrF++.py
_EPS = 1e-16


# -- host side ---------------------------------------------------------------------------------


def chrf_words(text: str) -> list[str]:
    """chrF++'s words: split on whitespace; a word of two characters or more that ends with a
    punctuation mark loses it to a word of its own, else one that starts with one."""
    out = []
    for word in text.split():
        if len(word) > 1 and word[-1] in _PUNCTUATION:
            out += [word[:-1], word[-1]]
        elif len(word) > 1 and word[0] in _PUNCTUATION:
            out += [word[0], word[1:]]
        else:
            out.append(word)
    return out


def _char_line(text: str, whitespace: bool) -> str:
    return text if whitespace else "".join(text.split())


def _ngram_counters(text: str, char_order: int, word_order: int, whitespace: bool):
    """Per order (character n-grams, then word n-grams): a Counter of the n-grams
    (substrings, word tuples) and how many there are."""
    line = _char_line(text, whitespace)
    out = [
        (
            collections.Counter([line[i : i + n] for i in range(len(line) - n + 1)]),
            max(len(line) - n + 1, 0),
        )
        for n in range(1, char_order + 1)
    ]
    if word_order:
        words = chrf_words(text)
        out += [
            (collections.Counter(zip(*(words[k:] for k in range(n)))), max(len(words) - n + 1, 0))
            for n in range(1, word_order + 1)
        ]
    return out


def _pair_statistics(hyp, ref) -> list[list[int]]:
    """``[h_n, r_n, m_n]`` per order for one hypothesis / reference pair (_ngram_counters)."""
    return [
        [hyp_total if ref_total else 0, ref_total, ngrams.clipped_matches(h, r)]
        for (h, hyp_total), (r, ref_total) in zip(hyp, ref)
    ]


def _f_scores(precision, recall, hyp_pos, ref_pos, beta, eps_smoothing, xp):
    """chrF from per-order ``precision``/``recall (..., K)`` (their values where ``hyp_pos``/
    ``ref_pos``), in sacreBLEU's order of operations: numpy float64 on the host picks the
    best reference exactly as sacreBLEU does; jax float32 otherwise."""
    factor = beta**2
    score = avg_p = avg_r = effective = 0
    for k in range(precision.shape[-1]):
        p = xp.where(hyp_pos[..., k], precision[..., k], _EPS)
        r = xp.where(ref_pos[..., k], recall[..., k], _EPS)
        denom = factor * p + r
        f = (1 + factor) * p * r / xp.where(denom > 0, denom, 1.0)
        score = score + xp.where(denom > 0, f, _EPS)
        both = hyp_pos[..., k] & ref_pos[..., k]
        avg_p = avg_p + xp.where(both, p, 0.0)
        avg_r = avg_r + xp.where(both, r, 0.0)
        effective = effective + both
    if eps_smoothing:
        return 100 * score / precision.shape[-1]
    avg_p = xp.where(effective > 0, avg_p / xp.maximum(effective, 1), 0.0)
    avg_r = xp.where(effective > 0, avg_r / xp.maximum(effective, 1), 0.0)
    some = avg_p + avg_r > 0
    f = (1 + factor) * avg_p * avg_r / xp.where(some, factor * avg_p + avg_r, 1.0)
    return xp.where(some, 100 * f, 0.0)


def _sentence_scores(stats, beta, eps_smoothing, xp):
    """Sentence chrF of integer statistics ``(..., K, 3)`` (numpy or jax)."""
    hyp, ref, match = stats[..., 0], stats[..., 1], stats[..., 2]
    one = xp.ones((), match.dtype)
    precision = match / xp.maximum(hyp, one)
    recall = match / xp.maximum(ref, one)
    return _f_scores(precision, recall, hyp > 0, ref > 0, beta, eps_smoothing, xp)


def chrf_statistics(
    preds: Sequence[str],
    targets: Sequence[str | Sequence[str]],
    char_order: int = 6,
    word_order: int = 0,
    beta: float = 2,
    lowercase: bool = False,
    whitespace: bool = False,
    eps_smoothing: bool = False,
) -> np.ndarray:
    """Per-example chrF statistics ``(B, char_order + word_order, 3)`` int64, rows
    ``[h_n, r_n, m_n]`` against each example's best reference (host code; see the module
    docstring). ``targets[k]`` is a string or a list of reference strings (any number >= 1)."""
    order = char_order + word_order
    out = np.zeros((len(preds), order, 3), np.int64)
    for row, (pred, target) in enumerate(zip(preds, targets)):
        refs = [target] if isinstance(target, str) else list(target)
        if lowercase:
            pred, refs = pred.lower(), [r.lower() for r in refs]
        hyp = _ngram_counters(pred, char_order, word_order, whitespace)
        per_ref = np.array(
            [
                _pair_statistics(hyp, _ngram_counters(r, char_order, word_order, whitespace))
                for r in refs
            ],
            np.int64,
        ).reshape(len(refs), order, 3)
        if len(refs) > 1:
            scores = _sentence_scores(per_ref.astype(np.float64), beta, eps_smoothing, np)
            out[row] = per_ref[int(np.argmax(scores))]  # the first best, as sacreBLEU
        else:
            out[row] = per_ref[0]
    return out


def chrf_token_ids(
    preds: Sequence[str],
    targets: Sequence[str | Sequence[str]],
    word_order: int = 0,
    lowercase: bool = False,
    whitespace: bool = False,
) -> dict[str, np.ndarray]:
    """The id-path inputs of :class:`CHRF` for a batch of strings (host code): character code
    points of each text (whitespace removed unless ``whitespace``) as ``pred_ids``/
    ``pred_mask (B, L)``, ``target_ids``/``target_mask (B, R, M)``, ``reference_mask (B, R)``,
    and with ``word_order > 0`` its :func:`chrf_words` ids as ``pred_word_ids``, ...
    (one vocabulary for the batch)."""
    refs = [[t] if isinstance(t, str) else list(t) for t in targets]
    if lowercase:
        preds = [p.lower() for p in preds]
        refs = [[r.lower() for r in rs] for rs in refs]

    def chars(text):
        return [ord(c) for c in _char_line(text, whitespace)]

    out = {}
    out["pred_ids"], out["pred_mask"] = ngrams.pad_sequences([chars(p) for p in preds])
    ids, mask, present = ngrams.pad_references([[chars(r) for r in rs] for rs in refs])
    out.update(target_ids=ids, target_mask=mask, reference_mask=present)
    if word_order:
        vocab = ngrams.Vocabulary()
        words = ngrams.pad_sequences([vocab.encode(chrf_words(p)) for p in preds])
        out["pred_word_ids"], out["pred_word_mask"] = words
        ids, mask, _ = ngrams.pad_references(
            [[vocab.encode(chrf_words(r)) for r in rs] for rs in refs]
        )
        out.update(target_word_ids=ids, target_word_mask=mask)
    return out


# -- the score from the statistics (jit-safe) ---------------------------------------------------


def _chrf_from_df(stats, beta, eps_smoothing):
    """chrF of summed double-float statistics ``(K, 3, 2)``."""
    hyp, ref, match = stats[:, 0], stats[:, 1], stats[:, 2]
    hyp_pos = numerics.df_value(hyp) > 0
    ref_pos = numerics.df_value(ref) > 0
    one = numerics.df_from(jnp.ones(hyp.shape[:-1]))
    precision = numerics.df_divide(match, jnp.where(hyp_pos[:, None], hyp, one))
    recall = numerics.df_divide(match, jnp.where(ref_pos[:, None], ref, one))
    return _f_scores(precision, recall, hyp_pos, ref_pos, beta, eps_smoothing, jnp)


def chrf_score(statistics, beta: float = 2, eps_smoothing: bool = False):
    """chrF (0-100) of summed statistics ``(K, 3)`` (rows ``[h_n, r_n, m_n]``, integers or
    floats holding integers; see the module docstring). Jit-safe."""
    x = jnp.asarray(statistics)
    df = numerics.df_from_int(x) if jnp.issubdtype(x.dtype, jnp.integer) else numerics.df_from(x)
    return _chrf_from_df(df, beta, eps_smoothing)


# -- the metric -----------------------------------------------------------------------------------


def _ids_state(
    metric, pred_ids, pred_mask, target_ids, target_mask, reference_mask, word_inputs, mask
):
    pred, pred_len, refs, ref_len, present, keep, invalid = ngrams.reference_inputs(
        pred_ids, pred_mask, target_ids, target_mask, reference_mask, mask
    )
    parts = []
    if metric.char_order:
        counts = ngrams.ngram_match_counts(
            pred, pred_len, refs, ref_len, present, metric.char_order
        )
        parts.append(counts)
    if metric.word_order:
        pred_words, pred_word_mask, target_words, target_word_mask = word_inputs
        pred_w, pred_w_len = ngrams.compact(pred_words, pred_word_mask)
        refs_w, ref_w_len = ngrams.compact(target_words, target_word_mask)
        parts.append(
            ngrams.ngram_match_counts(
                pred_w, pred_w_len, refs_w, ref_w_len, present, metric.word_order
            )
        )
    pred_total = jnp.concatenate([p["pred_total"] for p in parts], axis=-1)  # (B, K)
    ref_total = jnp.concatenate([p["ref_total"] for p in parts], axis=-1)  # (B, R, K)
    matches = jnp.concatenate([p["matches"] for p in parts], axis=-1)
    hyp = jnp.where(ref_total > 0, pred_total[:, None, :], 0)
    per_ref = jnp.stack([hyp, ref_total, matches], axis=-1)  # (B, R, K, 3)
    scores = _sentence_scores(per_ref.astype(jnp.float32), metric.beta, metric.eps_smoothing, jnp)
    best = jnp.argmax(jnp.where(present, scores, -jnp.inf), axis=1)  # the first best
    chosen = jnp.take_along_axis(per_ref, best[:, None, None, None], axis=1)[:, 0]  # (B, K, 3)
    total = jnp.sum(jnp.where(keep[:, None, None], chosen, 0), axis=0)
    return metric.State(
        parent=metric, statistics=numerics.df_from_int(total), invalid=numerics.df_from_int(invalid)
    )


class CHRF(Metric):
    """Corpus chrF / chrF++, sacreBLEU's (``sacrebleu.corpus_chrf(...).score``), 0-100 scale.

    ``chrF = 100 (1 + beta^2) P R / (beta^2 P + R)`` with ``P``/``R`` the mean character
    (and word) n-gram precision/recall of the corpus (module docstring). Options as sacreBLEU
    names them: ``char_order=6``, ``word_order=0`` (2 is chrF++), ``beta=2``, ``lowercase``,
    ``whitespace`` (keep whitespace in character n-grams), ``eps_smoothing``.

    Inputs, one of:

    * ``preds``: ``B`` strings; ``targets``: ``B`` strings, or lists of reference strings (any
      number >= 1 per example, varying; each example is scored against its best reference).
      Counted on the host; not traceable.
    * ids, jit-safe: ``pred_ids (B, L)`` / ``target_ids (B, R, M)`` the characters n-grams are
      taken over (e.g. code points, whitespace left out unless ``whitespace``), with
      ``pred_mask``, ``target_mask`` (True = a character, masked ones removed wherever they
      are) and ``reference_mask (B, R)`` (False = no such reference); with ``word_order > 0``
      also the words' ids, ``pred_word_ids (B, W)`` / ``target_word_ids (B, R, V)`` with
      ``pred_word_mask`` / ``target_word_mask``. :func:`chrf_token_ids` builds them from
      strings (``lowercase``/``whitespace`` then apply there, not to ids). The best reference
      is chosen in float32 here (float64 on the host path, as sacreBLEU): only references
      whose sentence scores differ in the 7th digit can be chosen differently. An example
      with no present reference is refused (an error eagerly; left out, value NaN, under jit).

    ``mask (B,)`` leaves examples out. Returns a scalar; an empty corpus scores 0.0
    (sacreBLEU's formula on zero statistics; ``sacrebleu.corpus_chrf`` refuses an empty list).
    """

    required_one_of = (("preds", "pred_ids"),)

    preds: Key | None = None
    targets: Key | None = None
    pred_ids: Key | None = None
    pred_mask: Key | None = None
    target_ids: Key | None = None
    target_mask: Key | None = None
    reference_mask: Key | None = None
    pred_word_ids: Key | None = None
    pred_word_mask: Key | None = None
    target_word_ids: Key | None = None
    target_word_mask: Key | None = None
    mask: Key | None = None
    char_order: int = 6
    word_order: int = 0
    beta: float = 2
    lowercase: bool = False
    whitespace: bool = False
    eps_smoothing: bool = False

    def __post_init__(self):
        for name in ("char_order", "word_order"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.char_order + self.word_order < 1:
            raise ValueError("char_order + word_order must be at least 1")
        beta = self.beta
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
            raise ValueError(f"beta must be a number > 0, got {beta!r}")
        for name in ("lowercase", "whitespace", "eps_smoothing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")

    class State(State):
        """Exact sums of ``[h_n, r_n, m_n]`` per order (module docstring)."""

        statistics: jax.Array = exact_sum_field(shape=lambda m: (m.char_order + m.word_order, 3))
        invalid: jax.Array = exact_sum_field()

        def compute(self):
            m = self.parent
            score = _chrf_from_df(self.statistics, m.beta, m.eps_smoothing)
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
        pred_word_ids: Integer[Array, "b wp"] | None = None,
        pred_word_mask: Shaped[Array, "b wp"] | None = None,
        target_word_ids: Integer[Array, "b r wt"] | None = None,
        target_word_mask: Shaped[Array, "b r wt"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> State:
        ids = (pred_ids, pred_mask, target_ids, target_mask, reference_mask)
        words = (pred_word_ids, pred_word_mask, target_word_ids, target_word_mask)
        if any(x is not None for x in (*ids, *words)):
            if preds is not None or targets is not None:
                raise TypeError(
                    "pass either preds/targets (strings) or pred_ids/target_ids, not both"
                )
            if pred_ids is None or target_ids is None:
                raise TypeError("the id path needs both pred_ids (B, L) and target_ids (B, R, M)")
            if self.word_order and (pred_word_ids is None or target_word_ids is None):
                raise TypeError(
                    f"word_order={self.word_order}: the id path needs pred_word_ids and "
                    "target_word_ids too (chrf_token_ids builds them)"
                )
            if not self.word_order and any(x is not None for x in words):
                raise TypeError("word ids were given but word_order is 0; set word_order")
            return self.run_compiled(_ids_state, *ids, words, mask)
        if preds is None or targets is None:
            raise TypeError("needs preds and targets (strings) or pred_ids and target_ids")
        preds, targets = text_pairs(preds, targets, mask)
        stats = chrf_statistics(
            preds,
            targets,
            self.char_order,
            self.word_order,
            self.beta,
            self.lowercase,
            self.whitespace,
            self.eps_smoothing,
        )
        return self.State(
            parent=self,
            statistics=ngrams.df_from_python_int(stats.sum(axis=0).tolist()),
            invalid=ngrams.df_from_python_int(0),
        )


__all__ = ["CHRF", "chrf_score", "chrf_statistics", "chrf_token_ids", "chrf_words"]
