"""Registry examples for the losses and the summaries."""

import numpy as np

import metrix as mx
from tests.registry import Example


def _regression(rng, n):
    return {
        "preds": rng.normal(size=(n, 3)).astype(np.float32),
        "targets": rng.normal(size=(n, 3)).astype(np.float32),
    }


def _regression_step(rng, n):
    return {**_regression(rng, n), "step": np.int32(3)}


def _binary(rng, n):
    return {
        "logits": rng.normal(size=(n, 3)).astype(np.float32),
        "labels": rng.integers(0, 2, size=(n, 3)).astype(np.float32),
    }


def _multiclass(rng, n):
    return {
        "logits": rng.normal(size=(n, 5)).astype(np.float32),
        "labels": rng.integers(0, 5, size=(n,)).astype(np.int32),
    }


def _one_hot(rng, n):
    inputs = _multiclass(rng, n)
    return {"logits": inputs["logits"], "labels": np.eye(5, dtype=np.float32)[inputs["labels"]]}


def _images(rng, n):
    return {"images": rng.uniform(size=(n, 1, 4, 5)).astype(np.float32)}


def _values(rng, n):
    return {"values": rng.normal(size=(n, 4)).astype(np.float32)}


def _confusion(rng, n):
    return {
        "labels": rng.integers(0, 4, size=(n,)).astype(np.int32),
        "preds": rng.normal(size=(n, 4)).astype(np.float32),
    }


def _reg(name, metric, make, **kw):
    return Example(name, metric, make, tuple(k for k in make(np.random.default_rng(0), 2) if k != "step"), **kw)


def _schedule(step):
    return 0.5 + 0.1 * step


EXAMPLES = [
    _reg("L1", mx.L1(preds="preds", targets="targets"), _regression),
    _reg("L2", mx.L2(preds="preds", targets="targets"), _regression),
    _reg("L2_schedule", mx.L2(preds="preds", targets="targets", weight=_schedule), _regression_step),
    # Its mask zeroes elements but keeps them in the normaliser: not "filtering", so no mask_input.
    _reg(
        "L2_normalize_by_values",
        mx.L2(preds="preds", targets="targets", normalize_by="values"),
        _regression,
        mask_input=None,
    ),
    _reg("Huber", mx.Huber(preds="preds", targets="targets", delta=0.5), _regression),
    _reg("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(logits="logits", labels="labels"), _multiclass),
    _reg(
        "SoftmaxCrossEntropy_onehot_smoothing",
        mx.SoftmaxCrossEntropy(logits="logits", labels="labels", label_smoothing=0.1),
        _one_hot,
    ),
    _reg("SigmoidBinaryCrossEntropy", mx.SigmoidBinaryCrossEntropy(logits="logits", labels="labels"), _binary),
    _reg("SigmoidFocalLoss", mx.SigmoidFocalLoss(logits="logits", labels="labels", alpha=0.25), _binary),
    _reg("NegativeCosineSimilarity", mx.NegativeCosineSimilarity(preds="preds", targets="targets"), _regression),
    # Summaries.
    _reg(
        "ShowImages",
        mx.ShowImages(
            images="images", num_images=64, rearrange="b c h w -> b h w c", image_shape=(4, 5, 1),
            in_vrange=(0.0, 1.0),
        ),
        _images,
    ),
    _reg("ShowHistogram", mx.ShowHistogram(values="values", low=-2.0, high=2.0, num_bins=8), _values),
    _reg("ShowConfusionMatrix", mx.ShowConfusionMatrix(labels="labels", preds="preds", num_classes=4), _confusion),
]
