"""evaluate / evaluate_scan against a plain Python loop and numpy, with and without a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import metrix as mx
from metrix.runtime.evaluate import evaluate, evaluate_scan, initial_states, pad_batch

NUM_CLASSES = 5
BATCH = 16


class Total(mx.Metric):
    """Sum of values per feature: its state's shape depends on the data (empty() cannot know it)."""

    values: mx.Key = mx.REQUIRED
    mask: mx.Key | None = None

    class State(mx.State):
        total: jax.Array = mx.sum_field(shape=None)

        def compute(self):
            return self.total

    def get_state(self, values, mask=None):
        kept = jnp.where(mask[:, None], values, 0.0) if mask is not None else values
        return self.State(total=kept.sum(0))


def _metrics(with_total=False):
    metrics = {
        "acc": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
        "stats": {
            "mean": mx.Average(values="preds.score", mask="batch.mask"),
            "std": mx.Std(values="preds.score", mask="batch.mask"),
            "max": mx.Max(values="preds.score", mask="batch.mask"),
        },
        "cm": mx.ConfusionMatrix(
            preds="preds.logits",
            labels="batch.label",
            mask="batch.mask",
            from_logits=True,
            num_classes=NUM_CLASSES,
        ),
    }
    if with_total:
        metrics["total"] = Total(values="batch.x", mask="batch.mask")
    return metrics


def _step(batch):
    logits = (
        batch["x"] @ jnp.arange(4 * NUM_CLASSES, dtype=jnp.float32).reshape(4, NUM_CLASSES) % 3.0
    )
    return {"preds": {"logits": logits, "score": batch["x"].sum(-1)}, "batch": batch}


def _data(n=75, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, NUM_CLASSES, n).astype(
        np.int32
    )


def _batches(x, y):
    return [
        pad_batch({"x": x[i : i + BATCH], "label": y[i : i + BATCH]}, BATCH)
        for i in range(0, len(x), BATCH)
    ]


def _loop(metrics, batches):
    """The reference: eager get_states and merges, one batch after the other."""
    states = None
    for batch in batches:
        new = mx.get_states(metrics, _step(jax.tree.map(jnp.asarray, batch)))
        states = new if states is None else mx.merge(states, new)
    return mx.compute(states)


def _assert_close(a, b, rtol=1e-5):
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=1e-6),
        a,
        b,
    )


def _numpy_expected(x, y):
    logits = (x @ np.arange(4 * NUM_CLASSES, dtype=np.float32).reshape(4, NUM_CLASSES)) % 3.0
    pred = logits.argmax(-1)
    score = x.sum(-1)
    cm = np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    np.add.at(cm, (y, pred), 1)
    return {
        "acc": (pred == y).mean(),
        "stats": {"mean": score.mean(), "std": score.std(ddof=0), "max": score.max()},
        "cm": cm,
    }


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()[:8]), ("data",))


def test_evaluate_equals_python_loop_and_numpy():
    x, y = _data()
    batches = _batches(x, y)
    values = evaluate(_metrics(), _step, batches)
    _assert_close(values, _loop(_metrics(), batches))
    _assert_close(values, _numpy_expected(x, y), rtol=1e-4)  # Std: ddof=0, as numpy's default


def test_evaluate_with_mesh_equals_loop(mesh):
    x, y = _data(n=75, seed=1)
    batches = _batches(x, y)
    values, states = evaluate(
        _metrics(with_total=True), _step, batches, mesh=mesh, return_states=True
    )
    _assert_close(values, _loop(_metrics(with_total=True), batches))
    np.testing.assert_allclose(values["total"], x.sum(0), rtol=1e-5, atol=1e-5)
    leaf = jax.tree.leaves(states)[0]
    assert leaf.sharding.is_fully_replicated


def test_explicit_mesh_from_make_mesh_works():
    mesh = jax.make_mesh((8,), ("batch",))  # Explicit axis types by default
    x, y = _data(n=32, seed=2)
    batches = _batches(x, y)
    _assert_close(evaluate(_metrics(), _step, batches, mesh=mesh), _loop(_metrics(), batches))


def test_evaluate_scan_equals_loop(mesh):
    x, y = _data(n=64, seed=3)
    batches = _batches(x, y)
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches)
    expected = _loop(_metrics(with_total=True), batches)
    _assert_close(evaluate_scan(_metrics(with_total=True), _step, stacked), expected)
    _assert_close(evaluate_scan(_metrics(with_total=True), _step, stacked, mesh=mesh), expected)


def test_params_are_an_argument_not_a_constant():
    x, y = _data(n=40, seed=4)
    batches = _batches(x, y)
    metrics = {"mean": mx.Average(values="preds.score", mask="batch.mask")}

    def step(params, batch):
        return {"preds": {"score": batch["x"].sum(-1) * params["scale"]}, "batch": batch}

    for scale in (1.0, 2.0):
        value = evaluate(metrics, step, batches, params={"scale": jnp.float32(scale)})["mean"]
        np.testing.assert_allclose(value, scale * x.sum(-1).mean(), rtol=1e-5)
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *batches[:2])
    value = evaluate_scan(metrics, step, stacked, params={"scale": jnp.float32(3.0)})["mean"]
    np.testing.assert_allclose(value, 3.0 * x[:32].sum(-1).mean(), rtol=1e-5)


def test_initial_states_falls_back_to_traced_shapes():
    x, y = _data(n=16)
    batch = _batches(x, y)[0]
    metrics = {"total": Total(values="batch.x")}
    with pytest.raises(ValueError, match="empty_like"):
        mx.empty_states(metrics)
    init = initial_states(metrics, _step, batch)
    assert init["total"].total.shape == (4,)
    np.testing.assert_array_equal(init["total"].total, 0.0)


def test_pad_batch():
    padded = pad_batch({"x": np.ones((3, 2)), "label": np.arange(3)}, 5)
    assert padded["x"].shape == (5, 2) and padded["label"].tolist() == [0, 1, 2, 0, 0]
    assert padded["mask"].tolist() == [True, True, True, False, False]
    again = pad_batch({"x": np.ones(2), "mask": np.array([True, False])}, 4)
    assert again["mask"].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="more than batch_size"):
        pad_batch({"x": np.ones(6)}, 5)
    with pytest.raises(ValueError, match="different leading sizes"):
        pad_batch({"x": np.ones(3), "y": np.ones(4)}, 5)


def test_errors(mesh):
    with pytest.raises(ValueError, match="no batches"):
        evaluate(_metrics(), _step, [])
    x, y = _data(n=12)
    with pytest.raises(ValueError, match="divisible by 8"):
        evaluate(_metrics(), _step, [{"x": x, "label": y, "mask": np.ones(12, bool)}], mesh=mesh)
    with pytest.raises(ValueError, match="checkpoint_every needs"):
        evaluate(_metrics(), _step, [], checkpoint_every=2)


def test_checkpoint_resume_in_process(tmp_path):
    x, y = _data(n=80, seed=5)
    batches = _batches(x, y)
    path = tmp_path / "states.msgpack"
    expected = evaluate(_metrics(), _step, batches)
    # An interrupted run: only the first 3 batches, saved every 2 (and at its end).
    evaluate(_metrics(), _step, batches[:3], checkpoint=path, checkpoint_every=2)
    seen = []

    def recording():
        for b in batches:
            seen.append(1)
            yield b

    resumed = evaluate(_metrics(), _step, recording(), checkpoint=path, checkpoint_every=2)
    _assert_close(resumed, expected, rtol=1e-6)
    assert len(seen) == len(batches)
    with pytest.raises(ValueError, match="has 5 batches merged but only 3"):
        evaluate(_metrics(), _step, batches[:3], checkpoint=path)
