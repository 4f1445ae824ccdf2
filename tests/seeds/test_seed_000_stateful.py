"""Seed 000 (stateful metrics, tiers 1 and 2): every example, imports changed only.

``calibrax.metrics.plugins.image`` / ``.text`` / ``calibrax.metrics.stateful`` ->
``metrix.stateful``. Each example runs as written (printing included); the printed values
are then checked against independent references: numpy float64 transcriptions of the
formulas (FID through the singular values of the centred cross-product, and scipy's
``sqrtm`` on a full-rank case; Inception Score per split; BERTScore greedy matching; LPIPS).
"""

from __future__ import annotations

import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _printed(capsys) -> dict[str, float]:
    """``{label: number}`` from lines like ``FID: 12.34``."""
    out = {}
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"^([^:]+):\s*(-?[0-9.]+|nan)$", line.strip())
        if match:
            out[match.group(1)] = float(match.group(2))
    return out


# ---------------------------------------------------------------------------------------
# Independent references (numpy, float64)
# ---------------------------------------------------------------------------------------


def fid_reference_low_rank(real: np.ndarray, gen: np.ndarray) -> float:
    """FID with tr sqrt(S_r S_g) from the singular values of Xc Yc^T (exact for any rank).

    S_r = Xc^T Xc / (n-1), S_g = Yc^T Yc / (m-1); the non-zero eigenvalues of S_r S_g are
    those of (Xc Yc^T)(Xc Yc^T)^T / ((n-1)(m-1)), so tr sqrt(S_r S_g) = ||Xc Yc^T||_* / sqrt((n-1)(m-1)).
    """
    x, y = real.astype(np.float64), gen.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, m = len(x), len(y)
    tr_r = np.sum(xc * xc) / (n - 1)
    tr_g = np.sum(yc * yc) / (m - 1)
    nuclear = np.linalg.svd(xc @ yc.T, compute_uv=False).sum()
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + tr_r + tr_g - 2 * nuclear / np.sqrt((n - 1) * (m - 1)))


def fid_reference_scipy(real: np.ndarray, gen: np.ndarray) -> float:
    """The textbook formula with scipy.linalg.sqrtm (pytorch-fid's way), float64."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = real.mean(0), gen.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_score_reference(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over ``splits`` consecutive chunks; mean and std (ddof 0)."""
    probs = probs.astype(np.float64)
    n = len(probs)
    scores = []
    for s in range(splits):
        part = probs[(s * n) // splits : ((s + 1) * n) // splits]
        marginal = part.mean(0, keepdims=True)
        kl = np.sum(part * (np.log(part) - np.log(marginal)), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def bertscore_reference(cand: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """Greedy cosine matching of one pair of (L, D) token embeddings, uniform weights."""
    c = cand / np.linalg.norm(cand, axis=-1, keepdims=True)
    r = ref / np.linalg.norm(ref, axis=-1, keepdims=True)
    sim = c.astype(np.float64) @ r.T.astype(np.float64)
    p, rec = sim.max(axis=1).mean(), sim.max(axis=0).mean()
    return p, rec, 2 * p * rec / (p + rec)


def lpips_reference(features_a, features_b, weights) -> np.ndarray:
    """sum_l sum_c w_lc (a/||a|| - b/||b||)^2 per example, for (N, C_l) feature vectors."""
    total = 0.0
    for a, b, w in zip(features_a, features_b, weights):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        ua = a / (np.sqrt((a * a).sum(-1, keepdims=True)) + 1e-10)
        ub = b / (np.sqrt((b * b).sum(-1, keepdims=True)) + 1e-10)
        total = total + ((ua - ub) ** 2 * np.asarray(w, np.float64)).sum(-1)
    return total


# ---------------------------------------------------------------------------------------
# FID
# ---------------------------------------------------------------------------------------


def test_fid_example(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes into ./figures
    # --- seed example, imports changed only ---
    import jax

    from metrix.stateful import FIDMetric

    fid = FIDMetric(feature_dim=2048)
    # Simulate accumulating pre-extracted features over batches
    dataloader = [(None, None) for _ in range(3)]  # 3 batches
    for real_batch, gen_batch in dataloader:
        real_features = jax.random.normal(jax.random.PRNGKey(0), (16, 2048))
        gen_features = jax.random.normal(jax.random.PRNGKey(1), (16, 2048))
        fid.update(real=real_features, generated=gen_features)
    result = fid.compute()
    print(f"FID: {result['fid']:.2f}")
    figure_path = fid.plot(output_dir="figures")
    print(f"Saved metric plot to: {figure_path}")
    fid.reset()  # Ready for next evaluation
    # --- end of example ---
    printed = _printed(capsys)
    real = np.tile(np.asarray(real_features), (3, 1))
    gen = np.tile(np.asarray(gen_features), (3, 1))
    expected = fid_reference_low_rank(real, gen)
    # 2048-d covariances of rank 15 in float32: the eigen-solver noise of the null space
    # bounds the agreement (~1e-4 relative here).
    np.testing.assert_allclose(float(result["fid"]), expected, rtol=5e-4)
    assert printed["FID"] == pytest.approx(expected, rel=5e-4)
    if figure_path is not None:  # matplotlib installed
        assert os.path.isfile(figure_path) and str(figure_path).endswith(".png")
    # reset: nothing accumulated (checked on the state: an empty FID costs two 2048-d eighs)
    assert float(fid.state.generated.count[0]) == 0 and float(fid.state.real.count[0]) == 0


def test_fid_plot_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from metrix.stateful import FIDMetric

    real_features = jax.random.normal(jax.random.PRNGKey(0), (16, 2048))
    gen_features = jax.random.normal(jax.random.PRNGKey(1), (16, 2048))
    # --- seed example ---
    metric = FIDMetric(feature_dim=2048)
    metric.update(real=real_features, generated=gen_features)
    figure_path = metric.plot(output_dir="figures")
    # --- end ---
    pytest.importorskip("matplotlib")
    assert figure_path is not None and os.path.isfile(figure_path)


def test_fid_against_scipy_sqrtm_full_rank():
    from metrix.stateful import FIDMetric

    rng = np.random.default_rng(0)
    real = rng.normal(size=(70, 12)).astype(np.float32)
    gen = (rng.normal(size=(55, 12)) * 1.3 + 0.4).astype(np.float32)
    fid = FIDMetric(feature_dim=12)
    for lo, hi in ((0, 7), (7, 40), (40, 70)):  # uneven batches, sides of different sizes
        fid.update(real=real[lo:hi], generated=gen[lo : min(hi, 55)] if lo < 55 else None)
    expected = fid_reference_scipy(real.astype(np.float64), gen.astype(np.float64))
    np.testing.assert_allclose(float(fid.compute()["fid"]), expected, rtol=2e-4)
    assert fid_reference_low_rank(real, gen) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------


def test_inception_score_example(capsys):
    import jax

    from metrix.stateful import InceptionScoreMetric

    # --- seed example ---
    is_metric = InceptionScoreMetric()
    dataloader = [None for _ in range(3)]  # 3 batches
    for batch in dataloader:
        class_probs = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (16, 10)), axis=-1)
        is_metric.update(probabilities=class_probs)
    result = is_metric.compute()
    print(f"IS: {result['inception_score']:.2f}")
    is_metric.reset()
    # --- end ---
    probs = np.tile(np.asarray(class_probs, np.float64), (3, 1))
    # The seed library scores all images as one split: exp(mean_x KL(p(y|x) || p(y))).
    marginal = probs.mean(axis=0)
    mean = float(np.exp(np.mean(np.sum(probs * (np.log(probs) - np.log(marginal)), axis=1))))
    np.testing.assert_allclose(float(result["inception_score"]), mean, rtol=1e-5)
    np.testing.assert_allclose(float(result["inception_score_std"]), 0.0, atol=1e-6)
    assert _printed(capsys)["IS"] == pytest.approx(mean, abs=0.005 + 1e-9)


# ---------------------------------------------------------------------------------------
# BERTScore
# ---------------------------------------------------------------------------------------


def test_bertscore_example(capsys):
    import jax

    from metrix.stateful import BERTScoreMetric

    # --- seed example ---
    bertscore = BERTScoreMetric()
    eval_pairs = [
        (
            jax.random.normal(jax.random.PRNGKey(i), (8, 64)),
            jax.random.normal(jax.random.PRNGKey(i + 10), (8, 64)),
        )
        for i in range(3)
    ]
    for candidate_emb, reference_emb in eval_pairs:
        bertscore.update(
            candidate_embeddings=candidate_emb,
            reference_embeddings=reference_emb,
        )
    result = bertscore.compute()
    print(f"BERTScore F1: {result['bertscore_f1']:.3f}")
    print(f"Precision: {result['bertscore_precision']:.3f}")
    print(f"Recall: {result['bertscore_recall']:.3f}")
    # --- end ---
    refs = np.array([bertscore_reference(np.asarray(c), np.asarray(r)) for c, r in eval_pairs])
    p, r, f = refs.mean(axis=0)
    np.testing.assert_allclose(float(result["bertscore_precision"]), p, rtol=1e-5)
    np.testing.assert_allclose(float(result["bertscore_recall"]), r, rtol=1e-5)
    np.testing.assert_allclose(float(result["bertscore_f1"]), f, rtol=1e-5)
    printed = _printed(capsys)
    assert printed["BERTScore F1"] == pytest.approx(f, abs=5e-4 + 1e-9)
    assert printed["Precision"] == pytest.approx(p, abs=5e-4 + 1e-9)
    assert printed["Recall"] == pytest.approx(r, abs=5e-4 + 1e-9)


# ---------------------------------------------------------------------------------------
# Custom tier-1 metric, as written in the seed
# ---------------------------------------------------------------------------------------


def test_custom_tier1_mean_feature_norm():
    # --- seed example ---
    from typing import Any

    import jax.numpy as jnp

    from metrix.stateful import FrozenBackboneMetric

    class MeanFeatureNorm(FrozenBackboneMetric):
        """Track the mean L2 norm of backbone features."""

        def __init__(self) -> None:
            super().__init__(name="mean_feature_norm")
            self._norms: list[float] = []

        def reset(self) -> None:
            self._norms = []

        def _extract_features(self, **kwargs: Any) -> Any:
            # Accept pre-extracted features
            return jnp.asarray(kwargs["features"])

        def _accumulate(self, features: Any) -> None:
            batch_mean_norm = float(jnp.mean(jnp.linalg.norm(features, axis=-1)))
            self._norms.append(batch_mean_norm)

        def _compute_from_accumulated(self) -> dict[str, float]:
            if not self._norms:
                return {"mean_feature_norm": 0.0}
            return {"mean_feature_norm": sum(self._norms) / len(self._norms)}

    # --- end ---
    metric = MeanFeatureNorm()
    assert metric.name == "mean_feature_norm"
    assert metric.compute() == {"mean_feature_norm": 0.0}
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(n, 6)).astype(np.float32) for n in (3, 5, 2)]
    for b in batches:
        metric.update(features=b)
    expected = np.mean([np.linalg.norm(b.astype(np.float64), axis=-1).mean() for b in batches])
    assert metric.compute()["mean_feature_norm"] == pytest.approx(expected, rel=1e-6)
    metric.reset()
    assert metric.compute() == {"mean_feature_norm": 0.0}
    from metrix.protocols import StatefulMetricProtocol

    assert isinstance(metric, StatefulMetricProtocol)


# ---------------------------------------------------------------------------------------
# LPIPS (tier 2)
# ---------------------------------------------------------------------------------------


def test_lpips_example(capsys):
    # --- seed example ---
    import flax.nnx as nnx  # noqa: PLR0402 - as written in the seed

    from metrix.stateful import LPIPSMetric

    lpips = LPIPSMetric(rngs=nnx.Rngs(0))
    # Per-layer VGG features: last dim must match feature_channels (64, 128, 256, 512, 512)
    layer1_a, layer1_b = jnp.ones((4, 64)), jnp.ones((4, 64)) * 0.9
    layer2_a, layer2_b = jnp.ones((4, 128)), jnp.ones((4, 128)) * 0.9
    layer3_a, layer3_b = jnp.ones((4, 256)), jnp.ones((4, 256)) * 0.9
    layer4_a, layer4_b = jnp.ones((4, 512)), jnp.ones((4, 512)) * 0.9
    layer5_a, layer5_b = jnp.ones((4, 512)), jnp.ones((4, 512)) * 0.9
    # Pass per-layer VGG feature differences
    lpips.update(
        features_a=[layer1_a, layer2_a, layer3_a, layer4_a, layer5_a],
        features_b=[layer1_b, layer2_b, layer3_b, layer4_b, layer5_b],
    )
    result = lpips.compute()
    print(f"LPIPS: {result['lpips']:.4f}")
    lpips.reset()
    # --- end ---
    assert lpips.feature_channels == (64, 128, 256, 512, 512)
    weights = [np.asarray(v) for v in lpips.calibration().values()]
    a = [layer1_a, layer2_a, layer3_a, layer4_a, layer5_a]
    b = [layer1_b, layer2_b, layer3_b, layer4_b, layer5_b]
    expected = lpips_reference(a, b, weights).mean()  # scaled copies: 0 up to rounding
    assert float(result["lpips"]) == pytest.approx(expected, abs=1e-6)
    assert _printed(capsys)["LPIPS"] == pytest.approx(expected, abs=5e-5)
    assert float(lpips.compute()["lpips"]) == 0.0  # after reset: the seed library's empty value


def test_lpips_random_features_and_training():
    import optax
    from flax import nnx

    from metrix.stateful import LPIPSMetric

    lpips = LPIPSMetric(rngs=nnx.Rngs(3))
    rng = np.random.default_rng(2)
    channels = (64, 128, 256, 512, 512)
    batches = []
    for n in (3, 5):
        fa = [rng.normal(size=(n, c)).astype(np.float32) for c in channels]
        fb = [rng.normal(size=(n, c)).astype(np.float32) for c in channels]
        batches.append((fa, fb))
        lpips.update(features_a=fa, features_b=fb)
    weights = [np.asarray(v) for v in lpips.calibration().values()]
    per_example = np.concatenate([lpips_reference(fa, fb, weights) for fa, fb in batches])
    np.testing.assert_allclose(float(lpips.compute()["lpips"]), per_example.mean(), rtol=1e-5)

    # The calibration weights are nnx.Params: jax.grad and an nnx optimizer train them.
    params = nnx.state(lpips, nnx.Param)
    assert sorted(params.keys()) == [f"lin{k}" for k in range(5)]
    fa, fb = batches[0]
    graphdef, param_state, rest = nnx.split(lpips, nnx.Param, ...)

    def loss(p):
        return nnx.merge(graphdef, p, rest)(fa, fb).mean()

    grads = jax.grad(loss)(param_state)
    # d loss / d w_lc = mean_n (ua - ub)^2: the per-channel squared differences
    ua = fa[0] / np.linalg.norm(fa[0], axis=-1, keepdims=True)
    ub = fb[0] / np.linalg.norm(fb[0], axis=-1, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(grads["lin0"][...]), ((ua - ub) ** 2).mean(0), rtol=1e-4, atol=1e-7
    )

    optimizer = nnx.Optimizer(lpips, optax.sgd(0.5), wrt=nnx.Param)
    before = float(loss(param_state))
    grads = nnx.grad(lambda m: m(fa, fb).mean())(lpips)
    optimizer.update(lpips, grads)
    lpips.project_nonnegative()
    assert float(lpips(fa, fb).mean()) < before
    assert all(float(jnp.min(w)) >= 0 for w in lpips.calibration().values())


def test_lpips_shipped_calibration():
    """``calibration='lpips'`` reads the lpips package's own VGG weights (torch reads the .pth)."""
    pytest.importorskip("torch")
    import torch
    from flax import nnx

    from metrix.perceptual import lpips_math as lpips_core
    from metrix.stateful import LPIPSMetric

    path = lpips_core.find_lpips_calibration_file("vgg")
    if path is None:
        pytest.skip("lpips package not installed")
    state = torch.load(path, map_location="cpu", weights_only=True)
    lpips = LPIPSMetric(calibration="lpips", rngs=nnx.Rngs(0))
    for k, c in enumerate((64, 128, 256, 512, 512)):
        expected = state[f"lin{k}.model.1.weight"].numpy().reshape(-1)
        np.testing.assert_array_equal(np.asarray(lpips.calibration()[f"lin{k}"]), expected)


# ---------------------------------------------------------------------------------------
# Custom tier-2 metric, as written in the seed
# ---------------------------------------------------------------------------------------


def test_custom_tier2_learned_weighted_mse():
    # --- seed example ---
    import flax.nnx as nnx  # noqa: I001, PLR0402 - the seed's imports, as written
    import jax.numpy as jnp
    from metrix.stateful import LearnedMetric

    class LearnedWeightedMSE(LearnedMetric):
        """MSE with learned per-feature importance weights."""

        def __init__(self, num_features: int, *, rngs: nnx.Rngs) -> None:
            super().__init__(name="learned_weighted_mse", rngs=rngs)
            self._feature_weights = nnx.Param(jnp.ones(num_features))
            self._scores: list[float] = []

        def reset(self) -> None:
            self._scores = []

        def update(self, predictions: jnp.ndarray, targets: jnp.ndarray) -> None:
            weights = nnx.softmax(self._feature_weights.value)
            self._scores.append(float(jnp.mean((predictions - targets) ** 2 * weights)))

        def compute(self) -> dict[str, float]:
            if not self._scores:
                return {"learned_weighted_mse": 0.0}
            return {"learned_weighted_mse": sum(self._scores) / len(self._scores)}

    # --- end ---
    metric = LearnedWeightedMSE(4, rngs=nnx.Rngs(0))
    assert metric.name == "learned_weighted_mse"
    assert metric.compute() == {"learned_weighted_mse": 0.0}
    rng = np.random.default_rng(3)
    pairs = [(rng.normal(size=(n, 4)), rng.normal(size=(n, 4))) for n in (2, 5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # flax 0.12 deprecates `.value`
        for p, t in pairs:
            metric.update(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32))
    expected = np.mean([np.mean((p - t) ** 2 * 0.25) for p, t in pairs])  # softmax(ones(4)) = 1/4
    assert metric.compute()["learned_weighted_mse"] == pytest.approx(expected, rel=1e-5)
    # "its parameters are visible to nnx.state() and can be optimized with NNX optimizers"
    params = nnx.state(metric, nnx.Param)
    assert list(params.keys()) == ["_feature_weights"]
    import optax

    optimizer = nnx.Optimizer(metric, optax.sgd(1.0), wrt=nnx.Param)
    p, t = (jnp.asarray(x, jnp.float32) for x in pairs[0])
    objective = lambda m: jnp.mean((p - t) ** 2 * nnx.softmax(m._feature_weights[...]))
    grads = nnx.grad(objective)(metric)
    optimizer.update(metric, grads)
    assert not np.allclose(np.asarray(metric._feature_weights[...]), 1.0)
    metric.reset()
    assert metric.compute() == {"learned_weighted_mse": 0.0}
