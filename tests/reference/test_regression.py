"""Regression metrics against sklearn / scipy / torchmetrics over uneven merged batches."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn import metrics as skm

import metrix as mx
from tests import helpers

SPLITS = (0, 37, 160, 301)  # three uneven batches
merged = functools.partial(helpers.merged, splits=SPLITS)


def data(seed=0, n=301, d=None, offset=0.0):
    rng = np.random.default_rng(seed)
    shape = (n,) if d is None else (n, d)
    targets = rng.normal(size=shape) * 2 + 1 + offset
    preds = targets + rng.normal(size=shape) * 0.7 + 0.2
    mask = rng.uniform(size=n) < 0.7
    return preds.astype(np.float32), targets.astype(np.float32), mask


def _f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def _tm():
    import sys
    import types

    # torchvision's compiled ops do not load on this CPU torch; torchmetrics imports it.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.functional")


def _torch():
    return pytest.importorskip("torch")


REFERENCES = {
    "MSE": lambda p, t: skm.mean_squared_error(t, p),
    "RMSE": lambda p, t: np.sqrt(skm.mean_squared_error(t, p)),
    "MAE": lambda p, t: skm.mean_absolute_error(t, p),
    "MAPE": lambda p, t: skm.mean_absolute_percentage_error(t, p),
    # torchmetrics' definition, written out: 2 |t - p| / (|t| + |p|).
    "SMAPE": lambda p, t: np.mean(2 * np.abs(t - p) / (np.abs(t) + np.abs(p))),
    "MaxError": lambda p, t: skm.max_error(t, p),
    "R2Score": lambda p, t: skm.r2_score(t, p),
    "ExplainedVariance": lambda p, t: skm.explained_variance_score(t, p),
    "PearsonCorrCoef": lambda p, t: scipy.stats.pearsonr(p, t)[0],
    "SpearmanCorrCoef": lambda p, t: scipy.stats.spearmanr(p, t)[0],
    # Lin's concordance with population moments.
    "ConcordanceCorrCoef": lambda p, t: 2 * np.cov(p, t, ddof=0)[0, 1]
    / (np.var(p) + np.var(t) + (p.mean() - t.mean()) ** 2),
}


@pytest.mark.parametrize("masked, jit", [(False, False), (True, True)])
def test_scalar_metrics_match_references(masked, jit):
    preds, targets, mask = data(seed=1)
    # Every metric at once from one context: a single compile per batch shape under jit.
    mask_key = "m" if masked else None
    metrics = {name: getattr(mx, name)(preds="p", targets="t", mask=mask_key) for name in REFERENCES}
    get_states = jax.jit(lambda c: mx.get_states(metrics, c)) if jit else lambda c: mx.get_states(metrics, c)
    states = mx.empty_states(metrics)
    context = {"p": preds, "t": targets, "m": mask}
    for start, stop in itertools.pairwise(SPLITS):
        states = mx.merge(states, get_states({k: v[start:stop] for k, v in context.items()}))
    values = jax.jit(mx.compute)(states) if jit else mx.compute(states)
    keep = mask if masked else np.ones_like(mask)
    p, t = _f64(preds[keep], targets[keep])
    for name, reference in REFERENCES.items():
        np.testing.assert_allclose(values[name], reference(p, t), rtol=2e-5, atol=1e-6, err_msg=name)


def test_smape_and_mape_match_torchmetrics():
    torch, tm = _torch(), _tm()
    preds, targets, _ = data(seed=2)
    p, t = torch.tensor(preds), torch.tensor(targets)
    np.testing.assert_allclose(merged(mx.SMAPE(), preds=preds, targets=targets),
                               float(tm.symmetric_mean_absolute_percentage_error(p, t)), rtol=1e-5)
    np.testing.assert_allclose(merged(mx.MAPE(), preds=preds, targets=targets),
                               float(tm.mean_absolute_percentage_error(p, t)), rtol=1e-5)


def test_concordance_ddof1_matches_torchmetrics():
    torch, tm = _torch(), _tm()
    preds, targets, _ = data(seed=3, d=2)
    got = merged(mx.ConcordanceCorrCoef(num_outputs=2, ddof=1), preds=preds, targets=targets)
    want = tm.concordance_corrcoef(torch.tensor(preds), torch.tensor(targets)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_cosine_similarity_matches_sklearn():
    rng = np.random.default_rng(4)
    preds = rng.normal(size=(301, 6)).astype(np.float32)
    targets = (preds + rng.normal(size=(301, 6))).astype(np.float32)
    mask = rng.uniform(size=301) < 0.6
    for jit in (False, True):
        got = merged(mx.CosineSimilarity(), jit=jit, preds=preds, targets=targets, mask=mask)
        want = np.mean(np.diag(skm.pairwise.cosine_similarity(preds[mask], targets[mask])))
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("multioutput", ["uniform_average", "raw_values", "variance_weighted"])
def test_multioutput_r2_and_explained_variance(multioutput):
    preds, targets, mask = data(seed=5, d=3)
    targets[:, 2] *= 10  # unequal variances make variance_weighted differ from uniform
    for jit in (False, True) if multioutput == "variance_weighted" else (False,):
        r2 = merged(mx.R2Score(num_outputs=3, multioutput=multioutput), jit=jit, preds=preds, targets=targets, mask=mask)
        ev = merged(mx.ExplainedVariance(num_outputs=3, multioutput=multioutput), jit=jit, preds=preds, targets=targets, mask=mask)
        p, t = _f64(preds[mask], targets[mask])
        np.testing.assert_allclose(r2, skm.r2_score(t, p, multioutput=multioutput), rtol=1e-5)
        np.testing.assert_allclose(ev, skm.explained_variance_score(t, p, multioutput=multioutput), rtol=1e-5)


def test_multioutput_correlations_per_output():
    preds, targets, mask = data(seed=6, d=3)
    p, t = _f64(preds[mask], targets[mask])
    got = merged(mx.PearsonCorrCoef(num_outputs=3), preds=preds, targets=targets, mask=mask)
    np.testing.assert_allclose(got, [scipy.stats.pearsonr(p[:, j], t[:, j])[0] for j in range(3)], rtol=1e-5)
    got = merged(mx.SpearmanCorrCoef(num_outputs=3, capacity=512), jit=True, preds=preds, targets=targets, mask=mask)
    np.testing.assert_allclose(got, [scipy.stats.spearmanr(p[:, j], t[:, j])[0] for j in range(3)], rtol=1e-5)


def test_adjusted_r2_matches_torchmetrics():
    torch, tm = _torch(), _tm()
    preds, targets, _ = data(seed=7)
    got = merged(mx.R2Score(adjusted=3), preds=preds, targets=targets)
    want = float(tm.r2_score(torch.tensor(preds, dtype=torch.float64), torch.tensor(targets, dtype=torch.float64), adjusted=3))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_r2_at_label_offset_1e4_matches_sklearn():
    """Labels around 1e4: Chan-merged co-moments keep R2 exact where E[y^2] - E[y]^2 drifts."""
    rng = np.random.default_rng(0)
    n = 3000
    targets = (1e4 + rng.normal(size=n)).astype(np.float32)
    preds = (targets + 0.1 * rng.normal(size=n)).astype(np.float32)
    want = skm.r2_score(targets.astype(np.float64), preds.astype(np.float64))
    splits = (0, 700, 1901, n)
    for jit in (False, True):
        got = merged(mx.R2Score(), jit=jit, splits=splits, preds=preds, targets=targets)
        assert abs(float(got) - want) < 1e-5, (got, want)
    # The naive float32 sums (what metrax accumulates) are visibly off at this offset.
    y = jnp.asarray(targets)
    sst_naive = jnp.sum(y * y) - jnp.sum(y) ** 2 / n
    naive = 1 - jnp.sum((y - preds) ** 2) / sst_naive
    assert abs(float(naive) - want) > 1e-4


def test_spearman_ties_match_scipy():
    rng = np.random.default_rng(8)
    preds = rng.integers(0, 6, size=301).astype(np.float32)
    targets = (preds + rng.integers(0, 4, size=301)).astype(np.float32)
    for jit in (False, True):
        got = merged(mx.SpearmanCorrCoef(), jit=jit, preds=preds, targets=targets)
        np.testing.assert_allclose(got, scipy.stats.spearmanr(preds, targets)[0], rtol=1e-5)


def test_spearman_capacity_overflow():
    preds, targets, _ = data(seed=9)
    metric = mx.SpearmanCorrCoef(capacity=100)
    state = metric.get_state(preds[:150], targets[:150])
    with pytest.raises(mx.CapacityOverflowError):
        state.compute()
    assert np.isnan(jax.jit(lambda s: s.compute())(state))


# -- edge cases: documented results ---------------------------------------------------------


def test_constant_targets():
    t = np.full(10, 3.0, np.float32)
    p = np.linspace(0, 1, 10).astype(np.float32)
    # sklearn's force_finite: exact predictions of a constant give 1, anything else 0.
    assert float(mx.R2Score()(t, t)) == skm.r2_score(t, t) == 1.0
    assert float(mx.R2Score()(p, t)) == skm.r2_score(t, p) == 0.0
    assert float(mx.ExplainedVariance()(p, t)) == skm.explained_variance_score(t, p) == 0.0
    assert np.isnan(mx.PearsonCorrCoef()(p, t))
    assert np.isnan(mx.SpearmanCorrCoef()(p, t))


def test_empty_masks():
    p, t, _ = data(seed=10, n=SPLITS[1])  # a batch shape compiled already (eager op cache)
    none = np.zeros(len(p), bool)
    for name in ("MSE", "RMSE", "MAE", "MAPE", "SMAPE", "R2Score", "ExplainedVariance",
                 "PearsonCorrCoef", "ConcordanceCorrCoef"):
        assert np.isnan(getattr(mx, name)()(p, t, mask=none)), name
    assert np.isnan(mx.SpearmanCorrCoef()(p, t, mask=none))
    assert float(mx.MaxError()(p, t, mask=none)) == -np.inf
    assert np.isnan(mx.CosineSimilarity()(p[:36].reshape(18, 2), t[:36].reshape(18, 2), mask=none[:18]))
    # Merging an empty batch changes nothing.
    m = mx.R2Score()
    full = m.get_state(p, t)
    np.testing.assert_allclose(full.merge(m.get_state(p, t, mask=none)).compute(), full.compute(), rtol=1e-6)


def test_masked_nan_changes_nothing():
    p, t, mask = data(seed=11, n=SPLITS[1])
    p_nan = p.copy()
    p_nan[~mask] = np.nan
    for metric in (mx.MSE(), mx.R2Score(), mx.PearsonCorrCoef(), mx.SpearmanCorrCoef()):
        np.testing.assert_allclose(metric(p_nan, t, mask=mask), metric(p, t, mask=mask), rtol=1e-6)


def test_bad_inputs():
    p, t, _ = data(seed=12, n=10)
    with pytest.raises(TypeError):
        mx.MSE()(p, t[:5])
    with pytest.raises(ValueError, match="multioutput"):
        mx.R2Score(multioutput="mean")
    with pytest.raises(ValueError, match="num_outputs"):
        mx.R2Score(num_outputs=3)(p, t)
    with pytest.raises(TypeError):
        mx.MAE()(p)
