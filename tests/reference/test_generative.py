"""Generative metrics against references: scipy ``sqrtm`` FID, torchmetrics' FID/KID/IS
functions, and float64 numpy transcriptions of the published KID, Inception Score,
precision/recall (Kynkäänniemi et al.) and density/coverage (Naeem et al., as ``prdc``).

Each metric sees random data split into uneven batches and merged, with and without masks,
eagerly and under ``jax.jit``.
"""

import jax
import numpy as np
import pytest
import scipy.linalg

import metrix as mx
from metrix.generative import kid_subset_indices
from tests.helpers import merged

CUTS = (0, 7, 19, 40)  # uneven batches of 7, 12, 21 rows (and the remainder)


def _features(rng, n, d, shift=0.0, scale=1.0):
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(d))  # decaying, like real embeddings
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return ((rng.normal(size=(n, d)) * spectrum) @ basis.T * scale + shift).astype(np.float32)


def _splits(n):
    return (*CUTS, n)  # the last batch: the remainder


def _masks(rng, n):
    return rng.random(n) > 0.3, rng.random(n) > 0.3


# ------------------------------------------------------------------------------ FID


def fid_scipy(real, generated):
    """pytorch-fid's formula on float64 statistics (scipy.linalg.sqrtm)."""
    a, b = real.astype(np.float64), generated.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("jit,masked", [(False, False), (True, True)], ids=["eager", "jit-masked"])
def test_fid_matches_scipy_over_merged_batches(jit, masked, precision):
    rng = np.random.default_rng(0)
    d = 32
    real, gen = _features(rng, 90, d), _features(rng, 90, d, shift=0.2, scale=1.2)
    metric = mx.FID(num_features=d, precision=precision)
    if masked:
        rk, gk = _masks(rng, 90)
        value = merged(
            metric, splits=_splits(90), jit=jit, real=real, generated=gen, real_mask=rk, generated_mask=gk
        )
        expected = fid_scipy(real[rk], gen[gk])
    else:
        value = merged(metric, splits=_splits(90), jit=jit, real=real, generated=gen)
        expected = fid_scipy(real, gen)
    np.testing.assert_allclose(float(value), expected, rtol=2e-5)


def test_fid_float64_option_is_exact_on_float64_statistics():
    rng = np.random.default_rng(1)
    d = 64
    real, gen = (
        _features(rng, 300, d).astype(np.float64),
        _features(rng, 300, d, 0.05).astype(np.float64),
    )
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    expected = float(
        ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    )
    value = mx.frechet_distance(mu1, s1, mu2, s2, precision="float64")
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    assert float(mx.frechet_distance(mu1, s1, mu2, s2)) == float(value)  # float64 is the default
    # float32 on the same statistics: limited by float32 round-off relative to the traces.
    value32 = mx.frechet_distance(mu1, s1, mu2, s2, precision="float32")
    np.testing.assert_allclose(float(value32), expected, rtol=1e-4)
    # under jit the float64 path runs on the host through pure_callback
    jitted = jax.jit(lambda *a: mx.frechet_distance(*a, precision="float64"))(mu1, s1, mu2, s2)
    np.testing.assert_allclose(float(jitted), expected, rtol=1e-5)


def test_fid_matches_torchmetrics_compute_fid():
    torch = pytest.importorskip("torch")
    import sys
    import types

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    fid_module = pytest.importorskip("torchmetrics.image.fid")
    rng = np.random.default_rng(2)
    d = 48
    real, gen = (
        _features(rng, 200, d).astype(np.float64),
        _features(rng, 150, d, 0.1).astype(np.float64),
    )
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    t = [torch.from_numpy(v) for v in (mu1, s1, mu2, s2)]
    expected = float(fid_module._compute_fid(*t))
    np.testing.assert_allclose(
        float(mx.frechet_distance(mu1, s1, mu2, s2, precision="float64")), expected, rtol=1e-6
    )
    value32 = mx.frechet_distance(mu1, s1, mu2, s2, precision="float32")
    np.testing.assert_allclose(float(value32), expected, rtol=1e-4)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fid_fewer_rows_than_dimensions_is_finite_and_matches_scipy(precision):
    rng = np.random.default_rng(3)
    d = 64
    real, gen = _features(rng, 20, d), _features(rng, 25, d, shift=0.3)  # singular covariances
    value = float(mx.FID(num_features=d, precision=precision)(real=real, generated=gen))
    assert np.isfinite(value)
    # the state's counts bound the ranks, so the known-zero eigenvalues are exact zeros
    np.testing.assert_allclose(value, fid_scipy(real, gen), rtol=2e-6)


def test_fid_of_identical_sets_is_zero_not_negative():
    rng = np.random.default_rng(4)
    x = _features(rng, 50, 16)
    value = float(mx.FID(num_features=16)(real=x, generated=x))
    assert 0.0 <= value < 1e-4


def test_fid_fixed_real_stats_from_npz(tmp_path):
    rng = np.random.default_rng(5)
    d = 16
    real, gen = _features(rng, 60, d), _features(rng, 70, d, shift=0.4)
    state = mx.FID(num_features=d).get_state(real=real, generated=gen)
    path = state.real_stats().save(tmp_path / "real.npz")
    with np.load(path) as data:
        # pytorch-fid / clean-fid keys, plus the checksum metrix records
        assert sorted(data.files) == ["mu", "sha256", "sigma"]
        np.testing.assert_allclose(
            data["sigma"], np.cov(real.astype(np.float64), rowvar=False), rtol=1e-5, atol=1e-6
        )
    fixed = mx.FID.with_real_stats_file(path)
    assert fixed.num_features == d
    np.testing.assert_allclose(float(fixed(generated=gen)), fid_scipy(real, gen), rtol=2e-5)
    # the reference side is configuration: it survives empty() (a reset) and jit
    again = jax.jit(lambda s: s.compute())(fixed.empty().merge(fixed.get_state(generated=gen)))
    np.testing.assert_allclose(float(again), fid_scipy(real, gen), rtol=2e-5)
    with pytest.raises(ValueError, match="fixed by real_stats"):
        fixed.get_state(real=real)


# ------------------------------------------------------------------------------ KID


def poly_kernel64(a, b, degree=3, coef=1.0):
    return (a @ b.T / a.shape[1] + coef) ** degree


def mmd_unbiased64(x, y):
    """Binkowski et al.'s unbiased MMD^2 estimator in float64 numpy."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    m, n = len(x), len(y)
    kxx, kyy, kxy = poly_kernel64(x, x), poly_kernel64(y, y), poly_kernel64(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


@pytest.mark.parametrize("jit,masked", [(False, False), (True, True)], ids=["eager", "jit-masked"])
def test_kid_matches_numpy_estimator_on_its_subsets(jit, masked):
    rng = np.random.default_rng(6)
    d, n = 24, 80
    real, gen = _features(rng, n, d) + 1, _features(rng, n, d, shift=1.2)
    metric = mx.KID(num_features=d, capacity=96, num_subsets=7, subset_size=20, seed=3)
    if masked:
        rk, gk = _masks(rng, n)
    else:
        rk = gk = np.ones(n, bool)
    masks = {"real_mask": rk, "generated_mask": gk} if masked else {}
    value = merged(metric, splits=_splits(n), jit=jit, real=real, generated=gen, **masks)
    idx_r, idx_g = map(np.asarray, kid_subset_indices(3, rk.sum(), gk.sum(), 96, 7, 20))
    kept_r, kept_g = real[rk], gen[gk]
    assert idx_r.max() < len(kept_r) and idx_g.max() < len(kept_g)
    assert all(len(set(row)) == 20 for row in idx_r)  # without replacement within a subset
    scores = np.array([mmd_unbiased64(kept_r[i], kept_g[j]) for i, j in zip(idx_r, idx_g)])
    np.testing.assert_allclose(float(value["mean"]), scores.mean(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(value["std"]), scores.std(), rtol=1e-3, atol=1e-6)


def test_kid_whole_set_matches_torchmetrics_poly_mmd():
    torch = pytest.importorskip("torch")
    import sys
    import types

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    rng = np.random.default_rng(7)
    d = 32
    real, gen = _features(rng, 60, d) + 1, _features(rng, 60, d, shift=1.3)
    # one subset holding every row: any permutation gives the same estimate
    metric = mx.KID(num_features=d, capacity=64, num_subsets=1, subset_size=60)
    value = metric(real=real, generated=gen)
    expected = float(
        kid_module.poly_mmd(torch.from_numpy(real).double(), torch.from_numpy(gen).double())
    )
    np.testing.assert_allclose(float(value["mean"]), expected, rtol=1e-4)
    np.testing.assert_allclose(float(value["mean"]), mmd_unbiased64(real, gen), rtol=1e-4)
    assert float(value["std"]) == 0.0


def test_kid_edge_cases():
    rng = np.random.default_rng(8)
    x = _features(rng, 10, 8)
    metric = mx.KID(num_features=8, capacity=16, num_subsets=2, subset_size=12)
    state = metric.get_state(real=x, generated=x)
    with pytest.raises(ValueError, match="at least 12 real rows"):
        state.compute()
    assert np.isnan(float(jax.jit(lambda s: s.compute())(state)["mean"]))
    small = mx.KID(num_features=8, capacity=8, num_subsets=2, subset_size=4)
    # A one-shot call sizes its buffers to the input; a state over capacity is refused.
    assert np.isfinite(float(small(real=x, generated=x)["mean"]))
    with pytest.raises(mx.CapacityOverflowError):
        small.get_state(real=x, generated=x).compute()
    assert np.isnan(
        float(jax.jit(lambda s: s.compute())(small.get_state(real=x, generated=x))["mean"])
    )


# ------------------------------------------------------------------------------ Inception Score


def inception_score64(probs, splits):
    """Salimans et al.'s published code path: ordered splits, exp(mean KL), np.mean / np.std."""
    probs = probs.astype(np.float64)
    n = len(probs)
    scores = []
    for s in range(splits):
        part = probs[s * n // splits : (s + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        kl = np.where(part > 0, part * (np.log(np.where(part > 0, part, 1)) - np.log(py)), 0).sum(1)
        scores.append(np.exp(kl.mean()))
    return np.mean(scores), np.std(scores)


def _softmax64(logits):
    z = logits.astype(np.float64) - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize(
    "jit,masked,from_logits", [(False, False, True), (False, True, False), (True, True, True)]
)
def test_inception_score_matches_published_formula(jit, masked, from_logits):
    rng = np.random.default_rng(9)
    n, c = 77, 12
    logits = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    keep = rng.random(n) > 0.25 if masked else np.ones(n, bool)
    metric = mx.InceptionScore(num_classes=c, splits=4, capacity=96)
    probs = _softmax64(logits).astype(np.float32)
    kw = {"logits": logits} if from_logits else {"probs": probs}
    value = merged(metric, splits=_splits(n), jit=jit, **kw, **({"mask": keep} if masked else {}))
    mean, std = inception_score64(_softmax64(logits)[keep], 4)
    np.testing.assert_allclose(float(value["mean"]), mean, rtol=1e-5)
    np.testing.assert_allclose(float(value["std"]), std, rtol=1e-3, atol=1e-6)


def test_inception_score_one_split_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    import sys
    import types

    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    tm_image = pytest.importorskip("torchmetrics.image.inception")

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    rng = np.random.default_rng(10)
    logits = (rng.normal(size=(64, 10)) * 2).astype(np.float32)
    tm = tm_image.InceptionScore(feature=Identity(), splits=1)
    tm.update(torch.from_numpy(logits))
    expected = float(tm.compute()[0])  # one split: torchmetrics' shuffle does not matter
    value = mx.InceptionScore(num_classes=10, splits=1, capacity=64)(logits=logits)
    np.testing.assert_allclose(float(value["mean"]), expected, rtol=1e-5)


def test_inception_score_edge_cases():
    # one-hot predictions spread evenly over C classes: IS = C (closed form)
    probs = np.eye(5, dtype=np.float32)[np.arange(20) % 5]
    value = mx.InceptionScore(num_classes=5, splits=2, capacity=32)(probs=probs)
    np.testing.assert_allclose(float(value["mean"]), 5.0, rtol=1e-6)
    assert float(value["std"]) == 0.0
    # identical predictions everywhere: IS = 1
    uniform = np.full((8, 5), 0.2, np.float32)
    np.testing.assert_allclose(
        float(mx.InceptionScore(num_classes=5, splits=2, capacity=8)(probs=uniform)["mean"]),
        1.0,
        rtol=1e-6,
    )
    # fewer rows than splits: NaN
    assert np.isnan(
        float(mx.InceptionScore(num_classes=5, splits=10, capacity=8)(probs=uniform)["mean"])
    )
    with pytest.raises(mx.CapacityOverflowError):  # one-shot calls size themselves
        mx.InceptionScore(num_classes=5, splits=2, capacity=4).get_state(probs=uniform).compute()


# ------------------------------------------------------------------------------ PR / DC


def prdc64(real, fake, k):
    """The prdc package's definitions, transcribed in float64 numpy (strict ``<``)."""
    real, fake = real.astype(np.float64), fake.astype(np.float64)

    def dist(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    def radii(x):
        return np.sort(dist(x, x), axis=1)[:, k]  # k-th neighbour; column 0 is the row itself

    r_real, r_fake, d = radii(real), radii(fake), dist(real, fake)
    return {
        "precision": (d < r_real[:, None]).any(0).mean(),
        "recall": (d < r_fake[None, :]).any(1).mean(),
        "density": (d < r_real[:, None]).sum(0).mean() / k,
        "coverage": (d.min(1) < r_real).mean(),
    }


@pytest.mark.parametrize("jit,masked", [(False, False), (True, True)], ids=["eager", "jit-masked"])
def test_precision_recall_density_coverage_match_prdc(jit, masked):
    rng = np.random.default_rng(11)
    d, n = 10, 120
    real, gen = _features(rng, n, d), _features(rng, n, d, shift=0.25, scale=1.3)
    rk, gk = _masks(rng, n) if masked else (np.ones(n, bool), np.ones(n, bool))
    masks = {"real_mask": rk, "generated_mask": gk} if masked else {}
    kw = {"splits": _splits(n), "jit": jit, "real": real, "generated": gen, **masks}
    pr = merged(mx.PrecisionRecall(num_features=d, capacity=128, k=3), **kw)
    dc = merged(mx.DensityCoverage(num_features=d, capacity=128, k=5), **kw)
    exp3, exp5 = prdc64(real[rk], gen[gk], 3), prdc64(real[rk], gen[gk], 5)
    for name in ("precision", "recall"):
        np.testing.assert_allclose(float(pr[name]), exp3[name], rtol=1e-6)
    for name in ("density", "coverage"):
        np.testing.assert_allclose(float(dc[name]), exp5[name], rtol=1e-6)


def test_manifold_edge_cases():
    rng = np.random.default_rng(12)
    x = _features(rng, 20, 4)
    # identical sets: every generated row sits in a real ball and the reverse
    assert (
        float(mx.PrecisionRecall(num_features=4, capacity=32)(real=x, generated=x)["precision"])
        == 1.0
    )
    assert (
        float(mx.DensityCoverage(num_features=4, capacity=32)(real=x, generated=x)["coverage"])
        == 1.0
    )
    # far away generated rows: nothing inside
    far = mx.PrecisionRecall(num_features=4, capacity=32)(real=x, generated=x + 100)
    assert float(far["precision"]) == 0.0 and float(far["recall"]) == 0.0
    few = mx.DensityCoverage(num_features=4, capacity=32, k=5)
    with pytest.raises(ValueError, match="at least 6"):
        few(real=x[:5], generated=x)
    assert np.isnan(
        float(jax.jit(lambda s: s.compute())(few.get_state(real=x[:5], generated=x))["density"])
    )
    with pytest.raises(mx.CapacityOverflowError):  # one-shot calls size themselves
        mx.PrecisionRecall(num_features=4, capacity=8).get_state(real=x, generated=x).compute()
