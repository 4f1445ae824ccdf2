"""metric_learning vs pytorch-metric-learning (CPU torch, float64 reference).

Loss values and gradients w.r.t. embeddings (and class weights / proxies) to rtol 1e-5,
over several batch sizes and label layouts (including classes with a single sample), with
PML's hyperparameters, distances and reducers matched through metrix's options.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from tests import helpers

torch = pytest.importorskip("torch")
pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_reducers = pytest.importorskip("pytorch_metric_learning.reducers")
lmu = pytest.importorskip("pytorch_metric_learning.utils.loss_and_miner_utils")

RTOL = 1e-5
SIZES = (7, 40)
LAYOUTS = ("balanced", "singletons", "two_classes")


def make_labels(rng, n, layout):
    if layout == "balanced":
        return rng.permutation(np.arange(n) % max(n // 4, 2)).astype(np.int32)
    if layout == "singletons":  # many classes of one sample, a few larger ones
        labels = rng.integers(0, n // 2 + 1, size=n)
        labels[:3] = labels[0]  # at least one class with positives
        return labels.astype(np.int32)
    return rng.integers(0, 2, size=n).astype(np.int32)


def make_batch(seed, n, layout, d=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, make_labels(rng, n, layout)


def torch_value_and_grad(loss_fn, x, y, indices=None, param=None):
    """PML loss and gradients in float64 (w.r.t. embeddings and optionally a parameter)."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y, dtype=torch.int64)
    loss_fn = loss_fn.double()
    if indices is not None:
        indices = tuple(torch.tensor(np.asarray(i), dtype=torch.int64) for i in indices)
    value = loss_fn(xt, yt, indices)
    grads = torch.autograd.grad(value, [xt] + ([param] if param is not None else []), allow_unused=True)
    out = [g.detach().numpy() if g is not None else np.zeros(tuple(t.shape)) for g, t in zip(grads, [xt] + ([param] if param is not None else []))]
    return float(value.detach()), out


@functools.lru_cache(maxsize=None)
def _jitted_value_and_grad(loss, with_params):
    """One compiled program per loss and input shape (labels are inputs: layouts reuse it)."""
    if with_params:
        return jax.jit(jax.value_and_grad(lambda x, p, y: loss(x, y, p), argnums=(0, 1)))
    return jax.jit(jax.value_and_grad(lambda x, y, **kw: loss(x, y, **kw)))


def jax_value_and_grad(loss, x, y, *extra, **kw):
    if extra:
        value, grads = _jitted_value_and_grad(loss, True)(jnp.asarray(x), *extra, jnp.asarray(y))
    else:
        value, grads = _jitted_value_and_grad(loss, False)(jnp.asarray(x), jnp.asarray(y), **kw)
    return float(value), grads


def assert_close(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(np.max(np.abs(expected), initial=0.0), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# ---------------------------------------------------------------------------------------
# Pair and triplet losses
# ---------------------------------------------------------------------------------------


def _pair_cases():
    return [
        (
            "contrastive",
            mx.ContrastiveLoss(margin=1.0, pos_margin=0.0, normalize=True, reduction="mean_nonzero"),
            lambda: pml_losses.ContrastiveLoss(pos_margin=0, neg_margin=1),
        ),
        (
            "contrastive_margins_mean",
            mx.ContrastiveLoss(margin=1.3, pos_margin=0.4, normalize=True, reduction="mean"),
            lambda: pml_losses.ContrastiveLoss(pos_margin=0.4, neg_margin=1.3, reducer=pml_reducers.MeanReducer()),
        ),
        (
            "contrastive_raw_sum",
            mx.ContrastiveLoss(margin=4.0, pos_margin=1.0, reduction="sum"),
            lambda: pml_losses.ContrastiveLoss(
                pos_margin=1.0, neg_margin=4.0, reducer=pml_reducers.SumReducer(),
                distance=_lp(normalize_embeddings=False),
            ),
        ),
        (
            "contrastive_squared",
            mx.ContrastiveLoss(margin=1.5, pos_margin=0.3, distance="squared_euclidean", normalize=True,
                               reduction="mean_nonzero"),
            lambda: pml_losses.ContrastiveLoss(pos_margin=0.3, neg_margin=1.5, distance=_lp(power=2)),
        ),
        (
            # PML's cosine is a similarity s = 1 - d: relu(d - m_pos) = relu((1 - m_pos) - s)
            "contrastive_cosine",
            mx.ContrastiveLoss(margin=0.8, pos_margin=0.1, distance="cosine", reduction="mean_nonzero"),
            lambda: pml_losses.ContrastiveLoss(pos_margin=0.9, neg_margin=0.2, distance=_cosine()),
        ),
        (
            "triplet_pml_default",
            mx.TripletMarginLoss(margin=0.05, normalize=True, reduction="mean_nonzero"),
            lambda: pml_losses.TripletMarginLoss(margin=0.05),
        ),
        (
            "triplet_raw_sum",
            mx.TripletMarginLoss(margin=0.5, reduction="sum"),
            lambda: pml_losses.TripletMarginLoss(
                margin=0.5, reducer=pml_reducers.SumReducer(), distance=_lp(normalize_embeddings=False)
            ),
        ),
        (
            "triplet_squared",
            mx.TripletMarginLoss(margin=0.3, distance="squared_euclidean", normalize=True, reduction="mean"),
            lambda: pml_losses.TripletMarginLoss(
                margin=0.3, reducer=pml_reducers.MeanReducer(), distance=_lp(power=2)
            ),
        ),
        (
            "triplet_smooth",
            mx.TripletMarginLoss(margin=0.1, smooth_loss=True, normalize=True, reduction="mean_nonzero"),
            lambda: pml_losses.TripletMarginLoss(margin=0.1, smooth_loss=True),
        ),
        (
            "triplet_swap",
            mx.TripletMarginLoss(margin=0.2, swap=True, normalize=True, reduction="mean_nonzero"),
            lambda: pml_losses.TripletMarginLoss(margin=0.2, swap=True),
        ),
        (
            "ntxent",
            mx.NTXentLoss(temperature=0.07),
            lambda: pml_losses.NTXentLoss(temperature=0.07),
        ),
        ("supcon", mx.SupConLoss(), lambda: pml_losses.SupConLoss()),
        ("multi_similarity", mx.MultiSimilarityLoss(), lambda: pml_losses.MultiSimilarityLoss()),
        ("circle", mx.CircleLoss(), lambda: pml_losses.CircleLoss()),
    ]


def _lp(**kw):
    from pytorch_metric_learning.distances import LpDistance

    return LpDistance(**kw)


def _cosine():
    from pytorch_metric_learning.distances import CosineSimilarity

    return CosineSimilarity()


PAIR_CASES = _pair_cases()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", PAIR_CASES, ids=[c[0] for c in PAIR_CASES])
def test_pair_losses_match_pml(case, n, layout):
    name, loss, make_ref = case
    x, y = make_batch(hash((name, n, layout)) % 2**31, n, layout)
    value, grad = jax_value_and_grad(loss, x, y)
    ref_value, (ref_grad,) = torch_value_and_grad(make_ref(), x, y)
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)


def test_pair_loss_jit_matches_eager():
    loss = PAIR_CASES[0][1]
    x, y = make_batch(3, 7, "balanced")
    np.testing.assert_allclose(jax.jit(loss.__call__)(x, y), loss(x, y), rtol=1e-6)


def test_triplet_loss_with_mined_indices_matches_pml():
    x, y = make_batch(11, 32, "balanced")
    # capacity 32 = BatchHardMiner's slot count: one compiled program per loss
    for miner in (mx.BatchHardMiner(normalize=True), mx.TripletMarginMiner(normalize=True, margin=0.3, capacity=32)):
        indices = _jit_mine(miner, x, y)
        triplets = indices.to_numpy().T
        for loss, ref in [
            (mx.TripletMarginLoss(margin=0.1, normalize=True, reduction="mean_nonzero"),
             pml_losses.TripletMarginLoss(margin=0.1)),
            (mx.TripletMarginLoss(margin=0.1, normalize=True, swap=True, smooth_loss=True, reduction="mean"),
             pml_losses.TripletMarginLoss(margin=0.1, swap=True, smooth_loss=True, reducer=pml_reducers.MeanReducer())),
            (mx.ContrastiveLoss(normalize=True, reduction="mean_nonzero"), pml_losses.ContrastiveLoss()),
        ]:
            value, grad = jax_value_and_grad(loss, x, y, indices=indices)
            ref_value, (ref_grad,) = torch_value_and_grad(ref, x, y, indices=triplets)
            assert_close(value, ref_value)
            assert_close(grad, ref_grad)


# ---------------------------------------------------------------------------------------
# Merged states over uneven batches, with masks, eager and jitted
# ---------------------------------------------------------------------------------------


def _pml_sum_and_count(x, y, margin):
    """PML's sum of triplet losses and the number of triplets of one batch."""
    ref = pml_losses.TripletMarginLoss(margin=margin, reducer=pml_reducers.SumReducer())
    total, _ = torch_value_and_grad(ref, x, y)
    anchors, _, _ = lmu.get_all_triplets_indices(torch.tensor(y, dtype=torch.int64))
    return total, len(anchors)


@pytest.mark.parametrize("jit,masked", [(False, True), (True, False), (True, True)])
def test_triplet_state_merged_over_uneven_batches(jit, masked):
    x, y = make_batch(5, 45, "balanced")
    rng = np.random.default_rng(1)
    keep = rng.random(45) > 0.3 if masked else np.ones(45, bool)
    loss = mx.TripletMarginLoss(margin=0.2, normalize=True, reduction="mean")
    bounds = [0, 7, 25, 45]
    state = helpers.accumulate(loss, x, y, splits=bounds, jit=jit, mask=keep)
    totals, counts = 0.0, 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sel = keep[lo:hi]
        total, count = _pml_sum_and_count(x[lo:hi][sel], y[lo:hi][sel], 0.2)
        totals, counts = totals + total, counts + count
    assert_close(state.compute(), totals / counts)


@pytest.mark.parametrize("jit", [True])
def test_arcface_state_merged_is_mean_over_all_examples(jit):
    x, y = make_batch(6, 30, "singletons")
    loss = mx.ArcFaceLoss(num_classes=int(y.max()) + 1, embedding_dim=8)
    params = loss.init(jax.random.PRNGKey(0))
    state = helpers.accumulate(loss, x, y, splits=(0, 4, 19, 30), jit=jit, shared={"params": params})
    ref = pml_losses.ArcFaceLoss(num_classes=loss.num_classes, embedding_size=8, margin=np.degrees(0.5), scale=64)
    with torch.no_grad():
        ref.W.copy_(torch.tensor(np.asarray(params["weights"])))
    ref_value, _ = torch_value_and_grad(ref, x, y)
    assert_close(state.compute(), ref_value)


# ---------------------------------------------------------------------------------------
# Losses with trainable weights
# ---------------------------------------------------------------------------------------


def _weighted_cases(num_classes, d):
    return [
        (
            "arcface",
            mx.ArcFaceLoss(num_classes=num_classes, embedding_dim=d),
            lambda: pml_losses.ArcFaceLoss(num_classes, d, margin=np.degrees(0.5), scale=64),
            "weights", "W",
        ),
        (
            "arcface_small_scale",
            mx.ArcFaceLoss(num_classes=num_classes, embedding_dim=d, margin=0.3, scale=10.0),
            lambda: pml_losses.ArcFaceLoss(num_classes, d, margin=np.degrees(0.3), scale=10),
            "weights", "W",
        ),
        (
            "cosface",
            mx.CosFaceLoss(num_classes=num_classes, embedding_dim=d),
            lambda: pml_losses.CosFaceLoss(num_classes, d, margin=0.35, scale=64),
            "weights", "W",
        ),
        (
            "proxy_nca",
            mx.ProxyNCALoss(num_classes=num_classes, embedding_dim=d, softmax_scale=3.0),
            lambda: pml_losses.ProxyNCALoss(num_classes, d, softmax_scale=3.0),
            "proxies", "proxies",
        ),
        (
            "proxy_anchor",
            mx.ProxyAnchorLoss(num_classes=num_classes, embedding_dim=d),
            lambda: pml_losses.ProxyAnchorLoss(num_classes, d, margin=0.1, alpha=32),
            "proxies", "proxies",
        ),
    ]


WEIGHTED_NAMES = [c[0] for c in _weighted_cases(3, 8)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", WEIGHTED_NAMES)
def test_weighted_losses_match_pml(name, n, layout):
    x, y = make_batch(hash((name, n, layout)) % 2**31, n, layout)
    num_classes = int(y.max()) + 3  # some classes absent from the batch
    case = {c[0]: c for c in _weighted_cases(num_classes, x.shape[1])}[name]
    _, loss, make_ref, key, torch_attr = case
    params = loss.init(jax.random.PRNGKey(n))
    ref = make_ref().double()
    param = getattr(ref, torch_attr)
    with torch.no_grad():
        param.copy_(torch.tensor(np.asarray(params[key]), dtype=torch.float64))
    value, (grad_x, grad_p) = jax_value_and_grad(loss, x, y, params)
    ref_value, (ref_grad_x, ref_grad_p) = torch_value_and_grad(ref, x, y, param=param)
    assert_close(value, ref_value)
    assert_close(grad_x, ref_grad_x)
    assert_close(grad_p[key], ref_grad_p)


# ---------------------------------------------------------------------------------------
# Miners
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _jitted_mine(miner):
    return jax.jit(miner.mine)


def _jit_mine(miner, x, y):
    return _jitted_mine(miner)(x, y)


def _as_set(triplets):
    return {tuple(int(v) for v in t) for t in np.asarray(triplets).T}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_hard_miner_matches_pml(layout):
    x, y = make_batch(21, 30, layout)
    ours = jax.jit(mx.BatchHardMiner(normalize=True).mine)(x, y).to_numpy()
    a, p, n = pml_miners.BatchHardMiner()(torch.tensor(x), torch.tensor(y, dtype=torch.int64))
    assert {tuple(t) for t in ours.tolist()} == _as_set(np.stack([a.numpy(), p.numpy(), n.numpy()]))


@pytest.mark.parametrize("kind", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_triplet_margin_miner_matches_pml(kind, layout):
    x, y = make_batch(22, 20, layout)
    ours = _jit_mine(mx.TripletMarginMiner(margin=0.2, type_of_triplets=kind, normalize=True), x, y)
    ref = pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=kind)
    a, p, n = ref(torch.tensor(x), torch.tensor(y, dtype=torch.int64))
    assert {tuple(t) for t in ours.to_numpy().tolist()} == _as_set(np.stack([a.numpy(), p.numpy(), n.numpy()]))


def _numpy_distances(x):
    return np.sqrt(np.maximum(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1), 0))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hard_negative_and_semihard_miners_match_brute_force(layout):
    x, y = make_batch(23, 24, layout)
    d = _numpy_distances(x.astype(np.float64))
    n = len(y)
    hard, semi = set(), set()
    for a in range(n):
        negs = [k for k in range(n) if y[k] != y[a]]
        for p in range(n):
            if p == a or y[p] != y[a] or not negs:
                continue
            hard.add((a, p, min(negs, key=lambda k: d[a, k])))
            cands = [k for k in negs if d[a, p] < d[a, k] < d[a, p] + 1.0]
            if cands:
                semi.add((a, p, min(cands, key=lambda k: d[a, k])))
    got_hard = {tuple(t) for t in _jit_mine(mx.HardNegativeMiner(), x, y).to_numpy().tolist()}
    got_semi = {tuple(t) for t in _jit_mine(mx.SemiHardMiner(margin=1.0), x, y).to_numpy().tolist()}
    assert got_hard == hard
    assert got_semi == semi
