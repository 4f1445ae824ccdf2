"""metrix.stateful: the lifecycle is a thin layer over the functional core.

Expected values come from numpy transcriptions of the formulas or from the functional
metric applied to all the data at once (the layer must add nothing to it).
"""

from __future__ import annotations

import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import metrix as mx
from metrix import stateful
from metrix.stateful import BERTScoreMetric, FIDMetric, InceptionScoreMetric, LPIPSMetric, Stateful

RNG = np.random.default_rng(0)


def _batches(x, sizes):
    out, start = [], 0
    for n in sizes:
        out.append(x[start : start + n])
        start += n
    return out


# ---------------------------------------------------------------------------------------
# Stateful
# ---------------------------------------------------------------------------------------


def test_stateful_equals_one_functional_call_over_uneven_batches():
    logits = RNG.normal(size=(23, 4)).astype(np.float32)
    labels = RNG.integers(0, 4, size=(23,)).astype(np.int32)
    mask = RNG.random(23) < 0.7
    acc = Stateful(mx.Accuracy())
    for lo, hi in ((0, 5), (5, 6), (6, 23)):
        acc.update(logits=logits[lo:hi], labels=labels[lo:hi], mask=mask[lo:hi])
    expected = (np.argmax(logits, -1) == labels)[mask].mean()
    assert float(acc.compute()) == pytest.approx(expected, rel=1e-6)
    assert isinstance(acc.state, mx.Accuracy.State)
    acc.reset()
    assert np.isnan(acc.compute())


def test_stateful_positional_inputs_and_jit_cache():
    stateful._jitted_steps.cache_clear()
    a, b = Stateful(mx.Average()), Stateful(mx.Average())
    for s in (a, b):
        s.update(jnp.arange(4.0))
        s.update(jnp.arange(4.0) + 4)
    assert float(a.compute()) == 3.5 and float(b.compute()) == 3.5
    # equal metrics share one compiled (first, step) pair
    assert stateful._jitted_steps.cache_info().misses == 1
    _, step = stateful._jitted_steps(mx.Average())
    assert step._cache_size() == 1  # same shapes: no retrace


def test_stateful_eager_mode_and_context():
    s = Stateful(mx.Average(values="preds.loss"), jit=False)
    s.update_from_context({"preds": {"loss": np.array([1.0, 2.0])}})
    s.update_from_context({"preds": {"loss": np.array([6.0])}})
    assert float(s.compute()) == pytest.approx(3.0)
    assert s.name == "Average" and s.higher_is_better is None


def test_stateful_state_merge_and_restore():
    x = RNG.normal(size=(30,)).astype(np.float32)
    a, b = Stateful(mx.Std()), Stateful(mx.Std())
    a.update(x[:11])
    b.update(x[11:])
    a.merge(b)
    assert float(a.compute()) == pytest.approx(np.std(x.astype(np.float64)), rel=1e-5)
    restored = Stateful(mx.Std())
    restored.state = a.state  # e.g. from a checkpoint
    assert float(restored.compute()) == float(a.compute())
    again = Stateful(mx.Std())
    again.set_state(a.state)
    assert float(again.compute()) == float(a.compute())
    with pytest.raises(TypeError, match="state must be"):
        restored.state = mx.Average().empty()
    # a state all-reduced elsewhere merges in as well
    c = Stateful(mx.Std())
    c.merge(mx.Std().get_state(x))
    assert float(c.compute()) == pytest.approx(np.std(x.astype(np.float64)), rel=1e-5)


def test_stateful_compute_is_cached_per_state():
    s = Stateful(mx.Average())
    s.update(jnp.ones(3))
    first = s.compute()
    assert s.compute() is first
    s.update(jnp.zeros(1))
    assert float(s.compute()) == pytest.approx(0.75)


def test_plot_writes_png_or_returns_none(tmp_path, monkeypatch):
    s = Stateful(mx.Average())
    s.update(jnp.arange(3.0))
    pytest.importorskip("matplotlib")
    path = s.plot(output_dir=tmp_path / "figs")
    assert isinstance(path, pathlib.Path) and path.is_file() and path.name == "Average.png"
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # not installed
    assert s.plot(output_dir=tmp_path / "none") is None


# ---------------------------------------------------------------------------------------
# Tier 1
# ---------------------------------------------------------------------------------------


def test_fid_metric_merges_and_checks_feature_dim():
    real = RNG.normal(size=(40, 6)).astype(np.float32)
    gen = (RNG.normal(size=(33, 6)) + 0.5).astype(np.float32)
    a, b = FIDMetric(feature_dim=6), FIDMetric(feature_dim=6)
    a.update(real=real[:10], generated=gen[:20])
    b.update(real=real[10:])
    b.update(generated=gen[20:])
    a.merge(b)  # e.g. two hosts
    expected = mx.FID(num_features=6)(real=real, generated=gen)
    assert float(a.compute()["fid"]) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(
        ValueError, match="FIDMetric: real features have 5 dimensions but feature_dim=6"
    ):
        a.update(real=real[:, :5])
    assert isinstance(a.metric, mx.FID)
    a.reset()
    assert float(a.state.real.count[0]) == 0


def test_inception_score_metric_infers_classes_and_matches_functional():
    logits = RNG.normal(size=(25, 7)).astype(np.float32)
    m = InceptionScoreMetric(splits=3, capacity=64)
    assert float(m.compute()["inception_score"]) == 0.0  # the seed library's empty value
    for part in _batches(logits, (4, 9, 12)):
        m.update(logits=part)
    assert m.metric.num_classes == 7
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    scores = []
    for s in range(3):
        part = probs[(s * 25) // 3 : ((s + 1) * 25) // 3].astype(np.float64)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(part.mean(0))), axis=1))))
    result = m.compute()
    assert float(result["inception_score"]) == pytest.approx(np.mean(scores), rel=1e-5)
    assert float(result["inception_score_std"]) == pytest.approx(np.std(scores), rel=1e-4)
    with pytest.raises(TypeError, match="exactly one"):
        m.update()


def test_bertscore_metric_batched_masks_and_merge():
    cand = RNG.normal(size=(5, 6, 8)).astype(np.float32)
    ref = RNG.normal(size=(5, 4, 8)).astype(np.float32)
    cand_mask = np.ones((5, 6), bool)
    cand_mask[:, 4:] = False  # padding
    pair_mask = np.array([1, 1, 0, 1, 1], bool)
    a, b = BERTScoreMetric(), BERTScoreMetric()
    a.update(
        candidate_embeddings=cand[:2],
        reference_embeddings=ref[:2],
        candidate_mask=cand_mask[:2],
        mask=pair_mask[:2],
    )
    b.update(
        candidate_embeddings=cand[2:],
        reference_embeddings=ref[2:],
        candidate_mask=cand_mask[2:],
        mask=pair_mask[2:],
    )
    a.merge(b)
    rows = []
    for i in np.flatnonzero(pair_mask):
        c = cand[i, :4] / np.linalg.norm(cand[i, :4], axis=-1, keepdims=True)
        r = ref[i] / np.linalg.norm(ref[i], axis=-1, keepdims=True)
        sim = c.astype(np.float64) @ r.T
        p, rec = sim.max(1).mean(), sim.max(0).mean()
        rows.append((p, rec, 2 * p * rec / (p + rec)))
    p, r, f = np.mean(rows, axis=0)
    result = a.compute()
    assert float(result["bertscore_precision"]) == pytest.approx(p, rel=1e-5)
    assert float(result["bertscore_recall"]) == pytest.approx(r, rel=1e-5)
    assert float(result["bertscore_f1"]) == pytest.approx(f, rel=1e-5)


def test_bertscore_metric_wraps_the_functional_metric():
    from metrix.text.bertscore import BERTScore

    metric = BERTScoreMetric()
    cand = RNG.normal(size=(3, 4)).astype(np.float32)  # one pair, (L, D)
    ref = RNG.normal(size=(5, 4)).astype(np.float32)
    metric.update(candidate_embeddings=cand, reference_embeddings=ref)
    assert isinstance(metric.metric, BERTScore)
    expected = BERTScore()(candidate_embeddings=cand[None], reference_embeddings=ref[None])
    for key in ("precision", "recall", "f1"):
        assert float(metric.compute()[f"bertscore_{key}"]) == pytest.approx(
            float(expected[key]), rel=1e-6
        )


# ---------------------------------------------------------------------------------------
# Tier 2
# ---------------------------------------------------------------------------------------


def _features(n, channels=(64, 128, 256, 512, 512)):
    return [RNG.normal(size=(n, c)).astype(np.float32) for c in channels]


def test_lpips_metric_mask_merge_and_nnx_jit():
    a, b = LPIPSMetric(rngs=nnx.Rngs(1)), LPIPSMetric(rngs=nnx.Rngs(1))
    fa, fb = _features(6), _features(6)
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    distances = np.asarray(a(fa, fb))
    a.update(features_a=[f[:2] for f in fa], features_b=[f[:2] for f in fb], mask=mask[:2])

    @nnx.jit
    def step(metric, xa, xb, m):
        metric.update(features_a=xa, features_b=xb, mask=m)

    step(b, [f[2:] for f in fa], [f[2:] for f in fb], mask[2:])
    a.merge(b)
    assert float(a.compute()["lpips"]) == pytest.approx(distances[mask].mean(), rel=1e-5)
    other = LPIPSMetric(rngs=nnx.Rngs(9))
    other.set_state(a.state)
    assert float(other.compute()["lpips"]) == float(a.compute()["lpips"])


def test_lpips_metric_errors_and_nets():
    lpips = LPIPSMetric(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected feature_channels"):
        lpips.update(
            features_a=_features(2, (64, 128, 256, 512, 256)),
            features_b=_features(2, (64, 128, 256, 512, 256)),
        )
    with pytest.raises(ValueError, match="4 layers, expected 5"):
        lpips.update(features_a=_features(2)[:4], features_b=_features(2)[:4])
    alex = LPIPSMetric("alex", rngs=nnx.Rngs(0))
    assert alex.feature_channels == (64, 192, 384, 256, 256)
    calibration = {
        f"lin{k}": np.full((c,), 0.5, np.float32) for k, c in enumerate(alex.feature_channels)
    }
    fixed = LPIPSMetric("alex", calibration, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(fixed.calibration()["lin2"]), calibration["lin2"])
    with pytest.raises(ValueError, match="unknown net"):
        LPIPSMetric("resnet", rngs=nnx.Rngs(0))
