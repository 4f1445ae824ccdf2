"""BERTScore (Zhang et al., 2020) as a mergeable metric, on embeddings or on text.

For a candidate x and a reference y with L2-normalised contextual token embeddings, cosine
similarities s_ij = <x_i, y_j> and token weights w (idf, or 1 with the special tokens
[CLS]/[SEP], RoBERTa's <s>/</s>, at 0):

    P = sum_i w(x_i) max_j s_ij / sum_i w(x_i)
    R = sum_j w(y_j) max_i s_ij / sum_j w(y_j)
    F = 2 P R / (P + R)

With several references per candidate, P, R and F are each the maximum over the references
(as ``bert_score.score``). With a baseline b = (b_P, b_R, b_F), every score x becomes
(x - b) / (1 - b). The maths lives in :mod:`metrix.text.bertscore_math`; this module holds:

* :class:`BERTScore`: its state holds exact (double-float) sums of the per-pair P, R, F and
  the number of pairs, so any split of the pairs over batches, devices or hosts merges to the
  same means; with ``capacity=`` it also keeps every pair's scores in a fixed-capacity buffer.
  ``get_state`` takes batched embeddings (and masks, weights or token ids + an idf table);
  :meth:`BERTScore.score` takes strings, tokenises and embeds them with a local BERT or
  RoBERTa-family folder (``model_dir=``; the encoder is loaded once per folder and its
  weights stay jit inputs).
* :class:`BERTScoreIdf`: idf(t) = log((M + 1) / (df(t) + 1)) from mergeable document
  frequencies (a (vocab_size,) count vector and the number M of references, exact counts),
  special tokens weighted 0, for two-pass evaluation: pass 1 merges the idf state over all
  references (across devices too), pass 2 scores with ``idf=state.compute()``.

**First call.** ``score`` compiles a handful of programs (the encoder per row shape, the
matching per width) on its first call, after which calls run at full speed. Processes that
start often (scripts, ``metrix bertscore``) can keep the compiled programs on disk with JAX's
persistent cache, ``jax.config.update("jax_compilation_cache_dir", DIR)`` (and
``jax_persistent_cache_min_compile_time_secs=0``), so a second process skips most of that
compile (figures: benchmarks/RESULTS.md).

**RoBERTa** (bert-score's English default is ``roberta-large``): point ``model_dir`` at a
local folder holding ``config.json`` (``model_type`` roberta, xlm-roberta or camembert), the
weights and ``tokenizer.json``, and give ``num_layers`` (bert-score's tuned layer for
roberta-large is 17) and, to rescale, ``baseline_path=`` (bert-score ships
``rescale_baseline/en/roberta-large.tsv``). As bert-score, texts get a space put before them
for RoBERTa's byte-level BPE (``add_prefix_space=None`` decides as bert-score: yes for
``RobertaTokenizer`` / ``GPT2Tokenizer`` folders). bert-score 0.3.12 under transformers 5
drops that space (transformers 5 ignores ``encode(add_prefix_space=True)``) unless the
folder's tokenizer_config.json sets ``"add_prefix_space": true``; to reproduce those scores
set ``add_prefix_space=False``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field, exact_sum_field, nested_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.text import bertscore_math as core

__all__ = [
    "BERTScore",
    "BERTScoreBufferState",
    "BERTScoreIdf",
    "BERTScoreIdfState",
    "BERTScorePairs",
    "BERTScoreResult",
    "BERTScoreSums",
    "load_bert_encoder",
]

_SCORES = ("precision", "recall", "f1")


def load_bert_encoder(
    model_dir: str, num_layers: int | None = None, add_prefix_space: bool | None = None
):
    """The :class:`~metrix.backbones.bert.BertEncoder` of a local folder, loaded once per
    ``(model_dir, num_layers, add_prefix_space)`` and shared by every metric configured
    with them."""
    return _cached_encoder(os.fspath(model_dir), num_layers, add_prefix_space)


@functools.lru_cache(maxsize=4)
def _cached_encoder(model_dir: str, num_layers: int | None, add_prefix_space: bool | None):
    from metrix.backbones.bert import BertEncoder

    return BertEncoder.from_pretrained_dir(
        model_dir, num_layers=num_layers, add_prefix_space=add_prefix_space
    )


@functools.lru_cache(maxsize=16)
def _baseline_from_file(path: str, num_layers: int | None) -> tuple[float, float, float]:
    table = core.load_baseline(path)
    if num_layers is None:
        if len(table) != 1:
            raise ValueError(
                f"baseline file {path!r} has {len(table)} rows (one per layer): set num_layers= "
                "to pick the row bert-score would use"
            )
        num_layers = 0
    if not 0 <= num_layers < len(table):
        raise ValueError(f"baseline file {path!r} has no row for num_layers={num_layers}")
    return tuple(float(x) for x in table[num_layers])


# ---------------------------------------------------------------------------------------
# idf
# ---------------------------------------------------------------------------------------


class BERTScoreIdfState(State):
    """Document frequencies (exact double-float counts) and the number of references."""

    df: jax.Array = exact_sum_field(shape=lambda m: (m.vocab_size,))
    num_docs: jax.Array = exact_sum_field()

    def compute(self):
        """The idf table (vocab_size,): log((M + 1) / (df + 1)), special tokens 0."""
        idf = core.idf_from_document_frequencies(
            numerics.df_value(self.df), numerics.df_value(self.num_docs)
        )
        specials = tuple(self.parent.special_token_ids) if self.parent is not None else ()
        if specials:
            idf = idf.at[jnp.asarray(specials, jnp.int32)].set(0.0)
        return idf


class BERTScoreIdf(Metric):
    """idf weights of BERTScore from the references, mergeable across batches and devices.

    ``get_state(reference_ids, reference_mask=None, mask=None)``: token ids ``(B, L)`` (or
    ``(B, K, L)`` for K references per candidate), their padding mask, and an optional
    ``(B,)`` mask over rows. Every reference with at least one real token is a document
    (tokens counted once per document); ``compute()`` gives the ``(vocab_size,)`` table
    ``idf(t) = log((M + 1) / (df(t) + 1))`` of bert-score's ``get_idf_dict``, with
    ``special_token_ids`` (e.g. [CLS], [SEP]; RoBERTa's <s>, </s>) set to 0 as bert-score
    weighs them.
    """

    reference_ids: Key = REQUIRED
    reference_mask: Key | None = None
    mask: Key | None = None
    vocab_size: int = 30522
    special_token_ids: tuple[int, ...] = ()

    State = BERTScoreIdfState
    eager_compile = True  # one program per metric and input shapes, not op-by-op dispatches

    def get_state(
        self,
        reference_ids: Integer[Array, "b *k l"],
        reference_mask: Shaped[Array, "b *k l"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> BERTScoreIdfState:
        return self._state(reference_ids, reference_mask, mask)

    def _state(self, reference_ids, reference_mask, mask) -> BERTScoreIdfState:
        ids = reference_ids.reshape(-1, reference_ids.shape[-1])
        tokens = (
            jnp.ones(ids.shape, bool)
            if reference_mask is None
            else reference_mask.reshape(ids.shape).astype(bool)
        )
        rows = reference_ids.shape[0]
        per_row = ids.shape[0] // max(rows, 1)
        if mask is not None:
            keep_rows = jnp.repeat(mask.astype(bool).reshape(rows), per_row)
            tokens = tokens & keep_rows[:, None]
        df = core.document_frequencies(ids, tokens, self.vocab_size)
        num_docs = jnp.sum(tokens.any(axis=1), dtype=jnp.float32)
        return self.State(
            parent=self,
            df=numerics.df_from(df.astype(jnp.float32)),
            num_docs=numerics.df_from(num_docs),
        )


# ---------------------------------------------------------------------------------------
# BERTScore states
# ---------------------------------------------------------------------------------------


def _baseline_of(metric) -> tuple[float, float, float] | None:
    return None if metric is None else metric.resolved_baseline()


def _rescaled(scores: dict[str, jax.Array], baseline) -> dict[str, jax.Array]:
    if baseline is None:
        return scores
    return {k: core.rescale_with_baseline(scores[k], b) for k, b in zip(_SCORES, baseline)}


class BERTScoreSums(State):
    """Exact sums of the per-pair P, R, F and the number of pairs."""

    precision: jax.Array = exact_sum_field()
    recall: jax.Array = exact_sum_field()
    f1: jax.Array = exact_sum_field()
    count: jax.Array = exact_sum_field()

    @classmethod
    def from_scores(cls, precision, recall, f1, keep, parent=None):
        total = lambda x: numerics.df_from(jnp.sum(jnp.where(keep, x, 0.0)))
        return cls(
            parent=parent,
            precision=total(precision),
            recall=total(recall),
            f1=total(f1),
            count=numerics.df_from(jnp.sum(keep, dtype=jnp.float32)),
        )

    def compute(self):
        """Means over pairs, rescaled with the metric's baseline if it has one (NaN if none)."""
        means = {k: numerics.df_divide(getattr(self, k), self.count) for k in _SCORES}
        return _rescaled(means, _baseline_of(self.parent))


class BERTScorePairs(BufferState):
    """Every pair's (P, R, F), in arrival order, in a fixed-capacity buffer."""

    scores: jax.Array = concat_field(item_shape=(3,))


class BERTScoreBufferState(State):
    """The sums plus each pair's scores (``BERTScore(capacity=N)``)."""

    totals: BERTScoreSums = nested_field(BERTScoreSums)
    pairs: BERTScorePairs = nested_field(BERTScorePairs)

    def compute(self):
        """The means and ``"per_pair"``: (capacity,) P, R, F, NaN past the filled rows."""
        out = self.totals.compute()
        valid = self.pairs.valid_mask()[:, None]
        rows = jnp.where(valid, self.pairs.scores, jnp.nan)
        per_pair = _rescaled(dict(zip(_SCORES, rows.T)), _baseline_of(self.parent))
        return {**out, "per_pair": self.pairs.check_capacity(per_pair)}

    def pair_scores(self) -> dict[str, np.ndarray]:
        """The stored pairs' (rescaled) scores as trimmed host arrays (eager only)."""
        n = int(self.pairs.count)
        return {k: np.asarray(v)[:n] for k, v in self.compute()["per_pair"].items()}


class BERTScoreResult(NamedTuple):
    """Per-candidate scores of :meth:`BERTScore.score` (numpy, rescaled if configured) and
    the mergeable state of those pairs."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    state: State


# ---------------------------------------------------------------------------------------
# BERTScore
# ---------------------------------------------------------------------------------------


class BERTScore(Metric):
    """BERTScore precision, recall and F1, averaged over candidate/reference pairs.

    On embeddings (jit-safe ``get_state``): ``candidate_embeddings`` (B, Lc, D) and
    ``reference_embeddings`` (B, Lr, D), or (B, K, Lr, D) for K references per candidate
    (a reference whose token mask is all false is absent; a candidate without references
    is left out like a masked pair); ``candidate_mask`` / ``reference_mask`` mark real
    tokens (special tokens included; padding false). Token weights, in order of precedence:
    ``candidate_weights`` / ``reference_weights`` as given; ``idf`` (a (vocab_size,) table,
    e.g. ``BERTScoreIdf``'s) looked up at ``candidate_ids`` / ``reference_ids``; 1 per token
    with ``special_token_ids`` at 0 when ids are given; else 1 per real token. ``mask`` (B,)
    masks pairs. A sequence of exactly ``num_special_tokens`` real tokens (default: the
    number of special token ids) is an empty text, scored P = R = F = 0 like bert-score.

    On text: ``BERTScore(model_dir=..., num_layers=...).score(cands, refs, idf=...)`` (or
    ``metric(cands, refs)`` for the means), see :meth:`score`; ``model_dir`` is a local BERT
    or RoBERTa-family (roberta, xlm-roberta, camembert) folder, ``add_prefix_space`` whether
    texts get a leading space before tokenising (None: as bert-score, yes for RoBERTa's
    byte-level BPE; see the module docstring). Special tokens default to the folder's
    [CLS]/[SEP] or <s>/</s>.

    ``baseline=(b_P, b_R, b_F)`` or ``baseline_path=`` (a bert-score ``LAYER,P,R,F`` file;
    row ``num_layers``) rescale every score to (x - b) / (1 - b). ``capacity=N`` keeps each
    pair's scores too (``compute()["per_pair"]``).
    """

    candidate_embeddings: Key = REQUIRED
    reference_embeddings: Key = REQUIRED
    candidate_mask: Key | None = None
    reference_mask: Key | None = None
    candidate_weights: Key | None = None
    reference_weights: Key | None = None
    candidate_ids: Key | None = None
    reference_ids: Key | None = None
    idf: Key | None = None
    mask: Key | None = None

    model_dir: str | None = None
    num_layers: int | None = None
    add_prefix_space: bool | None = None
    batch_size: int = 64
    special_token_ids: tuple[int, ...] | None = None
    num_special_tokens: int | None = None
    baseline: tuple[float, float, float] | None = None
    baseline_path: str | None = None
    capacity: int | None = None

    State = BERTScoreSums
    eager_compile = True  # one program per metric and input shapes, not op-by-op dispatches

    def __post_init__(self):
        if self.model_dir is not None and not isinstance(self.model_dir, str):
            object.__setattr__(self, "model_dir", os.fspath(self.model_dir))
        if self.baseline_path is not None and not isinstance(self.baseline_path, str):
            object.__setattr__(self, "baseline_path", os.fspath(self.baseline_path))
        if self.baseline is not None:
            if len(self.baseline) != 3:
                raise ValueError(f"BERTScore: baseline must be (P, R, F), got {self.baseline!r}")
            object.__setattr__(self, "baseline", tuple(float(b) for b in self.baseline))
            if self.baseline_path is not None:
                raise ValueError("BERTScore: give baseline= or baseline_path=, not both")
        if self.capacity is not None and self.capacity <= 0:
            raise ValueError(f"BERTScore: capacity must be positive, got {self.capacity}")

    # -- configuration --------------------------------------------------------------------
    @property
    def encoder(self):
        """The cached encoder of ``model_dir`` (``num_layers`` first layers)."""
        if self.model_dir is None:
            raise ValueError(
                "BERTScore: scoring text needs model_dir= (a local BERT or RoBERTa folder)"
            )
        return load_bert_encoder(self.model_dir, self.num_layers, self.add_prefix_space)

    def resolved_special_token_ids(self) -> tuple[int, ...]:
        if self.special_token_ids is not None:
            return tuple(self.special_token_ids)
        return self.encoder.special_token_ids if self.model_dir is not None else ()

    def resolved_num_special_tokens(self) -> int:
        if self.num_special_tokens is not None:
            return self.num_special_tokens
        return len(self.resolved_special_token_ids())

    def resolved_baseline(self) -> tuple[float, float, float] | None:
        if self.baseline_path is not None:
            return _baseline_from_file(self.baseline_path, self.num_layers)
        return self.baseline

    def idf_metric(self, **keys) -> BERTScoreIdf:
        """The :class:`BERTScoreIdf` matching this metric's encoder (vocabulary, specials)."""
        return BERTScoreIdf(
            vocab_size=self.encoder.config.vocab_size,
            special_token_ids=self.resolved_special_token_ids(),
            **keys,
        )

    def empty(self) -> State:
        if self.capacity is None:
            return BERTScoreSums.empty(parent=self)
        return BERTScoreBufferState(
            parent=self,
            totals=BERTScoreSums.empty(parent=self),
            pairs=BERTScorePairs.empty(parent=self),
        )

    # -- states ---------------------------------------------------------------------------
    def state_from_scores(self, precision, recall, f1, mask=None) -> State:
        """The state of per-pair raw (not rescaled) scores (B,), ``mask`` (B,) keeping pairs."""
        precision, recall, f1 = (jnp.asarray(x, jnp.float32) for x in (precision, recall, f1))
        keep = jnp.ones(precision.shape, bool) if mask is None else jnp.asarray(mask, bool)
        totals = BERTScoreSums.from_scores(precision, recall, f1, keep, parent=self)
        if self.capacity is None:
            return totals
        pairs = BERTScorePairs.from_rows(
            capacity=self.capacity,
            mask=keep,
            parent=self,
            scores=jnp.stack([precision, recall, f1], axis=-1),
        )
        return BERTScoreBufferState(parent=self, totals=totals, pairs=pairs)

    def _weights(self, weights, ids, idf, token_mask):
        if weights is not None:
            return jnp.where(token_mask, weights, 0.0)
        if ids is not None and idf is not None:
            return core.token_weights(idf, ids, token_mask)
        if ids is not None:
            specials = jnp.asarray(self.resolved_special_token_ids(), jnp.int32)
            is_special = (ids[..., None] == specials).any(-1)
            return jnp.where(token_mask & ~is_special, 1.0, 0.0)
        return token_mask.astype(jnp.float32)

    def get_state(
        self,
        candidate_embeddings: Float[Array, "b lc d"],
        reference_embeddings: Float[Array, "b *k lr d"],
        candidate_mask: Shaped[Array, "b lc"] | None = None,
        reference_mask: Shaped[Array, "b *k lr"] | None = None,
        candidate_weights: Float[Array, "b lc"] | None = None,
        reference_weights: Float[Array, "b *k lr"] | None = None,
        candidate_ids: Integer[Array, "b lc"] | None = None,
        reference_ids: Integer[Array, "b *k lr"] | None = None,
        idf: Float[Array, "v"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> State:
        if (
            idf is not None
            and (candidate_ids is None or reference_ids is None)
            and (candidate_weights is None or reference_weights is None)
        ):
            raise TypeError(
                "BERTScore.get_state(): an idf table needs candidate_ids= and reference_ids= "
                "(the token ids to look the weights up at)"
            )
        if reference_embeddings.ndim not in (3, 4):
            raise ValueError(
                "BERTScore: reference_embeddings must be (B, Lr, D) or (B, K, Lr, D), got "
                f"shape {reference_embeddings.shape}"
            )
        inputs = {
            "candidate_embeddings": candidate_embeddings,
            "reference_embeddings": reference_embeddings,
            "candidate_mask": candidate_mask,
            "reference_mask": reference_mask,
            "candidate_weights": candidate_weights,
            "reference_weights": reference_weights,
            "candidate_ids": candidate_ids,
            "reference_ids": reference_ids,
            "idf": idf,
            "mask": mask,
        }
        return self._state(**inputs)

    def _state(
        self,
        candidate_embeddings,
        reference_embeddings,
        candidate_mask,
        reference_mask,
        candidate_weights,
        reference_weights,
        candidate_ids,
        reference_ids,
        idf,
        mask,
    ) -> State:
        batch = candidate_embeddings.shape[0]
        multi = reference_embeddings.ndim == 4
        refs_per = reference_embeddings.shape[1] if multi else 1
        ref_len = reference_embeddings.shape[-2]

        cand_mask = (
            jnp.ones(candidate_embeddings.shape[:2], bool)
            if candidate_mask is None
            else candidate_mask.astype(bool)
        )
        ref_mask = (
            jnp.ones(reference_embeddings.shape[:-1], bool)
            if reference_mask is None
            else reference_mask.astype(bool)
        )
        cand_w = self._weights(candidate_weights, candidate_ids, idf, cand_mask)
        ref_w = self._weights(reference_weights, reference_ids, idf, ref_mask)

        # Several references: one row per (candidate, reference), then the max per candidate.
        flat = lambda x: x.reshape(batch * refs_per, *x.shape[2 if multi else 1 :])
        repeat = lambda x: jnp.repeat(x, refs_per, axis=0)
        p, r, f = core.greedy_match(
            repeat(candidate_embeddings),
            repeat(cand_mask),
            flat(reference_embeddings),
            flat(ref_mask).reshape(-1, ref_len),
            repeat(cand_w),
            flat(ref_w).reshape(-1, ref_len),
            num_special_tokens=self.resolved_num_special_tokens(),
        )
        present = ref_mask.reshape(batch, refs_per, ref_len).any(-1)
        p, r, f = core.max_over_references(
            *(x.reshape(batch, refs_per) for x in (p, r, f)), present
        )
        keep = present.any(-1)
        if mask is not None:
            keep = keep & mask.astype(bool)
        return self.state_from_scores(p, r, f, mask=keep)

    # -- text -------------------------------------------------------------------------------
    def idf_state(self, refs: Sequence[str] | Sequence[Sequence[str]]) -> BERTScoreIdfState:
        """Pass 1 of a two-pass evaluation: the idf state of these references (merge the
        states of every batch / device, then ``score(..., idf=merged)``)."""
        flat = [r for group in _groups(refs) for r in group]
        ids, mask = self.encoder.tokenize(flat)
        return self.idf_metric().get_state(reference_ids=ids, reference_mask=mask)

    def score(
        self,
        cands: Sequence[str],
        refs: Sequence[str] | Sequence[Sequence[str]],
        idf: bool | jax.Array | np.ndarray | BERTScoreIdfState | None = None,
    ) -> BERTScoreResult:
        """BERTScore of candidate strings against references (one string, or a list of
        strings, per candidate), as ``bert_score.score``.

        Texts are stripped and tokenised with the folder's tokenizer, truncated at its
        ``model_max_length`` and embedded with ``num_layers`` layers (weights passed to the
        jitted encoder as inputs), each distinct text once, packed several to a row in calls
        of ``batch_size`` rows (each text attends only to itself, so its embeddings are those
        it gets alone); pairs are matched ``batch_size`` at a time.
        ``idf``: None/False (weights 1, special tokens 0), True (idf over these references, as
        bert-score), or a table / :class:`BERTScoreIdfState` from all references (two-pass).
        Returns per-candidate scores (rescaled if a baseline is set) and the mergeable state.
        """
        groups = _groups(refs)
        if len(groups) != len(cands):
            raise ValueError(
                f"BERTScore.score: {len(cands)} candidates but {len(groups)} references"
            )
        if any(len(g) == 0 for g in groups):
            raise ValueError("BERTScore.score: every candidate needs at least one reference")
        encoder = self.encoder
        flat_refs = [r for g in groups for r in g]
        flat_cands = [c for c, g in zip(cands, groups) for _ in g]
        if isinstance(idf, BERTScoreIdfState):
            table = idf.compute()
        elif idf is True:
            table = self.idf_state(flat_refs).compute()
        elif idf is None or idf is False:
            table = core.uniform_idf(encoder.config.vocab_size, self.resolved_special_token_ids())
        else:
            table = jnp.asarray(idf, jnp.float32)
        p, r, f = _score_pairs(
            encoder,
            flat_cands,
            flat_refs,
            table,
            self.batch_size,
            self.resolved_num_special_tokens(),
        )
        # Max over each candidate's references (separately for P, R, F, as bert-score).
        width = max(len(g) for g in groups)
        index = np.zeros((len(groups), width), np.int64)
        valid = np.zeros((len(groups), width), bool)
        start = 0
        for row, group in enumerate(groups):
            index[row, : len(group)] = np.arange(start, start + len(group))
            valid[row, : len(group)] = True
            start += len(group)
        best = [np.where(valid, x[index], -np.inf).max(axis=1) for x in (p, r, f)]
        state = self.state_from_scores(*best)
        shown = _rescaled(dict(zip(_SCORES, best)), self.resolved_baseline())
        return BERTScoreResult(*(np.asarray(shown[k], np.float32) for k in _SCORES), state=state)

    def __call__(self, *args, **kwargs):
        """Means over pairs: ``metric(cands, refs, idf=...)`` on strings, else
        ``get_state(...).compute()``."""
        first = args[0] if args else kwargs.get("cands")
        if isinstance(first, (list, tuple)) and (not first or isinstance(first[0], str)):
            return self.score(*args, **kwargs).state.compute()
        return super().__call__(*args, **kwargs)


def _groups(refs) -> list[list[str]]:
    if isinstance(refs, str):
        raise TypeError("BERTScore: refs must be a list of strings (or of lists of strings)")
    return [[r] if isinstance(r, str) else list(r) for r in refs]


@functools.partial(jax.jit, static_argnames=("width", "num_special_tokens"))
def _match_gathered(
    emb, ids, cand_start, cand_len, ref_start, ref_len, table, *, width, num_special_tokens
):
    """P, R, F of pairs whose texts lie in the flat token buffers ``emb`` (T, D) / ``ids``
    (T,): a text is the tokens ``start .. start + len - 1``; gathered ``width`` wide."""
    offsets = jnp.arange(width)

    def gather(start, length):
        mask = offsets < length[:, None]
        index = jnp.where(mask, start[:, None] + offsets, 0)  # padding reads token 0, masked
        token_ids = ids[index]
        return emb[index], mask, core.token_weights(table, token_ids, mask)

    c_emb, c_mask, c_w = gather(cand_start, cand_len)
    r_emb, r_mask, r_w = gather(ref_start, ref_len)
    return core.greedy_match(
        c_emb, c_mask, r_emb, r_mask, c_w, r_w, num_special_tokens=num_special_tokens
    )


# Pairs scored per pass: the embeddings of one pass's texts are held at once (bert-score
# holds all of them); this bounds the memory for long lists (~200 MB for 2048 pairs of
# 30-token texts with a 384-wide model).
_PAIRS_PER_PASS = 2048


def _score_pairs(encoder, cands, refs, table, batch_size, num_special_tokens):
    """Raw P, R, F (numpy, (N,)) of N string pairs, ``_PAIRS_PER_PASS`` pairs at a time."""
    out = np.zeros((3, len(cands)), np.float32)
    for lo in range(0, len(cands), _PAIRS_PER_PASS):
        hi = lo + _PAIRS_PER_PASS
        out[:, lo:hi] = _score_pass(
            encoder, cands[lo:hi], refs[lo:hi], table, batch_size, num_special_tokens
        )
    return out[0], out[1], out[2]


def _score_pass(encoder, cands, refs, table, batch_size, num_special_tokens):
    """(3, N) raw P, R, F of N pairs.

    Each distinct text is tokenised and embedded once (as bert-score). Texts are packed
    several to a row (:meth:`~metrix.backbones.bert.BertEncoder.pack`: each token attends
    only to its own text and counts positions from its own start), so the encoder spends little on
    padding and compiles a handful of shapes. The outputs form one flat token buffer, from
    which the greedy matching gathers each pair, ``batch_size`` pairs per call, pairs
    sorted by length so that a call gathers little padding. Every call is dispatched before
    any result is awaited.
    """
    from metrix.backbones.bert import bucket_length

    n = len(cands)
    distinct = list(dict.fromkeys([*cands, *refs]))
    tokens = encoder.token_ids(distinct)
    lengths = np.array([len(t) for t in tokens], np.int32)
    packed = encoder.pack(tokens, batch_size)
    outputs = [encoder.embed_packed(encoder.params, p.ids, p.segments, p.positions) for p in packed]
    # One flat (T, D) buffer of every call's tokens, T padded to a power of two (few shapes).
    starts = np.zeros(len(distinct), np.int32)
    total = 0
    for p in packed:
        starts[p.texts] = total + p.starts
        total += p.ids.size
    size = bucket_length(total, max_length=1 << 62, minimum=1024)
    dim = encoder.config.hidden_size
    padding = jnp.zeros((size - total, dim), outputs[0].dtype)
    emb = jnp.concatenate([o.reshape(-1, dim) for o in outputs] + [padding])
    ids = np.zeros(size, np.int32)
    ids[:total] = np.concatenate([p.ids.ravel() for p in packed])

    slot = {text: k for k, text in enumerate(distinct)}
    cand_slot = np.array([slot[c] for c in cands])
    ref_slot = np.array([slot[r] for r in refs])
    longest = np.maximum(lengths[cand_slot], lengths[ref_slot])
    order = np.argsort(-longest, kind="stable")
    pending = []
    for lo in range(0, n, batch_size):
        rows = order[lo : lo + batch_size]
        padded = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
        c, r = cand_slot[padded], ref_slot[padded]
        scores = _match_gathered(
            emb,
            ids,
            starts[c],
            lengths[c],
            starts[r],
            lengths[r],
            table,
            # 64 wide at least: one compiled matching program for sentence-length texts
            width=bucket_length(int(longest[rows[0]]), encoder.model_max_length, minimum=64),
            num_special_tokens=num_special_tokens,
        )
        pending.append((rows, scores))
    out = np.zeros((3, n), np.float32)
    for rows, scores in pending:
        out[:, rows] = np.stack([np.asarray(x) for x in scores])[:, : len(rows)]
    return out
