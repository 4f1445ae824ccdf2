"""mx.Bootstrap: Poisson-bootstrap intervals against the analytic standard error and against a
numpy bootstrap with the same weights; split invariance with and without ids; jit; errors."""

import jax
import numpy as np
import pytest

import metrix as mx

RNG = np.random.default_rng(0)
X = RNG.normal(1.0, 2.0, size=400).astype(np.float32)


def _numpy_summary(samples, confidence=0.95):
    tail = (1 - confidence) / 2
    return {
        "mean": samples.mean(),
        "std": samples.std(ddof=1),
        "lower": np.quantile(samples, tail),
        "upper": np.quantile(samples, 1 - tail),
    }


def test_standard_error_of_the_mean_matches_the_closed_form():
    out = mx.Bootstrap(mx.Average(values="x"), num_resamples=2000)(values=X)
    analytic = X.std(ddof=1) / np.sqrt(len(X))  # s / sqrt(n)
    assert float(out["value"]) == pytest.approx(X.mean(), rel=1e-6)
    # Monte-Carlo error of a bootstrap SE with 2000 resamples is ~1.6%; 6% is 4 sigma.
    assert float(out["std"]) == pytest.approx(analytic, rel=0.06)
    # Normal-theory 95% interval: mean +- 1.96 SE, to within the Monte-Carlo error.
    assert float(out["lower"]) == pytest.approx(X.mean() - 1.96 * analytic, abs=0.25 * analytic)
    assert float(out["upper"]) == pytest.approx(X.mean() + 1.96 * analytic, abs=0.25 * analytic)


def test_average_equals_a_numpy_bootstrap_with_the_same_weights():
    boot = mx.Bootstrap(mx.Average(values="x"), num_resamples=300, confidence=0.9)
    w = np.asarray(boot.weights(values=X), np.float64)
    assert w.shape == (300, len(X)) and w.min() >= 0
    samples = (w * X).sum(axis=1) / w.sum(axis=1)  # the weighted mean of each resample
    out = boot(values=X)
    for name, expected in _numpy_summary(samples, 0.9).items():
        assert float(out[name]) == pytest.approx(expected, rel=1e-5, abs=1e-6), name


def test_accuracy_equals_a_numpy_bootstrap_with_the_same_weights_under_jit():
    logits = RNG.normal(size=(250, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, size=250).astype(np.int32)
    mask = RNG.random(250) < 0.8
    boot = mx.Bootstrap(mx.Accuracy(logits="l", labels="y", mask="m"), num_resamples=200, seed=3)
    correct = (logits.argmax(-1) == labels).astype(np.float64)
    w = np.asarray(boot.weights(logits=logits, labels=labels), np.float64) * mask
    samples = (w * correct).sum(1) / w.sum(1)
    out = jax.jit(lambda l, y, m: boot.get_state(logits=l, labels=y, mask=m).compute())(
        logits, labels, mask
    )
    assert float(out["value"]) == pytest.approx(correct[mask].mean(), rel=1e-6)
    for name, expected in _numpy_summary(samples).items():
        assert float(out[name]) == pytest.approx(expected, rel=1e-5, abs=1e-6), name


def test_weights_are_poisson_one():
    w = np.asarray(mx.Bootstrap(mx.Average(values="x"), num_resamples=500).weights(values=X))
    assert abs(w.mean() - 1) < 0.01 and abs(w.var() - 1) < 0.02  # Poisson(1): mean = var = 1
    assert np.mean(w == 0) == pytest.approx(np.exp(-1), abs=0.01)


@pytest.mark.parametrize("with_ids", [False, True])
def test_any_split_of_the_data_gives_the_same_result(with_ids):
    boot = mx.Bootstrap(mx.Average(values="x"), num_resamples=64, ids="i" if with_ids else None)
    ids = np.arange(len(X)) * 3 + 1
    extra = (lambda a, b: {"ids": ids[a:b]}) if with_ids else (lambda a, b: {})
    whole = boot.get_state(values=X, **extra(0, len(X))).compute()
    parts = [boot.get_state(values=X[a:b], **extra(a, b)) for a, b in [(0, 37), (37, 250), (250, 400)]]
    merged = mx.merge(mx.merge(parts[0], parts[1]), parts[2]).compute()
    for name in whole:
        np.testing.assert_allclose(merged[name], whole[name], rtol=1e-5, err_msg=name)


def test_ids_and_seed_decide_the_weights():
    boot = mx.Bootstrap(mx.Average(values="x"), num_resamples=50, ids="i")
    a = np.asarray(boot.weights(ids=np.arange(10), values=X[:10]))
    b = np.asarray(boot.weights(ids=np.arange(10), values=X[10:20]))  # other values, same ids
    np.testing.assert_array_equal(a, b)
    other_seed = mx.Bootstrap(mx.Average(values="x"), num_resamples=50, ids="i", seed=1)
    assert not np.array_equal(a, np.asarray(other_seed.weights(ids=np.arange(10), values=X[:10])))


def test_reads_the_wrapped_metrics_keys_from_a_context():
    boot = mx.Bootstrap(mx.Average(values="batch.x"), num_resamples=20, ids="batch.id")
    context = {"batch": {"x": X[:50], "id": np.arange(50)}}
    direct = boot.get_state(values=X[:50], ids=np.arange(50)).compute()
    via_context = mx.compute(mx.get_states({"b": boot}, context))["b"]
    for name in direct:
        np.testing.assert_allclose(via_context[name], direct[name], rtol=1e-6)


def test_multi_output_metric_keeps_its_structure():
    preds = RNG.normal(size=120).astype(np.float32)
    targets = (preds + RNG.normal(size=120)).astype(np.float32)
    out = mx.Bootstrap(mx.PearsonCorrCoef(preds="p", targets="t"), num_resamples=100)(
        preds=preds, targets=targets
    )
    r = np.corrcoef(preds, targets)[0, 1]
    assert float(out["value"]) == pytest.approx(r, rel=1e-4)
    assert float(out["lower"]) < r < float(out["upper"])


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="Bootstrap: confidence must be in"):
        mx.Bootstrap(mx.Average(values="x"), confidence=95)
    with pytest.raises(ValueError, match="num_resamples must be >= 2"):
        mx.Bootstrap(mx.Average(values="x"), num_resamples=1)
    with pytest.raises(TypeError, match="Bootstrap: metric must be a metrix metric"):
        mx.Bootstrap("Average")


def test_overflowing_wrapped_buffer_is_reported():
    boot = mx.Bootstrap(mx.RocAuc(preds="p", labels="y", capacity=50), num_resamples=4)
    scores = RNG.random(80).astype(np.float32)
    with pytest.raises(mx.CapacityOverflowError, match="capacity"):
        boot(preds=scores, labels=(scores > 0.5).astype(np.int32))


def test_checkpoint_round_trip_keeps_the_resamples(tmp_path):
    boot = mx.Bootstrap(mx.Average(values="x"), num_resamples=32)
    state = boot.get_state(values=X[:100])
    mx.save_states(tmp_path / "ckpt", {"b": state})
    restored = mx.restore_states(tmp_path / "ckpt", like={"b": boot.empty()})["b"]
    merged = restored.merge(boot.get_state(values=X[100:]))
    whole = boot.get_state(values=X).compute()
    for name in whole:
        np.testing.assert_allclose(merged.compute()[name], whole[name], rtol=1e-5)
