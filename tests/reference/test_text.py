"""Perplexity: token-weighted over uneven batches, against torchmetrics and the closed form."""

import sys
import types

import jax
import numpy as np
import pytest
import scipy.special

import metrix as mx
from tests.helpers import merged

VOCAB = 11


def nll(logits, labels):
    log_probs = scipy.special.log_softmax(np.asarray(logits, np.float64), axis=-1)
    return -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def uneven_batches(seed=0):
    """Three batches of (batch, seq) tokens with padding masks of different lengths."""
    rng = np.random.default_rng(seed)
    batches = []
    for b, s in [(2, 5), (7, 3), (1, 12)]:
        logits = rng.normal(size=(b, s, VOCAB)).astype(np.float32) * 2
        labels = rng.integers(0, VOCAB, size=(b, s)).astype(np.int32)
        lengths = rng.integers(1, s + 1, size=b)
        mask = np.arange(s)[None, :] < lengths[:, None]
        batches.append({"logits": logits, "labels": labels, "mask": mask})
    return batches


@pytest.mark.parametrize("jit", [False, True])
def test_token_weighted_equals_exp_of_total_nll(jit):
    batches = uneven_batches()
    got = merged(mx.Perplexity(logits="l", labels="y", mask="m"), batches=batches, jit=jit)
    total = sum(nll(b["logits"], b["labels"])[b["mask"]].sum() for b in batches)
    tokens = sum(b["mask"].sum() for b in batches)
    np.testing.assert_allclose(got, np.exp(total / tokens), rtol=1e-5)


def test_batch_weighting_would_differ():
    """One long easy batch and one short hard batch: averaging per batch overweights the short one."""
    vocab = 4
    easy = np.full((1, 100, vocab), -5.0, np.float32)
    easy[..., 0] = 5.0  # confident and right on label 0
    hard = np.zeros((1, 2, vocab), np.float32)
    hard[..., 0] = 8.0  # confident and wrong on label 1
    batches = [
        {"logits": easy, "labels": np.zeros((1, 100), np.int32)},
        {"logits": hard, "labels": np.ones((1, 2), np.int32)},
    ]
    got = float(merged(mx.Perplexity(), batches=batches))
    nlls = [nll(b["logits"], b["labels"]) for b in batches]
    token_weighted = np.exp(np.concatenate([x.ravel() for x in nlls]).mean())
    batch_weighted = np.mean([np.exp(x.mean()) for x in nlls])
    np.testing.assert_allclose(got, token_weighted, rtol=1e-5)
    assert batch_weighted > 10 * token_weighted


def test_matches_torchmetrics_with_ignore_index():
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    torch = pytest.importorskip("torch")
    text = pytest.importorskip("torchmetrics.text")
    batches = uneven_batches(seed=1)
    reference = text.Perplexity(ignore_index=-100)
    for b in batches:
        b["labels"] = np.where(b.pop("mask"), b["labels"], -100).astype(np.int32)
        reference.update(torch.tensor(b["logits"]), torch.tensor(b["labels"], dtype=torch.long))
    got = merged(mx.Perplexity(ignore_index=-100), batches=batches, jit=True)
    np.testing.assert_allclose(got, float(reference.compute()), rtol=1e-5)


def test_log_probs_input_equals_logits_input():
    batches = uneven_batches(seed=2)
    from_logits = merged(mx.Perplexity(), batches=batches)
    for b in batches:
        b["log_probs"] = jax.nn.log_softmax(b.pop("logits"), axis=-1)
    np.testing.assert_allclose(merged(mx.Perplexity(), batches=batches), from_logits, rtol=1e-6)


def test_edge_cases_and_errors():
    b = uneven_batches(seed=3)[0]
    # No tokens: NaN. Masked-out NaN logits change nothing.
    assert np.isnan(mx.Perplexity()(b["logits"], labels=b["labels"], mask=np.zeros_like(b["mask"])))
    poisoned = np.where(b["mask"][..., None], b["logits"], np.nan)
    np.testing.assert_allclose(
        mx.Perplexity()(poisoned, labels=b["labels"], mask=b["mask"]),
        mx.Perplexity()(b["logits"], labels=b["labels"], mask=b["mask"]),
        rtol=1e-6,
    )
    # Uniform predictions: perplexity = vocabulary size.
    uniform = np.zeros((3, 4, VOCAB), np.float32)
    np.testing.assert_allclose(mx.Perplexity()(uniform, labels=np.zeros((3, 4), np.int32)), VOCAB, rtol=1e-5)
    with pytest.raises(TypeError, match="exactly one"):
        mx.Perplexity()(labels=b["labels"])
    with pytest.raises(TypeError):
        mx.Perplexity()(b["logits"], labels=b["labels"][:, :2])
