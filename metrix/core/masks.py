"""Masks mean boolean indexing: a masked-out element changes nothing."""

from __future__ import annotations

import jax.numpy as jnp

from metrix.core.refuse import refuse


def _not_boolean(count) -> str:
    return (
        f"mask holds {count} value(s) other than 0 and 1 (such as 0.5 or NaN): a mask selects "
        "elements, it does not weigh them; pass weights= to weigh examples, or a boolean mask "
        "(e.g. mask > 0)"
    )


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
        # A 0/1 integer or float mask is a boolean one in another dtype. Any other value (0.5,
        # NaN, 2) reads as a weight, which a mask is not: refused eagerly, never truth-tested
        # into "keep" (under a jit of your own it cannot be refused and counts as nonzero).
        refuse(jnp.sum((mask != 0) & (mask != 1)), None, _not_boolean, ValueError)
        mask = mask != 0
    return broadcast_leading(mask, shape, "mask")


def broadcast_leading(x, shape, what: str):
    """``x`` broadcast to ``shape`` along its *leading* axes (size-1 axes broadcast); a shape
    that does not cover ``shape`` is a ``ValueError`` naming ``what``."""
    if x.ndim > len(shape) or any(a not in (1, s) for a, s in zip(x.shape, shape)):
        raise ValueError(
            f"{what} of shape {x.shape} does not cover values of shape {shape}: it must match "
            "the leading axes of the values (size-1 axes broadcast)"
        )
    return jnp.broadcast_to(x.reshape(x.shape + (1,) * (len(shape) - x.ndim)), shape)
