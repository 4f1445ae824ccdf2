"""Seed 003 (Kauldron metrics): every example with ``kd.metrics`` / ``kauldron.metrics`` -> ``mx``.

Name mapping: ``kd.metrics.Metric`` -> ``mx.Metric``, ``kd.metrics.AverageState`` ->
``mx.AverageState``, ``kontext.Key`` / ``kd.kontext.REQUIRED`` -> ``mx.Key`` / ``mx.REQUIRED``,
``kd.losses.Loss`` / ``kd.losses.L2`` -> ``mx.Loss`` / ``mx.L2``, ``kd.metrics.RocAuc`` ->
``mx.RocAuc``; ``Float`` and ``typechecked`` come from ``kauldron.typing`` in Kauldron and
from ``metrix.typing`` (Kauldron-style shorthands). References: numpy (accuracy,
squared error) and scikit-learn (ROC AUC).
"""

import dataclasses

import flax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.typing import Float, typechecked

# The seed's `kontext` and `kd` namespaces, as metrix provides them.
kontext = mx


class kd:
    metrics = mx
    losses = mx
    kontext = mx


RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(12, 5)).astype(np.float32)
LABELS = RNG.integers(0, 5, size=(12,)).astype(np.int32)
LOGITS2 = RNG.normal(size=(7, 5)).astype(np.float32)
LABELS2 = RNG.integers(0, 5, size=(7,)).astype(np.int32)


def _accuracy(*pairs):
    return np.concatenate([np.argmax(l, -1) == y for l, y in pairs]).mean()


def test_standalone_usage():
    # --- seed: "Metrics are stateless objects" ---
    metrics = mx  # from kauldron import metrics
    metric1 = metrics.Accuracy()
    metric = metric1
    logits, labels = jnp.asarray(LOGITS), jnp.asarray(LABELS)
    # Usage (1-time):
    accuracy = metric(logits=logits, labels=labels)
    # Equivalent to:
    accuracy2 = metric.get_state(logits=logits, labels=labels).compute()
    # Usage (accumulated):
    state0 = metric.get_state(logits=logits, labels=labels)
    state1 = metric.get_state(logits=jnp.asarray(LOGITS2), labels=jnp.asarray(LABELS2))
    acc_state = state0.merge(state1)
    accuracy3 = acc_state.compute()
    # --- end ---
    assert float(accuracy) == pytest.approx(_accuracy((LOGITS, LABELS)))
    assert float(accuracy2) == float(accuracy)
    assert float(accuracy3) == pytest.approx(_accuracy((LOGITS, LABELS), (LOGITS2, LABELS2)))


def test_config_usage_with_keys():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    # --- seed: Kauldron usage (cfg.metrics with keys) ---
    metrics = {
        "reconstruction": kd.losses.L2(preds="preds.image", targets="batch.image"),
        "roc_auc": kd.metrics.RocAuc(preds="preds.logits", targets="batch.label"),
    }
    # --- end ---
    image = RNG.normal(size=(4, 3, 3)).astype(np.float32)
    target = RNG.normal(size=(4, 3, 3)).astype(np.float32)
    scores = RNG.normal(size=(16,)).astype(np.float32)
    label = (RNG.random(16) < 0.5).astype(np.int32)
    context = {
        "preds": {"image": image, "logits": scores},
        "batch": {"image": target, "label": label},
    }
    values = mx.compute(mx.get_states(metrics, context))
    assert float(values["reconstruction"]) == pytest.approx(
        np.mean((image - target) ** 2), rel=1e-6
    )
    assert float(values["roc_auc"]) == pytest.approx(
        sklearn_metrics.roc_auc_score(label, scores), rel=1e-6
    )


# --- seed: "Creating a metric" ---
@dataclasses.dataclass(eq=True, frozen=True, kw_only=True)
class Accuracy(kd.metrics.Metric):
    """Classification Accuracy."""

    logits: kontext.Key = kd.kontext.REQUIRED  # e.g. "preds.logits"
    labels: kontext.Key = kd.kontext.REQUIRED  # e.g. "batch.label"

    # Could be `State = kd.metrics.AverageState` but inheritance gives a better
    # name `Accuracy.State`
    class State(kd.metrics.AverageState):
        pass

    @typechecked
    def get_state(self, logits: Float["*b n"], labels: Float["*b"]) -> Float["*b"]:
        correct = logits.argmax(axis=-1) == labels
        return self.State.from_values(values=correct)


# --- seed: "Loss" ---
@dataclasses.dataclass(eq=True, frozen=True, kw_only=True)
class L2(kd.losses.Loss):
    """L2 loss."""

    preds: kontext.Key = kd.kontext.REQUIRED
    targets: kontext.Key = kd.kontext.REQUIRED

    @typechecked
    def get_values(self, preds: Float["*b"], targets: Float["*b"]) -> Float["*b"]:
        return jnp.square(preds - targets)


def test_custom_accuracy_metric():
    metric = Accuracy(logits="preds.logits", labels="batch.label")
    # The seed annotates labels as Float["*b"]: float class ids, compared with the argmax.
    labels, labels2 = LABELS.astype(np.float32), LABELS2.astype(np.float32)
    state = metric.get_state(logits=jnp.asarray(LOGITS), labels=jnp.asarray(labels))
    assert type(state).__qualname__ == "Accuracy.State"
    state = state.merge(
        metric.get_state_from_context({"preds": {"logits": LOGITS2}, "batch": {"label": labels2}})
    )
    assert float(state.compute()) == pytest.approx(_accuracy((LOGITS, LABELS), (LOGITS2, LABELS2)))
    assert float(metric(logits=LOGITS, labels=labels)) == pytest.approx(_accuracy((LOGITS, LABELS)))
    with pytest.raises(mx.InputTypeError, match="Accuracy"):  # shapes are checked
        metric.get_state(logits=jnp.asarray(LOGITS), labels=jnp.asarray(labels[:3]))
    with pytest.raises(mx.ContextKeyError, match="labels"):
        Accuracy(logits="preds.logits").get_state_from_context({"preds": {"logits": LOGITS}})
    assert hash(metric) == hash(
        Accuracy(logits="preds.logits", labels="batch.label")
    )  # eq=True, frozen


def test_custom_l2_loss():
    preds = RNG.normal(size=(6, 4)).astype(np.float32)
    targets = RNG.normal(size=(6, 4)).astype(np.float32)
    mask = np.array([1, 1, 0, 1, 0, 1], bool)
    loss = L2(preds="preds.x", targets="batch.y", weight=0.5)
    squared = (preds - targets) ** 2
    assert float(loss(preds=preds, targets=targets)) == pytest.approx(
        0.5 * squared.mean(), rel=1e-6
    )
    # "accumulating losses over multiple batches works correctly": mean over all elements
    state = loss.get_state(preds=preds[:2], targets=targets[:2]).merge(
        loss.get_state(preds=preds[2:], targets=targets[2:])
    )
    assert float(state.compute()) == pytest.approx(0.5 * squared.mean(), rel=1e-6)
    masked = loss.get_state_from_context(
        {"preds": {"x": preds}, "batch": {"y": targets}, "mask": mask}
    )
    assert float(masked.compute()) == pytest.approx(
        0.5 * squared.mean(), rel=1e-6
    )  # no mask key set
    with_mask = L2(preds="preds.x", targets="batch.y", mask="mask", weight=0.5)
    value = with_mask.get_state_from_context(
        {"preds": {"x": preds}, "batch": {"y": targets}, "mask": mask}
    ).compute()
    assert float(value) == pytest.approx(0.5 * squared[mask].mean(), rel=1e-6)


# --- seed: "Summary" (AutoState with truncate fields; the seed elides the keys and
# get_state with `...`, filled in here the obvious way) ---


@dataclasses.dataclass(kw_only=True, frozen=True)
class ShowImages(kd.metrics.Metric):
    num_images: int = 5

    @flax.struct.dataclass
    class State(kd.metrics.AutoState):
        """Collects the first num_images images and boxes."""

        # When the states are aggregated (e.g. across multiple batches, only keep
        # the first `num_images` images).
        images: Float["n h w c"] = kd.metrics.truncate_field(num_field="parent.num_images")
        boxes: Float["n k 4"] = kd.metrics.truncate_field(num_field="parent.num_images")

    # (elided in the seed)
    images: kontext.Key = kd.kontext.REQUIRED
    boxes: kontext.Key = kd.kontext.REQUIRED

    def get_state(self, images, boxes):
        return self.State(images=images, boxes=boxes)


def test_show_images_auto_state_keeps_the_first_images_across_batches():
    import jax

    rng = np.random.default_rng(4)
    images = rng.random((11, 4, 4, 3)).astype(np.float32)
    boxes = rng.random((11, 2, 4)).astype(np.float32)
    metric = ShowImages(images="batch.image", boxes="preds.boxes", num_images=5)
    batches = [(0, 2), (2, 3), (3, 7), (7, 11)]  # the 5th image arrives in the third batch

    def state_of(lo, hi):
        return metric.get_state_from_context(
            {"batch": {"image": images[lo:hi]}, "preds": {"boxes": boxes[lo:hi]}}
        )

    merge = jax.jit(lambda a, b: a.merge(b))
    for merge_fn in (lambda a, b: a.merge(b), merge):
        state = state_of(*batches[0])
        for lo, hi in batches[1:]:
            state = merge_fn(state, state_of(lo, hi))
        out = state.compute()
        np.testing.assert_array_equal(np.asarray(out.images), images[:5])
        np.testing.assert_array_equal(np.asarray(out["boxes"]), boxes[:5])
    # One batch larger than num_images is cut at compute (as Kauldron's finalize does).
    out = state_of(0, 11).compute()
    np.testing.assert_array_equal(np.asarray(out.images), images[:5])
    # The empty state is the identity, and merges of different configs are refused.
    first = metric.empty().merge(state_of(0, 3)).compute()
    np.testing.assert_array_equal(np.asarray(first.images), images[:3])
    with pytest.raises(mx.MergeError):
        state_of(0, 2).merge(ShowImages(images="i", boxes="b", num_images=2).get_state(images[:2], boxes[:2]))
