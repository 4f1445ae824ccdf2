"""Unit tests of metrix.generative: closed forms, configuration, edge cases and errors.

Reference comparisons (scipy, torchmetrics, prdc transcriptions) are in
tests/reference/test_generative.py; the algebra over splits/devices in the registry tests.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.generative import kid_subset_indices


def _closed_form_diagonal(mu1, var1, mu2, var2):
    # Commuting (diagonal) covariances: tr sqrt(S1 S2) = sum sqrt(v1 v2).
    return float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())


def test_frechet_distance_closed_form_for_rotated_diagonal_covariances():
    rng = np.random.default_rng(0)
    d = 128
    var1, var2 = rng.uniform(0.1, 2.0, d), rng.uniform(0.1, 2.0, d)
    var1[:20] = 0.0  # singular: fewer directions than dimensions
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]  # same rotation: the covariances commute
    s1, s2 = q @ np.diag(var1) @ q.T, q @ np.diag(var2) @ q.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = _closed_form_diagonal(mu1, var1, mu2, var2)
    # rank(S1) = d - 20, as for d - 19 samples: the 20 zero eigenvalues are exact zeros
    rank_known = mx.frechet_distance(mu1, s1, mu2, s2, num_samples1=d - 19, num_samples2=10 * d)
    np.testing.assert_allclose(float(rank_known), expected, rtol=1e-6)
    # without the rank, float32 round-off of the zero eigenvalues shows up through sqrt
    np.testing.assert_allclose(float(mx.frechet_distance(mu1, s1, mu2, s2)), expected, rtol=1e-4)
    np.testing.assert_allclose(
        float(mx.frechet_distance(mu1, s1, mu2, s2, precision="float64")), expected, rtol=1e-6
    )
    # symmetric in its two distributions
    swapped = mx.frechet_distance(mu2, s2, mu1, s1, num_samples1=10 * d, num_samples2=d - 19)
    np.testing.assert_allclose(float(swapped), expected, rtol=1e-6)


def test_frechet_distance_clamps_round_off_and_rejects_bad_precision():
    s = np.eye(4) * 1e-3
    assert float(mx.frechet_distance(np.zeros(4), s, np.zeros(4), s)) >= 0.0
    with pytest.raises(ValueError, match="precision"):
        mx.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), precision="float16")


def test_fid_state_is_o_d_squared_and_needs_two_rows_per_side():
    metric = mx.FID(num_features=6)
    empty = metric.empty()
    assert empty.real.m2.shape == (6, 6) and empty.generated.mean.shape == (6,)
    x = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    assert np.isnan(float(empty.compute()))
    assert np.isnan(float(metric(real=x, generated=x[:1])))
    assert np.isnan(float(metric(real=x)))  # no generated rows
    assert np.isfinite(float(metric(real=x, generated=x[:2])))


def test_fid_masks_combine_and_errors_name_the_metric():
    rng = np.random.default_rng(2)
    r, g = (
        rng.normal(size=(9, 4)).astype(np.float32),
        rng.normal(size=(9, 4)).astype(np.float32) + 1,
    )
    metric = mx.FID(num_features=4)
    both = rng.random(9) > 0.3
    side = rng.random(9) > 0.2
    got = metric(real=r, generated=g, mask=both, real_mask=side)
    want = metric(real=r[both & side], generated=g[both])
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    with pytest.raises(ValueError, match="num_features=4"):
        metric(real=r[:, :3], generated=g)
    with pytest.raises(ValueError, match="does not cover"):
        metric(real=r, generated=g[:5], mask=both)
    with pytest.raises(TypeError, match="params="):
        metric(real=np.zeros((2, 8, 8, 3), np.uint8), generated=g)
    with pytest.raises(ValueError, match="precision"):
        mx.FID(precision="float16")


def test_reference_stats_are_hashable_configuration(tmp_path):
    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(size=3), np.eye(3)
    a, b = mx.ReferenceStats(mu, sigma), mx.ReferenceStats(mu.copy(), sigma.copy())
    assert a == b and hash(a) == hash(b) and a != mx.ReferenceStats(mu + 1, sigma)
    assert mx.FID.with_real_stats(mu, sigma) == mx.FID(num_features=3, real_stats=b)
    with pytest.raises(AttributeError):
        a.mu = mu
    with pytest.raises(ValueError, match="sigma"):
        mx.ReferenceStats(mu, np.eye(4))
    with pytest.raises(ValueError, match="real_stats have 3 features"):
        mx.FID(num_features=8, real_stats=a)
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(KeyError, match="'mu' and 'sigma'"):
        mx.ReferenceStats.load(tmp_path / "bad.npz")
    assert mx.ReferenceStats.load(a.save(tmp_path / "ok.npz")) == a


def test_fixed_real_stats_closed_form_eager_jit_and_float64():
    rng = np.random.default_rng(4)
    d = 16
    gen = rng.normal(size=(400, d)) * 1.5 + 0.5
    # whitened rows: sample covariance exactly the identity (to float64 round-off)
    chol = np.linalg.cholesky(np.cov(gen, rowvar=False))
    gen = (gen - gen.mean(0)) @ np.linalg.inv(chol).T + 0.5
    mu_r = rng.normal(size=d)
    cov_g = np.cov(gen, rowvar=False)
    for precision in ("float32", "float64"):
        metric = mx.FID.with_real_stats(mu_r, np.eye(d) * 4.0, precision=precision)
        value = metric(generated=gen.astype(np.float32))
        expected = mx.frechet_distance(
            mu_r, np.eye(d) * 4.0, gen.mean(0), cov_g, precision="float64"
        )
        np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)
        jitted = jax.jit(lambda s: s.compute())(metric.get_state(generated=gen.astype(np.float32)))
        np.testing.assert_allclose(float(jitted), float(expected), rtol=1e-5)
    # cov ~ I, real 4 I: tr term sum (2 - 1)^2 = d, plus the mean term
    np.testing.assert_allclose(float(expected), d + ((mu_r - gen.mean(0)) ** 2).sum(), rtol=1e-6)


def test_fid_on_images_runs_the_backbone_with_params_as_input():
    from metrix.backbones.inception import inception_features
    from tests.test_fid_cli import _random_params

    params = jax.tree.map(jnp.asarray, _random_params(seed=5))
    images = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3)).astype(np.uint8)
    metric = mx.FID(num_features=64, tap="64")  # the stem tap: cheap, same code path
    feats = inception_features(params, images, taps=("64",))["64"]
    step = jax.jit(lambda p, x, y: metric.get_state(real=x, generated=y, params=p))
    got = step(params, images, images[::-1].copy()).compute()
    want = metric(real=feats, generated=feats[::-1])
    np.testing.assert_allclose(float(got), float(want), rtol=1e-4, atol=1e-6)


def test_kid_subsets_are_deterministic_without_replacement_and_seed_dependent():
    a = np.asarray(kid_subset_indices(0, 30, 25, 40, 5, 10)[0])
    b = np.asarray(kid_subset_indices(0, 30, 25, 40, 5, 10)[0])
    c = np.asarray(kid_subset_indices(1, 30, 25, 40, 5, 10)[0])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.max() < 30 and all(len(set(row)) == 10 for row in a)
    g = np.asarray(kid_subset_indices(0, 30, 25, 40, 5, 10)[1])
    assert g.max() < 25


def test_kid_same_distribution_near_zero_and_shifted_positive():
    rng = np.random.default_rng(6)
    metric = mx.KID(num_features=8, capacity=200, num_subsets=10, subset_size=50)
    x, y = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = metric(real=x, generated=y)
    shifted = metric(real=x, generated=y + 1.0)
    assert abs(float(same["mean"])) < 3 * float(same["std"]) + 1e-3
    assert float(shifted["mean"]) > 10 * float(same["std"])


def test_inception_score_split_semantics_and_errors():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(30, 6)).astype(np.float32) * 2
    metric = mx.InceptionScore(num_classes=6, splits=3, capacity=32)
    whole = metric(logits=logits)
    # splits are by global order: rows 0-9, 10-19, 20-29 whatever the batches
    merged = (
        metric.get_state(logits=logits[:13]).merge(metric.get_state(logits=logits[13:])).compute()
    )
    np.testing.assert_allclose(float(merged["mean"]), float(whole["mean"]), rtol=1e-6)
    np.testing.assert_allclose(float(merged["std"]), float(whole["std"]), rtol=1e-5)
    one = [
        mx.InceptionScore(num_classes=6, splits=1, capacity=32)(logits=logits[i : i + 10])
        for i in (0, 10, 20)
    ]
    scores = np.array([float(o["mean"]) for o in one])
    np.testing.assert_allclose(float(whole["mean"]), scores.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(whole["std"]), scores.std(), rtol=1e-4)
    with pytest.raises(TypeError, match="exactly one"):
        metric.get_state(logits=logits, probs=jax.nn.softmax(logits))
    with pytest.raises(ValueError, match="num_classes=6"):
        metric.get_state(logits=logits[:, :5])
