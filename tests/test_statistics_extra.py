"""Norm, Histogram and Quantiles: references from numpy / optax, merged uneven batches."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metrix as mx
from tests import helpers

SPLITS = (0, 13, 70, 101)


merged = functools.partial(helpers.merged, splits=SPLITS)  # splits every leaf (pytrees)


def gradients(seed):
    rng = np.random.default_rng(seed)
    return {"dense": {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}, "head": [rng.normal(size=(2, 2))]}


# -- Norm ---------------------------------------------------------------------------------


def test_global_gradient_norm_averaged_over_steps():
    optax = pytest.importorskip("optax")
    steps = [jax.tree.map(lambda x: x.astype(np.float32), gradients(s)) for s in range(3)]
    metric = mx.Norm(values="grads")
    for jit in (False, True):
        state = helpers.accumulate(metric, batches=[(g,) for g in steps], jit=jit)
        want = np.mean([float(optax.global_norm(g)) for g in steps])
        np.testing.assert_allclose(state.compute(), want, rtol=1e-6)


@pytest.mark.parametrize("ord", [1, 2, float("inf")])
def test_per_example_norms_with_mask(ord):
    rng = np.random.default_rng(1)
    tree = {"a": rng.normal(size=(101, 3)).astype(np.float32), "b": rng.normal(size=(101, 2, 2)).astype(np.float32)}
    mask = rng.uniform(size=101) < 0.6
    flat = np.concatenate([tree["a"], tree["b"].reshape(101, 4)], axis=1).astype(np.float64)
    want = np.linalg.norm(flat, ord=ord, axis=1)[mask].mean()
    got = merged(mx.Norm(per_example=True, ord=ord), jit=ord == 2, values=tree, mask=mask)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_norm_errors():
    with pytest.raises(ValueError, match="ord"):
        mx.Norm(ord=3)
    with pytest.raises(ValueError, match="per_example"):
        mx.Norm()(np.ones(3), mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="no array"):
        mx.Norm()({})


# -- Histogram ----------------------------------------------------------------------------


@pytest.mark.parametrize("masked, jit", [(False, False), (True, True)])
def test_histogram_matches_numpy(masked, jit):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(101, 4)).astype(np.float32)
    values[5, 0] = np.nan
    mask = rng.uniform(size=101) < 0.7
    m = mask if masked else None
    metric = mx.Histogram(num_bins=7, low=-2.0, high=2.0)
    got = merged(metric, jit=jit, values=values, mask=m)
    kept = values[mask] if masked else values
    want, edges = np.histogram(kept[np.isfinite(kept)], bins=7, range=(-2.0, 2.0))
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_allclose(metric.edges(), edges, rtol=1e-6)
    state = metric.get_state(values, mask=m)
    inside = kept[np.isfinite(kept)]
    assert float(state.below[..., 0]) == (inside < -2).sum() and float(state.above[..., 0]) == (inside > 2).sum()


# -- Quantiles ----------------------------------------------------------------------------


def test_quantiles_within_one_bin_of_numpy():
    rng = np.random.default_rng(3)
    values = rng.beta(2, 5, size=(101, 30)).astype(np.float32)
    mask = rng.uniform(size=101) < 0.8
    qs = (0.0, 0.01, 0.25, 0.5, 0.9, 0.999, 1.0)
    metric = mx.Quantiles(quantiles=qs, num_bins=200)
    width = 1.0 / 200
    for jit in (False, True):
        got = np.asarray(merged(metric, jit=jit, values=values, mask=mask))
        kept = values[mask].astype(np.float64)
        assert np.all(np.abs(got - np.quantile(kept, qs, method="lower")) <= width * (1 + 1e-4))
        # Dense data: neighbouring order statistics share a bin, so the linear quantile is as close.
        assert np.all(np.abs(got - np.quantile(kept, qs)) <= width * (1 + 1e-4))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=40),
    st.floats(0, 1, width=32),  # quantiles are float32 (q = 1 - 1e-16 would round to 1)
    st.sampled_from([1, 6, 64]),
)
def test_quantile_error_bound_property(values, q, num_bins):
    values = np.asarray(values, np.float32)
    metric = mx.Quantiles(quantiles=(q,), num_bins=num_bins, low=-10.0, high=10.0)
    # A fixed (40,) shape with a mask, eager: every example reuses the compiled ops.
    padded, mask = np.resize(values, 40), np.arange(40) < len(values)
    got = float(metric.get_state(padded, mask=mask).compute()[0])
    width = 20.0 / num_bins
    lower = np.quantile(values.astype(np.float64), q, method="lower")
    assert abs(got - lower) <= width * (1 + 1e-4) + 1e-5


def test_quantiles_edge_cases():
    metric = mx.Quantiles(quantiles=(0.0, 0.5, 1.0), num_bins=10)
    assert np.all(np.isnan(metric(np.ones(3, np.float32), mask=np.zeros(3, bool))))  # no values
    # Out-of-range values clip to low / high; NaNs are ignored.
    got = metric(np.array([-5.0, 0.55, 7.0, np.nan], np.float32))
    np.testing.assert_allclose(got, [0.0, 0.55, 1.0], atol=0.1)
    assert float(got[0]) == 0.0 and float(got[2]) == 1.0
    with pytest.raises(ValueError, match="quantiles"):
        mx.Quantiles(quantiles=(1.5,))
    with pytest.raises(ValueError, match="low < high"):
        mx.Histogram(low=1.0, high=0.0)
