"""MeanIoU and Dice against sklearn's jaccard_score / f1_score over merged uneven batches."""

import functools

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

import metrix as mx
from tests import helpers

C = 6
SPLITS = (0, 2, 7, 10)  # images per batch: 2, 5, 3


merged = functools.partial(helpers.merged, splits=SPLITS)


def data(seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, C - 1, size=(10, 9, 8)).astype(np.int32)  # class C-1 never a target
    preds = np.where(rng.uniform(size=targets.shape) < 0.6, targets, rng.integers(0, C - 2, size=targets.shape))
    mask = rng.uniform(size=(10, 9, 8)) < 0.8
    return targets, preds.astype(np.int32), mask


def reference(targets, preds, per_class=False):
    t, p = targets.ravel(), preds.ravel()
    labels = np.union1d(t, p)  # classes present in targets or predictions
    average = None if per_class else "macro"
    return labels, jaccard_score(t, p, labels=labels, average=average), f1_score(t, p, labels=labels, average=average)


@pytest.mark.parametrize("masked, jit", [(False, False), (True, True)])
def test_mean_iou_and_dice_match_sklearn(masked, jit):
    targets, preds, mask = data()
    m = mask if masked else None
    keep = mask if masked else np.ones_like(mask)
    _, iou, dice = reference(targets[keep], preds[keep])
    np.testing.assert_allclose(merged(mx.MeanIoU(num_classes=C, preds="p"), jit=jit, targets=targets, preds=preds, mask=m), iou, rtol=1e-6)
    np.testing.assert_allclose(merged(mx.Dice(num_classes=C, preds="p"), jit=jit, targets=targets, preds=preds, mask=m), dice, rtol=1e-6)


def test_per_class_and_absent_classes():
    targets, preds, _ = data(seed=1)
    labels, iou, dice = reference(targets, preds, per_class=True)
    got_iou = merged(mx.MeanIoU(num_classes=C, per_class=True), targets=targets, preds=preds)
    got_dice = merged(mx.Dice(num_classes=C, per_class=True), targets=targets, preds=preds)
    absent = np.setdiff1d(np.arange(C), labels)
    assert absent.size and np.all(np.isnan(np.asarray(got_iou)[absent]))  # class C-1 appears nowhere
    np.testing.assert_allclose(np.asarray(got_iou)[labels], iou, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got_dice)[labels], dice, rtol=1e-6)


def test_ignore_index_and_logits():
    targets, _, _ = data(seed=2)
    rng = np.random.default_rng(2)
    targets = np.where(rng.uniform(size=targets.shape) < 0.2, 255, targets).astype(np.int32)
    logits = rng.normal(size=targets.shape + (C,)).astype(np.float32)
    argmax = logits.argmax(-1)
    keep = targets != 255
    _, iou, dice = reference(targets[keep], argmax[keep])
    for jit in (False, True):
        got = merged(mx.MeanIoU(num_classes=C, logits="l", ignore_index=255), jit=jit, targets=targets, logits=logits)
        np.testing.assert_allclose(got, iou, rtol=1e-6)
    np.testing.assert_allclose(mx.Dice(num_classes=C, ignore_index=255)(targets, logits=logits), dice, rtol=1e-6)


def test_counts_stay_exact_past_2_pow_24():
    n = 2**24 + 3
    targets = np.zeros(n, np.int8)
    preds = np.zeros(n, np.int8)
    preds[:3] = 1
    metric = mx.MeanIoU(num_classes=2)
    state = metric.get_state(targets, preds=preds)
    confusion = np.asarray(state.confusion, np.float64).sum(-1)
    assert confusion[0, 0] == 2**24 and confusion[0, 1] == 3
    state = state.merge(metric.get_state(targets[:5], preds=preds[:5]))
    confusion = np.asarray(state.confusion, np.float64).sum(-1)
    assert confusion[0, 0] == 2**24 + 2 and confusion[0, 1] == 6


def test_edge_cases_and_errors():
    targets, preds, _ = data(seed=3)
    none = np.zeros(targets.shape[:1], bool)  # a mask over images
    assert np.isnan(mx.MeanIoU(num_classes=C)(targets, preds=preds, mask=none))
    # Perfect prediction: 1 over the classes present.
    assert float(mx.Dice(num_classes=C)(targets, preds=targets)) == 1.0
    with pytest.raises(TypeError, match="exactly one"):
        mx.MeanIoU(num_classes=C)(targets)
    with pytest.raises(ValueError, match="num_classes"):
        mx.MeanIoU(num_classes=0)
    with pytest.raises(ValueError, match="classes"):
        mx.MeanIoU(num_classes=C)(targets, logits=np.zeros(targets.shape + (C + 1,), np.float32))
