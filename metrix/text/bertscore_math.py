"""BERTScore maths as pure, jit-safe functions (Zhang et al., 2020; the ``bert-score`` package).

Given contextual token embeddings of a candidate x (tokens i) and a reference y (tokens j),
L2-normalised so that s_ij = <x_i, y_j> is a cosine similarity, and token weights w:

    P = sum_i w(x_i) max_j s_ij / sum_i w(x_i)      (each candidate token's best match)
    R = sum_j w(y_j) max_i s_ij / sum_j w(y_j)      (each reference token's best match)
    F = 2 P R / (P + R)

The weights are idf(t) = log((M + 1) / (df(t) + 1)) over the M references (df: the number of
references that contain token t at least once), or 1 per token without idf; [CLS] and [SEP]
(RoBERTa's <s> and </s>) weigh 0 either way (with idf because every reference contains them,
so df = M).

Edge cases follow bert-score's ``greedy_cos_idf``: a sequence holding only its special tokens
(an empty or whitespace-only text) gets P = R = 0, a NaN F becomes 0. With several references
per candidate, bert-score keeps the maximum of P, of R and of F over the references, each on
its own. Baseline rescaling maps x to (x - b) / (1 - b).

The document frequencies are a plain sum over references, so an idf state merges by addition.
"""

from __future__ import annotations

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST


def greedy_match(
    cand_emb: jax.Array,
    cand_mask: jax.Array,
    ref_emb: jax.Array,
    ref_mask: jax.Array,
    cand_idf: jax.Array,
    ref_idf: jax.Array,
    *,
    num_special_tokens: int = 2,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """BERTScore precision, recall and F1 of each candidate/reference pair.

    Args:
      cand_emb: (B, Lc, D) candidate token embeddings (any scale; normalised here).
      cand_mask: (B, Lc) true at real tokens (special tokens included), false at padding.
      ref_emb, ref_mask: (B, Lr, D) and (B, Lr), the same for the references.
      cand_idf, ref_idf: (B, Lc) and (B, Lr) token weights (see :func:`token_weights`).
      num_special_tokens: a sequence with exactly this many real tokens is an empty text
        (bert-score's ``[CLS] [SEP]`` or ``<s> </s>``), scored P = R = 0.

    Returns:
      ``(P, R, F)``, each of shape (B,).

    Padding is excluded from the maxima (bert-score instead multiplies similarities by the
    mask, so a padded 0 wins when every true similarity of a token is negative; that makes
    its scores depend on the batch and does not happen with BERT's positive similarities).
    """
    cand_mask = cand_mask.astype(bool)
    ref_mask = ref_mask.astype(bool)
    cand = _unit(cand_emb, cand_mask)
    ref = _unit(ref_emb, ref_mask)
    sim = jnp.einsum("bid,bjd->bij", cand, ref, precision=_HIGHEST)
    pair_mask = cand_mask[:, :, None] & ref_mask[:, None, :]
    sim = jnp.where(pair_mask, sim, -jnp.inf)
    word_precision = jnp.where(cand_mask, sim.max(axis=2), 0.0)
    word_recall = jnp.where(ref_mask, sim.max(axis=1), 0.0)

    precision = _weighted_mean(word_precision, jnp.where(cand_mask, cand_idf, 0.0))
    recall = _weighted_mean(word_recall, jnp.where(ref_mask, ref_idf, 0.0))
    # F comes from the raw P and R (NaN when a weight sum is 0), before empty texts are zeroed.
    f1 = 2 * precision * recall / (precision + recall)

    empty = (cand_mask.sum(axis=1) == num_special_tokens) | (
        ref_mask.sum(axis=1) == num_special_tokens
    )
    precision = jnp.where(empty, 0.0, precision)
    recall = jnp.where(empty, 0.0, recall)
    f1 = jnp.where(jnp.isnan(f1), 0.0, f1)
    return precision, recall, f1


def _unit(emb: jax.Array, mask: jax.Array) -> jax.Array:
    """x / ||x|| along the last axis; padded rows divide by 1 so they never make NaNs."""
    norm = jnp.linalg.norm(emb, axis=-1, keepdims=True)
    return emb / jnp.where(mask[..., None], norm, 1.0)


def _weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """sum(w v) / sum(w) per row; 0/0 = NaN like bert-score (its F then becomes 0)."""
    return (values * weights).sum(axis=1) / weights.sum(axis=1)


def document_frequencies(token_ids: jax.Array, mask: jax.Array, vocab_size: int) -> jax.Array:
    """df (vocab_size,) int32: in how many of the N sequences each token occurs (once per sequence).

    ``token_ids`` and ``mask`` are (N, L). Sums of these vectors over batches are the df of
    the union, which makes an idf state mergeable. Memory is O(N L + vocab_size): each row is
    sorted so that only the first of equal ids counts.
    """
    # Padding sorts last as the out-of-range id vocab_size, which the scatter drops.
    ids = jnp.sort(jnp.where(mask.astype(bool), token_ids, vocab_size), axis=1)
    first = jnp.concatenate([jnp.ones_like(ids[:, :1], bool), ids[:, 1:] != ids[:, :-1]], axis=1)
    df = jnp.zeros((vocab_size,), jnp.int32)
    return df.at[ids.ravel()].add(first.ravel().astype(jnp.int32), mode="drop")


def idf_from_document_frequencies(df: jax.Array, num_docs: jax.Array | int) -> jax.Array:
    """idf(t) = log((M + 1) / (df(t) + 1)), as bert-score's ``get_idf_dict`` (M references).

    Tokens absent from every reference get log(M + 1); tokens in all of them (e.g. [CLS],
    [SEP]) get 0.
    """
    num_docs = jnp.asarray(num_docs, jnp.float32)
    return jnp.log((num_docs + 1.0) / (df.astype(jnp.float32) + 1.0))


def uniform_idf(vocab_size: int, special_token_ids: tuple[int, ...] | list[int]) -> jax.Array:
    """bert-score's weights without idf: 1 for every token, 0 for [CLS] and [SEP]."""
    weights = jnp.ones((vocab_size,), jnp.float32)
    return weights.at[jnp.asarray(special_token_ids, jnp.int32)].set(0.0)


def token_weights(idf: jax.Array, token_ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-token weights (N, L): ``idf[token_ids]`` at real tokens, 0 at padding."""
    return jnp.where(mask.astype(bool), idf[token_ids], 0.0)


def max_over_references(
    precision: jax.Array, recall: jax.Array, f1: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scores of (B, K) candidate/reference pairs -> (B,): the max over each candidate's
    valid references, taken separately for P, R and F as bert-score does for multi-reference
    input (so P and R may come from different references than F)."""
    valid = valid.astype(bool)
    best = lambda x: jnp.where(valid, x, -jnp.inf).max(axis=1)
    return best(precision), best(recall), best(f1)


def rescale_with_baseline(score: jax.Array, baseline: jax.Array | float) -> jax.Array:
    """(score - b) / (1 - b): maps the baseline b (score of random text pairs) to 0."""
    return (score - baseline) / (1.0 - baseline)


def load_baseline(path: str | os.PathLike, num_layers: int | None = None) -> np.ndarray:
    """Read a bert-score baseline file (comma-separated with header ``LAYER,P,R,F``).

    Returns the (num_rows, 3) array of (P, R, F) baselines, or the row ``num_layers`` (by
    position, as bert-score's ``iloc[num_layers]``) as a (3,) array when it is given.
    """
    with open(os.fspath(path), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = [h.strip() for h in rows[0]]
    try:
        columns = [header.index(name) for name in ("P", "R", "F")]
    except ValueError as err:
        raise ValueError(
            f"{os.fspath(path)!r}: expected a header with P, R, F columns, got {header}"
        ) from err
    table = np.asarray(
        [[float(row[c]) for c in columns] for row in rows[1:] if row], dtype=np.float32
    )
    return table if num_layers is None else table[num_layers]
