"""Classification and calibration metrics: configuration errors, bad input, edge cases, jit.

Values against sklearn / torchmetrics are in tests/reference/; here: clear errors eagerly,
documented results under jit (NaN), capacity overflow, no retrace from empty states, exact
counts, and the pure functions used on their own.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.core import numerics


def _multiclass(n=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)).astype(np.float32)
    probs = np.asarray(jax.nn.softmax(logits, -1))
    labels = (np.arange(n) % c).astype(np.int32)
    return logits, probs, labels


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: mx.Precision(task="multi"),
        lambda: mx.Precision(task="multiclass"),  # num_classes missing
        lambda: mx.Recall(task="multiclass", num_classes=3, average="samples"),
        lambda: mx.RocAuc(thresholds=1),
        lambda: mx.RocAuc(task="multilabel"),
        lambda: mx.AveragePrecision(average="mean"),
        lambda: mx.ExpectedCalibrationError(norm="l3"),
        lambda: mx.ExpectedCalibrationError(num_bins=0),
        lambda: mx.LogLoss(task="multiclass"),
    ],
)
def test_bad_configuration_fails_at_construction(make):
    with pytest.raises(ValueError):
        make()


# ---------------------------------------------------------------------------------------
# Bad input: clear errors eagerly, NaN (or an error at eager compute) under jit
# ---------------------------------------------------------------------------------------


def test_label_out_of_range_raises_eagerly():
    logits, probs, labels = _multiclass()
    bad = labels.copy()
    bad[3] = 3
    with pytest.raises(ValueError, match="outside"):
        mx.F1Score(task="multiclass", num_classes=3).get_state(logits, bad)
    with pytest.raises(ValueError, match="label"):
        mx.RocAuc(task="multiclass", num_classes=3, capacity=16).get_state(probs, bad)
    with pytest.raises(ValueError, match="label"):
        mx.RocAuc(task="multiclass", num_classes=3, thresholds=10).get_state(probs, bad)
    with pytest.raises(ValueError, match="label"):
        mx.LogLoss(task="multiclass", num_classes=3).get_state(probs, bad)
    with pytest.raises(ValueError, match="outside"):
        mx.Precision(task="binary").get_state(probs[:, 0], np.full(12, 2, np.int32))
    # A masked-out bad label changes nothing (boolean-indexing semantics).
    mask = np.arange(12) != 3
    metric = mx.F1Score(task="multiclass", num_classes=3)
    np.testing.assert_allclose(metric(logits, bad, mask), metric(logits[mask], labels[mask]))


def test_nan_scores_raise_eagerly():
    logits, probs, labels = _multiclass()
    logits[2, 1] = np.nan
    probs = probs.copy()
    probs[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mx.Precision(task="multiclass", num_classes=3).get_state(logits, labels)
    with pytest.raises(ValueError, match="NaN"):
        mx.RocAuc(task="multiclass", num_classes=3, capacity=16).get_state(probs, labels)
    with pytest.raises(ValueError):
        mx.ExpectedCalibrationError(task="multiclass", num_classes=3).get_state(probs, labels)


def test_wrong_num_classes_raises():
    logits, probs, labels = _multiclass()
    for metric in (
        mx.Recall(task="multiclass", num_classes=4),
        mx.RocAuc(task="multiclass", num_classes=4, capacity=16),
        mx.AveragePrecision(task="multiclass", num_classes=4, thresholds=5),
        mx.LogLoss(task="multiclass", num_classes=4),
        mx.ExpectedCalibrationError(task="multiclass", num_classes=4),
    ):
        with pytest.raises(ValueError, match="num_classes=4"):
            metric.get_state(probs, labels)


def test_probabilities_must_sum_to_one():
    _, probs, labels = _multiclass()
    unnormalised = probs * 1.5
    for cls in (mx.LogLoss, mx.BrierScore, mx.ExpectedCalibrationError):
        with pytest.raises(ValueError, match="sum"):
            cls(task="multiclass", num_classes=3).get_state(unnormalised, labels)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mx.LogLoss().get_state(np.array([1.5, 0.2], np.float32), np.array([1, 0], np.int32))
    # Logits need no normalisation.
    assert np.isfinite(
        mx.LogLoss(task="multiclass", num_classes=3, from_logits=True)(unnormalised, labels)
    )


@pytest.mark.parametrize(
    "metric,preds",
    [
        (mx.MatthewsCorrCoef(task="multiclass", num_classes=3), "logits"),
        (mx.ConfusionMatrix(task="multiclass", num_classes=3, normalize="true"), "logits"),
        (mx.RocAuc(task="multiclass", num_classes=3, capacity=16), "probs"),
        (mx.AveragePrecision(task="multiclass", num_classes=3, thresholds=5), "probs"),
        (mx.LogLoss(task="multiclass", num_classes=3), "probs"),
        (mx.BrierScore(task="multiclass", num_classes=3), "probs"),
        (mx.ExpectedCalibrationError(task="multiclass", num_classes=3), "probs"),
        (mx.ReliabilityDiagram(task="multiclass", num_classes=3), "probs"),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, mx.Metric) else x,
)
def test_bad_labels_under_jit_give_nan_or_an_eager_error(metric, preds):
    logits, probs, labels = _multiclass()
    bad = labels.copy()
    bad[0] = -1
    state = jax.jit(metric.get_state)(logits if preds == "logits" else probs, bad)
    values = jax.jit(lambda s: s.compute())(state)
    floats = [v for v in jax.tree.leaves(values) if jnp.issubdtype(v.dtype, jnp.floating)]
    assert floats and all(np.all(np.isnan(v)) for v in floats)
    with pytest.raises(ValueError):
        state.compute()


def test_capacity_overflow():
    scores = np.linspace(0, 1, 10, dtype=np.float32)
    labels = (scores > 0.5).astype(np.int32)
    metric = mx.RocAuc(capacity=8)
    with pytest.raises(mx.CapacityOverflowError):
        metric.get_state(scores, labels).compute()
    assert float(metric(scores, labels)) == 1.0  # a one-shot call sizes its buffer to the input
    assert np.isnan(jax.jit(lambda s, y: metric.get_state(s, y).compute())(scores, labels))
    assert float(mx.RocAuc(capacity=10)(scores, labels)) == 1.0


def test_exact_curves_are_eager_only():
    scores = np.linspace(0, 1, 6, dtype=np.float32)
    labels = np.array([0, 0, 1, 0, 1, 1], np.int32)
    state = mx.RocCurve(capacity=8).get_state(scores, labels)
    with pytest.raises(TypeError, match="thresholds=N"):
        jax.jit(lambda s: s.compute())(state)
    curve = state.compute()
    assert isinstance(curve["fpr"], np.ndarray) and curve["fpr"][0] == 0 and curve["tpr"][-1] == 1
    # The binned curve is jit-able with a fixed length.
    binned = jax.jit(lambda s, y: mx.RocCurve(thresholds=7).get_state(s, y).compute())(
        scores, labels
    )
    assert binned["fpr"].shape == (8,)


# ---------------------------------------------------------------------------------------
# The algebra: empty states, no retrace, exact counts, a shared confusion state
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric",
    [
        mx.F1Score(task="multiclass", num_classes=3),
        mx.RocAuc(task="multiclass", num_classes=3, capacity=64),
        mx.RocAuc(task="multiclass", num_classes=3, thresholds=9),
        mx.ExpectedCalibrationError(task="multiclass", num_classes=3),
    ],
    ids=lambda m: f"{type(m).__name__}-{getattr(m, 'thresholds', '')}",
)
def test_empty_states_do_not_retrace(metric):
    _, probs, labels = _multiclass()
    chex.clear_trace_counter()  # the counter is keyed by code, shared across parameters

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, preds, labels):
        return state.merge(metric.get_state(preds, labels))

    state = metric.empty()
    for _ in range(3):
        state = step(state, probs, labels)
    chex.assert_trees_all_equal_shapes_and_dtypes(state, metric.empty())
    assert np.isfinite(np.asarray(state.compute())).all()


def test_confusion_counts_stay_exact_past_2_to_24():
    metric = mx.ConfusionMatrix(task="binary")
    big = metric.empty().replace(matrix=numerics.df_from(jnp.full((2, 2), 2.0**24)))
    one = metric.get_state(np.array([0.9], np.float32), np.array([1], np.int32))
    merged = big.merge(one)
    assert merged.counts_host()[1, 1] == 2**24 + 1  # float32 alone would round it away
    assert int(merged.compute()[1, 1]) == 2**24 + 1


def test_one_state_serves_every_count_metric():
    logits, _, labels = _multiclass(n=30, seed=5)
    state = mx.Precision(task="multiclass", num_classes=3).get_state(logits, labels)
    for cls in (
        mx.Recall,
        mx.F1Score,
        mx.Specificity,
        mx.MatthewsCorrCoef,
        mx.CohenKappa,
        mx.BalancedAccuracy,
    ):
        metric = cls(task="multiclass", num_classes=3)
        shared = metric.State(parent=metric, matrix=state.matrix, invalid=state.invalid)
        np.testing.assert_allclose(shared.compute(), metric(logits, labels))


def test_pure_functions_work_alone():
    logits, probs, labels = _multiclass(n=30, seed=1)
    counts = mx.confusion_counts(logits, labels, task="multiclass", num_classes=3)
    assert counts.shape == (3, 3) and float(counts.sum()) == 30
    micro = mx.score_from_confusion(counts, "precision", task="multiclass", average="micro")
    np.testing.assert_allclose(micro, np.mean(logits.argmax(-1) == labels), rtol=1e-6)
    scores, y = probs[:, 0], (labels == 0).astype(np.int32)
    eager = mx.binary_roc_auc(scores, y)
    jitted = jax.jit(mx.binary_roc_auc)(scores, y)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    pos, neg = mx.binned_counts(scores, y, task="binary", thresholds=11)
    assert pos.shape == neg.shape == (1, 12)
    assert np.isfinite(mx.binned_roc_auc(pos, neg)).all()
    assert mx.log_loss_values(probs, labels, task="multiclass").shape == (30,)


def test_binary_accuracy_with_logits_and_hard_labels():
    labels = np.array([1, 0, 1, 1], np.int32)
    logits = np.array([2.0, -1.0, -0.5, 0.1], np.float32)
    assert float(mx.BinaryAccuracy(from_logits=True)(logits, labels)) == 0.75
    assert float(mx.BinaryAccuracy()(np.array([1, 0, 0, 1]), labels)) == 0.75
    assert np.isnan(float(mx.BinaryAccuracy().empty().compute()))


def test_accuracy_still_works():
    logits, _, labels = _multiclass()
    np.testing.assert_allclose(
        mx.Accuracy()(logits=logits, labels=labels), np.mean(logits.argmax(-1) == labels)
    )


# ---------------------------------------------------------------------------------------
# argmax_with_max: Accuracy's one-pass argmax and NaN-row check
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.int32])
def test_argmax_with_max_picks_as_numpy(dtype):
    """Same index as numpy's argmax (first maximum on ties, first NaN of a row with NaN),
    and the row's maximum NaN exactly where the row holds a NaN."""
    from metrix.classification.accuracy import argmax_with_max

    rng = np.random.default_rng(3)
    x = rng.integers(-3, 3, size=(300, 7)).astype(np.float32)  # many ties
    if dtype != np.int32:
        x[rng.random(x.shape) < 0.08] = np.nan
        x[rng.random(x.shape) < 0.08] = np.inf
        x[rng.random(x.shape) < 0.08] = -np.inf
        x[0] = -np.inf  # a row of -inf: index 0
    top, index = argmax_with_max(jnp.asarray(x, dtype))
    assert np.array_equal(np.asarray(index), np.argmax(x, axis=-1))
    assert np.array_equal(np.isnan(np.asarray(top, np.float32)), np.isnan(x).any(axis=-1))
    finite_rows = ~np.isnan(x).any(axis=-1)
    assert np.array_equal(np.asarray(top, np.float32)[finite_rows], x.max(axis=-1)[finite_rows])


def test_accuracy_nan_rows_refused_with_one_pass_check():
    """The one-pass NaN check still refuses a NaN anywhere in a row (eagerly: error; under
    jit: left out and the value NaN), also when the NaN is not the row's largest score."""
    logits = np.array([[0.1, 5.0, np.nan], [np.nan, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    labels = np.array([1, 1, 0], np.int32)
    with pytest.raises(ValueError, match="2 unmasked example"):
        mx.Accuracy()(logits=logits, labels=labels)
    assert np.isnan(jax.jit(lambda lg, y: mx.Accuracy().get_state(logits=lg, labels=y).compute())(
        logits, labels))
    mask = np.array([False, False, True])
    assert float(mx.Accuracy()(logits=logits, labels=labels, mask=mask)) == 1.0


def test_counts_from_logits_inside_a_gradient_trace():
    """Accuracy and the confusion-count scores read logits inside a train step's grad (as an
    aux output): the one-pass argmax must not need a derivative."""
    logits, _, labels = _multiclass(n=16, c=4)

    def loss(lg):
        acc = mx.Accuracy().get_state(logits=lg, labels=labels)
        f1 = mx.F1Score(num_classes=4, average="macro").get_state(preds=lg, labels=labels)
        return jnp.sum(lg**2), (acc.compute(), f1.compute())

    (value, (acc, f1)), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(logits)
    np.testing.assert_allclose(np.asarray(grad), 2 * logits, rtol=1e-6)
    assert float(acc) == float(np.mean(np.argmax(logits, -1) == labels))
    from sklearn.metrics import f1_score

    np.testing.assert_allclose(float(f1), f1_score(labels, np.argmax(logits, -1), average="macro"), rtol=1e-6)
