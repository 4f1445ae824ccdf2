"""metrax- and Kauldron-facing behaviours: RocAuc on logits / inferred task / one-vs-one,
MeanIoU(class_ids), SoftDice, DCG; against sklearn and hand computations.

The peers' behaviours are described in docs/compatibility.md; the expected values here come
from sklearn or from the formulas written out in numpy, never from metrix.
"""

import dataclasses
import functools
import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

import metrix as mx
from metrix.classification.curves import UndefinedMetricWarning
from metrix.ranking import DCG
from metrix.segmentation import SoftDice
from tests import helpers

SPLITS = (0, 7, 30, 41)  # uneven batches: 7, 23, 11 rows
N = SPLITS[-1]
merged = functools.partial(helpers.merged, splits=SPLITS)


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def multiclass_data(seed=0, n=N, c=4, dtype=np.float32):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    labels[:c] = np.arange(c)  # every class present in every split's union
    logits = (rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels]).astype(dtype)
    mask = rng.uniform(size=n) < 0.8
    mask[:c] = True
    return logits, labels.astype(np.int32), mask


# -- RocAuc: logits, the Kauldron case ---------------------------------------------------------

KAULDRON_LOGITS = np.array([[1.0, 0.0, 0.0], [0.3, 0.4, 0.3], [0.0, 2.0, 8.0]], np.float32)
KAULDRON_LABELS = np.array([[1], [0], [2]], np.int32)  # Kauldron's (*b, 1) class indices


def test_kauldron_case_softmax_of_logits_matches_sklearn():
    probs = softmax(KAULDRON_LOGITS)
    y = KAULDRON_LABELS[:, 0]
    expected = skm.roc_auc_score(y, probs, multi_class="ovr")
    assert expected == pytest.approx(2 / 3)
    for metric in (
        mx.RocAuc(),  # task inferred from the shapes
        mx.RocAuc(task="multiclass", num_classes=3),
    ):
        state = metric.get_state(logits=KAULDRON_LOGITS, labels=KAULDRON_LABELS)
        assert float(state.compute()) == pytest.approx(expected, rel=1e-6)
    ovo = skm.roc_auc_score(y, probs, multi_class="ovo")
    value = mx.RocAuc(multi_class_mode="ovo").get_state(logits=KAULDRON_LOGITS, labels=y)
    assert float(value.compute()) == pytest.approx(ovo, rel=1e-6)
    # Why 0.5 before: the raw columns rank differently across rows (class 1's column puts its
    # positive last); that is what metrix computes when the logits are given as ``preds``.
    raw = np.mean([skm.roc_auc_score(y == c, KAULDRON_LOGITS[:, c]) for c in range(3)])
    assert raw == pytest.approx(0.5)
    as_scores = mx.RocAuc(task="multiclass", num_classes=3)(preds=KAULDRON_LOGITS, labels=y)
    assert float(as_scores) == pytest.approx(raw)


def test_kauldron_empty_merges_either_side_and_keeps_the_parent():
    metric = mx.RocAuc(logits="logits", labels="labels")
    s0 = metric.get_state_from_context({"logits": KAULDRON_LOGITS, "labels": KAULDRON_LABELS})
    s1 = mx.RocAuc(logits="logits", labels="labels").empty()
    np.testing.assert_allclose(s0.merge(s1).compute(), s1.merge(s0).compute())
    assert s0.parent == s1.parent
    assert s0.merge(s1).parent == s0.parent
    ovo = mx.RocAuc(logits="logits", labels="labels", multi_class_mode="ovo")
    s3 = ovo.get_state(logits=KAULDRON_LOGITS, labels=KAULDRON_LABELS)
    with pytest.raises(mx.MergeError):
        s3.merge(s0)


@pytest.mark.parametrize(("jit", "dtype"), [(False, np.float32), (True, jnp.bfloat16)])
def test_multiclass_logits_ovr_and_ovo_match_sklearn_over_merged_masked_batches(jit, dtype):
    logits, labels, mask = multiclass_data(dtype=dtype)
    probs = softmax(np.asarray(logits, np.float32))
    y, p = labels[mask], probs[mask]
    base = mx.RocAuc(task="multiclass", num_classes=4, capacity=64)
    state = helpers.accumulate(
        base, splits=SPLITS, jit=jit, logits=jnp.asarray(logits), labels=labels, mask=mask
    )
    for mode, average in (("ovr", "macro"), ("ovr", "weighted"), ("ovo", "macro"), ("ovo", "weighted")):
        # The stored rows do not depend on the mode or the average: one state, four computes.
        metric = dataclasses.replace(base, multi_class_mode=mode, average=average)
        compute = jax.jit(lambda s: s.compute()) if jit else (lambda s: s.compute())
        value = compute(state.replace(parent=metric))
        expected = skm.roc_auc_score(y, p, multi_class=mode, average=average)
        assert float(value) == pytest.approx(expected, abs=1e-6), (mode, average)


@pytest.mark.slow  # several compiles (~5-10 s on a loaded machine)
def test_ovo_skips_pairs_with_an_absent_class_as_sklearn():
    logits, labels, _ = multiclass_data(seed=1)
    keep = labels != 3  # class 3 never occurs
    probs = softmax(logits[keep])
    for average in ("macro", "weighted"):
        expected = skm.roc_auc_score(
            labels[keep], probs, multi_class="ovo", average=average, labels=[0, 1, 2, 3]
        )
        metric = mx.RocAuc(task="multiclass", num_classes=4, multi_class_mode="ovo", average=average)
        eager = metric.get_state(logits=logits[keep], labels=labels[keep]).compute()
        jitted = jax.jit(lambda l, y, m=metric: m.get_state(logits=l, labels=y).compute())(
            logits[keep], labels[keep]
        )
        assert float(eager) == pytest.approx(expected, abs=1e-6)
        assert float(jitted) == pytest.approx(expected, abs=1e-6)
    one_class = mx.RocAuc(task="multiclass", num_classes=4, multi_class_mode="ovo")
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(float(one_class(preds=probs[:3], labels=np.zeros(3, np.int32))))


def test_binary_and_multilabel_logits_rank_like_sklearn_without_sigmoid_ties():
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(N,)) * 12 + 20).astype(np.float32)  # many sigmoid(x) == 1.0
    labels = (rng.uniform(size=N) < 0.5).astype(np.int32)
    assert len(np.unique(jax.nn.sigmoid(logits))) < len(np.unique(logits))
    expected = skm.roc_auc_score(labels, logits)
    assert float(merged(mx.RocAuc(capacity=64), logits=logits, labels=labels)) == pytest.approx(
        expected, rel=1e-6
    )
    ap = skm.average_precision_score(labels, logits)
    assert float(mx.AveragePrecision()(logits=logits, labels=labels)) == pytest.approx(ap, rel=1e-6)
    # multilabel: the task inferred from (n, L) labels.
    ml_logits = rng.normal(size=(N, 3)).astype(np.float32)
    ml_labels = (rng.uniform(size=(N, 3)) < 0.5).astype(np.int32)
    value = merged(mx.RocAuc(capacity=64), jit=True, logits=ml_logits, labels=ml_labels)
    assert float(value) == pytest.approx(skm.roc_auc_score(ml_labels, ml_logits), rel=1e-6)


def test_curves_and_binned_mode_get_sigmoid_probabilities_from_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(N,)).astype(np.float32) * 2
    labels = (rng.uniform(size=N) < 0.5).astype(np.int32)
    probs = np.asarray(jax.nn.sigmoid(logits))
    curve = mx.RocCurve()(logits=logits, labels=labels)
    _, _, thresholds = skm.roc_curve(labels, probs, drop_intermediate=False)
    np.testing.assert_allclose(curve["thresholds"][1:], thresholds[1:], rtol=1e-6)
    binned = mx.RocAuc(task="binary", thresholds=50)
    assert float(binned(logits=logits, labels=labels)) == float(binned(preds=probs, labels=labels))


# -- RocAuc: the task read from the shapes -----------------------------------------------------


@pytest.mark.slow  # several compiles (~5-10 s on a loaded machine)
def test_inferred_task_equals_the_explicit_one_for_every_shape_rule():
    logits, labels, mask = multiclass_data(seed=4, c=3)
    probs = softmax(logits).astype(np.float32)
    rng = np.random.default_rng(4)
    ml = (rng.uniform(size=(N, 3)) < probs).astype(np.int32)
    cases = [
        ({"preds": probs[:, 0], "labels": (labels == 0).astype(np.int32)}, "binary", None),
        ({"preds": probs, "labels": labels}, "multiclass", 3),
        ({"preds": probs, "labels": labels[:, None]}, "multiclass", 3),
        ({"preds": probs, "labels": ml}, "multilabel", 3),
    ]
    # Exact and binned, eager and jitted, spread over the shape rules (compiles are slow).
    for (inputs, task, classes), thresholds, jit in zip(
        cases, (None, 20, None, 20), (False, True, True, False)
    ):
        explicit = mx.RocAuc(task=task, num_classes=classes, thresholds=thresholds)
        expected = explicit.get_state(**inputs, mask=mask).compute()
        value = merged(mx.RocAuc(thresholds=thresholds), jit=jit, **inputs, mask=mask)
        assert float(value) == pytest.approx(float(expected), abs=1e-6), (task, thresholds)
    curve = mx.RocCurve()(preds=probs, labels=labels)
    assert len(curve["fpr"]) == 3  # one curve per class


def test_inferred_task_errors_and_merges():
    probs = softmax(np.zeros((4, 3))).astype(np.float32)
    with pytest.raises(ValueError, match="RocAuc.*cannot infer the task"):
        mx.RocAuc()(preds=probs, labels=np.zeros((4, 2), np.int32))
    with pytest.raises(ValueError, match="RocAuc.*3 classes.*num_classes=4"):
        mx.RocAuc(num_classes=4)(preds=probs, labels=np.zeros(4, np.int32))
    metric = mx.RocAuc()
    multiclass = metric.get_state(preds=probs, labels=np.arange(4) % 3)
    binary = metric.get_state(preds=probs[:, 0], labels=np.arange(4) % 2)
    with pytest.raises(mx.MergeError):
        multiclass.merge(binary)
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(float(metric.empty().compute()))  # nothing seen: an empty binary AUC


def test_config_and_input_errors_name_the_metric_and_argument():
    with pytest.raises(ValueError, match="RocAuc.*multi_class_mode='ovo' is for task='multiclass'"):
        mx.RocAuc(task="binary", multi_class_mode="ovo")
    with pytest.raises(ValueError, match="RocAuc.*average must be 'macro' or 'weighted'"):
        mx.RocAuc(multi_class_mode="ovo", average="micro")
    with pytest.raises(ValueError, match="RocAuc.*needs the exact mode"):
        mx.RocAuc(multi_class_mode="ovo", thresholds=10)
    with pytest.raises(ValueError, match="RocAuc.*multi_class_mode must be"):
        mx.RocAuc(multi_class_mode="ovx")
    with pytest.raises(TypeError, match="RocAuc.*exactly one of preds= .* or logits="):
        mx.RocAuc()(
            preds=np.zeros(3, np.float32), logits=np.zeros(3, np.float32), labels=np.zeros(3, int)
        )


# -- MeanIoU / Dice with class_ids --------------------------------------------------------------


def segmentation_data(seed=5, n=N, c=4):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c, size=(n, 3, 3))
    preds = np.where(rng.uniform(size=targets.shape) < 0.6, targets, rng.integers(0, c, targets.shape))
    mask = rng.uniform(size=n) < 0.8
    return targets.astype(np.int32), preds.astype(np.int32), mask


@pytest.mark.parametrize("jit", [False, True])
def test_class_ids_match_sklearn_on_the_subset(jit):
    targets, preds, mask = segmentation_data()
    t, p = targets[mask].ravel(), preds[mask].ravel()
    ids = (0, 2)
    iou = mx.MeanIoU(num_classes=4, class_ids=ids)
    dice = mx.Dice(num_classes=4, class_ids=ids)
    value = merged(iou, jit=jit, targets=targets, preds=preds, mask=mask)
    expected = skm.jaccard_score(t, p, labels=list(ids), average="macro")
    assert float(value) == pytest.approx(expected, rel=1e-6)
    value = merged(dice, jit=jit, targets=targets, preds=preds, mask=mask)
    assert float(value) == pytest.approx(
        skm.f1_score(t, p, labels=list(ids), average="macro"), rel=1e-6
    )
    per_class = mx.MeanIoU(num_classes=4, class_ids=(2, 0), per_class=True)(targets, preds)
    expected = skm.jaccard_score(targets.ravel(), preds.ravel(), labels=[2, 0], average=None)
    np.testing.assert_allclose(per_class, expected, rtol=1e-6)


def test_class_ids_metrax_binary_case_by_hand():
    # metrax's IoU case 1: foreground (class 1) of two 4x4 masks; each has 4 target pixels,
    # 4 predicted, 2 shared: IoU = 4 / (8 + 8 - 4) = 1/3 over both (metrax: mean of 1/3, 1/3).
    targets = np.zeros((2, 4, 4), np.int32)
    preds = np.zeros((2, 4, 4), np.int32)
    targets[0, :2, :2] = 1
    targets[1, 1:3, 1:3] = 1
    preds[0, :2, 0] = 1
    preds[0, 2, 1:3] = 1
    preds[1, :3, 1] = 1
    preds[1, 0, 2] = 1
    metric = mx.MeanIoU(num_classes=2, class_ids=np.array([1]))  # metrax passes an array
    assert metric.class_ids == (1,)
    assert float(merged(metric, targets, preds, splits=(0, 1, 2))) == pytest.approx(1 / 3)


def test_class_ids_errors():
    for ids in ((), (0, 0), (4,), (-1,)):
        with pytest.raises(ValueError, match="MeanIoU.*class_ids must be distinct classes"):
            mx.MeanIoU(num_classes=4, class_ids=ids)


# -- SoftDice ---------------------------------------------------------------------------------


def soft_dice_by_hand(p, y):
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    return 2 * np.sum(p * y) / (np.sum(p) + np.sum(y) + 1e-7)  # metrax's Dice formula


@pytest.mark.parametrize(("jit", "dtype"), [(False, np.float32), (True, jnp.bfloat16)])
def test_soft_dice_matches_the_formula_over_merged_masked_batches(jit, dtype):
    rng = np.random.default_rng(6)
    preds = jnp.asarray(rng.uniform(size=(N, 5)), dtype)
    targets = (rng.uniform(size=(N, 5)) < 0.5).astype(np.float32)
    mask = rng.uniform(size=N) < 0.7
    preds32 = np.asarray(preds, np.float32)
    expected = soft_dice_by_hand(preds32[mask], targets[mask])
    value = merged(SoftDice(), jit=jit, preds=preds, targets=targets, mask=mask)
    assert float(value) == pytest.approx(expected, rel=1e-5)
    logits = rng.normal(size=(N, 5)).astype(np.float32)
    value = merged(SoftDice(), jit=jit, logits=logits, labels=targets)
    expected = soft_dice_by_hand(jax.nn.sigmoid(logits), targets)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_metrax_edge_cases_and_errors():
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    assert float(SoftDice()(ones, ones)) == pytest.approx(8 / (8 + 1e-7))
    assert float(SoftDice()(zeros, zeros)) == 0.0
    assert float(SoftDice()(np.array([1, 1, 0, 0.0]), np.array([0, 0, 1, 1.0]))) == 0.0
    assert float(SoftDice().empty().compute()) == 0.0
    with pytest.raises(ValueError, match="SoftDice.*NaN"):
        SoftDice()(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    masked_nan = SoftDice()(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), mask=np.array([0, 1]))
    assert float(masked_nan) == pytest.approx(2 / (2 + 1e-7))
    nan = jax.jit(lambda p, y: SoftDice().get_state(p, y).compute())(
        np.array([np.nan, 1.0], np.float32), np.array([0.0, 1.0], np.float32)
    )
    assert np.isnan(float(nan))
    with pytest.raises(mx.InputTypeError, match="SoftDice.*targets"):
        SoftDice()(np.zeros(3, np.float32), np.zeros(4, np.float32))


# -- DCG ----------------------------------------------------------------------------------------


def ranking_data(seed=7, q=N, items=6, dtype=np.float32):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(size=(q, items)).astype(np.float32)
    scores[3, :4] = 0.5  # ties
    relevance = rng.integers(0, 4, size=(q, items)).astype(np.int32)
    lengths = rng.integers(2, items + 1, size=q)
    item_mask = np.arange(items)[None, :] < lengths[:, None]
    query_mask = rng.uniform(size=q) < 0.8
    return jnp.asarray(scores, dtype), relevance, item_mask, query_mask


def mean_over_queries(fn, scores, relevance, item_mask, query_mask):
    scores = np.asarray(scores, np.float32)
    values = [
        fn(relevance[i][item_mask[i]], scores[i][item_mask[i]])
        for i in range(len(scores))
        if query_mask[i]
    ]
    return np.mean(values)


def dcg_in_item_order(rel, s, k, exponential):
    """metrax's DCGAtK written out: stable ranks by decreasing score, (2^rel - 1) gains."""
    order = np.argsort(-s, kind="stable")
    gains = (2.0 ** rel[order] - 1) if exponential else rel[order].astype(float)
    discounts = 1 / np.log2(np.arange(len(s)) + 2)
    top = np.arange(len(s)) < (len(s) if k is None else k)
    return np.sum(gains * discounts * top)


@pytest.mark.parametrize(("jit", "dtype"), [(False, np.float32), (True, jnp.bfloat16)])
def test_dcg_matches_sklearn_dcg_score(jit, dtype):
    scores, relevance, item_mask, query_mask = ranking_data(dtype=dtype)
    inputs = {"scores": scores, "relevance": relevance, "item_mask": item_mask, "mask": query_mask}
    for k in (None, 3):
        value = merged(DCG(k=k), jit=jit, **inputs)
        expected = mean_over_queries(
            lambda r, s, k=k: skm.dcg_score([r], [s], k=k), scores, relevance, item_mask, query_mask
        )
        assert float(value) == pytest.approx(expected, rel=1e-5), k


@pytest.mark.slow  # several compiles (~5-10 s on a loaded machine)
def test_dcg_exponential_gain_and_item_order_ties_as_metrax():
    scores, relevance, item_mask, query_mask = ranking_data(seed=8)
    inputs = {"scores": scores, "relevance": relevance, "item_mask": item_mask, "mask": query_mask}
    for k, exponential in itertools.product((None, 2), (False, True)):
        gain = "exponential" if exponential else "linear"
        value = merged(DCG(k=k, gain=gain, ignore_ties=True), jit=True, **inputs)
        expected = mean_over_queries(
            lambda r, s, k=k, e=exponential: dcg_in_item_order(r, s, k, e),
            scores,
            relevance,
            item_mask,
            query_mask,
        )
        assert float(value) == pytest.approx(expected, rel=1e-5), (k, gain)
    # NDCG with exponential gains: DCG over the ideal DCG (the gains sorted), per query; query
    # 3's tied scores share discounts in NDCG, not in item order, so it is left out here.
    def ndcg_by_hand(r, s):
        ideal = dcg_in_item_order(r, r.astype(float), 3, True)
        return dcg_in_item_order(r, s, 3, True) / ideal if ideal > 0 else 0.0

    keep = query_mask.copy()
    keep[3] = False
    value = merged(mx.NDCG(k=3, gain="exponential"), **{**inputs, "mask": keep})
    expected = mean_over_queries(ndcg_by_hand, scores, relevance, item_mask, keep)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_dcg_ignore_ties_matches_sklearn_without_ties_and_errors():
    rng = np.random.default_rng(9)
    scores = rng.permutation(60).reshape(10, 6).astype(np.float32)  # distinct scores
    relevance = rng.integers(0, 3, size=(10, 6))
    expected = skm.dcg_score(relevance, scores, k=4, ignore_ties=True)
    assert float(DCG(k=4, ignore_ties=True)(scores, relevance)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="DCG.*gain must be one of"):
        DCG(gain="exp2")
    with pytest.raises(ValueError, match="DCG.*k must be a positive int"):
        DCG(k=0)


def test_no_warnings_on_defined_values():
    logits, labels, _ = multiclass_data(seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mx.RocAuc(multi_class_mode="ovo")(logits=logits, labels=labels)
