"""The FID formula itself: both precisions against float64 references, rank handling, edge cases.

References are independent of metrix: scipy's ``sqrtm`` (pytorch-fid's formula) on full-rank
statistics, and for any rank the exact identity
``tr sqrt(S1 S2) = ||Xc Yc^T||_* / sqrt((n - 1)(m - 1))`` (``S1 = Xc^T Xc / (n - 1)``,
``S2 = Yc^T Yc / (m - 1)``) with numpy's float64 SVD.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import metrix as mx
from metrix.generative.frechet import _frechet_distance_f64_host, _rank


def _rows(rng, n, d, shift=0.0, scale=1.0):
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(d))  # decaying, like Inception features
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return np.maximum((rng.normal(size=(n, d)) * spectrum) @ basis.T * scale + shift, 0)


def _stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


def _fid_sqrtm(x, y):
    (mu1, s1), (mu2, s2) = _stats(x), _stats(y)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fid_nuclear(x, y):
    """Exact for any rank: the non-zero spectrum of S1 S2 from the SVD of Xc Yc^T."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m = len(x), len(y)
    nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (xc * xc).sum() / (n - 1) + (yc * yc).sum() / (m - 1) - 2 * nuclear)


def _host(x, y, ranks=True):
    (mu1, s1), (mu2, s2) = _stats(x), _stats(y)
    d = s1.shape[0]
    r1 = _rank(len(x) if ranks else None, d, np)
    r2 = _rank(len(y) if ranks else None, d, np)
    return float(_frechet_distance_f64_host(mu1, s1, mu2, s2, r1, r2))


def test_float64_matches_scipy_sqrtm_to_float64_round_off():
    rng = np.random.default_rng(0)
    x, y = _rows(rng, 600, 96, 0.3), _rows(rng, 500, 96, 0.32, 1.05)  # close distributions
    expected = _fid_sqrtm(x, y)
    np.testing.assert_allclose(_host(x, y), expected, rtol=1e-9)
    np.testing.assert_allclose(_host(x, y, ranks=False), expected, rtol=1e-9)
    np.testing.assert_allclose(_fid_nuclear(x, y), expected, rtol=1e-9)  # the two references agree


@pytest.mark.parametrize("n1,n2", [(30, 45), (45, 30), (30, 30), (40, 500)])
def test_float64_singular_covariances_match_the_exact_nuclear_norm(n1, n2):
    # fewer rows than dimensions on one or both sides: ranks n - 1 < d, no NaN, the
    # pivoted Cholesky factors the side of smaller rank (both orders give the same value)
    rng = np.random.default_rng(1)
    d = 80
    x, y = _rows(rng, n1, d, 0.2), _rows(rng, n2, d, 0.25, 1.1)
    expected = _fid_nuclear(x, y)
    np.testing.assert_allclose(_host(x, y), expected, rtol=1e-9)
    np.testing.assert_allclose(_host(y, x), expected, rtol=1e-9)
    # without the counts the pivoted Cholesky still stops at the numerical rank
    np.testing.assert_allclose(_host(x, y, ranks=False), expected, rtol=1e-7)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_public_function_eager_and_jit_both_ranks(precision):
    rng = np.random.default_rng(2)
    d = 48
    cases = [(_rows(rng, 300, d, 0.3), _rows(rng, 260, d, 0.35)),  # full rank: Cholesky
             (_rows(rng, 20, d, 0.3), _rows(rng, 300, d, 0.35))]  # rank 19: eigh factors
    fn = jax.jit(mx.frechet_distance, static_argnames="precision")
    for x, y in cases:
        expected = _fid_nuclear(x, y)
        (mu1, s1), (mu2, s2) = _stats(x), _stats(y)
        n = dict(num_samples1=len(x), num_samples2=len(y), precision=precision)
        rtol = 1e-6 if precision == "float64" else 2e-5
        np.testing.assert_allclose(float(mx.frechet_distance(mu1, s1, mu2, s2, **n)), expected, rtol=rtol)
        args = [jnp.asarray(v, jnp.float32) for v in (mu1, s1, mu2, s2)]
        jitted = fn(*args, **n)
        assert jitted.dtype == jnp.float32
        # under jit the inputs are float32 statistics: float32 round-off of the traces
        np.testing.assert_allclose(float(jitted), expected, rtol=2e-5)


def test_float32_cholesky_failure_falls_back_to_eigh():
    # exactly singular covariances with the ranks left unknown: the float32 Cholesky meets a
    # non-positive pivot (NaN), lax.cond takes the eigh factors instead, and the value is finite
    rng = np.random.default_rng(3)
    d = 32
    var1, var2 = rng.uniform(0.5, 2.0, d), rng.uniform(0.5, 2.0, d)
    var1[:8] = 0.0
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    s1, s2 = q @ np.diag(var1) @ q.T, q @ np.diag(var2) @ q.T  # commuting: closed form
    mu = np.zeros(d)
    expected = float(((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum())
    # without the ranks, sqrt of the null eigenvalues' round-off shows: ~1e-4 each for float32
    # arithmetic, a few 1e-5 in all for float64 arithmetic on float32-rounded inputs (under jit)
    for precision, rtol in (("float32", 1e-3), ("float64", 1e-4)):
        value = jax.jit(lambda a, b: mx.frechet_distance(mu, a, mu, b, precision=precision))(s1, s2)
        np.testing.assert_allclose(float(value), expected, rtol=rtol)
    # float64 eagerly on the float64 matrices: the pivoted Cholesky stops at rank d - 8
    value = mx.frechet_distance(mu, s1, mu, s2, precision="float64")
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    # with the rank known (as for 25 rows) the null eigenvalues are exact zeros
    value = mx.frechet_distance(mu, s1, mu, s2, precision="float32", num_samples1=25)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_edge_cases_zero_identical_and_non_finite(precision):
    d = 6
    zero = np.zeros((d, d))
    eye = np.eye(d)
    # a zero covariance: tr sqrt(0 * S2) = 0, so FID = tr(S2)
    value = mx.frechet_distance(np.zeros(d), zero, np.zeros(d), 2 * eye, precision=precision)
    np.testing.assert_allclose(float(value), 2.0 * d, rtol=1e-6)
    # identical statistics: exactly 0 after the clamp, never negative
    s = np.cov(np.random.default_rng(4).normal(size=(50, d)), rowvar=False)
    same = float(mx.frechet_distance(np.ones(d), s, np.ones(d), s, precision=precision))
    assert 0.0 <= same < 1e-5
    # non-finite statistics (the covariance of fewer than two rows) give NaN, not an error
    bad = np.full((d, d), np.nan)
    assert np.isnan(float(mx.frechet_distance(np.zeros(d), bad, np.zeros(d), eye, precision=precision)))
    jitted = jax.jit(lambda a: mx.frechet_distance(np.zeros(d), a, np.zeros(d), eye, precision=precision))
    assert np.isnan(float(jitted(bad)))


def test_fid_defaults_to_float64_and_the_state_counts_bound_the_ranks():
    assert mx.FID().precision == "float64"
    rng = np.random.default_rng(5)
    d = 40
    x, y = _rows(rng, 25, d, 0.3).astype(np.float32), _rows(rng, 31, d, 0.3).astype(np.float32)
    value = jax.jit(lambda s: s.compute())(mx.FID(num_features=d).get_state(real=x, generated=y))
    expected = _fid_nuclear(x.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)  # float32 statistics
