"""Classification metrics against sklearn (and torchmetrics for specificity).

Every metric accumulates random data split into uneven batches (merged from ``empty()``),
with and without masks, eager and under ``jax.jit``; references see ``data[mask]``.
Confusion-count metrics share one state, so each metric's state is computed once per
(task, jit, mask) and re-read with every ``average`` / option (``state.replace(parent=...)``).
"""

import sys
import types
import warnings

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

import metrix as mx
from tests import helpers

N = 203
SPLITS = (0, 17, 121, N)  # three uneven batches
C = 5  # multiclass: class 3 never occurs, class 4 is predicted but never a label
L = 4  # multilabel: label 2 is never positive
TASKS = ("binary", "multiclass", "multilabel")


def accumulate(metric, jit=False, splits=SPLITS, **inputs):
    """The merged state of ``inputs`` split at ``splits``; ``jit``: get_state and merge jitted."""
    return helpers.accumulate(metric, splits=splits, jit=jit, jit_merge=jit, **inputs)


def values(states, jit):
    """``{key: [eager compute, (jitted compute)]}``; all jitted computes share one compile."""
    out = {k: [s.compute()] for k, s in states.items()}
    if jit:
        keys = list(states)
        jitted = jax.jit(lambda xs: [s.compute() for s in xs])([states[k] for k in keys])
        for k, v in zip(keys, jitted):
            out[k].append(v)
    return out


def as_metric(state, metric):
    """The same accumulated counts read by another metric (one shared state class family)."""
    return metric.State(
        parent=metric,
        **{n: getattr(state, n) for n in state._data_fields},
        **{n: getattr(state, n) for n in state._static_fields if n != "parent"},
    )


def make_data(task, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.uniform(size=N) < 0.7
    if task == "binary":
        probs = rng.uniform(size=N).astype(np.float32)
        labels = (rng.uniform(size=N) < probs * 0.8 + 0.1).astype(np.int32)
        return probs, labels, mask, (probs > 0.5).astype(np.int32)
    if task == "multiclass":
        scores = rng.normal(size=(N, C)).astype(np.float32)
        scores[:, 3] -= 20  # class 3 is never predicted ...
        labels = rng.choice([0, 1, 2], size=N).astype(np.int32)  # ... nor a label; 4 never a label
        scores[np.arange(N), labels] += 0.7
        return scores, labels, mask, scores.argmax(-1)
    probs = rng.uniform(size=(N, L)).astype(np.float32)
    labels = (rng.uniform(size=(N, L)) < probs).astype(np.int32)
    labels[:, 2] = 0
    return probs, labels, mask, (probs > 0.5).astype(np.int32)


def _select(mask, *arrays):
    return [a if mask is None else a[mask] for a in arrays]


def _torchmetrics():
    # torchvision's compiled ops do not load on this CPU torch; its pure-Python parts do.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.functional.classification")


# ---------------------------------------------------------------------------------------
# Confusion-count metrics
# ---------------------------------------------------------------------------------------


def _num(task):
    return {"binary": None, "multiclass": C, "multilabel": L}[task]


def _averages(task):
    return ("binary",) if task == "binary" else ("micro", "macro", "weighted", "none")


def _sk_average(task, average):
    return "binary" if task == "binary" else (None if average == "none" else average)


def _sk_labels(task, average):
    # sklearn's default (labels present in y_true or y_pred) is metrix's macro rule; per-class
    # output lists every class, as sklearn with labels=range(C).
    return list(range(C)) if task == "multiclass" and average == "none" else None


SK_SCORES = {
    mx.Precision: lambda y, p, **kw: skm.precision_score(y, p, **kw),
    mx.Recall: lambda y, p, **kw: skm.recall_score(y, p, **kw),
    mx.F1Score: lambda y, p, **kw: skm.f1_score(y, p, **kw),
    mx.FBetaScore: lambda y, p, **kw: skm.fbeta_score(y, p, beta=0.5, **kw),
}


def _metric(cls, task, **config):
    if cls is mx.FBetaScore:
        config.setdefault("beta", 0.5)
    return cls(
        preds="preds", labels="labels", mask="mask", task=task, num_classes=_num(task), **config
    )


# Per task: eager without a mask, jitted with a mask (plus binary eager masked): the mask and
# jit code paths are independent, and each extra case costs compile time.
CASES = (
    [(t, False, False) for t in TASKS]
    + [(t, True, True) for t in TASKS]
    + [("binary", False, True)]
)


@pytest.fixture(
    scope="module",
    params=CASES,
    ids=lambda p: f"{p[0]}-{'jit' if p[1] else 'eager'}-{'masked' if p[2] else 'all'}",
)
def case(request):
    """Data of one (task, jit, mask) case and its merged confusion state (shared by all metrics)."""
    task, jit, masked = request.param
    preds, labels, mask, hard = make_data(task)
    mask = mask if masked else None
    state = accumulate(_metric(mx.Precision, task), jit, preds=preds, labels=labels, mask=mask)
    return task, jit, preds, labels, mask, hard, state


def _check(got, wants, **tol):
    for key, want in wants.items():
        for value in got[key]:
            np.testing.assert_allclose(
                value, want, err_msg=str(key), **(tol or dict(rtol=1e-5, atol=1e-6))
            )


@pytest.mark.parametrize("cls", list(SK_SCORES))
def test_precision_recall_fbeta_match_sklearn(case, cls):
    task, jit, _, _, mask, hard, state = case
    y, p = _select(mask, case[3], hard)
    states, wants = {}, {}
    for average in _averages(task):
        for zero_division in (0.0, 1.0, np.nan):
            metric = _metric(
                cls,
                task,
                average="macro" if task == "binary" else average,
                zero_division=zero_division,
            )
            states[(average, zero_division)] = as_metric(state, metric)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wants[(average, zero_division)] = SK_SCORES[cls](
                    y,
                    p,
                    average=_sk_average(task, average),
                    zero_division=zero_division,
                    labels=_sk_labels(task, average),
                )
    _check(values(states, jit), wants)


def test_specificity_matches_torchmetrics(case):
    tmc = _torchmetrics()
    import torch

    task, jit, _, labels, mask, hard, state = case
    y, p = (torch.as_tensor(a) for a in _select(mask, labels, hard))
    states, wants = {}, {}
    for average in _averages(task):
        if task == "binary":
            want = tmc.binary_specificity(p, y)
        elif task == "multiclass":
            want = tmc.multiclass_specificity(p, y, num_classes=C, average=average)
        else:
            want = tmc.multilabel_specificity(p, y, num_labels=L, average=average)
        wants[average] = want.numpy()
        states[average] = as_metric(
            state, _metric(mx.Specificity, task, average="macro" if task == "binary" else average)
        )
    _check(values(states, jit), wants)


def test_balanced_accuracy_matches_sklearn(case):
    task, jit, _, labels, mask, hard, state = case
    y, p = _select(mask, labels, hard)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task != "multilabel":
            wants = {"macro": skm.balanced_accuracy_score(y, p)}
        else:
            per_label = np.array([skm.balanced_accuracy_score(y[:, k], p[:, k]) for k in range(L)])
            support = y.sum(0)
            wants = {
                "none": per_label,
                "macro": per_label.mean(),
                "weighted": np.sum(per_label * support) / support.sum(),
                "micro": skm.balanced_accuracy_score(y.ravel(), p.ravel()),
            }
    states = {a: as_metric(state, _metric(mx.BalancedAccuracy, task, average=a)) for a in wants}
    _check(values(states, jit), wants)


def test_mcc_kappa_confusion_matrix_match_sklearn(case):
    task, jit, _, labels, mask, hard, state = case
    y, p = _select(mask, labels, hard)
    classes = list(range(C)) if task == "multiclass" else [0, 1]
    flat_y, flat_p = (y.ravel(), p.ravel())  # multilabel: every label decision pooled
    states = {"mcc": as_metric(state, _metric(mx.MatthewsCorrCoef, task))}
    wants = {"mcc": skm.matthews_corrcoef(flat_y, flat_p)}
    for weights in (None, "linear", "quadratic"):
        states[("kappa", weights)] = as_metric(state, _metric(mx.CohenKappa, task, weights=weights))
        wants[("kappa", weights)] = skm.cohen_kappa_score(
            flat_y, flat_p, weights=weights, labels=classes
        )
    if task == "multilabel":
        states["cm"] = as_metric(state, _metric(mx.ConfusionMatrix, task))
        wants["cm"] = skm.multilabel_confusion_matrix(y, p)
    else:
        for normalize in (None, "true", "pred", "all"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = skm.confusion_matrix(y, p, labels=classes, normalize=normalize)
            wants[("cm", normalize)] = np.nan_to_num(
                want
            )  # sklearn 1.9 leaves 0/0 as NaN; metrix 0
            states[("cm", normalize)] = as_metric(
                state, _metric(mx.ConfusionMatrix, task, normalize=normalize)
            )
    got = values(states, jit)
    _check(got, wants)
    for key, value in got.items():
        if key == "cm" or key == ("cm", None):
            assert all(v.dtype == np.int32 for v in value)


def test_each_metric_accumulates_its_own_state():
    """Every confusion metric's own get_state (eager and jit) gives the shared counts."""
    preds, labels, mask, hard = make_data("multiclass")
    reference = skm.confusion_matrix(labels[mask], hard[mask], labels=range(C))
    for cls in (
        mx.Precision,
        mx.Recall,
        mx.F1Score,
        mx.FBetaScore,
        mx.Specificity,
        mx.BalancedAccuracy,
        mx.MatthewsCorrCoef,
        mx.CohenKappa,
        mx.ConfusionMatrix,
    ):
        metric = _metric(cls, "multiclass")
        for jit in (False, True) if cls in (mx.Precision, mx.CohenKappa) else (False,):
            state = accumulate(
                metric, jit, splits=(0, 50, 61, N), preds=preds, labels=labels, mask=mask
            )
            assert type(state) is metric.State
            np.testing.assert_array_equal(state.counts_host(), reference)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_accuracy_matches_sklearn(jit, from_logits):
    probs, labels, mask, hard = make_data("binary")
    preds = np.log(probs / (1 - probs)) if from_logits else probs
    metric = mx.BinaryAccuracy(
        preds="p", labels="y", mask="m", from_logits=from_logits, threshold=0.3
    )
    state = accumulate(metric, jit, preds=preds, labels=labels, mask=mask)
    want = skm.accuracy_score(labels[mask], probs[mask] > 0.3)
    _check(values({"acc": state}, jit), {"acc": want}, rtol=1e-6)


def test_one_class_only_documented_results():
    """All labels and predictions one class: sklearn's values (kappa undefined -> NaN)."""
    labels = np.ones(10, np.int32)
    preds = np.full(10, 0.9, np.float32)
    cfg = dict(task="binary")
    assert (
        float(mx.Precision(**cfg)(preds, labels)) == skm.precision_score(labels, preds > 0.5) == 1.0
    )
    assert float(mx.Specificity(**cfg)(preds, labels)) == 0.0  # 0/0 -> zero_division
    assert (
        float(mx.MatthewsCorrCoef(**cfg)(preds, labels))
        == skm.matthews_corrcoef(labels, preds > 0.5)
        == 0.0
    )
    assert float(mx.BalancedAccuracy(**cfg)(preds, labels)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(skm.cohen_kappa_score(labels, (preds > 0.5).astype(int)))
    assert np.isnan(float(mx.CohenKappa(**cfg)(preds, labels)))
    # Multiclass with one class present: macro is over present classes only (sklearn).
    scores = np.tile(np.eye(3, dtype=np.float32)[1], (6, 1))
    y = np.ones(6, np.int32)
    assert (
        float(mx.F1Score(task="multiclass", num_classes=3)(scores, y))
        == skm.f1_score(y, y, average="macro")
        == 1.0
    )


# ---------------------------------------------------------------------------------------
# Ranking metrics: ROC AUC, average precision, curves
# ---------------------------------------------------------------------------------------


def ranking_data(task, seed=1, ties=True):
    rng = np.random.default_rng(seed)
    mask = rng.uniform(size=N) < 0.7
    if task == "binary":
        labels = (rng.uniform(size=N) < 0.4).astype(np.int32)
        scores = rng.uniform(size=N) + 0.3 * labels
    elif task == "multiclass":
        labels = rng.integers(0, C, size=N).astype(np.int32)
        logits = rng.normal(size=(N, C)) + np.eye(C)[labels]
        scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    else:
        labels = (rng.uniform(size=(N, L)) < 0.4).astype(np.int32)
        scores = rng.uniform(size=(N, L)) + 0.3 * labels
    if ties:  # many ties, to exercise sklearn's tie handling
        scores = np.round(scores * 8) / 8
    return scores.astype(np.float32), labels, mask


def _sk_area(fn, task, y, s, average):
    if task == "binary":
        return fn(y, s)
    if task == "multiclass":
        # One-vs-rest on binarized labels is sklearn's multi_class="ovr" (which also insists
        # on rows summing to 1, false here after rounding the scores to make ties).
        y = np.eye(C, dtype=np.int32)[y]
    return fn(y, s, average=None if average == "none" else average)


@pytest.mark.parametrize("thresholds", [None, 200])
def test_areas_match_sklearn(case, thresholds):
    task, jit, _, _, mask, _, _ = case
    scores, labels, _ = ranking_data(task, ties=thresholds is None)
    if thresholds is not None:  # binned equals exact when scores lie on the grid
        grid = np.asarray(mx.threshold_grid(thresholds))
        scores = grid[np.searchsorted(grid, scores.clip(0, 1))]
    metric = mx.RocAuc(
        preds="s",
        labels="y",
        mask="m",
        task=task,
        num_classes=_num(task),
        capacity=256,
        thresholds=thresholds,
    )
    state = accumulate(metric, jit, preds=scores, labels=labels, mask=mask)
    y, s = _select(mask, labels, scores)
    states, wants = {}, {}
    for cls, fn in [
        (mx.RocAuc, skm.roc_auc_score),
        (mx.AveragePrecision, skm.average_precision_score),
    ]:
        for average in _averages(task):
            average = "macro" if average == "binary" else average
            wants[(cls.__name__, average)] = _sk_area(fn, task, y, s, average)
            # RocAuc and AveragePrecision share their state classes: re-read the same rows.
            other = cls(
                task=task,
                num_classes=_num(task),
                capacity=256,
                thresholds=thresholds,
                average=average,
            )
            states[(cls.__name__, average)] = state.replace(parent=other)
    _check(values(states, jit), wants, rtol=2e-5, atol=2e-6)


def test_areas_with_a_single_class_label_follow_sklearn():
    """Multilabel with a label never positive: AUC NaN for it (warning), macro NaN, AP 0."""
    scores, labels, _ = ranking_data("multilabel")
    labels[:, 2] = 0
    base = mx.RocAuc(task="multilabel", num_classes=L, capacity=256)
    state = base.get_state(scores, labels)
    jit_state = jax.jit(base.get_state)(scores, labels)
    states, wants = {}, {}
    for cls, fn in [
        (mx.RocAuc, skm.roc_auc_score),
        (mx.AveragePrecision, skm.average_precision_score),
    ]:
        for average in ("none", "macro", "weighted", "micro"):
            metric = cls(task="multilabel", num_classes=L, average=average, capacity=256)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wants[(cls.__name__, average)] = fn(
                    labels, scores, average=None if average == "none" else average
                )
            states[(cls.__name__, average)] = state.replace(parent=metric)
            states[(cls.__name__, average, "jit")] = jit_state.replace(parent=metric)
            wants[(cls.__name__, average, "jit")] = wants[(cls.__name__, average)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = values(states, jit=True)
    assert any(issubclass(w.category, mx.UndefinedMetricWarning) for w in caught)
    _check(got, wants)


def test_roc_auc_one_class_is_nan_with_a_warning():
    scores = np.linspace(0, 1, 7, dtype=np.float32)
    labels = np.ones(7, np.int32)
    with pytest.warns(UserWarning):  # sklearn 1.9 warns and returns NaN; so does metrix
        assert np.isnan(skm.roc_auc_score(labels, scores))
    with pytest.warns(mx.UndefinedMetricWarning):
        assert np.isnan(mx.RocAuc(capacity=16)(scores, labels))
    with pytest.warns(mx.UndefinedMetricWarning):
        assert np.isnan(mx.RocAuc(thresholds=10)(scores, labels))
    assert np.isnan(
        jax.jit(lambda s, y: mx.RocAuc(capacity=16).get_state(s, y).compute())(scores, labels)
    )
    with pytest.warns(mx.UndefinedMetricWarning):
        assert float(mx.AveragePrecision(capacity=16)(scores, 0 * labels)) == 0.0


@pytest.mark.parametrize("task", TASKS)
def test_exact_curves_match_sklearn(task):
    scores, labels, mask = ranking_data(task)
    roc = accumulate(
        mx.RocCurve(
            preds="s", labels="y", mask="m", task=task, num_classes=_num(task), capacity=256
        ),
        preds=scores,
        labels=labels,
        mask=mask,
    ).compute()
    pr = accumulate(
        mx.PrecisionRecallCurve(
            preds="s", labels="y", mask="m", task=task, num_classes=_num(task), capacity=256
        ),
        preds=scores,
        labels=labels,
        mask=mask,
    ).compute()
    y, s = _select(mask, labels, scores)
    if task == "binary":
        columns = [(y, s)]
        roc = {k: [v] for k, v in roc.items()}
        pr = {k: [v] for k, v in pr.items()}
    else:
        y = np.eye(C, dtype=np.int32)[y] if task == "multiclass" else y
        columns = [(y[:, k], s[:, k]) for k in range(s.shape[1])]
    for k, (yk, sk) in enumerate(columns):
        for got, want in zip(
            (roc["fpr"][k], roc["tpr"][k], roc["thresholds"][k]),
            skm.roc_curve(yk, sk, drop_intermediate=False),
        ):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        for got, want in zip(
            (pr["precision"][k], pr["recall"][k], pr["thresholds"][k]),
            skm.precision_recall_curve(yk, sk),
        ):
            np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_binned_curves_equal_sklearn_on_grid(jit):
    """Binned curves (fixed length) pass through every sklearn point when scores are on the grid."""
    grid = np.asarray(mx.threshold_grid(11))
    rng = np.random.default_rng(3)
    scores = grid[rng.integers(0, 11, size=N)]
    labels = (rng.uniform(size=N) < scores).astype(np.int32)
    roc_metric = mx.RocCurve(preds="s", labels="y", thresholds=11)
    pr_metric = mx.PrecisionRecallCurve(preds="s", labels="y", thresholds=11)
    roc = values({0: accumulate(roc_metric, jit, preds=scores, labels=labels)}, jit)[0][-1]
    pr = values({0: accumulate(pr_metric, jit, preds=scores, labels=labels)}, jit)[0][-1]
    assert (
        roc["fpr"].shape == (12,)
        and pr["precision"].shape == (12,)
        and pr["thresholds"].shape == (11,)
    )

    def covered(want_x, want_y, got_x, got_y):
        got = np.stack([np.asarray(got_x, np.float64), np.asarray(got_y, np.float64)], -1)
        for point in zip(want_x, want_y):
            assert np.min(np.abs(got - np.asarray(point)).max(-1)) < 1e-6, point

    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    covered(fpr, tpr, roc["fpr"], roc["tpr"])
    precision, recall, _ = skm.precision_recall_curve(labels, scores)
    covered(precision, recall, pr["precision"], pr["recall"])


def test_binned_error_is_small():
    """Binned (200 thresholds) against exact on 10^5 off-grid scores: the docstring's numbers.

    Continuous scores spread over [0, 1]: |AUC error| ~2e-5, |AP error| ~3e-3 (measured).
    Scores packed inside one grid step lose their order: |AUC error| ~0.09 (documented limit).
    """
    rng = np.random.default_rng(4)
    n = 100_000
    labels = (rng.uniform(size=n) < 0.3).astype(np.int32)
    spread = rng.beta(2, 5, size=n) + 0.25 * labels  # continuous scores, overlapping classes
    scores = (spread / spread.max()).astype(np.float32)
    exact, exact_ap = skm.roc_auc_score(labels, scores), skm.average_precision_score(labels, scores)
    assert abs(float(mx.RocAuc(thresholds=200)(scores, labels)) - exact) < 1e-4
    assert abs(float(mx.AveragePrecision(thresholds=200)(scores, labels)) - exact_ap) < 5e-3
    narrow = (0.5 + 0.004 * rng.uniform(size=n) + 0.001 * labels).astype(np.float32)
    error = abs(
        float(mx.RocAuc(thresholds=200)(narrow, labels)) - skm.roc_auc_score(labels, narrow)
    )
    assert 0.01 < error < 0.2
