"""LogLoss and BrierScore against sklearn, calibration error against torchmetrics.

Random data split into three uneven batches, merged from ``empty()``, with and without
masks, eager and under ``jax.jit``; references see ``data[mask]``.
"""

import sys
import types

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

import metrix as mx
from tests.reference.test_classification import accumulate, values

N = 203
C = 4
L = 3
TASKS = ("binary", "multiclass", "multilabel")
# Eager without a mask and jitted with a mask, per task (the two code paths are independent).
CASES = [(t, False, False) for t in TASKS] + [(t, True, True) for t in TASKS]
IDS = [f"{t}-{'jit' if j else 'eager'}-{'masked' if m else 'all'}" for t, j, m in CASES]


def make_data(task, seed=0):
    """Logits, probabilities, labels (drawn from the probabilities: roughly calibrated) and a mask."""
    rng = np.random.default_rng(seed)
    mask = rng.uniform(size=N) < 0.7
    if task == "multiclass":
        logits = (rng.normal(size=(N, C)) * 2).astype(np.float32)
        probs = np.asarray(jax.nn.softmax(logits, axis=-1))
        labels = np.array(
            [rng.choice(C, p=p / p.sum()) for p in probs.astype(np.float64)], np.int32
        )
        return logits, probs, labels, mask
    shape = (N,) if task == "binary" else (N, L)
    logits = (rng.normal(size=shape) * 2).astype(np.float32)
    probs = np.asarray(jax.nn.sigmoid(logits))
    labels = (rng.uniform(size=shape) < probs * 0.8).astype(np.int32)
    return logits, probs, labels, mask


def _metric(cls, task, **config):
    num = None if task == "binary" else (C if task == "multiclass" else L)
    return cls(preds="p", labels="y", mask="m", task=task, num_classes=num, **config)


def _check(got, want, **tol):
    for value in got:
        np.testing.assert_allclose(value, want, **(tol or dict(rtol=1e-5, atol=1e-6)))


def _sk(fn, task, labels, probs):
    if task == "multilabel":  # every element as a binary example
        return fn(labels.ravel(), probs.ravel().astype(np.float64))
    if task == "multiclass":  # float64 rows renormalised: sklearn checks sums to 1e-15
        probs = probs.astype(np.float64)
        return fn(labels, probs / probs.sum(-1, keepdims=True), labels=list(range(C)))
    return fn(labels, probs.astype(np.float64))


@pytest.mark.parametrize("task,jit,masked", CASES, ids=IDS)
@pytest.mark.parametrize("from_logits", [False, True])
def test_log_loss_and_brier_match_sklearn(task, jit, masked, from_logits):
    logits, probs, labels, mask = make_data(task)
    preds = logits if from_logits else probs
    mask = mask if masked else None
    keep = slice(None) if mask is None else mask
    for cls, fn, tol in (
        (mx.LogLoss, skm.log_loss, dict(rtol=2e-5, atol=1e-6)),
        (mx.BrierScore, skm.brier_score_loss, dict(rtol=1e-5, atol=1e-6)),
    ):
        state = accumulate(
            _metric(cls, task, from_logits=from_logits), jit, preds=preds, labels=labels, mask=mask
        )
        _check(values({0: state}, jit)[0], _sk(fn, task, labels[keep], probs[keep]), **tol)


def _torchmetrics():
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.functional.classification")


@pytest.mark.parametrize("task,jit,masked", CASES, ids=IDS)
def test_calibration_error_matches_torchmetrics(task, jit, masked):
    tmc = _torchmetrics()
    import torch

    _, probs, labels, mask = make_data(task)
    mask = mask if masked else None
    keep = slice(None) if mask is None else mask
    p, y = torch.tensor(probs[keep]), torch.tensor(labels[keep])
    base = _metric(mx.ExpectedCalibrationError, task, num_bins=10)
    state = accumulate(base, jit, preds=probs, labels=labels, mask=mask)
    states, wants = {}, {}
    for norm in ("l1", "l2", "max"):
        if task == "multiclass":
            want = tmc.multiclass_calibration_error(p, y, num_classes=C, n_bins=10, norm=norm)
        else:  # multilabel: every element as a binary example
            want = tmc.binary_calibration_error(p.reshape(-1), y.reshape(-1), n_bins=10, norm=norm)
        wants[norm] = want.numpy()
        metric = _metric(mx.ExpectedCalibrationError, task, num_bins=10, norm=norm)
        states[norm] = state.replace(parent=metric)
    got = values(states, jit)
    for norm, want in wants.items():
        _check(got[norm], want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_reliability_diagram_matches_closed_form(jit):
    """Per-bin mean confidence, accuracy and count as numpy bins them (top-label, multiclass)."""
    _, probs, labels, mask = make_data("multiclass", seed=3)
    metric = _metric(mx.ReliabilityDiagram, "multiclass", num_bins=8)
    state = accumulate(metric, jit, preds=probs, labels=labels, mask=mask)
    conf = probs[mask].max(-1).astype(np.float64)
    correct = probs[mask].argmax(-1) == labels[mask]
    bins = np.minimum((conf * 8).astype(int), 7)
    count = np.bincount(bins, minlength=8)
    with np.errstate(invalid="ignore"):
        want_conf = np.bincount(bins, conf, minlength=8) / count
        want_acc = np.bincount(bins, correct, minlength=8) / count
    for got in values({0: state}, jit)[0]:
        np.testing.assert_array_equal(got["count"], count)
        np.testing.assert_allclose(got["confidence"], want_conf, rtol=1e-5)
        np.testing.assert_allclose(got["accuracy"], want_acc, rtol=1e-5)
        np.testing.assert_allclose(got["edges"], np.linspace(0, 1, 9), atol=1e-7)


def test_edge_cases_documented():
    """No examples: NaN. Perfect confident predictions: log loss ~eps-clipped, ECE 0."""
    for cls in (mx.LogLoss, mx.BrierScore, mx.ExpectedCalibrationError):
        assert np.isnan(float(cls().empty().compute()))
    labels = np.array([0, 1, 1, 0], np.int32)
    probs = labels.astype(np.float32)
    np.testing.assert_allclose(
        float(mx.LogLoss()(probs, labels)), skm.log_loss(labels, probs), atol=1e-6
    )
    assert float(mx.BrierScore()(probs, labels)) == 0.0
    assert float(mx.ExpectedCalibrationError()(probs, labels)) == 0.0
