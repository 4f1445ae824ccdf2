"""Registry examples for BERTScore (on embeddings) and its idf state."""

import numpy as np

from metrix.text.bertscore import BERTScore, BERTScoreIdf
from tests.registry import Example

VOCAB = 20


def _token_mask(rng, shape, length):
    lengths = rng.integers(1, length + 1, size=shape)
    return np.arange(length) < lengths[..., None]


def _pairs(rng, n, refs_per=None):
    # Positive coordinates: cosine similarities stay positive, as BERT's do.
    ref_shape = (n,) if refs_per is None else (n, refs_per)
    inputs = {
        "candidate_embeddings": rng.uniform(0.05, 1.0, size=(n, 6, 8)).astype(np.float32),
        "candidate_mask": _token_mask(rng, (n,), 6),
        "candidate_ids": rng.integers(0, VOCAB, size=(n, 6)).astype(np.int32),
        "reference_embeddings": rng.uniform(0.05, 1.0, size=(*ref_shape, 5, 8)).astype(np.float32),
        "reference_mask": _token_mask(rng, ref_shape, 5),
        "reference_ids": rng.integers(0, VOCAB, size=(*ref_shape, 5)).astype(np.int32),
    }
    if refs_per is not None:  # some references absent (all padding), never the first
        absent = rng.random((n, refs_per)) < 0.3
        absent[:, 0] = False
        inputs["reference_mask"] = inputs["reference_mask"] & ~absent[..., None]
    return inputs


def _plain(rng, n):
    inputs = _pairs(rng, n)
    del inputs["candidate_ids"], inputs["reference_ids"]
    return inputs


def _with_idf(rng, n):
    inputs = _pairs(rng, n)
    inputs["idf"] = rng.uniform(0.0, 3.0, size=(VOCAB,)).astype(np.float32)
    return inputs


def _multi_reference(rng, n):
    inputs = _pairs(rng, n, refs_per=3)
    # A [CLS]-like id 0 first, then ordinary ids (>= 2), and at least one ordinary token, so
    # no weight sum is 0 (which gives NaN, as in bert-score).
    for side in ("candidate", "reference"):
        ids, mask = inputs[f"{side}_ids"], inputs[f"{side}_mask"]
        ids[...] = np.maximum(ids, 2)
        ids[..., 0] = 0
        present = mask.any(-1, keepdims=True)
        mask[..., :2] |= present
    return inputs


def _idf(rng, n):
    return {
        "reference_ids": rng.integers(0, VOCAB, size=(n, 7)).astype(np.int32),
        "reference_mask": _token_mask(rng, (n,), 7),
    }


_PAIR_KEYS = ("candidate_embeddings", "candidate_mask", "reference_embeddings", "reference_mask")
_ID_KEYS = ("candidate_ids", "reference_ids")
_KEYS = {k: k for k in (*_PAIR_KEYS, *_ID_KEYS, "idf", "mask")}

EXAMPLES = [
    Example(
        "BERTScore",
        BERTScore(**{k: k for k in (*_PAIR_KEYS, "mask")}),
        _plain,
        _PAIR_KEYS,
    ),
    Example(
        "BERTScore_idf_baseline_per_pair",
        BERTScore(**_KEYS, capacity=64, baseline=(0.8, 0.75, 0.7)),
        _with_idf,
        _PAIR_KEYS + _ID_KEYS,
    ),
    Example(
        "BERTScore_multi_reference_special_tokens",
        BERTScore(
            **{k: k for k in (*_PAIR_KEYS, *_ID_KEYS, "mask")},
            special_token_ids=(0, 1),
            num_special_tokens=0,
            capacity=64,
        ),
        _multi_reference,
        _PAIR_KEYS + _ID_KEYS,
    ),
    Example(
        "BERTScoreIdf",
        BERTScoreIdf(
            reference_ids="reference_ids",
            reference_mask="reference_mask",
            mask="mask",
            vocab_size=VOCAB,
            special_token_ids=(0, 1),
        ),
        _idf,
        ("reference_ids", "reference_mask"),
    ),
]
