"""Registry examples for WER / CER (on padded token ids) and ROUGE (on per-pair counts).

The string paths tokenize on the host and cannot be traced, so the generic tests (jit, masks,
shard_map allreduce) run on the jit-safe inputs; tests/reference/test_rouge_wer.py checks the
string paths equal them.
"""

import numpy as np

from metrix.text.error_rates import CER, WER
from metrix.text.rouge import ROUGE
from tests.registry import Example

_ID_KEYS = ("pred_ids", "pred_mask", "target_ids", "target_mask")


def _token_ids(rng, n, length, vocab, min_tokens):
    ids = rng.integers(0, vocab, size=(n, length)).astype(np.int32)
    lengths = rng.integers(min_tokens, length + 1, size=n)
    mask = np.arange(length) < lengths[:, None]
    holes = rng.random((n, length)) < 0.15  # masked tokens anywhere, not only at the end
    return ids, mask & ~holes


def _id_pairs(vocab):
    def make(rng, n):
        pred_ids, pred_mask = _token_ids(rng, n, 7, vocab, 0)
        target_ids, target_mask = _token_ids(rng, n, 6, vocab, 1)
        return {
            "pred_ids": pred_ids,
            "pred_mask": pred_mask,
            "target_ids": target_ids,
            "target_mask": target_mask,
        }

    return make


def _rouge_counts(rng, n):
    totals = rng.integers(0, 12, size=(n, 3, 2))
    hits = rng.integers(0, 13, size=(n, 3)) % (np.minimum(totals[..., 0], totals[..., 1]) + 1)
    return {"counts": np.concatenate([hits[..., None], totals], axis=-1).astype(np.int32)}


EXAMPLES = [
    Example("WER_ids", WER(**{k: k for k in (*_ID_KEYS, "mask")}), _id_pairs(5), _ID_KEYS),
    Example("CER_ids", CER(**{k: k for k in (*_ID_KEYS, "mask")}), _id_pairs(3), _ID_KEYS),
    Example(
        "ROUGE_counts",
        ROUGE(counts="counts", mask="mask", rouge_keys=("rouge1", "rougeL", "rougeLsum")),
        _rouge_counts,
        ("counts",),
    ),
]
