"""Behaviours of the calibrax-style layer (seed 004) that users rely on.

Expected values are written out by hand, not computed by metrix.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.metric_learning.miners import MinedIndices


def test_mined_indices_from_three_arrays_are_all_valid():
    idx = MinedIndices(jnp.array([0, 2]), jnp.array([1, 3]), jnp.array([2, 0]))
    np.testing.assert_array_equal(np.asarray(idx.valid), [True, True])
    np.testing.assert_array_equal(idx.to_numpy(), [[0, 1, 2], [2, 3, 0]])
    # Still a pytree: passes through jit with the filled-in mask.
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda i: i.valid)(idx)), [True, True])


def test_mined_indices_explicit_valid_is_kept():
    idx = MinedIndices(jnp.array([0, 2]), jnp.array([1, 3]), jnp.array([2, 0]),
                       jnp.array([True, False]))
    np.testing.assert_array_equal(idx.to_numpy(), [[0, 1, 2]])


def test_mined_indices_mismatched_lengths_name_the_class():
    with pytest.raises(ValueError, match="MinedIndices.*same shape"):
        MinedIndices(jnp.array([0, 1]), jnp.array([1]), jnp.array([2, 3]))


def test_triplet_loss_on_hand_built_indices():
    # Points on a line: 0 at 0, 1 at 1, 2 at 3, 3 at 4; labels 0,0,1,1.
    x = jnp.array([[0.0], [1.0], [3.0], [4.0]])
    labels = jnp.array([0, 0, 1, 1])
    idx = MinedIndices(jnp.array([0, 1]), jnp.array([1, 0]), jnp.array([2, 2]))
    # Triplet (0,1,2): d_ap = 1, d_an = 3 -> relu(1 - 3 + 2.5) = 0.5.
    # Triplet (1,0,2): d_ap = 1, d_an = 2 -> relu(1 - 2 + 2.5) = 1.5. Mean 1.0.
    loss = mx.TripletMarginLoss(margin=2.5)(embeddings=x, labels=labels, indices=idx)
    np.testing.assert_allclose(float(loss), 1.0, rtol=1e-6)
