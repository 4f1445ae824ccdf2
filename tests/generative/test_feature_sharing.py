"""One InceptionV3 pass per batch for FID, KID, InceptionScore, PrecisionRecall and
DensityCoverage reading the same images (torchmetrics' FeatureShare is the anchor).

The network is replaced by a counting stand-in (a fixed function of the pixels), so the
test counts passes without running InceptionV3; values are checked against the same
metrics fed the stand-in's features directly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.backbones import inception


@pytest.fixture
def passes(monkeypatch):
    calls = []

    def fake_features(params, images, taps=("2048",), *, mode="legacy_pytorch", **_):
        calls.append((tuple(taps), mode))
        flat = jnp.asarray(images, jnp.float32).reshape(images.shape[0], -1) / 255.0
        out = {}
        for tap in taps:
            width = 2048 if tap == "2048" else 1008
            reps = -(-width // flat.shape[1])
            out[tap] = jnp.tile(jnp.sin(flat * (1 + len(tap))), (1, reps))[:, :width]
        return out

    monkeypatch.setattr(inception, "inception_features", fake_features)
    return calls


PARAMS = {"fc": {"kernel": jnp.zeros((2048, 1008)), "bias": jnp.zeros((1008,))}}


def _metrics():
    common = {"generated": "fake", "params": "params"}
    paired = {"real": "real", **common, "capacity": 16}
    return {
        "fid": mx.FID(**{"real": "real", **common}),
        "kid": mx.KID(subset_size=4, num_subsets=3, **paired),
        "pr": mx.PrecisionRecall(k=2, **paired),
        "dc": mx.DensityCoverage(k=2, **paired),
        "is": mx.InceptionScore(generated="fake", params="params", splits=2, capacity=16),
    }


def _context(seed=0, n=6):
    rng = np.random.default_rng(seed)
    real = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    fake = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    return {"real": jnp.asarray(real), "fake": jnp.asarray(fake), "params": PARAMS}


def _expected(context):
    """The same metrics on the stand-in's features and logits, given directly."""
    feats = {k: inception.inception_features(None, context[k], ("2048", "logits"))
             for k in ("real", "fake")}  # fmt: skip
    m = _metrics()
    rows = {"real": feats["real"]["2048"], "generated": feats["fake"]["2048"]}
    out = {name: dataclasses.replace(m[name], real=None, generated=None, params=None)(**rows)
           for name in ("fid", "kid", "pr", "dc")}  # fmt: skip
    out["is"] = dataclasses.replace(m["is"], generated=None, params=None)(logits=feats["fake"]["logits"])
    return out


@pytest.mark.parametrize("how", ["collection", "get_states"])
def test_one_pass_per_side_eager(passes, how):
    context = _context()
    if how == "collection":
        states = mx.Collection(metrics=_metrics()).get_state_from_context(context)
    else:
        states = mx.get_states(_metrics(), context)
    assert len(passes) == 2  # real and fake, once each, for five metrics
    assert all(taps == ("2048", "logits", "logits_unbiased") for taps, _ in passes)
    values = states.compute() if how == "collection" else mx.compute(states)
    passes.clear()
    expected = _expected(context)
    for name, value in values.items():
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), value,
            expected[name],
        )  # fmt: skip


def test_one_pass_per_side_under_jit(passes):
    metrics = _metrics()
    step = jax.jit(lambda ctx: mx.get_states(metrics, ctx))
    states = step(_context())
    assert len(passes) == 2  # traced once: one network per side in the compiled program
    assert np.isfinite(float(mx.compute(states)["fid"]))


def test_no_sharing_across_modes_or_images(passes):
    context = _context()
    metrics = {
        "legacy": mx.FID(real="real", generated="fake", params="params"),
        "clean": mx.FID(real="real", generated="fake", params="params", mode="clean"),
    }
    mx.get_states(metrics, context)
    assert sorted(mode for _, mode in passes) == ["clean", "clean", "legacy_pytorch",
                                                  "legacy_pytorch"]  # fmt: skip


def test_without_a_scope_each_metric_runs_its_own_pass(passes):
    context = _context()
    for metric in _metrics().values():
        metric.get_state_from_context(context)
    assert len(passes) == 9  # four paired metrics x 2 sides + Inception Score


def test_mode_option_is_validated():
    for cls in (mx.FID, mx.KID, mx.PrecisionRecall, mx.DensityCoverage, mx.InceptionScore):
        with pytest.raises(ValueError, match="mode must be one of"):
            cls(mode="bicubic")
