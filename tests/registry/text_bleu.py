"""Registry examples for BLEU and CHRF on padded token ids (the jit-safe path).

The string paths tokenize and count on the host and cannot be traced, so the generic tests
(jit, masks, shard_map allreduce) run on ids; tests/reference/test_bleu_chrf.py checks the
string paths against sacrebleu and the id paths equal to them.
"""

import numpy as np

from metrix.text.bleu import BLEU
from metrix.text.chrf import CHRF
from tests.registry import Example

_KEYS = ("pred_ids", "pred_mask", "target_ids", "target_mask", "reference_mask")
_WORD_KEYS = ("pred_word_ids", "pred_word_mask", "target_word_ids", "target_word_mask")


def _tokens(rng, shape, vocab, min_tokens):
    """Ids from a small vocabulary (so that n-grams repeat and match), masks with holes
    anywhere (not only at the end)."""
    ids = rng.integers(0, vocab, size=shape).astype(np.int32)
    lengths = rng.integers(min_tokens, shape[-1] + 1, size=shape[:-1])
    mask = np.arange(shape[-1]) < lengths[..., None]
    return ids, mask & ~(rng.random(shape) < 0.1)


def _references(rng, n, count):
    """Between 1 and ``count`` references per example (never none), anywhere in the row."""
    present = np.arange(count) < rng.integers(1, count + 1, size=n)[:, None]
    return rng.permuted(present, axis=1)


def _id_inputs(words: bool):
    def make(rng, n):
        pred_ids, pred_mask = _tokens(rng, (n, 9), 4, 0)
        target_ids, target_mask = _tokens(rng, (n, 3, 8), 4, 0)
        out = {
            "pred_ids": pred_ids,
            "pred_mask": pred_mask,
            "target_ids": target_ids,
            "target_mask": target_mask,
            "reference_mask": _references(rng, n, 3),
        }
        if words:
            out["pred_word_ids"], out["pred_word_mask"] = _tokens(rng, (n, 4), 3, 0)
            out["target_word_ids"], out["target_word_mask"] = _tokens(rng, (n, 3, 5), 3, 0)
        return out

    return make


def _keys(*names):
    return {k: k for k in (*names, "mask")}


EXAMPLES = [
    Example("BLEU_ids", BLEU(**_keys(*_KEYS)), _id_inputs(False), _KEYS),
    Example(
        "BLEU_ids_floor_effective_order",
        BLEU(**_keys(*_KEYS), max_ngram_order=3, smooth_method="floor", effective_order=True),
        _id_inputs(False),
        _KEYS,
    ),
    Example("CHRF_ids", CHRF(**_keys(*_KEYS), char_order=4), _id_inputs(False), _KEYS),
    Example(
        "CHRF_ids_chrF++",
        CHRF(**_keys(*_KEYS, *_WORD_KEYS), char_order=3, word_order=2),
        _id_inputs(True),
        (*_KEYS, *_WORD_KEYS),
    ),
]
