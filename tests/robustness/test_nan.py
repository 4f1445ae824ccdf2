"""NaN scores are invalid inputs for every classification and segmentation metric.

The one policy (docs/inputs.md): an unmasked NaN score raises eagerly, naming the metric;
under ``jit`` it is left out and counted, and ``compute()`` is NaN; masked out, it changes
nothing.
"""

import jax
import numpy as np
import pytest

import metrix as mx

NAN_LOGITS = np.full((4, 3), np.nan, np.float32)
LABELS = np.array([0, 1, 2, 0])
NAN_SCORES = np.full(4, np.nan, np.float32)
ZEROS = np.zeros(4, np.int32)

CASES = [
    ("Accuracy", mx.Accuracy(), {"logits": NAN_LOGITS, "labels": LABELS}),
    ("Accuracy", mx.Accuracy(top_k=2), {"logits": NAN_LOGITS, "labels": LABELS}),
    ("BinaryAccuracy", mx.BinaryAccuracy(), {"preds": NAN_SCORES, "labels": ZEROS}),
    ("BinaryAccuracy", mx.BinaryAccuracy(from_logits=True), {"preds": NAN_SCORES, "labels": ZEROS}),
    ("MeanIoU", mx.MeanIoU(num_classes=3), {"targets": LABELS, "logits": NAN_LOGITS}),
    ("Dice", mx.Dice(num_classes=3), {"targets": LABELS, "logits": NAN_LOGITS}),
    ("F1Score", mx.F1Score(task="multiclass", num_classes=3), {"preds": NAN_LOGITS, "labels": LABELS}),
    ("Precision", mx.Precision(task="binary"), {"preds": NAN_SCORES, "labels": ZEROS}),
    # normalised: a float result (raw int32 counts cannot hold NaN; see the test below)
    ("ConfusionMatrix", mx.ConfusionMatrix(task="multiclass", num_classes=3, normalize="true"), {"preds": NAN_LOGITS, "labels": LABELS}),
    ("RocAuc", mx.RocAuc(task="binary", thresholds=10), {"preds": NAN_SCORES, "labels": ZEROS}),
    ("RocAuc", mx.RocAuc(task="binary", capacity=8), {"preds": NAN_SCORES, "labels": ZEROS}),
    ("LogLoss", mx.LogLoss(task="multiclass", num_classes=3, from_logits=True), {"preds": NAN_LOGITS, "labels": LABELS}),
    ("ExpectedCalibrationError", mx.ExpectedCalibrationError(task="binary"), {"preds": NAN_SCORES, "labels": ZEROS}),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]


@pytest.mark.parametrize("name, metric, inputs", CASES, ids=IDS)
def test_nan_scores_raise_eagerly_naming_the_metric(name, metric, inputs):
    with pytest.raises(ValueError, match=rf"^{name}: .*(NaN|invalid)"):
        metric(**inputs)


@pytest.mark.parametrize("name, metric, inputs", CASES, ids=IDS)
def test_nan_scores_give_nan_under_jit(name, metric, inputs):
    value = jax.jit(lambda kw: metric.get_state(**kw).compute())(inputs)
    assert all(np.isnan(np.asarray(v)).all() for v in jax.tree.leaves(value))


@pytest.mark.parametrize("name, metric, inputs", CASES, ids=IDS)
def test_a_state_built_under_jit_refuses_eagerly_at_compute(name, metric, inputs):
    state = jax.jit(lambda kw: metric.get_state(**kw))(inputs)
    with pytest.raises(ValueError, match=rf"^{name}: "):
        state.compute()


def test_masked_out_nan_rows_change_nothing():
    logits = np.eye(4, 3, dtype=np.float32)
    logits[0] = np.nan
    keep = np.array([False, True, True, True])
    labels = np.array([0, 1, 0, 0])  # rows 1 correct, 2 wrong, 3 correct (argmax 0)
    assert float(mx.Accuracy()(logits=logits, labels=labels, mask=keep)) == pytest.approx(2 / 3)
    iou = mx.MeanIoU(num_classes=3)(targets=labels, logits=logits, mask=keep)
    # confusion over rows 1..3: (t=1,p=1), (t=0,p=2), (t=0,p=0): IoU 1/2, 1, 0 -> mean 1/2
    assert float(iou) == pytest.approx(0.5)
    scores = np.array([np.nan, 0.9, 0.2, 0.8], np.float32)
    value = mx.BinaryAccuracy()(preds=scores, labels=np.array([0, 1, 0, 0]), mask=keep)
    assert float(value) == pytest.approx(2 / 3)


def test_nan_merged_with_valid_state_under_jit_stays_nan():
    metric = mx.Accuracy()
    good = metric.get_state(logits=np.eye(3, dtype=np.float32), labels=np.arange(3))
    bad = jax.jit(lambda l, y: metric.get_state(logits=l, labels=y))(NAN_LOGITS, LABELS)
    merged = jax.jit(lambda a, b: a.merge(b).compute())(good, bad)
    assert np.isnan(float(merged))
    assert float(good.compute()) == 1.0


def test_nan_embeddings_are_refused_by_metric_learning_losses():
    emb = np.full((6, 4), np.nan, np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    for loss in (mx.ContrastiveLoss(), mx.TripletMarginLoss(), mx.NTXentLoss(), mx.SupConLoss()):
        name = type(loss).__name__
        with pytest.raises(ValueError, match=rf"^{name}: 6 unmasked embedding row\(s\) hold NaN"):
            loss(emb, labels)
        assert np.isnan(float(jax.jit(lambda e, y, loss=loss: loss(e, y))(emb, labels)))


def test_masked_nan_embeddings_are_fine():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    keep = np.array([True, True, True, True, False, False])
    poisoned = emb.copy()
    poisoned[4:] = np.nan
    for loss in (mx.ContrastiveLoss(), mx.TripletMarginLoss()):
        assert float(loss(poisoned, labels, mask=keep)) == pytest.approx(
            float(loss(emb[:4], labels[:4]))
        )


def test_raw_confusion_counts_under_jit_leave_nan_rows_out_and_count_them():
    metric = mx.ConfusionMatrix(task="multiclass", num_classes=3)
    state = jax.jit(lambda l, y: metric.get_state(preds=l, labels=y))(NAN_LOGITS, LABELS)
    assert np.asarray(jax.jit(lambda s: s.compute())(state)).sum() == 0  # int32: no NaN
    assert float(state.invalid[..., 0]) == 4
    with pytest.raises(ValueError, match="^ConfusionMatrix: 4 input element"):
        state.compute()
