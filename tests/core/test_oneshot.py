"""One-shot calls ``metric(**inputs)``: one cached compiled program per configuration and
input signature (metrix.core.metric), eager compute compiled (metrix.core.state), buffers
sized from the input. Values against sklearn and the jit path; traces counted."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float
from sklearn import metrics as skm

import metrix as mx
from metrix.core import metric as metric_lib
from metrix.core.states import AverageState

RNG = np.random.default_rng(0)
TRACES = []  # one entry per traced (not eager) get_state of CountingMean


class CountingMean(mx.Metric):
    """A mean that records each time its get_state is traced (its Python runs under jit)."""

    values: mx.Key = mx.REQUIRED
    State = AverageState

    def get_state(self, values: Float[Array, "..."]):
        if isinstance(values, jax.core.Tracer):
            TRACES.append(values.shape)
        return self.State.from_values(values)


def _jit_value(metric, *args, **kwargs):
    return jax.jit(lambda a, k: metric.get_state(*a, **k).compute())(args, kwargs)


def _scores(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.4).astype(np.int32)
    scores = np.round(rng.beta(2, 5, n) + 0.3 * labels, 3).astype(np.float32)  # ties
    return scores, labels


@pytest.mark.slow  # ~15 s on 2 loaded cores: six metrics, each compiled three ways
def test_values_equal_sklearn_and_the_jit_path():
    logits = RNG.normal(size=(64, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, 64).astype(np.int32)
    preds = RNG.normal(size=64).astype(np.float32)
    targets = (preds + RNG.normal(size=64)).astype(np.float32)
    scores, y01 = _scores(64)
    cases = [
        (mx.Accuracy(), {"logits": logits, "labels": labels},
         skm.accuracy_score(labels, logits.argmax(-1))),
        (mx.F1Score(num_classes=5, average="macro"), {"preds": logits, "labels": labels},
         skm.f1_score(labels, logits.argmax(-1), average="macro")),
        (mx.MSE(), {"preds": preds, "targets": targets}, skm.mean_squared_error(targets, preds)),
        (mx.R2Score(), {"preds": preds, "targets": targets}, skm.r2_score(targets, preds)),
        (mx.RocAuc(), {"preds": scores, "labels": y01}, skm.roc_auc_score(y01, scores)),
        (mx.AveragePrecision(), {"preds": scores, "labels": y01},
         skm.average_precision_score(y01, scores)),
    ]
    for metric, inputs, want in cases:
        for _ in range(3):  # first call (eager), then the compiled program twice
            got = metric(**inputs)
            np.testing.assert_allclose(float(got), want, rtol=2e-5, err_msg=type(metric).__name__)
        np.testing.assert_allclose(float(_jit_value(metric, **inputs)), float(got), rtol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_float_dtypes_and_masks(dtype):
    preds = jnp.asarray(RNG.normal(size=50), dtype)
    targets = jnp.asarray(RNG.normal(size=50), dtype)
    mask = RNG.random(50) < 0.7
    p, t = np.asarray(preds, np.float64), np.asarray(targets, np.float64)
    for _ in range(2):
        got = mx.MSE()(preds, targets, mask=mask)
        np.testing.assert_allclose(float(got), np.mean((p - t)[mask] ** 2), rtol=1e-5)


def test_second_call_does_not_retrace_and_a_new_shape_compiles_once():
    metric_lib.clear_one_shot_cache()
    TRACES.clear()
    m = CountingMean()
    x = RNG.random(7).astype(np.float32)
    assert np.isclose(float(m(x)), x.mean())  # eager answer + one trace of the program
    assert TRACES == [(7,)]
    for _ in range(3):
        y = RNG.random(7).astype(np.float32)
        assert np.isclose(float(m(y)), y.mean())
    assert TRACES == [(7,)]
    m(RNG.random(9).astype(np.float32))
    m(RNG.random(9).astype(np.float32))
    assert TRACES == [(7,), (9,)]
    CountingMean()(x)  # an equal configuration shares the program
    assert TRACES == [(7,), (9,)]


def test_cache_is_bounded_and_survives_clear_caches(monkeypatch):
    metric_lib.clear_one_shot_cache()
    monkeypatch.setattr(metric_lib, "ONE_SHOT_CACHE_SIZE", 3)
    m = CountingMean()
    for n in range(1, 7):
        m(np.ones(n, np.float32))
    assert len(metric_lib._one_shot_cache) == 3
    x = RNG.random(6).astype(np.float32)
    before = float(m(x))
    jax.clear_caches()
    TRACES.clear()
    assert float(m(x)) == before
    assert TRACES == [(6,)]  # retraced once, then cached again
    m(x)
    assert TRACES == [(6,)]


def test_refusals_still_raise_after_the_program_is_cached():
    scores, labels = _scores(32)
    auc = mx.RocAuc()
    auc(scores, labels)
    auc(scores, labels)  # compiled now
    bad = scores.copy()
    bad[3] = np.nan
    for _ in range(2):
        with pytest.raises(ValueError, match="RocAuc"):
            auc(bad, labels)
    wrong = labels.copy()
    wrong[0] = 7
    with pytest.raises(ValueError, match="RocAuc"):
        auc(scores, wrong)
    with pytest.raises(mx.InputTypeError, match="MSE"):  # type checks: every new signature
        mx.MSE()(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_wide_host_inputs_are_still_checked_once_cached():
    """int64 / float64 numpy inputs keep the representability check on the cached path (other
    dtypes skip it): in-range values use the program, out-of-range ones raise every time."""
    avg = mx.Average()
    ints = np.arange(6, dtype=np.int64)
    assert float(avg(values=ints)) == 2.5
    assert float(avg(values=ints)) == 2.5  # cached now
    big = ints.copy()
    big[2] = 2**33
    for _ in range(2):
        with pytest.raises(ValueError, match="int64 values outside the int32 range"):
            avg(values=big)
    floats = np.full(4, 2.0, np.float64)
    assert float(avg(values=floats)) == 2.0
    assert float(avg(values=floats)) == 2.0
    floats[1] = 1e300
    with pytest.raises(ValueError, match="beyond float32's range"):
        avg(values=floats)


def test_warnings_still_warn_every_call():
    scores = np.linspace(0, 1, 7, dtype=np.float32)
    for _ in range(3):
        with pytest.warns(mx.UndefinedMetricWarning):
            assert np.isnan(mx.RocAuc()(scores, np.ones(7, np.int32)))
        with pytest.warns(mx.UndefinedMetricWarning):
            assert float(mx.AveragePrecision()(scores, np.zeros(7, np.int32))) == 0.0


def test_a_program_compiled_without_warnings_still_warns_later():
    # AP without positives is a defined 0 (sklearn, with an UndefinedMetricWarning): no NaN
    # flags it, so the cached program must pass the warning out itself.
    scores = np.array([0.1, 0.7, 0.3, 0.9], np.float32)
    metric = mx.AveragePrecision(task="binary")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(metric(preds=scores, labels=np.array([0, 1, 0, 1]))) == 1.0  # compiles
        assert float(metric(preds=scores, labels=np.array([0, 1, 0, 1]))) == 1.0
    programs = [entry[1] for entry in metric_lib._one_shot_cache.values()]
    assert any(p is not None for p in programs), "the key was not compiled: nothing tested"
    no_positives = np.array([0, 0, 0, 0])
    with pytest.warns(mx.UndefinedMetricWarning, match="no positive samples"):
        value = metric(preds=scores, labels=no_positives)
    with pytest.warns(UserWarning, match="No positive class"):  # sklearn warns too
        expected = skm.average_precision_score(no_positives, scores)
    assert float(value) == expected == 0.0
    state = metric.get_state(preds=scores, labels=no_positives)
    for _ in range(3):  # eager compute: the first calls run eagerly, then one program
        with pytest.warns(mx.UndefinedMetricWarning, match="no positive samples"):
            assert float(state.compute()) == 0.0


def test_host_side_metrics_still_work_one_shot():
    scores, labels = _scores(40)
    for _ in range(2):
        curve = mx.RocCurve()(scores, labels)  # exact curves: host numpy, variable length
        fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
        assert isinstance(curve["fpr"], np.ndarray)
        np.testing.assert_allclose(curve["fpr"], fpr)
        np.testing.assert_allclose(curve["tpr"], tpr)
    from metrix.text.error_rates import WER

    for _ in range(2):  # strings: the eager path
        assert float(WER()(preds=["a b c"], targets=["a x c"])) == pytest.approx(1 / 3)


def test_buffers_are_sized_from_the_input():
    scores, labels = _scores(100_000, seed=3)
    auc, ap = mx.RocAuc(), mx.AveragePrecision()  # capacity 65,536 < 100,000 rows
    for _ in range(2):
        np.testing.assert_allclose(float(auc(scores, labels)),
                                   skm.roc_auc_score(labels, scores), rtol=1e-5)
        np.testing.assert_allclose(float(ap(scores, labels)),
                                   skm.average_precision_score(labels, scores), rtol=1e-5)
    # The configured capacity still bounds states that are built and merged.
    small = mx.RocAuc(capacity=8)
    np.testing.assert_allclose(float(small(scores[:10], labels[:10])),
                               skm.roc_auc_score(labels[:10], scores[:10]), rtol=1e-6)
    with pytest.raises(mx.CapacityOverflowError):
        small.get_state(scores[:10], labels[:10]).compute()


def test_eager_compute_is_compiled_and_equal():
    logits = RNG.normal(size=(32, 4)).astype(np.float32)
    labels = RNG.integers(0, 4, 32).astype(np.int32)
    state = mx.F1Score(num_classes=4, average="macro").get_state(logits, labels)
    want = skm.f1_score(labels, logits.argmax(-1), average="macro")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = [float(state.compute()) for _ in range(3)]  # eager, then compiled
    np.testing.assert_allclose(values, want, rtol=1e-6)
    assert float(jax.jit(lambda s: s.compute())(state)) == pytest.approx(values[-1], rel=1e-6)


def test_stateful_layers_accumulate_as_one_shot():
    import metrix.nnx as mnnx

    batches = [(RNG.normal(size=(n, 3)).astype(np.float32),
                RNG.integers(0, 3, n).astype(np.int32)) for n in (5, 8, 8, 3)]
    logits = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    want = skm.accuracy_score(labels, logits.argmax(-1))
    s, n = mx.Stateful(mx.Accuracy()), mnnx.Accuracy()
    for lg, y in batches:
        s.update(logits=lg, labels=y)
        n.update(logits=jnp.asarray(lg), labels=jnp.asarray(y))
    assert float(s.compute()) == pytest.approx(want)
    assert float(n.compute()) == pytest.approx(want)
    assert float(mx.Accuracy()(logits, labels)) == pytest.approx(want)
