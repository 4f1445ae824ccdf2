"""The seed document's metric-learning examples, run with ``metrix.learning``.

Only the import changes from the seed (``calibrax.metrics.learning`` -> ``metrix.learning``),
with two exceptions forced by flax itself (the seed targets an older flax): flax 0.12's
``nnx.Optimizer.update`` takes the model first (``optimizer.update(model, grads)``, the
seed: ``optimizer.update(grads)``), and ``nnx.grad`` has no ``wrt=`` argument (the seed's
``nnx.grad(loss, wrt=nnx.Param)`` is ``nnx.grad(loss, argnums=nnx.DiffState(0, nnx.Param))``).
"""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import metrix as mx
from metrix.learning import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    HardNegativeMiner,
    NTXentLoss,
    ProxyAnchorLoss,
    ProxyNCALoss,
    SemiHardMiner,
    TripletMarginLoss,
)


def _embeddings():
    embeddings = jax.random.normal(jax.random.PRNGKey(0), (4, 128))
    labels = jnp.array([0, 0, 1, 1])
    return embeddings, labels


def test_pair_losses_return_differentiable_scalars():
    embeddings, labels = _embeddings()
    for loss_fn in (ContrastiveLoss(margin=1.0), TripletMarginLoss(margin=0.2), NTXentLoss(temperature=0.5)):
        loss = loss_fn(embeddings, labels)
        assert isinstance(loss, jax.Array) and loss.shape == ()
        grad = jax.grad(lambda e: loss_fn(e, labels))(embeddings)
        assert grad.shape == embeddings.shape and bool(jnp.all(jnp.isfinite(grad)))


def test_seed_constructors_of_weighted_losses():
    embeddings, labels = _embeddings()
    losses = [
        ArcFaceLoss(num_classes=100, embedding_dim=128, margin=0.5, scale=64.0, rngs=nnx.Rngs(0)),
        CosFaceLoss(num_classes=100, embedding_dim=128, margin=0.35, scale=64.0, rngs=nnx.Rngs(0)),
        ProxyNCALoss(num_classes=100, embedding_dim=128, rngs=nnx.Rngs(0)),
        ProxyAnchorLoss(num_classes=100, embedding_dim=128, margin=0.1, scale=32.0, rngs=nnx.Rngs(0)),
    ]
    for loss_fn in losses:
        loss = loss_fn(embeddings, labels)
        assert loss.shape == () and bool(jnp.isfinite(loss))
        # the nnx module and the functional metric compute the same thing
        np.testing.assert_allclose(loss, loss_fn.loss(embeddings, labels, loss_fn.params()), rtol=1e-6)
        assert isinstance(loss_fn.loss, mx.Metric)


def test_miners_seed_api():
    embeddings, labels = _embeddings()
    indices = HardNegativeMiner().mine(embeddings, labels)
    assert indices.anchors.shape == indices.positives.shape == indices.negatives.shape
    triplets = indices.to_numpy()
    assert len(triplets) == 4  # (0,1), (1,0), (2,3), (3,2), each with its hardest negative
    indices = SemiHardMiner(margin=1.0).mine(embeddings, labels)
    assert indices.anchors.shape == indices.negatives.shape


def _batch(rng, n=32):
    x = jnp.asarray(rng.normal(size=(n, 128)), jnp.float32)
    labels = jnp.asarray(np.arange(n) % 4)
    # class-dependent inputs, so training can separate the classes
    x = x + 2.0 * jax.nn.one_hot(labels, 128)
    return x, labels


def test_seed_training_loop_with_triplet_loss_decreases_the_loss():
    batch_x, batch_labels = _batch(np.random.default_rng(0))
    # --- the seed's example ---
    encoder = nnx.Linear(128, 32, rngs=nnx.Rngs(0))
    loss_fn = TripletMarginLoss(margin=0.2)
    optimizer = nnx.Optimizer(encoder, optax.adam(1e-3), wrt=nnx.Param)

    def train_step(encoder, optimizer, batch_x, batch_labels):
        def loss(encoder):
            return loss_fn(encoder(batch_x), batch_labels)

        # flax 0.12: `wrt=` is spelled DiffState (the seed: nnx.grad(loss, wrt=nnx.Param))
        grads = nnx.grad(loss, argnums=nnx.DiffState(0, nnx.Param))(encoder)
        optimizer.update(encoder, grads)  # flax >= 0.11: the model comes first
    # --- end ---

    before = float(loss_fn(encoder(batch_x), batch_labels))
    step = nnx.jit(train_step)
    for _ in range(10):
        step(encoder, optimizer, batch_x, batch_labels)
    after = float(loss_fn(encoder(batch_x), batch_labels))
    assert after < before


def test_seed_training_loop_with_arcface_trains_encoder_and_class_weights():
    batch_x, batch_labels = _batch(np.random.default_rng(1))
    encoder = nnx.Linear(128, 32, rngs=nnx.Rngs(0))
    # --- the seed's example ---
    arcface = ArcFaceLoss(num_classes=100, embedding_dim=32, rngs=nnx.Rngs(1))

    def loss(encoder, arcface):
        return arcface(encoder(batch_x), batch_labels)

    grads = nnx.grad(loss)(encoder, arcface)
    # --- end ---
    assert bool(jnp.any(grads["kernel"][...] != 0))
    # jointly: differentiate w.r.t. both modules and step both with one optimizer each
    enc_opt = nnx.Optimizer(encoder, optax.adam(1e-2), wrt=nnx.Param)
    arc_opt = nnx.Optimizer(arcface, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(encoder, arcface, enc_opt, arc_opt):
        g_enc, g_arc = nnx.grad(loss, argnums=(0, 1))(encoder, arcface)
        enc_opt.update(encoder, g_enc)
        arc_opt.update(arcface, g_arc)

    weights_before = np.array(arcface.weights[...])
    before = float(loss(encoder, arcface))
    for _ in range(10):
        train_step(encoder, arcface, enc_opt, arc_opt)
    after = float(loss(encoder, arcface))
    assert after < before
    assert not np.allclose(weights_before, np.asarray(arcface.weights[...]))


def test_proxy_losses_train_in_nnx():
    batch_x, batch_labels = _batch(np.random.default_rng(2))
    for make in (
        lambda: ProxyAnchorLoss(num_classes=4, embedding_dim=32, rngs=nnx.Rngs(3)),
        lambda: ProxyNCALoss(num_classes=4, embedding_dim=32, rngs=nnx.Rngs(3)),
    ):
        encoder = nnx.Linear(128, 32, rngs=nnx.Rngs(0))
        loss_module = make()
        model = nnx.List([encoder, loss_module]) if hasattr(nnx, "List") else (encoder, loss_module)
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

        def loss(model):
            enc, head = model[0], model[1]
            return head(enc(batch_x), batch_labels)

        @nnx.jit
        def step(model, optimizer):
            grads = nnx.grad(loss)(model)
            optimizer.update(model, grads)

        before = float(loss(model))
        for _ in range(10):
            step(model, optimizer)
        assert float(loss(model)) < before
