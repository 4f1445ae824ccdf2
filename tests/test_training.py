"""Train metrics accumulated over a logging window inside jit equal one big batch."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import metrix as mx
from metrix.runtime import training

STEPS, B, K = 4, 8, 5


def _metrics():
    return {
        "loss": {
            "ce": mx.SoftmaxCrossEntropy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
            "l2": mx.L2(preds="preds.logits", targets="batch.target", mask="batch.mask", weight=0.1),
        },
        "acc": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
        "hist": mx.ShowHistogram(values="preds.logits", mask="batch.mask", low=-3.0, high=3.0, num_bins=6),
        "confusion": mx.ShowConfusionMatrix(
            labels="batch.label", preds="preds.logits", mask="batch.mask", num_classes=K, cell_size=1
        ),
        "images": mx.ShowImages(
            images="batch.image", mask="batch.mask", num_images=6, in_vrange=(0.0, 1.0), image_shape=(3, 3, 1)
        ),
    }


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(STEPS):
        batches.append({
            "preds": {"logits": rng.normal(size=(B, K)).astype(np.float32)},
            "batch": {
                "label": rng.integers(0, K, size=B).astype(np.int32),
                "target": rng.normal(size=(B, K)).astype(np.float32),
                "mask": rng.random(B) < 0.7,
                "image": rng.uniform(size=(B, 3, 3)).astype(np.float32),
            },
        })
    return batches


def _concat(batches):
    return jax.tree.map(lambda *xs: np.concatenate(xs), *batches)


def _reference(metrics, context):
    """Every step's data as one batch (jitted only to keep the test fast)."""
    return jax.jit(lambda c: mx.compute(mx.get_states(metrics, c)))(context)


def _assert_values_close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-6, atol=1e-6), a, b)


def test_window_in_jit_equals_one_big_batch_and_traces_once():
    metrics = _metrics()
    window = mx.TrainMetrics(metrics)
    batches = _batches()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def train_step(states, context):
        return mx.window_step(states, mx.get_states(metrics, context))

    states = window.empty()
    for context in batches:
        states = train_step(states, context)
    values, fresh = mx.log_and_reset(states)
    expected = _reference(metrics, _concat(batches))
    _assert_values_close(values, expected)
    # The reset window has the shapes and dtypes of a real one: the step does not retrace.
    chex.assert_trees_all_equal_shapes_and_dtypes(fresh, states)
    states = train_step(fresh, batches[0])
    _assert_values_close(mx.compute(states), mx.compute(mx.get_states(metrics, batches[0])))


def test_window_carried_through_lax_scan():
    metrics = _metrics()
    window = mx.TrainMetrics(metrics)
    batches = _batches(1)
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)

    @jax.jit
    def run(stacked):
        def body(states, context):
            return window.update(states, context), None

        return jax.lax.scan(body, window.empty(), stacked)[0]

    values = mx.compute(run(stacked))
    _assert_values_close(values, _reference(metrics, _concat(batches)))


def test_train_step_with_gradients_and_window():
    """The pattern of examples/train_digits.py: grad of total_loss, its states logged."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(STEPS, B, 3)).astype(np.float32)
    y = rng.integers(0, K, size=(STEPS, B)).astype(np.int32)
    losses = {"ce": mx.SoftmaxCrossEntropy(logits="preds.logits", labels="batch.label")}
    logged = {"acc": mx.Accuracy(logits="preds.logits", labels="batch.label")}
    w0 = jnp.asarray(rng.normal(size=(3, K)).astype(np.float32))

    def loss_fn(w, xb, yb):
        context = {"preds": {"logits": xb @ w}, "batch": {"label": yb}}
        total, loss_states = mx.total_loss(losses, context)
        return total, (loss_states, mx.get_states(logged, context))

    @jax.jit
    def step(w, window, xb, yb):
        (_, new_states), grad = jax.value_and_grad(loss_fn, has_aux=True)(w, xb, yb)
        return w, mx.window_step(window, new_states), grad

    window = (mx.empty_states(losses), mx.empty_states(logged))
    for i in range(STEPS):
        _, window, grad = step(w0, window, x[i], y[i])  # fixed weights: compare with one batch

        def reference(w, xb=x[i], yb=y[i]):
            return jnp.mean(-jax.nn.log_softmax(xb @ w)[np.arange(B), yb])

        ref_grad = jax.grad(reference)(w0)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-7)
    values, _ = training.log_and_reset(window)
    logits = x.reshape(-1, 3) @ np.asarray(w0)
    labels = y.reshape(-1)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(values[0]["ce"], -log_probs[np.arange(len(labels)), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(values[1]["acc"], np.mean(logits.argmax(-1) == labels), rtol=1e-6)


def test_empty_like_states_and_train_metrics_hashable():
    metrics = _metrics()
    window = mx.TrainMetrics(metrics)
    hash(window)
    states = window.get_states(_batches()[0])
    empty = training.empty_like_states(states)
    chex.assert_trees_all_equal_shapes_and_dtypes(empty, window.empty())
    _assert_values_close(mx.compute(mx.merge(empty, states)), mx.compute(states))
