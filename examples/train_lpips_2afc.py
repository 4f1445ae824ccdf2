"""Train LPIPS calibration weights on two-alternative forced-choice (2AFC) judgements.

The LPIPS paper (Zhang et al., 2018) learns the per-channel weights ``w_l >= 0`` of its
distance from triplets ``(ref, p0, p1, h)``: ``h`` in [0, 1] is the fraction of people who
judged ``p1`` closer to ``ref`` than ``p0`` (BAPPS' convention). A small "rank" network
``G`` turns the two distances into a probability and is trained with binary cross-entropy::

    d0 = LPIPS_w(ref, p0),  d1 = LPIPS_w(ref, p1)
    G(d0, d1) = sigmoid(MLP([d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)]))   # 5 -> 32 -> 32 -> 1
    loss = BCE(G(d0, d1), h)

with LeakyReLU(0.2) between the layers and ``eps = 0.1`` (lpips' ``Dist2LogitLayer``). After
every optimizer step the calibration is projected back to ``w >= 0``
(:func:`metrix.perceptual.lpips_math.project_nonnegative`, lpips' ``clamp(min=0)``).

Everything here is synthetic so it runs offline in seconds on a CPU: an AlexNet trunk with
*random* weights, 32x32 images, distortions of three kinds (pixel noise, smooth noise, colour
shift) at random strengths, and judgements from a hidden "true" calibration,
``h = sigmoid((d0_true - d1_true) / tau)``, so there is something to learn. The backbone is
frozen, so its taps are computed once; training touches only the calibration and ``G``
(``LPIPSFromFeatures`` evaluates the held-out 2AFC score).

    python examples/train_lpips_2afc.py --steps 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

try:
    import metrix  # noqa: F401
except ModuleNotFoundError:  # run from a source checkout without installing metrix
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrix.backbones.lpips_nets import lpips_backbone
from metrix.perceptual import lpips_math as lpips_core
from metrix.perceptual.lpips import LPIPSFromFeatures

NET = "alex"
RANK_EPS = 0.1  # lpips' Dist2LogitLayer epsilon in the ratio features


class RankHead(nn.Module):
    """lpips' rank network G on (d0, d1): returns the logit of P(judge picks p1)."""

    hidden: int = 32

    @nn.compact
    def __call__(self, d0, d1):
        x = jnp.stack([d0, d1, d0 - d1, d0 / (d1 + RANK_EPS), d1 / (d0 + RANK_EPS)], axis=-1)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
        x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
        return nn.Dense(1)(x)[..., 0]  # the sigmoid is inside the stable BCE below


# ---------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------


def _smooth_noise(rng, n, size, cells=4):
    """Low-frequency noise: a coarse grid of values, bilinearly upsampled."""
    coarse = rng.normal(size=(n, cells, cells, 3)).astype(np.float32)
    return np.asarray(jax.image.resize(coarse, (n, size, size, 3), "bilinear"))


def _distort(rng, ref):
    """ref plus one distortion of a random kind (pixel noise, smooth noise or colour shift).

    One kind per image, so which of p0, p1 is closer depends on how the calibration weighs
    the kinds against each other: that is what the judgements teach.
    """
    n, size = ref.shape[0], ref.shape[1]
    kind = rng.integers(0, 3, size=n)
    strength = rng.uniform(0.05, 0.5, size=(n, 1, 1, 1)).astype(np.float32)
    noise = np.stack(
        [
            rng.normal(size=ref.shape).astype(np.float32),
            _smooth_noise(rng, n, size),
            np.broadcast_to(rng.normal(size=(n, 1, 1, 3)), ref.shape).astype(np.float32),
        ]
    )[kind, np.arange(n)]
    return np.clip(ref + strength * noise, -1, 1)


def make_triplets(seed: int, n: int, size: int):
    """(ref, p0, p1) NHWC images in [-1, 1]: smooth random scenes and two distortions of each."""
    rng = np.random.default_rng(seed)
    ref = np.clip(_smooth_noise(rng, n, size, cells=6) * 0.6, -1, 1)
    return ref, _distort(rng, ref), _distort(rng, ref)


def random_calibration(rng, scale=1.0, sparsity=0.0):
    """Non-negative per-channel weights for every alex tap (a fraction ``sparsity`` zero)."""
    return {
        f"lin{k}": (scale * rng.exponential(size=c) * (rng.uniform(size=c) >= sparsity)).astype(
            np.float32
        )
        for k, c in enumerate(lpips_core.LPIPS_CHANNELS[NET])
    }


# ---------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------


def two_afc_score(d0, d1, h):
    """lpips' 2AFC agreement: credit h when d1 < d0 (p1 closer), 1 - h when d0 < d1, half on ties."""
    d0, d1, h = (np.asarray(x) for x in (d0, d1, h))
    return float(np.mean((d0 < d1) * (1 - h) + (d1 < d0) * h + (d0 == d1) * 0.5))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train", type=int, default=384, help="training triplets")
    parser.add_argument("--test", type=int, default=256, help="held-out triplets")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument(
        "--tau", type=float, default=0.2, help="judge noise, in std units of d0 - d1"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    # A frozen random trunk; its taps of every image are computed once.
    module = lpips_backbone(NET)
    backbone = module.init(jax.random.PRNGKey(args.seed), jnp.zeros((1, args.size, args.size, 3)))[
        "params"
    ]
    features = jax.jit(lpips_core.lpips_features, static_argnames=("net",))
    n = args.train + args.test
    ref, p0, p1 = make_triplets(args.seed, n, args.size)
    taps = features(backbone, np.concatenate([ref, p0, p1]), net=NET)
    ref_t, p0_t, p1_t = ([t[i * n : (i + 1) * n] for t in taps] for i in range(3))
    split = lambda feats, part: [
        f[: args.train] if part == "train" else f[args.train :] for f in feats
    ]

    # Judgements from a hidden calibration: h = P(a judge picks p1) = sigmoid((d0 - d1) / tau).
    distance = jax.jit(lpips_core.lpips_from_features)
    true_cal = random_calibration(rng, sparsity=0.9)
    d0_true, d1_true = distance(ref_t, p0_t, true_cal), distance(ref_t, p1_t, true_cal)
    gap = d0_true - d1_true
    h = jax.nn.sigmoid(gap / (args.tau * jnp.std(gap)))

    head = RankHead()
    params = {
        "calibration": random_calibration(rng, scale=0.1),  # a different, dense starting point
        "head": head.init(jax.random.PRNGKey(args.seed + 1), jnp.zeros(2), jnp.zeros(2))["params"],
    }

    def loss_fn(params, ref, a, b, judge):
        d0 = lpips_core.lpips_from_features(ref, a, params["calibration"])
        d1 = lpips_core.lpips_from_features(ref, b, params["calibration"])
        logits = head.apply({"params": params["head"]}, d0, d1)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, judge))

    optimizer = optax.adam(args.lr)
    train = (split(ref_t, "train"), split(p0_t, "train"), split(p1_t, "train"), h[: args.train])

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params, *train)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # projected gradient descent: the calibration stays a non-negative weighting
        params = {**params, "calibration": lpips_core.project_nonnegative(params["calibration"])}
        return params, opt_state, loss

    # Held-out 2AFC agreement, through the metric API (per-pair distances from its buffer).
    metric = LPIPSFromFeatures(net=NET, capacity=args.test)
    test_ref, test_p0, test_p1 = split(ref_t, "test"), split(p0_t, "test"), split(p1_t, "test")
    test_h = h[args.train :]

    def test_score(calibration):
        d0 = metric.get_state(test_ref, test_p0, calibration).compute()["per_image"]
        d1 = metric.get_state(test_ref, test_p1, calibration).compute()["per_image"]
        return two_afc_score(d0, d1, test_h)

    loss_before = float(jax.jit(loss_fn)(params, *train))
    score_before = test_score(params["calibration"])
    opt_state = optimizer.init(params)
    losses = []
    for _ in range(args.steps):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    loss_after = float(jax.jit(loss_fn)(params, *train))
    score_after = test_score(params["calibration"])
    score_true = test_score(true_cal)
    minimum = min(float(jnp.min(w)) for w in jax.tree_util.tree_leaves(params["calibration"]))

    print(f"train BCE  before {loss_before:.4f}  after {loss_after:.4f}  ({args.steps} steps)")
    print(
        f"test 2AFC  before {score_before:.3f}  after {score_after:.3f}  (true calibration {score_true:.3f})"
    )
    print(
        f"min calibration weight {minimum:.3g} (projected to >= 0)  time {time.perf_counter() - start:.1f}s"
    )
    return {
        "loss_before": loss_before,
        "loss_after": loss_after,
        "losses": losses,
        "score_before": score_before,
        "score_after": score_after,
        "score_true": score_true,
        "calibration": params["calibration"],
        "min_weight": minimum,
    }


if __name__ == "__main__":
    main()
