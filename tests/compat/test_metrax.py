"""Real-valued sample weights (metrax's ``sample_weights``, sklearn's ``sample_weight``).

Every weighted value is checked against sklearn with ``sample_weight`` (or, for perplexity,
the weighted formula written out in numpy), over uneven batches merged eagerly and under
``jax.jit``. Never against values metrix computed itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

import metrix as mx
from tests import helpers

SPLITS = (0, 5, 24)  # uneven batches: 5 and 19 rows
N = SPLITS[-1]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.0, 2.0, size=N).astype(np.float32)
    weights[3] = 0.0  # a zero weight counts nothing
    mask = rng.uniform(size=N) < 0.8
    mask[:4] = True
    return rng, weights, mask


def _merged(metric, jit, **inputs):
    return float(helpers.merged(metric, splits=SPLITS, jit=jit, **inputs))


# -- regression -------------------------------------------------------------------------------


REGRESSION = [
    (mx.MSE(), skm.mean_squared_error),
    (mx.RMSE(), skm.root_mean_squared_error),
    (mx.MAE(), skm.mean_absolute_error),
    (mx.MAPE(), skm.mean_absolute_percentage_error),
    (mx.R2Score(), skm.r2_score),
    (mx.ExplainedVariance(), skm.explained_variance_score),
]


@pytest.mark.parametrize("jit", [False, True])
def test_weighted_regression_matches_sklearn_over_merged_masked_batches(jit):
    rng, w, mask = _data()
    preds = rng.normal(size=N).astype(np.float32)
    targets = (preds + rng.normal(size=N) + 3).astype(np.float32)
    # Under jit the two state kinds (weighted mean, weighted co-moments) are enough.
    for metric, reference in REGRESSION[::4] if jit else REGRESSION:
        value = _merged(metric, jit, preds=preds, targets=targets, weights=w, mask=mask)
        expected = reference(targets[mask], preds[mask], sample_weight=w[mask])
        assert value == pytest.approx(expected, rel=2e-5), type(metric).__name__


def test_weighted_r2_multioutput_and_bfloat16_inputs():
    rng, w, _ = _data(1)
    preds = rng.normal(size=(N, 2)).astype(np.float32)
    targets = (preds + rng.normal(size=(N, 2))).astype(np.float32)
    for multioutput in ("uniform_average", "raw_values", "variance_weighted"):
        metric = mx.R2Score(num_outputs=2, multioutput=multioutput)
        value = helpers.merged(metric, splits=SPLITS, preds=preds, targets=targets, weights=w)
        expected = skm.r2_score(targets, preds, sample_weight=w, multioutput=multioutput)
        np.testing.assert_allclose(value, expected, rtol=2e-5)
    half = jnp.asarray(preds[:, 0], jnp.bfloat16)
    value = mx.MSE()(half, targets[:, 0], weights=jnp.asarray(w, jnp.bfloat16))
    expected = skm.mean_squared_error(
        targets[:, 0], np.asarray(half, np.float32), sample_weight=np.asarray(
            jnp.asarray(w, jnp.bfloat16), np.float32
        )
    )
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_r2_counts_samples_not_weights():
    # Two samples of total weight 0.3: R2 is defined (sklearn's n_samples >= 2), not NaN.
    preds, targets = np.array([1.0, 2.0], np.float32), np.array([1.5, 3.0], np.float32)
    w = np.array([0.1, 0.2], np.float32)
    expected = skm.r2_score(targets, preds, sample_weight=w)
    assert float(mx.R2Score()(preds, targets, weights=w)) == pytest.approx(expected, rel=1e-5)
    # One sample, however heavy: undefined (sklearn: NaN).
    assert np.isnan(float(mx.R2Score()(preds[:1], targets[:1], weights=np.array([5.0]))))
    # A NaN prediction propagates (it used to hit the constant-target rule and read 1.0).
    constant = np.ones(3, np.float32)
    assert np.isnan(float(mx.R2Score()(np.array([1.0, np.nan, 1.0], np.float32), constant)))


def test_unit_weights_are_the_unweighted_metric_and_zero_weights_a_mask():
    rng, _, _ = _data(2)
    preds = rng.normal(size=N).astype(np.float32)
    targets = rng.normal(size=N).astype(np.float32)
    ones = np.ones(N, np.float32)
    zero = (np.arange(N) % 3 == 0).astype(np.float32)  # keeps a third of the rows
    for metric, _ in REGRESSION:
        plain = float(metric(preds, targets))
        assert float(metric(preds, targets, weights=ones)) == pytest.approx(plain, rel=1e-6)
        kept = zero > 0
        masked = float(metric(preds, targets, mask=kept))
        assert float(metric(preds, targets, weights=zero)) == pytest.approx(masked, rel=1e-5)


# -- classification ---------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_weighted_accuracy_matches_sklearn(jit):
    rng, w, mask = _data(3)
    labels = rng.integers(0, 3, size=N).astype(np.int32)
    logits = rng.normal(size=(N, 3)).astype(np.float32)
    expected = skm.accuracy_score(labels[mask], logits[mask].argmax(-1), sample_weight=w[mask])
    value = _merged(mx.Accuracy(), jit, logits=logits, labels=labels, weights=w, mask=mask)
    assert value == pytest.approx(expected, rel=1e-6)
    preds = logits.argmax(-1).astype(np.int32)
    value = _merged(mx.Accuracy(), jit, preds=preds, labels=labels, weights=w, mask=mask)
    assert value == pytest.approx(expected, rel=1e-6)
    scores = rng.uniform(size=N).astype(np.float32)
    binary = (labels > 0).astype(np.int32)
    expected = skm.accuracy_score(binary, scores > 0.5, sample_weight=w)
    value = _merged(mx.BinaryAccuracy(), jit, preds=scores, labels=binary, weights=w)
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_weighted_confusion_scores_match_sklearn(jit):
    rng, w, mask = _data(4)
    labels = rng.integers(0, 3, size=N).astype(np.int32)
    preds = np.where(rng.uniform(size=N) < 0.5, labels, rng.integers(0, 3, N)).astype(np.int32)
    y, p, sw = labels[mask], preds[mask], w[mask]
    cases = [
        (mx.Precision, skm.precision_score),
        (mx.Recall, skm.recall_score),
        (mx.F1Score, skm.f1_score),
    ]
    inputs = {"preds": preds, "labels": labels, "weights": w, "mask": mask}
    averages = ("macro", "weighted", "micro")
    for (cls, reference), average in zip(cases, averages):
        value = _merged(cls(num_classes=3, average=average), jit, **inputs)
        expected = reference(y, p, average=average, sample_weight=sw)
        assert value == pytest.approx(expected, rel=1e-5), (cls.__name__, average)
    if jit:
        return  # one compiled confusion program is enough; the rest share its counts
    value = _merged(mx.BalancedAccuracy(num_classes=3), jit, **inputs)
    assert value == pytest.approx(skm.balanced_accuracy_score(y, p, sample_weight=sw), rel=1e-5)
    value = _merged(mx.MatthewsCorrCoef(num_classes=3), jit, **inputs)
    assert value == pytest.approx(skm.matthews_corrcoef(y, p, sample_weight=sw), rel=1e-4)
    scores = rng.uniform(size=N).astype(np.float32)
    binary = (labels > 0).astype(np.int32)
    metric = mx.FBetaScore(task="binary", beta=2.0)
    value = _merged(metric, jit, preds=scores, labels=binary, weights=w)
    assert value == pytest.approx(skm.fbeta_score(binary, scores > 0.5, beta=2.0, sample_weight=w))


@pytest.mark.parametrize("jit", [False, True])
def test_weighted_roc_auc_and_average_precision_match_sklearn(jit):
    rng, w, mask = _data(5)
    scores = rng.uniform(size=N).astype(np.float32)
    scores[:6] = 0.5  # ties
    labels = (rng.uniform(size=N) < 0.5).astype(np.int32)
    labels[:2] = (0, 1)
    y, s, sw = labels[mask], scores[mask], w[mask]
    inputs = {"preds": scores, "labels": labels, "weights": w, "mask": mask}
    value = _merged(mx.RocAuc(task="binary", capacity=32), jit, **inputs)
    assert value == pytest.approx(skm.roc_auc_score(y, s, sample_weight=sw), rel=1e-5)
    value = _merged(mx.AveragePrecision(capacity=32), jit, **inputs)  # task inferred
    assert value == pytest.approx(skm.average_precision_score(y, s, sample_weight=sw), rel=1e-5)


def test_weighted_multiclass_and_multilabel_areas_match_sklearn():
    rng, w, _ = _data(6)
    logits = rng.normal(size=(N, 3)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 3, size=N).astype(np.int32)
    labels[:3] = (0, 1, 2)
    onehot = np.eye(3, dtype=np.int32)[labels]
    for average in ("macro", "weighted"):
        value = mx.RocAuc(average=average)(preds=probs, labels=labels, weights=w)
        expected = skm.roc_auc_score(labels, probs, multi_class="ovr", average=average, sample_weight=w)
        assert float(value) == pytest.approx(expected, rel=1e-5)
    for average in ("macro", "weighted", "micro"):
        value = mx.AveragePrecision(average=average)(preds=probs, labels=onehot, weights=w)
        expected = skm.average_precision_score(onehot, probs, average=average, sample_weight=w)
        assert float(value) == pytest.approx(expected, rel=1e-5), average


def test_weighted_binned_areas_and_curves_match_sklearn_on_the_grid():
    rng, w, _ = _data(7)
    grid = np.asarray(jnp.linspace(0.0, 1.0, 11, dtype=jnp.float32))
    scores = grid[rng.integers(0, 11, size=N)]  # on the grid: binned is exact
    labels = (rng.uniform(size=N) < 0.5).astype(np.int32)
    labels[:2] = (0, 1)
    auc = mx.RocAuc(task="binary", thresholds=11)
    value = helpers.merged(auc, splits=SPLITS, jit=True, preds=scores, labels=labels, weights=w)
    assert float(value) == pytest.approx(skm.roc_auc_score(labels, scores, sample_weight=w), rel=1e-5)
    ap = mx.AveragePrecision(task="binary", thresholds=11)(scores, labels, weights=w)
    expected = skm.average_precision_score(labels, scores, sample_weight=w)
    assert float(ap) == pytest.approx(expected, rel=1e-5)
    curve = mx.RocCurve()(scores, labels, weights=w)
    fpr, tpr, _ = skm.roc_curve(labels, scores, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(curve["fpr"], fpr, rtol=1e-6)
    np.testing.assert_allclose(curve["tpr"], tpr, rtol=1e-6)
    curve = mx.PrecisionRecallCurve()(scores, labels, weights=w)
    precision, recall, _ = skm.precision_recall_curve(labels, scores, sample_weight=w)
    np.testing.assert_allclose(curve["precision"], precision, rtol=1e-6)
    np.testing.assert_allclose(curve["recall"], recall, rtol=1e-6)


def test_weighted_perplexity_is_the_weighted_mean_nll():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(4, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=(4, 5)).astype(np.int32)
    w = rng.uniform(size=(4, 5)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    expected = np.exp(np.sum(w * nll) / np.sum(w))
    value = helpers.merged(
        mx.Perplexity(), splits=(0, 1, 4), jit=True, logits=logits, labels=labels, weights=w
    )
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_float_labels_of_whole_numbers_are_class_ids_as_in_sklearn():
    # metrax and keras pass 0.0 / 1.0 float labels; sklearn reads them as binary.
    scores = np.array([0.9, 0.2, 0.6, 0.4, 0.7], np.float32)
    labels = np.array([1.0, 0.0, 0.0, 1.0, 1.0], np.float32)
    ints = labels.astype(np.int32)
    assert float(mx.Precision(task="binary")(scores, labels)) == pytest.approx(
        skm.precision_score(ints, scores > 0.5)
    )
    assert float(mx.RocAuc()(scores, labels)) == pytest.approx(skm.roc_auc_score(ints, scores))
    three = np.array([0.0, 2.0, 1.0, 2.0], np.float32)
    value = mx.F1Score(num_classes=3)(np.array([0, 2, 2, 2]), three)
    assert float(value) == pytest.approx(skm.f1_score(three, [0, 2, 2, 2], average="macro"))
    # A fractional label is no class: refused eagerly, NaN under jit.
    half = np.array([1.0, 0.5, 0.0, 1.0, 1.0], np.float32)
    with pytest.raises(ValueError, match="Recall.*1 label"):
        mx.Recall(task="binary")(scores, half)
    with pytest.raises(ValueError, match="AveragePrecision.*1 example"):
        mx.AveragePrecision()(scores, half)
    jitted = jax.jit(lambda s, y: mx.Recall(task="binary").get_state(s, y).compute())(scores, half)
    assert np.isnan(float(jitted))


def test_precision_at_k_adaptive_k_divides_by_the_list_length_when_shorter():
    # Two real items (one relevant) and k=5: 1/5 by default, 1/min(5, 2) = 1/2 adaptive.
    scores = np.array([[0.9, 0.1, 0.5]], np.float32)
    relevance = np.array([[1, 0, 1]])
    items = np.array([[True, True, False]])
    plain = mx.PrecisionAtK(k=5)(scores, relevance, item_mask=items)
    adaptive = mx.PrecisionAtK(k=5, adaptive_k=True)(scores, relevance, item_mask=items)
    assert float(plain) == pytest.approx(1 / 5)
    assert float(adaptive) == pytest.approx(1 / 2)
    # k within the list: both rules agree (top 1 is relevant).
    assert float(mx.PrecisionAtK(k=1, adaptive_k=True)(scores, relevance)) == 1.0


# -- invalid weights --------------------------------------------------------------------------


BAD_WEIGHT_CASES = [
    (mx.MSE(), {"preds": np.zeros(4, np.float32), "targets": np.ones(4, np.float32)}),
    (mx.R2Score(), {"preds": np.arange(4.0, dtype=np.float32), "targets": np.ones(4, np.float32)}),
    (mx.Accuracy(), {"preds": np.zeros(4, np.int32), "labels": np.arange(4, dtype=np.int32)}),
    (
        mx.F1Score(num_classes=4),
        {"preds": np.zeros(4, np.int32), "labels": np.arange(4, dtype=np.int32)},
    ),
    (
        mx.RocAuc(task="binary"),
        {"preds": np.linspace(0, 1, 4, dtype=np.float32), "labels": np.array([0, 1, 0, 1])},
    ),
]


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_bad_weights_refused_eagerly_nan_under_jit_and_ignored_when_masked(bad):
    weights = np.array([1.0, bad, 1.0, 2.0], np.float32)
    keep = np.array([True, False, True, True])
    for metric, inputs in BAD_WEIGHT_CASES:
        name = type(metric).__name__
        with pytest.raises(ValueError, match=f"{name}.*'weights'.*negative, NaN or infinite"):
            metric(**inputs, weights=weights)
        value = jax.jit(lambda w, m=metric, x=inputs: m.get_state(**x, weights=w).compute())(
            weights
        )
        assert np.isnan(float(value)), name
        # The mask selects first: the bad weight is masked out and changes nothing.
        clean = np.where(keep, weights, 0.0).astype(np.float32)
        masked = metric(**inputs, weights=weights, mask=keep)
        expected = metric(**inputs, weights=clean, mask=keep)
        assert float(masked) == pytest.approx(float(expected), nan_ok=True), name


def test_weights_errors_name_the_metric_and_argument():
    with pytest.raises(ValueError, match="MSE.*'weights' of shape \\(3,\\)"):
        mx.MSE()(np.zeros(4, np.float32), np.zeros(4, np.float32), weights=np.ones(3))
    with pytest.raises(ValueError, match="RocAuc.*weights= is not defined for multi_class_mode='ovo'"):
        mx.RocAuc(multi_class_mode="ovo")(
            preds=np.full((3, 3), 1 / 3, np.float32), labels=np.arange(3), weights=np.ones(3)
        )
