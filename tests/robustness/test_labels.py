"""Invalid labels are refused (eagerly an error naming the metric, NaN under jit)."""

import jax
import numpy as np
import pytest

import metrix as mx

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(4, 3)).astype(np.float32)
SCORES = np.array([0.9, 0.1], np.float32)


def _log_softmax(z):
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


CASES = [
    ("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(), {"logits": LOGITS, "labels": np.array([-1, 0, 1, 2])}),
    ("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(), {"logits": LOGITS, "labels": np.array([3, 0, 1, 2])}),
    ("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(label_smoothing=0.1), {"logits": LOGITS, "labels": np.array([-1, 0, 1, 2])}),
    ("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(label_smoothing=0.1), {"logits": LOGITS, "labels": np.array([5, 0, 1, 2])}),
    ("SigmoidBinaryCrossEntropy", mx.SigmoidBinaryCrossEntropy(), {"logits": np.zeros(2, np.float32), "labels": np.array([2.0, 0.0], np.float32)}),
    ("SigmoidFocalLoss", mx.SigmoidFocalLoss(), {"logits": np.zeros(2, np.float32), "labels": np.array([-1.0, 0.0], np.float32)}),
    ("BinaryAccuracy", mx.BinaryAccuracy(), {"preds": SCORES, "labels": np.array([0.7, 0.2], np.float32)}),
    ("BinaryAccuracy", mx.BinaryAccuracy(), {"preds": SCORES, "labels": np.array([2, 0])}),
    ("BinaryAccuracy", mx.BinaryAccuracy(), {"preds": np.array([2, 0]), "labels": np.array([1, 0])}),
    ("Accuracy", mx.Accuracy(), {"logits": LOGITS, "labels": np.array([7, 0, 1, 2])}),
    ("Accuracy", mx.Accuracy(), {"logits": LOGITS, "labels": np.array([-1, 0, 1, 2])}),
    ("Accuracy", mx.Accuracy(), {"preds": np.array([0, 1]), "labels": np.array([-100, 1])}),
    ("MeanIoU", mx.MeanIoU(num_classes=3), {"targets": np.array([5, 0, 1, 2]), "preds": np.array([0, 0, 1, 2])}),
    ("Dice", mx.Dice(num_classes=3), {"targets": np.array([0, 0, 1, 2]), "preds": np.array([0, 3, 1, 2])}),
    ("F1Score", mx.F1Score(task="multiclass", num_classes=3), {"preds": LOGITS, "labels": np.array([3, 0, 1, 2])}),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("name, metric, inputs", CASES, ids=IDS)
def test_invalid_labels_raise_eagerly(name, metric, inputs):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        metric(**inputs)


@pytest.mark.parametrize("name, metric, inputs", CASES, ids=IDS)
def test_invalid_labels_give_nan_under_jit(name, metric, inputs):
    value = jax.jit(lambda kw: metric.get_state(**kw).compute())(inputs)
    assert np.isnan(np.asarray(value)).all()


def test_masked_out_padding_labels_are_fine():
    labels = np.array([-100, 0, 1, 2])
    keep = labels >= 0
    z = LOGITS.astype(np.float64)
    expected = -_log_softmax(z)[np.arange(1, 4), labels[1:]].mean()
    ce = mx.SoftmaxCrossEntropy()(logits=LOGITS, labels=labels, mask=keep)
    np.testing.assert_allclose(float(ce), expected, rtol=1e-6)
    jitted = jax.jit(lambda l, y, m: mx.SoftmaxCrossEntropy()(logits=l, labels=y, mask=m))
    np.testing.assert_allclose(float(jitted(LOGITS, labels, keep)), expected, rtol=1e-6)
    expected_acc = np.mean(LOGITS[1:].argmax(-1) == labels[1:])
    assert float(mx.Accuracy()(logits=LOGITS, labels=labels, mask=keep)) == pytest.approx(expected_acc)


def test_gradient_of_a_masked_invalid_label_is_zero():
    labels = np.array([-1, 0, 1, 2])
    keep = labels >= 0
    grad = jax.grad(lambda l: mx.SoftmaxCrossEntropy()(logits=l, labels=labels, mask=keep))(LOGITS)
    assert np.all(np.asarray(grad)[0] == 0) and np.all(np.isfinite(np.asarray(grad)))


def test_valid_labels_keep_their_values():
    labels = np.array([0, 1, 2, 0])
    expected = -_log_softmax(LOGITS.astype(np.float64))[np.arange(4), labels].mean()
    np.testing.assert_allclose(
        float(mx.SoftmaxCrossEntropy()(logits=LOGITS, labels=labels)), expected, rtol=1e-6
    )
    assert float(mx.BinaryAccuracy()(preds=SCORES, labels=np.array([1.0, 0.0], np.float32))) == 1.0
    assert float(mx.BinaryAccuracy()(preds=SCORES, labels=np.array([True, False]))) == 1.0
    assert float(mx.Dice(num_classes=3, ignore_index=-1)(
        targets=np.array([-1, 0, 1, 2]), preds=np.array([2, 0, 1, 2])
    )) == 1.0
