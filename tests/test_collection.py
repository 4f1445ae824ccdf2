"""mx.Collection: metrics that build the same state share one; values equal separate metrics.

References: scikit-learn on the concatenated (masked) data; the same metrics evaluated one by
one as a plain dict (mx.get_states).
"""

import jax
import numpy as np
import pytest

import metrix as mx

sk = pytest.importorskip("sklearn.metrics")

C = 4
RNG = np.random.default_rng(7)
SIZES = (5, 11, 8)


def _batches():
    out = []
    for n in SIZES:
        out.append(
            {
                "preds": {"logits": RNG.normal(size=(n, C)).astype(np.float32)},
                "batch": {
                    "label": RNG.integers(0, C, size=n).astype(np.int32),
                    "mask": RNG.random(n) > 0.25,
                },
            }
        )
    return out


BATCHES = _batches()
SCORES = dict(preds="preds.logits", labels="batch.label", mask="batch.mask", num_classes=C)
METRICS = {
    "accuracy": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
    "precision": mx.Precision(**SCORES, average="macro"),
    "recall": mx.Recall(**SCORES, average="weighted"),
    "f1": mx.F1Score(**SCORES, average="micro"),
    "mcc": mx.MatthewsCorrCoef(**SCORES),
    "kappa": mx.CohenKappa(**SCORES),
    "confusion": mx.ConfusionMatrix(**SCORES),
}


def _reference():
    kept = [b["batch"]["mask"] for b in BATCHES]
    y = np.concatenate([b["batch"]["label"][k] for b, k in zip(BATCHES, kept)])
    p = np.concatenate([b["preds"]["logits"].argmax(-1)[k] for b, k in zip(BATCHES, kept)])
    return {
        "accuracy": sk.accuracy_score(y, p),
        "precision": sk.precision_score(y, p, average="macro", zero_division=0),
        "recall": sk.recall_score(y, p, average="weighted", zero_division=0),
        "f1": sk.f1_score(y, p, average="micro"),
        "mcc": sk.matthews_corrcoef(y, p),
        "kappa": sk.cohen_kappa_score(y, p),
        "confusion": sk.confusion_matrix(y, p, labels=range(C)),
    }


def _assert_values(values, expected):
    assert set(values) == set(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(np.asarray(values[name]), want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_confusion_metrics_share_one_state():
    collection = mx.Collection(metrics=METRICS)
    assert collection.num_states == 2  # accuracy's average + one confusion state
    state = collection.get_state_from_context(BATCHES[0])
    assert len(state.groups) == 2


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_merged_batches_equal_sklearn_and_separate_metrics(jit):
    collection = mx.Collection(metrics=METRICS)

    def step(state, context):
        return state.merge(collection.get_state_from_context(context))

    step = jax.jit(step) if jit else step
    state = collection.empty()
    for context in BATCHES:
        state = step(state, context)
    values = jax.jit(lambda s: s.compute())(state) if jit else state.compute()
    _assert_values(values, _reference())
    separate = mx.empty_states(METRICS)
    for context in BATCHES:
        separate = mx.merge(separate, mx.get_states(METRICS, context))
    _assert_values(values, {k: np.asarray(v) for k, v in mx.compute(separate).items()})


def test_get_state_takes_the_context_as_keywords():
    collection = mx.Collection(metrics=METRICS)
    a = collection.get_state(**BATCHES[0]).compute()
    b = collection.get_state_from_context(BATCHES[0]).compute()
    _assert_values(a, {k: np.asarray(v) for k, v in b.items()})


def test_only_provably_identical_states_are_shared():
    base = dict(preds="preds.logits", labels="batch.label", num_classes=C)
    collection = mx.Collection(
        metrics={
            "p": mx.Precision(**base),
            "r": mx.Recall(**base),  # shares with p
            "masked": mx.Recall(**base, mask="batch.mask"),  # reads another input
            "other_labels": mx.Recall(preds="preds.logits", labels="batch.other", num_classes=C),
            "more_classes": mx.Recall(preds="preds.logits", labels="batch.label", num_classes=C + 1),
            "acc1": mx.Accuracy(logits="preds.logits", labels="batch.label"),
            "acc2": mx.Accuracy(logits="preds.logits", labels="batch.label"),  # no sharing key
        }
    )
    assert collection.num_states == 6


def test_checkpoint_round_trip(tmp_path):
    collection = mx.Collection(metrics=METRICS)
    state = collection.get_state_from_context(BATCHES[0]).merge(collection.get_state_from_context(BATCHES[1]))
    path = mx.save_states(tmp_path / "c.msgpack", {"c": state})
    restored = mx.restore_states(path, {"c": collection.empty()})["c"]
    _assert_values(restored.compute(), {k: np.asarray(v) for k, v in state.compute().items()})


def test_bad_collections_are_refused():
    with pytest.raises(TypeError, match="non-empty dict"):
        mx.Collection(metrics={})
    with pytest.raises(TypeError, match="not a metrix Metric"):
        mx.Collection(metrics={"a": "accuracy"})
    with pytest.raises(TypeError, match="strings"):
        mx.Collection(metrics={1: mx.Average(values="x")})
    with pytest.raises(ValueError, match="duplicate"):
        mx.Collection(metrics=(("a", mx.Average(values="x")), ("a", mx.Sum(values="x"))))
    with pytest.raises(mx.ContextKeyError, match="batch.label"):
        mx.Collection(metrics=METRICS).get_state_from_context({"preds": BATCHES[0]["preds"]})
