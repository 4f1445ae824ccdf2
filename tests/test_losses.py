"""Losses against optax / hand-written jnp references: values, gradients, masks, weights."""

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx

optax = pytest.importorskip("optax")

N = 13
SPLITS = (0, 3, 7, N)  # three uneven batches


def _regression(rng, shape=(N, 4)):
    return {
        "preds": rng.normal(size=shape).astype(np.float32) * 2,
        "targets": rng.normal(size=shape).astype(np.float32),
    }


def _binary(rng, shape=(N, 4)):
    return {
        "logits": rng.normal(size=shape).astype(np.float32) * 3,
        "labels": rng.integers(0, 2, size=shape).astype(np.float32),
    }


def _multiclass(rng):
    return {
        "logits": rng.normal(size=(N, 6)).astype(np.float32) * 2,
        "labels": rng.integers(0, 6, size=(N,)).astype(np.int32),
    }


# (name, loss, make_inputs, per-element optax reference taking the same keyword inputs)
CASES = [
    ("L1", mx.L1(preds="preds", targets="targets"), _regression,
     lambda preds, targets: jnp.abs(preds - targets)),
    # Kauldron's L2 is the squared error; optax.l2_loss has a 0.5 factor.
    ("L2", mx.L2(preds="preds", targets="targets"), _regression,
     lambda preds, targets: 2.0 * optax.l2_loss(preds, targets)),
    ("Huber", mx.Huber(preds="preds", targets="targets", delta=0.7), _regression,
     lambda preds, targets: optax.huber_loss(preds, targets, delta=0.7)),
    ("SoftmaxCrossEntropy", mx.SoftmaxCrossEntropy(logits="logits", labels="labels"), _multiclass,
     lambda logits, labels: optax.softmax_cross_entropy_with_integer_labels(logits, labels)),
    ("SigmoidBinaryCrossEntropy", mx.SigmoidBinaryCrossEntropy(logits="logits", labels="labels"), _binary,
     optax.sigmoid_binary_cross_entropy),
    ("SigmoidFocalLoss", mx.SigmoidFocalLoss(logits="logits", labels="labels", alpha=0.25, gamma=1.5), _binary,
     lambda logits, labels: optax.sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=1.5)),
    ("SigmoidFocalLoss_default", mx.SigmoidFocalLoss(logits="logits", labels="labels"), _binary,
     optax.sigmoid_focal_loss),
    ("NegativeCosineSimilarity", mx.NegativeCosineSimilarity(preds="preds", targets="targets"), _regression,
     lambda preds, targets: -optax.cosine_similarity(preds, targets, epsilon=1e-12)),
]
IDS = [c[0] for c in CASES]


def _masked_mean(values, mask):
    values = np.asarray(values, np.float64)
    if mask is None:
        return values.mean()
    m = np.broadcast_to(mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)), values.shape)
    return values[m].mean()


@pytest.mark.parametrize("name,loss,make,ref", CASES, ids=IDS)
@pytest.mark.parametrize("masked", [False, True])
def test_value_matches_optax_over_merged_batches(name, loss, make, ref, masked):
    rng = np.random.default_rng(0)
    inputs = make(rng)
    mask = rng.random(N) < 0.6 if masked else None
    expected = _masked_mean(ref(**inputs), mask)

    @jax.jit
    def merged_value(inputs, mask):
        states = [
            loss.get_state(**{k: v[lo:hi] for k, v in inputs.items()},
                           mask=None if mask is None else mask[lo:hi])
            for lo, hi in itertools.pairwise(SPLITS)
        ]
        return states[0].merge(states[1]).merge(states[2]).compute()

    np.testing.assert_allclose(merged_value(inputs, mask), expected, rtol=2e-6, atol=1e-6)
    # One shot, eagerly.
    kw = {} if mask is None else {"mask": mask}
    np.testing.assert_allclose(loss(**inputs, **kw), expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name,loss,make,ref", CASES, ids=IDS)
def test_gradient_matches_jnp_reference(name, loss, make, ref):
    rng = np.random.default_rng(1)
    inputs = make(rng)
    mask = rng.random(N) < 0.7
    first = next(iter(inputs))  # preds or logits: the differentiated input
    rest = {k: v for k, v in inputs.items() if k != first}

    def ours(x):
        return loss(**{first: x}, **rest, mask=mask)

    def reference(x):
        values = ref(**{first: x}, **rest)
        m = jnp.asarray(mask).reshape(mask.shape + (1,) * (values.ndim - 1))
        m = jnp.broadcast_to(m, values.shape)
        return jnp.sum(jnp.where(m, values, 0.0)) / jnp.sum(m)

    g_ours = jax.jit(jax.grad(ours))(inputs[first])
    g_ref = jax.jit(jax.grad(reference))(inputs[first])
    np.testing.assert_allclose(g_ours, g_ref, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(g_ours)[~mask] == 0)  # masked examples get no gradient


def test_softmax_cross_entropy_one_hot_and_label_smoothing():
    rng = np.random.default_rng(2)
    inputs = _multiclass(rng)
    logits, labels = inputs["logits"], inputs["labels"]
    one_hot = np.eye(6, dtype=np.float32)[labels]
    plain = mx.SoftmaxCrossEntropy(logits="logits", labels="labels")
    expected = optax.softmax_cross_entropy(logits, one_hot).mean()
    np.testing.assert_allclose(plain(logits=logits, labels=one_hot), expected, rtol=1e-6)
    np.testing.assert_allclose(plain(logits=logits, labels=labels), expected, rtol=1e-6)
    # Soft labels (a distribution, not one-hot).
    soft = rng.dirichlet(np.ones(6), size=N).astype(np.float32)
    np.testing.assert_allclose(
        plain(logits=logits, labels=soft), optax.softmax_cross_entropy(logits, soft).mean(), rtol=1e-6
    )
    smooth = mx.SoftmaxCrossEntropy(logits="logits", labels="labels", label_smoothing=0.1)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(one_hot, 0.1)).mean()
    np.testing.assert_allclose(smooth(logits=logits, labels=labels), expected, rtol=1e-6)
    np.testing.assert_allclose(smooth(logits=logits, labels=one_hot), expected, rtol=1e-6)


def test_per_element_masks_and_leading_axis_masks():
    rng = np.random.default_rng(3)
    inputs = _regression(rng)
    loss = mx.L2(preds="preds", targets="targets")
    elem_mask = rng.random((N, 4)) < 0.5
    sq = (inputs["preds"] - inputs["targets"]) ** 2
    np.testing.assert_allclose(loss(**inputs, mask=elem_mask), sq[elem_mask].mean(), rtol=1e-6)
    col_mask = np.ones((N, 1), bool)
    col_mask[:5] = False  # size-1 axes broadcast
    np.testing.assert_allclose(loss(**inputs, mask=col_mask), sq[5:].mean(), rtol=1e-6)


def test_masked_nan_changes_nothing():
    rng = np.random.default_rng(4)
    inputs = _regression(rng)
    mask = np.ones(N, bool)
    mask[2] = False
    poisoned = {k: v.copy() for k, v in inputs.items()}
    poisoned["preds"][2] = np.nan
    loss = mx.L1(preds="preds", targets="targets")
    clean = loss(**{k: v[mask] for k, v in inputs.items()})
    np.testing.assert_allclose(loss(**poisoned, mask=mask), clean, rtol=1e-6)
    grad = jax.grad(lambda p: loss(preds=p, targets=poisoned["targets"], mask=mask))(poisoned["preds"])
    assert np.all(np.isfinite(np.asarray(grad)[mask]))


def test_normalize_by_values_counts_masked_elements():
    rng = np.random.default_rng(5)
    inputs = _regression(rng)
    mask = rng.random(N) < 0.5
    sq = (inputs["preds"] - inputs["targets"]) ** 2
    loss = mx.L2(preds="preds", targets="targets", normalize_by="values")
    expected = np.where(mask[:, None], sq, 0).sum() / sq.size
    np.testing.assert_allclose(loss(**inputs, mask=mask), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="normalize_by"):
        mx.L2(preds="preds", targets="targets", normalize_by="batch")


def test_constant_weight_scales_value_and_gradient():
    rng = np.random.default_rng(6)
    inputs = _regression(rng)
    base = mx.L1(preds="preds", targets="targets")
    weighted = mx.L1(preds="preds", targets="targets", weight=0.25)
    np.testing.assert_allclose(weighted(**inputs), 0.25 * base(**inputs), rtol=1e-6)
    g = jax.grad(lambda p: weighted(preds=p, targets=inputs["targets"]))(inputs["preds"])
    g0 = jax.grad(lambda p: base(preds=p, targets=inputs["targets"]))(inputs["preds"])
    np.testing.assert_allclose(g, 0.25 * g0, rtol=1e-6)
    # A constant weight needs no step in the context.
    ctx = {"preds": inputs["preds"], "targets": inputs["targets"]}
    np.testing.assert_allclose(weighted.get_state_from_context(ctx).compute(), 0.25 * base(**inputs), rtol=1e-6)


def test_weight_schedule_reads_step_key():
    rng = np.random.default_rng(7)
    inputs = _regression(rng)
    schedule = optax.linear_schedule(init_value=0.0, end_value=1.0, transition_steps=10)
    loss = mx.L2(preds="batch.x", targets="batch.y", weight=schedule, step="train.step")
    hash(loss)  # a schedule is a function: the config stays hashable
    assert loss == mx.L2(preds="batch.x", targets="batch.y", weight=schedule, step="train.step")
    mse = np.mean((inputs["preds"] - inputs["targets"]) ** 2)
    for step in (0, 3, 10, 20):
        ctx = {"batch": {"x": inputs["preds"], "y": inputs["targets"]}, "train": {"step": step}}
        np.testing.assert_allclose(
            loss.get_state_from_context(ctx).compute(), float(schedule(step)) * mse, rtol=1e-6
        )
    # Traced step under jit.
    f = jax.jit(lambda s: loss(**inputs, step=s))
    np.testing.assert_allclose(f(jnp.int32(4)), 0.4 * mse, rtol=1e-6)
    # A schedule without a step fails clearly.
    with pytest.raises(ValueError, match="schedule"):
        loss(**inputs)
    with pytest.raises(mx.ContextKeyError, match="step"):
        loss.get_state_from_context({"batch": {"x": inputs["preds"], "y": inputs["targets"]}})


def test_windowed_states_with_a_schedule_average_weighted_steps():
    rng = np.random.default_rng(8)
    loss = mx.L1(preds="preds", targets="targets", weight=lambda step: 1.0 + step)
    parts = [_regression(rng, (n, 2)) for n in (2, 5)]
    merged = loss.get_state(**parts[0], step=0).merge(loss.get_state(**parts[1], step=1))
    totals = [np.abs(p["preds"] - p["targets"]).sum() for p in parts]
    expected = (1.0 * totals[0] + 2.0 * totals[1]) / (2 * 2 + 5 * 2)
    np.testing.assert_allclose(merged.compute(), expected, rtol=1e-6)


def test_total_loss_value_states_and_gradient():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(N, 3)).astype(np.float32)
    y = rng.normal(size=(N, 3)).astype(np.float32)
    losses = {
        "l2": mx.L2(preds="preds.x", targets="batch.y"),
        "l1": mx.L1(preds="preds.x", targets="batch.y", weight=0.5),
        "cos": mx.NegativeCosineSimilarity(preds="preds.x", targets="batch.y", weight=0.1),
    }

    def loss_fn(p):
        return mx.total_loss(losses, {"preds": {"x": p}, "batch": {"y": y}})

    total, states = jax.jit(loss_fn)(x)
    assert set(states) == {"l2", "l1", "cos"}
    assert all(isinstance(s, mx.LossState) for s in states.values())

    def reference(p):
        cos = optax.cosine_similarity(p, y, epsilon=1e-12)
        return jnp.mean((p - y) ** 2) + 0.5 * jnp.mean(jnp.abs(p - y)) - 0.1 * jnp.mean(cos)

    np.testing.assert_allclose(total, reference(x), rtol=1e-6)
    np.testing.assert_allclose(
        sum(float(v) for v in mx.compute(states).values()), reference(x), rtol=1e-6
    )
    (value, _), grad = jax.value_and_grad(loss_fn, has_aux=True)(x)  # eager grad
    np.testing.assert_allclose(value, reference(x), rtol=1e-6)
    np.testing.assert_allclose(grad, jax.grad(reference)(x), rtol=1e-5, atol=1e-7)
    assert total.dtype == jnp.float32 and total.shape == ()


def test_empty_loss_is_zero_and_identity():
    rng = np.random.default_rng(10)
    inputs = _regression(rng)
    loss = mx.Huber(preds="preds", targets="targets")
    empty = loss.empty()
    assert float(empty.compute()) == 0.0
    state = loss.get_state(**inputs)
    np.testing.assert_allclose(empty.merge(state).compute(), state.compute(), rtol=0)
    np.testing.assert_allclose(state.merge(empty).compute(), state.compute(), rtol=0)
    # All masked: 0 with a zero (finite) gradient, so an empty batch does not poison training.
    none = np.zeros(N, bool)
    assert float(loss(**inputs, mask=none)) == 0.0
    g = jax.grad(lambda p: loss(preds=p, targets=inputs["targets"], mask=none))(inputs["preds"])
    assert np.all(np.asarray(g) == 0)


def test_positional_arguments_bind_like_get_values():
    rng = np.random.default_rng(11)
    inputs = _multiclass(rng)
    loss = mx.SoftmaxCrossEntropy(logits="logits", labels="labels")
    np.testing.assert_allclose(
        loss(inputs["logits"], inputs["labels"]), loss(**inputs), rtol=0
    )


def test_bfloat16_inputs_accumulate_in_float32():
    rng = np.random.default_rng(12)
    inputs = _regression(rng)
    loss = mx.L2(preds="preds", targets="targets")
    value = loss(**{k: jnp.asarray(v, jnp.bfloat16) for k, v in inputs.items()})
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, np.mean((inputs["preds"] - inputs["targets"]) ** 2), rtol=2e-2)


def test_input_parameters_and_key_validation():
    params = mx.SoftmaxCrossEntropy.input_parameters()
    assert list(params) == ["logits", "labels", "mask", "step"]
    assert params["mask"].default is None and params["step"].default is None
    with pytest.raises(TypeError, match="not inputs"):

        class Bad(mx.Loss):
            predictions: mx.Key = mx.REQUIRED

            def get_values(self, preds):
                return preds

    with pytest.raises(mx.ContextKeyError, match="targets"):
        mx.L1(preds="p").get_state_from_context({"p": np.zeros(3, np.float32)})


def test_shape_errors_name_the_loss_and_argument():
    with pytest.raises(mx.InputTypeError, match="L2.get_values.*targets"):
        mx.L2(preds="p", targets="t")(preds=np.zeros((4, 3), np.float32), targets=np.zeros((4, 2), np.float32))
    with pytest.raises(mx.InputTypeError, match="SoftmaxCrossEntropy"):
        mx.SoftmaxCrossEntropy(logits="l", labels="y")(
            logits=np.zeros((4, 3), np.float32), labels=np.zeros((5,), np.int32)
        )
    with pytest.raises(TypeError, match="weight"):
        mx.L1(preds="p", targets="t", weight="big")


def test_custom_loss_subclass():
    class MeanAbsoluteLogRatio(mx.Loss):
        """|log(p / t)| per element: a user-defined loss is one method."""

        preds: mx.Key = mx.REQUIRED
        targets: mx.Key = mx.REQUIRED

        def get_values(self, preds, targets):
            return jnp.abs(jnp.log(preds) - jnp.log(targets))

    assert "mask" in inspect.signature(mx.Loss.get_state).parameters
    loss = MeanAbsoluteLogRatio(preds="a", targets="b", weight=2.0)
    p = np.array([1.0, 2.0, 4.0], np.float32)
    t = np.array([2.0, 2.0, 1.0], np.float32)
    np.testing.assert_allclose(loss(p, t), 2.0 * np.mean(np.abs(np.log(p / t))), rtol=1e-6)
    np.testing.assert_allclose(
        loss.get_state_from_context({"a": p, "b": t, "m": None}).compute(), loss(p, t), rtol=0
    )
