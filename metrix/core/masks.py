"""Masks mean boolean indexing: a masked-out element changes nothing."""

from __future__ import annotations

import jax.numpy as jnp


def broadcast_mask(mask, shape):
    """Broadcast ``mask`` to ``shape`` aligning *leading* axes (``mask[b]`` covers ``x[b, ...]``).

    ``mask`` of shape ``shape[:k]`` (or with 1s there) selects whole trailing blocks, as
    ``x[mask]`` does in numpy. ``None`` keeps everything.
    """
    shape = tuple(shape)
    if mask is None:
        return jnp.ones(shape, bool)
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        mask = mask != 0
    if mask.ndim > len(shape) or any(m not in (1, s) for m, s in zip(mask.shape, shape)):
        raise ValueError(
            f"mask of shape {mask.shape} does not cover values of shape {shape}: it must match "
            "the leading axes of the values (size-1 axes broadcast)"
        )
    mask = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
    return jnp.broadcast_to(mask, shape)
