"""metric_learning: edge cases, closed forms, memory, masks and errors.

Values vs pytorch-metric-learning are in tests/reference/test_metric_learning.py; here the
expected values come from brute-force numpy over every pair/triplet.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix import metric_learning as ml
from tests import helpers

PAIR_LOSSES = [
    mx.ContrastiveLoss(),
    mx.TripletMarginLoss(),
    mx.TripletMarginLoss(smooth_loss=True),
    mx.TripletMarginLoss(swap=True, reduction="mean_nonzero"),
    mx.NTXentLoss(),
    mx.SupConLoss(),
    mx.MultiSimilarityLoss(),
    mx.CircleLoss(),
]
WEIGHTED = [
    mx.ArcFaceLoss(num_classes=4, embedding_dim=3),
    mx.CosFaceLoss(num_classes=4, embedding_dim=3),
    mx.ProxyNCALoss(num_classes=4, embedding_dim=3),
    mx.ProxyAnchorLoss(num_classes=4, embedding_dim=3),
]


@functools.lru_cache(maxsize=None)
def J(loss):
    """The loss's one-shot value, compiled once per loss and shape (faster than eager here)."""
    return jax.jit(loss.__call__)


@functools.lru_cache(maxsize=None)
def JG(loss):
    """jit(value_and_grad) of the loss w.r.t. the embeddings."""
    return jax.jit(jax.value_and_grad(lambda e, y, **kw: loss(e, y, **kw)))


def _batch(seed=0, n=10, d=3, classes=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def _np_dist(x):
    return np.sqrt(((x[:, None].astype(np.float64) - x[None].astype(np.float64)) ** 2).sum(-1))


# ---------------------------------------------------------------------------------------
# Closed forms (brute force over all pairs / triplets)
# ---------------------------------------------------------------------------------------


def _triplets(y):
    n = len(y)
    return [(a, p, q) for a, p, q in itertools.product(range(n), repeat=3)
            if a != p and y[a] == y[p] and y[q] != y[a]]


@pytest.mark.parametrize("smooth,swap", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "mean_nonzero"])
def test_triplet_loss_brute_force(smooth, swap, reduction):
    x, y = _batch(1, n=11)
    d = _np_dist(x)
    losses = []
    for a, p, q in _triplets(y):
        an = min(d[a, q], d[p, q]) if swap else d[a, q]
        v = d[a, p] - an + 0.7
        losses.append(np.logaddexp(0, v) if smooth else max(v, 0))
    losses = np.array(losses)
    expected = {"mean": losses.mean(), "sum": losses.sum(), "mean_nonzero": losses[losses > 0].mean()}[reduction]
    loss = mx.TripletMarginLoss(margin=0.7, smooth_loss=smooth, swap=swap, reduction=reduction)
    np.testing.assert_allclose(J(loss)(x, y), expected, rtol=2e-6)


def test_sorted_triplet_sums_equal_chunked_loop_values_and_gradients():
    x, y = _batch(2, n=37, d=5, classes=4)
    pos, neg = ml.pair_masks(y)

    def via(fn):
        def f(e):
            d = ml.pairwise_distances(e)
            total, count_all, count_nonzero = fn(d)
            return total, (count_all, count_nonzero)
        return jax.jit(jax.value_and_grad(f, has_aux=True))(jnp.asarray(x))

    (t1, c1), g1 = via(lambda d: ml._triplet_hinge_sorted(d, pos, neg, 0.5))
    (t2, c2), g2 = via(lambda d: ml._triplet_chunked(d, pos, neg, 0.5, False, False))
    np.testing.assert_allclose(t1, t2, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-6)


def test_contrastive_loss_brute_force_and_merged_state_pools_pairs():
    loss = mx.ContrastiveLoss(margin=2.0, pos_margin=0.5)
    batches = [_batch(s, n=n) for s, n in [(3, 5), (4, 9), (5, 7)]]
    pos_all, neg_all = [], []
    state = helpers.accumulate(loss, batches=batches, jit=True)
    for x, y in batches:
        d = _np_dist(x)
        for i, j in itertools.product(range(len(y)), repeat=2):
            if i != j and y[i] == y[j]:
                pos_all.append(max(d[i, j] - 0.5, 0))
            elif y[i] != y[j]:
                neg_all.append(max(2.0 - d[i, j], 0))
    np.testing.assert_allclose(state.compute(), np.mean(pos_all) + np.mean(neg_all), rtol=1e-5)


def _np_contrastive_value_and_grad(x, y, pos_margin, neg_margin):
    """Euclidean contrastive loss ("mean" over pairs) and its closed-form gradient."""
    x = x.astype(np.float64)
    d = _np_dist(x)
    grad = np.zeros_like(x)
    parts = {True: [0.0, 0], False: [0.0, 0]}  # same label -> (sum, count)
    pairs = [(i, j) for i, j in itertools.product(range(len(y)), repeat=2) if i != j]
    for same in (True, False):
        parts[same][1] = sum(1 for i, j in pairs if (y[i] == y[j]) == same)
    for i, j in pairs:
        same = y[i] == y[j]
        hinge = d[i, j] - pos_margin if same else neg_margin - d[i, j]
        if hinge > 0:
            parts[same][0] += hinge
            unit = (x[i] - x[j]) / d[i, j]  # d(d_ij)/dx_i
            sign = 1.0 if same else -1.0
            grad[i] += sign * unit / parts[same][1]
            grad[j] -= sign * unit / parts[same][1]
    return parts[True][0] / parts[True][1] + parts[False][0] / parts[False][1], grad


def test_contrastive_gradient_matches_closed_form():
    x, y = _batch(17, n=12, d=4, classes=3)
    value, grad = JG(mx.ContrastiveLoss(margin=2.5, pos_margin=0.8))(jnp.asarray(x), y)
    expected_value, expected_grad = _np_contrastive_value_and_grad(x, y, 0.8, 2.5)
    np.testing.assert_allclose(value, expected_value, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "cosine"])
def test_contrastive_forward_mode_matches_reverse_mode(distance):
    x, y = _batch(18, n=11, d=4)
    loss = mx.ContrastiveLoss(margin=1.2, pos_margin=0.3, distance=distance, reduction="mean_nonzero")
    v = np.random.default_rng(19).normal(size=x.shape).astype(np.float32)
    _, grad = JG(loss)(jnp.asarray(x), y)
    _, tangent = jax.jit(lambda e, t: jax.jvp(lambda z: loss(z, y), (e,), (t,)))(jnp.asarray(x), v)
    np.testing.assert_allclose(tangent, np.sum(np.asarray(grad) * v), rtol=1e-4)


def test_contrastive_margins_may_be_traced_and_differentiated():
    x, y = _batch(22, n=10, d=3)
    d = _np_dist(x)
    off = ~np.eye(10, dtype=bool)
    same = (y[:, None] == y[None, :]) & off
    other = y[:, None] != y[None, :]

    def value(margins):
        return ml.contrastive_terms(jnp.asarray(x), y, pos_margin=margins[0], neg_margin=margins[1])

    margins = jnp.asarray([0.7, 2.2])
    (totals, counts), jac = jax.jit(lambda m: (value(m), jax.jacfwd(lambda q: value(q)[0])(m)))(margins)
    np.testing.assert_allclose(totals[0], np.sum(np.maximum(d[same] - 0.7, 0)), rtol=1e-5)
    np.testing.assert_allclose(totals[1], np.sum(np.maximum(2.2 - d[other], 0)), rtol=1e-5)
    # d(sum relu(d - m_pos))/d m_pos = -#active positives; d(sum relu(m_neg - d))/d m_neg = #active negatives
    expected = np.array([[-np.sum(d[same] > 0.7), 0.0], [0.0, np.sum(d[other] < 2.2)]])
    np.testing.assert_allclose(np.stack(jac), expected)


def test_contrastive_gradient_of_masked_nan_rows_is_the_filtered_gradient():
    x, y = _batch(20, n=12)
    keep = np.arange(12) % 4 != 2
    x_bad = x.copy()
    x_bad[~keep] = np.nan
    loss = mx.ContrastiveLoss(margin=2.0)
    _, grad = jax.jit(jax.value_and_grad(lambda e: loss(e, y, mask=keep)))(jnp.asarray(x_bad))
    _, grad_kept = jax.jit(jax.value_and_grad(lambda e: loss(e, y[keep])))(jnp.asarray(x[keep]))
    np.testing.assert_array_equal(np.asarray(grad)[~keep], 0.0)
    np.testing.assert_allclose(np.asarray(grad)[keep], grad_kept, rtol=1e-5, atol=1e-7)


def test_contrastive_value_and_grad_costs_two_matmuls():
    """Distances by one product, the gradient by one more (no autodiff x x^T transposes)."""
    n, d = 128, 256  # wide rows: the matmuls dominate the count (autodiff's form: 3.3 products)
    loss = mx.ContrastiveLoss(normalize=True, reduction="mean_nonzero")
    compiled = jax.jit(jax.value_and_grad(lambda e, l: loss(e, l))).lower(
        jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((n,), jnp.int32)
    ).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if not cost or "flops" not in cost:
        pytest.skip("no cost analysis on this backend")
    matmul_flops = 2 * n * n * d
    assert cost["flops"] < 2.6 * matmul_flops, cost["flops"] / matmul_flops


def test_ntxent_simclr_closed_form():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    z = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = z @ z.T / 0.5
    losses = []
    for a in range(8):
        p = (a + 4) % 8
        denominator = np.exp(s[a, p]) + sum(np.exp(s[a, k]) for k in range(8) if y[k] != y[a])
        losses.append(-np.log(np.exp(s[a, p]) / denominator))
    np.testing.assert_allclose(J(mx.NTXentLoss(temperature=0.5))(x, y), np.mean(losses), rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Degenerate batches: 0 with zero gradient, never NaN
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda l: type(l).__name__)
@pytest.mark.parametrize("labels", ["same", "distinct", "single"])
def test_no_valid_pairs_give_zero_and_zero_gradient(loss, labels):
    n = 1 if labels == "single" else 5
    x = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    y = np.zeros(n, np.int32) if labels != "distinct" else np.arange(n, dtype=np.int32)
    if isinstance(loss, (mx.ContrastiveLoss, mx.MultiSimilarityLoss)) and labels != "single":
        pytest.skip("positive pairs alone, or negative pairs alone, give a loss")
    value, grad = JG(loss)(jnp.asarray(x), y)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda l: type(l).__name__)
def test_identical_and_zero_embeddings_have_finite_gradients(loss):
    y = np.array([0, 0, 1, 1, 2, 2], np.int32)
    for x in (np.ones((6, 3), np.float32), np.zeros((6, 3), np.float32)):
        value, grad = JG(loss)(jnp.asarray(x), y)
        assert np.isfinite(value) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("loss", WEIGHTED, ids=lambda l: type(l).__name__)
def test_weighted_losses_finite_at_aligned_embeddings(loss):
    params = loss.init(jax.random.PRNGKey(0))
    key = next(iter(params))
    w = np.asarray(params[key])
    # embeddings exactly along class vectors: |cos| = 1 for the target class
    x = (w[:, :2].T if key == "weights" else w[:2]).astype(np.float32)
    y = np.array([0, 1], np.int32)
    value, grads = jax.jit(jax.value_and_grad(lambda e, p: loss(e, y, p), argnums=(0, 1)))(jnp.asarray(x), params)
    assert np.isfinite(value)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------------------------------------
# Masks mean boolean indexing; mined triplets
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda l: type(l).__name__)
def test_mask_equals_filtering_even_with_nan_rows(loss):
    x, y = _batch(7, n=12)
    keep = np.arange(12) % 4 != 1
    x_bad = x.copy()
    x_bad[~keep] = np.nan
    np.testing.assert_allclose(J(loss)(x_bad, y, mask=keep), J(loss)(x[keep], y[keep]), rtol=1e-5)


@pytest.mark.parametrize("loss", WEIGHTED, ids=lambda l: type(l).__name__)
def test_weighted_mask_equals_filtering(loss):
    x, y = _batch(8, n=10, classes=4)
    params = loss.init(jax.random.PRNGKey(1))
    keep = np.arange(10) % 3 != 0
    np.testing.assert_allclose(J(loss)(x, y, params, mask=keep), J(loss)(x[keep], y[keep], params), rtol=1e-5)


def test_all_triplets_mined_equal_the_all_triplet_loss():
    x, y = _batch(9, n=9)
    indices = jax.jit(mx.TripletMarginMiner(margin=1e9).mine)(x, y)
    assert int(indices.valid.sum()) == len(_triplets(y))
    for loss in (mx.TripletMarginLoss(), mx.TripletMarginLoss(swap=True, smooth_loss=True)):
        v_mined, g_mined = JG(loss)(jnp.asarray(x), y, indices=indices)
        v_all, g_all = JG(loss)(jnp.asarray(x), y)
        np.testing.assert_allclose(v_mined, v_all, rtol=1e-5)
        np.testing.assert_allclose(g_mined, g_all, rtol=1e-4, atol=1e-6)


def test_miners_respect_masks_and_jit():
    x, y = _batch(10, n=12)
    keep = np.arange(12) % 3 != 0
    for miner in (mx.BatchHardMiner(), mx.HardNegativeMiner(), mx.SemiHardMiner(), mx.TripletMarginMiner()):
        mined = jax.jit(miner.mine)(x, y, keep)
        triplets = mined.to_numpy()
        assert keep[triplets].all(), type(miner).__name__
        assert np.all(y[triplets[:, 0]] == y[triplets[:, 1]])
        assert np.all(y[triplets[:, 0]] != y[triplets[:, 2]])
        assert np.all(triplets[:, 0] != triplets[:, 1])
        assert int(mined.num_found) == len(triplets)


def _np_margin_triplets(x, y, keep, margin, kind):
    """Brute force: every triplet with its margin test, in the miner's slot order."""
    d = _np_dist(x)
    out = []
    for a, p in itertools.product(range(len(y)), repeat=2):
        if a == p or y[a] != y[p] or not (keep[a] and keep[p]):
            continue
        negatives = sorted((d[a, q], q) for q in range(len(y)) if y[q] != y[a] and keep[q])
        for _, q in negatives:
            m = d[a, q] - d[a, p]
            if {"all": m <= margin, "hard": m <= min(margin, 0), "semihard": 0 < m <= margin,
                    "easy": m > margin}[kind]:
                out.append((a, p, q))
    return out


@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
def test_triplet_margin_miner_slots_match_brute_force_order(kind):
    x, y = _batch(21, n=14, d=3, classes=3)
    keep = np.arange(14) % 5 != 3
    mined = jax.jit(mx.TripletMarginMiner(margin=0.4, type_of_triplets=kind).mine)(x, y, keep)
    expected = _np_margin_triplets(x, y, keep, 0.4, kind)
    assert [tuple(t) for t in mined.to_numpy().tolist()] == expected
    assert len(mined) == 14**3
    assert not np.any(np.asarray(mined.valid)[len(expected):])


def test_triplet_margin_miner_capacity_keeps_the_leading_slots():
    x, y = _batch(11, n=8)
    full = jax.jit(mx.TripletMarginMiner(margin=1e9).mine)(x, y).to_numpy()
    assert len(full) == len(_triplets(y))
    for capacity in (5, len(full) + 7):
        few = jax.jit(mx.TripletMarginMiner(margin=1e9, capacity=capacity).mine)(x, y)
        assert len(few) == capacity
        np.testing.assert_array_equal(few.to_numpy(), full[:capacity])
        assert int(few.num_found) == len(full)  # truncation is reported
    # an empty mining (no positive pair): nothing valid, indices 0
    none = jax.jit(mx.TripletMarginMiner(capacity=5, margin=1e9).mine)(x, np.arange(8, dtype=np.int32))
    assert not np.any(np.asarray(none.valid)) and np.all(np.asarray(none.anchors) == 0)


def test_triplet_margin_miner_at_1024_never_forms_n_cubed():
    miner = mx.TripletMarginMiner(margin=0.2, capacity=1 << 20)
    x = jax.ShapeDtypeStruct((1024, 128), jnp.float32)
    y = jax.ShapeDtypeStruct((1024,), jnp.int32)
    analysis = jax.jit(miner.mine).lower(x, y).compile().memory_analysis()
    if analysis is None:
        pytest.skip("no memory analysis on this backend")
    assert analysis.temp_size_in_bytes < 1 << 28, analysis.temp_size_in_bytes  # N^3 bools: 1 GiB


def test_triplet_margin_miner_refuses_int32_overflowing_batches():
    with pytest.raises(ValueError, match="2\\^31"):
        mx.TripletMarginMiner(capacity=8).mine(jnp.zeros((1300, 2)), jnp.zeros((1300,), jnp.int32))


# ---------------------------------------------------------------------------------------
# Memory: all triplets at N = 1024 never materialise N^3
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{}, {"smooth_loss": True}, {"swap": True}], ids=["hinge", "smooth", "swap"])
def test_all_triplet_loss_and_gradient_at_1024_fit_in_1gib(config):
    loss = mx.TripletMarginLoss(**config)
    x = jax.ShapeDtypeStruct((1024, 128), jnp.float32)
    y = jax.ShapeDtypeStruct((1024,), jnp.int32)
    compiled = jax.jit(jax.value_and_grad(lambda e, l: loss(e, l))).lower(x, y).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        pytest.skip("no memory analysis on this backend")
    assert analysis.temp_size_in_bytes < 1 << 30, analysis.temp_size_in_bytes


# ---------------------------------------------------------------------------------------
# API: keys, state, errors
# ---------------------------------------------------------------------------------------


def test_context_keys_and_state_algebra():
    x, y = _batch(12)
    loss = mx.TripletMarginLoss(embeddings="preds.emb", labels="batch.label")
    state = loss.get_state_from_context({"preds": {"emb": x}, "batch": {"label": y}})
    np.testing.assert_allclose(state.compute(), loss(x, y), rtol=1e-6)
    assert jax.tree.structure(loss.empty()) == jax.tree.structure(state)
    states = mx.get_states({"triplet": loss}, {"preds": {"emb": x}, "batch": {"label": y}})
    np.testing.assert_allclose(mx.compute(states)["triplet"], loss(x, y), rtol=1e-6)


def test_weighted_loss_params_are_inputs():
    loss = mx.ArcFaceLoss(num_classes=4, embedding_dim=3)
    x, y = _batch(13, classes=4)
    params = loss.init(jax.random.PRNGKey(0))
    value = jax.jit(lambda p: loss(x, y, p))(params)
    np.testing.assert_allclose(value, loss(x, y, params), rtol=1e-6)
    grads = jax.jit(jax.grad(lambda p: loss(x, y, p)))(params)  # jit: eager grad compiles op by op
    assert grads["weights"].shape == (3, 4)


def test_errors():
    x, y = _batch(14)
    with pytest.raises(ValueError, match="reduction"):
        mx.TripletMarginLoss(reduction="avg")
    with pytest.raises(ValueError, match="distance"):
        mx.ContrastiveLoss(distance="manhattan")
    with pytest.raises(ValueError, match="type_of_triplets"):
        mx.TripletMarginMiner(type_of_triplets="medium")
    with pytest.raises(ValueError, match="distance"):
        mx.BatchHardMiner(distance="l1")
    with pytest.raises(mx.InputTypeError, match="labels"):
        mx.TripletMarginLoss()(x, y[:-1])
    with pytest.raises(mx.InputTypeError, match="embeddings"):
        mx.NTXentLoss()(x[0], y)
    arcface = mx.ArcFaceLoss(num_classes=4, embedding_dim=3)
    with pytest.raises(TypeError, match="init"):
        arcface(x, y)
    with pytest.raises(ValueError, match="shape"):
        arcface(x, y, {"weights": jnp.zeros((4, 3))})


def test_triplet_hinge_forward_mode_matches_reverse_mode():
    x, y = _batch(15, n=13, d=4)
    loss = mx.TripletMarginLoss(normalize=True)
    v = np.random.default_rng(16).normal(size=x.shape).astype(np.float32)
    _, grad = JG(loss)(jnp.asarray(x), y)
    _, tangent = jax.jit(lambda e, t: jax.jvp(lambda z: loss(z, y), (e,), (t,)))(jnp.asarray(x), v)
    np.testing.assert_allclose(tangent, np.sum(np.asarray(grad) * v), rtol=1e-4)
