"""The Metric base: dataclass behaviour, keys, contexts, binding, type checks, tree helpers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float

import metrix as mx

LOGITS = jnp.array([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0], [1.0, 3.0, 0.0], [0.5, 0.0, 0.1]])
LABELS = jnp.array([0, 2, 0, 1])  # argmax: 0, 2, 1, 0 -> 2 of 4 correct


def test_metrics_are_frozen_hashable_keyword_only():
    acc = mx.Accuracy(logits="preds.logits", labels="batch.label")
    assert hash(acc) == hash(mx.Accuracy(logits="preds.logits", labels="batch.label"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        acc.top_k = 2
    with pytest.raises(TypeError):
        mx.Accuracy("preds.logits")  # keyword-only


def test_one_shot_and_positional_binding():
    acc = mx.Accuracy()
    assert float(acc(LOGITS, LABELS)) == 0.5
    assert float(acc(logits=LOGITS, labels=LABELS)) == 0.5
    assert float(acc.get_state(LOGITS, LABELS).compute()) == 0.5
    with pytest.raises(TypeError, match="Accuracy.get_state"):
        acc(LOGITS, LABELS, *([None] * 8))  # more inputs than get_state has


def test_top_k_against_hand_count():
    # label ranks: sample0 rank1, sample1 rank1, sample2 rank2, sample3 rank3
    assert float(mx.Accuracy(top_k=2)(LOGITS, LABELS)) == 0.75
    assert float(mx.Accuracy(top_k=3)(LOGITS, LABELS)) == 1.0


def test_accuracy_from_predicted_labels_and_masks():
    preds = jnp.array([0, 2, 1, 1])
    assert float(mx.Accuracy()(preds=preds, labels=LABELS)) == 0.75
    mask = jnp.array([True, True, False, False])
    assert float(mx.Accuracy()(LOGITS, LABELS, mask=mask)) == 1.0


def test_context_keys_resolve_nested_paths_and_indices():
    ctx = {"preds": {"out": jnp.stack([LOGITS, -LOGITS], -1)}, "batch": {"label": LABELS}}
    acc = mx.Accuracy(logits="preds.out[..., 0]", labels="batch['label']")
    assert float(acc.get_state_from_context(ctx).compute()) == 0.5


def test_context_objects_with_attributes():
    @dataclasses.dataclass
    class Batch:
        label: jax.Array

    ctx = {"preds": {"logits": LOGITS}, "batch": Batch(label=LABELS)}
    acc = mx.Accuracy(logits="preds.logits", labels="batch.label")
    assert float(acc.get_state_from_context(ctx).compute()) == 0.5


def test_missing_path_names_metric_key_and_close_matches():
    ctx = {"preds": {"logits": LOGITS}, "batch": {"labels": LABELS}}
    acc = mx.Accuracy(logits="preds.logits", labels="batch.label")
    with pytest.raises(mx.ContextKeyError) as err:
        acc.get_state_from_context(ctx)
    msg = str(err.value)
    assert "Accuracy.labels" in msg and "'batch.label'" in msg and "'batch.labels'" in msg


def test_required_key_unset_fails_before_computing():
    with pytest.raises(mx.ContextKeyError, match=r"Accuracy.labels is a required key but was not set"):
        mx.Accuracy(logits="preds.logits").get_state_from_context({"preds": {"logits": LOGITS}})


def test_optional_keys_fall_back_to_defaults():
    avg = mx.Average(values="loss")  # mask and weights unset
    assert float(avg.get_state_from_context({"loss": jnp.array([1.0, 3.0])}).compute()) == 2.0


def test_bad_paths_are_rejected():
    with pytest.raises(mx.ContextKeyError, match="not a valid key path"):
        mx.Average(values="a.b()").get_state_from_context({"a": {"b": 1}})
    with pytest.raises(mx.ContextKeyError, match="dunder"):
        mx.Average(values="a.__class__").get_state_from_context({"a": 1})


def test_keys_must_match_get_state_signature_at_class_creation():
    with pytest.raises(TypeError, match=r"key field\(s\) \['target'\] are not inputs of get_state"):

        class Broken(mx.Metric):
            preds: mx.Key = mx.REQUIRED
            target: mx.Key = mx.REQUIRED

            def get_state(self, preds, targets):
                return mx.AverageState.from_values(preds - targets)


def test_kauldron_style_decorated_subclass():
    @dataclasses.dataclass(eq=True, frozen=True, kw_only=True)
    class MyAccuracy(mx.Metric):
        logits: mx.Key = mx.REQUIRED
        labels: mx.Key = mx.REQUIRED

        class State(mx.AverageState):
            pass

        def get_state(self, logits: Float[Array, "*b n"], labels):
            return self.State.from_values(values=logits.argmax(axis=-1) == labels)

    metric = MyAccuracy(logits="l", labels="y")
    assert float(metric(LOGITS, LABELS)) == 0.5
    assert metric.get_state(LOGITS, LABELS).parent is metric


def test_type_errors_name_metric_and_argument():
    with pytest.raises(mx.InputTypeError, match=r"Accuracy.get_state: argument 'labels' is int32\[3\]"):
        mx.Accuracy()(LOGITS, jnp.array([0, 1, 2]))
    with pytest.raises(mx.InputTypeError, match=r"argument 'labels' is float32\[4\]"):
        mx.Accuracy()(LOGITS, LABELS.astype(jnp.float32))
    with pytest.raises(mx.InputTypeError, match=r"all inputs: logits=float32\[4\], labels=int32\[4\]"):
        mx.Accuracy()(jnp.ones(4), LABELS)  # logits lack the class axis


def test_type_checks_run_at_trace_time_and_can_be_switched_off():
    get = jax.jit(mx.Accuracy().get_state)
    with pytest.raises(mx.InputTypeError):
        get(LOGITS, jnp.array([0, 1, 2]))
    with mx.typechecking(False):
        with pytest.raises(TypeError, match="incompatible shapes"):  # jnp's own error now
            mx.Accuracy()(LOGITS, jnp.array([0, 1, 2]))
    mx.set_typechecking(False)
    try:
        mx.Accuracy()(LOGITS, LABELS.astype(jnp.float32))  # unchecked: float labels compare fine
    finally:
        mx.set_typechecking(True)


def test_masks_mean_boolean_indexing():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 4)).astype(np.float32)
    values[1, 2] = np.nan  # masked out below: must change nothing
    mask = np.array([1, 0, 1, 1, 0, 1], bool)
    np.testing.assert_allclose(mx.Average()(values, mask=mask), values[mask].mean(), rtol=1e-6)
    np.testing.assert_allclose(mx.Std()(values, mask=mask), values[mask].std(), rtol=1e-5)
    np.testing.assert_allclose(mx.Sum()(values, mask=mask), values[mask].sum(), rtol=1e-6)
    np.testing.assert_allclose(mx.Min()(values, mask=mask), values[mask].min())
    np.testing.assert_allclose(mx.Max()(values, mask=mask), values[mask].max())
    full_mask = rng.random((6, 4)) > 0.5
    full_mask[1, 2] = False
    np.testing.assert_allclose(mx.Average()(values, mask=full_mask), values[full_mask].mean(), rtol=1e-6)


def test_mask_that_does_not_cover_values_is_an_error():
    with pytest.raises(ValueError, match="does not cover values"):
        mx.Average()(jnp.ones((4, 3)), mask=jnp.ones(3, bool))


def test_weights():
    values, weights = jnp.array([1.0, 2.0, 4.0]), jnp.array([1.0, 0.0, 3.0])
    np.testing.assert_allclose(mx.Average()(values, weights=weights), (1 + 12) / 4)


def test_documented_results_for_empty_and_nan_input():
    empty = jnp.zeros((0,), jnp.float32)
    assert np.isnan(mx.Average()(empty))  # mean of nothing
    assert float(mx.Sum()(empty)) == 0.0
    assert np.isnan(mx.Std()(empty))
    assert float(mx.Min()(empty)) == np.inf and float(mx.Max()(empty)) == -np.inf
    assert np.isnan(mx.Accuracy()(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32)))
    assert np.isnan(mx.Average()(jnp.array([1.0, np.nan])))  # NaN propagates unless masked


def test_tree_helpers_over_nested_dicts():
    metrics = {"cls": {"acc": mx.Accuracy(logits="p.logits", labels="b.y")}, "loss": mx.Average(values="p.loss")}
    c1 = {"p": {"logits": LOGITS, "loss": jnp.array([1.0, 2.0])}, "b": {"y": LABELS}}
    c2 = {"p": {"logits": LOGITS[:1], "loss": jnp.array([6.0])}, "b": {"y": LABELS[:1]}}
    states = mx.merge(mx.get_states(metrics, c1), mx.get_states(metrics, c2))
    values = mx.compute(states)
    assert values["cls"]["acc"] == np.float32(3 / 5)
    assert float(values["loss"]) == 3.0
    empty = mx.empty_states(metrics)
    assert float(mx.compute(mx.merge(empty, states))["loss"]) == 3.0


def test_states_of_differently_configured_metrics_refuse_to_merge():
    a = mx.Accuracy(top_k=1).get_state(LOGITS, LABELS)
    b = mx.Accuracy(top_k=2).get_state(LOGITS, LABELS)
    with pytest.raises(mx.MergeError, match="parent"):
        a.merge(b)
    with pytest.raises(mx.MergeError, match="cannot merge"):
        a.merge(mx.Average()(jnp.ones(2)) and mx.Average().get_state(jnp.ones(2)))


def test_state_fields_must_declare_a_merge():
    with pytest.raises(TypeError, match="must be declared with a metrix field"):

        class Bad(mx.State):
            x: jax.Array = dataclasses.field(default=None)


def test_metric_without_static_shape_points_to_empty_like():
    class Coll(mx.Metric):
        values: mx.Key = mx.REQUIRED
        capacity: int = 4

        class State(mx.CollectState):
            pass

        def get_state(self, values):
            return self.State.from_rows(capacity=self.capacity, values=values)

    with pytest.raises(ValueError, match="empty_like"):
        Coll(values="v").empty()
    real = Coll(values="v").get_state(jnp.ones((2, 3)))
    assert real.empty_like().values.shape == (4, 3)


# -- key aliases (Kauldron's names for the same input) ------------------------------------


def test_key_alias_reads_the_aliased_input_from_context_and_kwargs():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    scores = rng.normal(size=40).astype(np.float32)
    labels = (rng.random(40) < 0.5).astype(np.int32)
    expected = sklearn_metrics.roc_auc_score(labels, scores)
    context = {"preds": {"logits": scores}, "batch": {"label": labels}}
    for metric in (
        mx.RocAuc(preds="preds.logits", targets="batch.label"),
        mx.RocAuc(logits="preds.logits", labels="batch.label"),
        mx.RocAuc(logits="preds.logits", targets="batch.label"),
    ):
        assert float(metric.get_state_from_context(context).compute()) == pytest.approx(expected, rel=1e-6)
    assert float(mx.RocAuc()(logits=scores, targets=labels)) == pytest.approx(expected, rel=1e-6)


def test_key_alias_and_its_target_together_are_refused():
    scores = np.zeros(4, np.float32)
    labels = np.array([0, 1, 0, 1])
    context = {"s": scores, "y": labels}
    with pytest.raises(ValueError, match="`targets` is another name for `labels`"):
        mx.RocAuc(preds="s", labels="y", targets="y").get_state_from_context(context)
    with pytest.raises(TypeError, match="another name for `labels`"):
        mx.RocAuc()(preds=scores, labels=labels, targets=labels)
    with pytest.raises(mx.ContextKeyError, match="RocAuc.labels is a required key"):
        mx.RocAuc(preds="s").get_state_from_context(context)
