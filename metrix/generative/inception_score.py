"""Inception Score: exp(E KL(p(y|x) || p(y))) over splits."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.backbones.resize import check_fid_mode
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field
from metrix.core.keys import Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.generative.features import image_features

# ---------------------------------------------------------------------------------------
# Inception Score
# ---------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("splits",))
def inception_score(log_probs, *, splits: int = 10, count=None):
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` per split; ``{"mean", "std"}`` over splits.

    ``log_probs`` are ``(N, C)`` log class probabilities (rows past ``count`` are ignored).
    Split ``s`` holds rows ``[floor(s N / splits), floor((s + 1) N / splits))`` in order (the
    original Salimans et al. code and torch-fidelity); ``p(y)`` is the mean probability of
    the split, and std has ddof = 0. Splits with no rows (N < splits) make the values NaN.
    """
    log_probs = jnp.asarray(log_probs, jnp.float32)
    capacity = log_probs.shape[0]
    n = capacity if count is None else count
    rows = jnp.arange(capacity)
    starts = (jnp.arange(splits + 1) * n) // splits
    split_id = jnp.searchsorted(starts, rows, side="right") - 1
    split_id = jnp.where(rows < n, split_id, splits)  # past the fill: a dropped segment
    probs = jnp.exp(log_probs)
    probs = jnp.where((rows < n)[:, None], probs, 0)
    sizes = (starts[1:] - starts[:-1]).astype(jnp.float32)
    marginal = (
        jax.ops.segment_sum(probs, split_id, num_segments=splits + 1)[:splits] / sizes[:, None]
    )
    log_marginal = jnp.log(marginal)
    # p log p is 0 where p = 0 (also keeps -inf log-probabilities of zero probabilities out).
    terms = jnp.where(
        probs > 0, probs * (log_probs - log_marginal[jnp.minimum(split_id, splits - 1)]), 0
    )
    kl = jnp.sum(terms, axis=1)
    mean_kl = jax.ops.segment_sum(kl, split_id, num_segments=splits + 1)[:splits] / sizes
    scores = jnp.exp(mean_kl)
    return {"mean": jnp.mean(scores), "std": jnp.std(scores)}


class LogProbBuffer(BufferState):
    """Log class probabilities ``(num_classes,)`` per example, in a fixed-capacity buffer."""

    log_probs: jax.Array = concat_field(item_shape=lambda m: (m.num_classes,))


class InceptionScore(Metric):
    """Inception Score of generated samples from their class probabilities or logits.

    Give ``probs`` ``(N, C)`` (rows summing to 1) or ``logits`` ``(N, C)`` (softmax is
    taken); ``C = num_classes`` (default 1008, the FID Inception's ``logits`` tap); or NHWC
    ``generated`` images with ``params`` (the InceptionV3 with its output layer: pytorch-fid's
    weights; the TorchScript layout has none) and ``mode`` as :class:`FID`, sharing one
    backbone pass with FID/KID/... in a :class:`~metrix.Collection`. Value:
    :func:`inception_score` with ``splits`` (default 10) over the buffered rows **in
    order**: split ``s`` is rows ``[floor(s N / splits), floor((s + 1) N / splits))`` of all
    N rows seen, so the value does not depend on how batches were merged (given the data
    order). No shuffling (torchmetrics shuffles before splitting, so its per-split scores
    differ; with ``splits=1`` they agree).

    State: a :class:`LogProbBuffer` of ``capacity`` rows (default 50,000 x 1008 float32,
    ~200 MB); overflow is refused at ``compute``.
    """

    required_one_of = (("probs", "logits", "generated"),)

    probs: Key | None = None
    logits: Key | None = None
    generated: Key | None = None
    params: Key | None = None
    mask: Key | None = None
    num_classes: int = 1008
    splits: int = 10
    capacity: int = 50_000
    mode: str = "legacy_pytorch"
    tap: str = "logits"

    def __post_init__(self):
        check_fid_mode(self.mode, "InceptionScore")
        if self.tap not in ("logits", "logits_unbiased"):
            raise ValueError(
                f"InceptionScore: tap must be 'logits' or 'logits_unbiased', got {self.tap!r}"
            )

    class State(LogProbBuffer):
        def compute(self):
            value = inception_score(self.log_probs, splits=self.parent.splits, count=self.count)
            return self.check_capacity(value)

    def get_state(
        self,
        probs: Float[Array, "n c"] | None = None,
        logits: Float[Array, "n c"] | None = None,
        generated: Shaped[Array, "n h w c"] | None = None,
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        if sum(x is not None for x in (probs, logits, generated)) != 1:
            raise TypeError(
                "InceptionScore.get_state() needs exactly one of probs=, logits= or "
                "generated= (NHWC images, with params=)"
            )
        if generated is not None:
            if generated.ndim != 4 or params is None:
                raise TypeError(
                    f"generated= must be NHWC images (got shape {generated.shape}) with params= "
                    "(FID InceptionV3 params from metrix.backbones.inception.load_params)"
                )
            logits = image_features(params, generated, self.tap, self.mode)
        values = probs if probs is not None else logits
        if values.shape[-1] != self.num_classes:
            raise ValueError(
                f"inputs have {values.shape[-1]} classes but num_classes={self.num_classes}"
            )
        if logits is not None:
            log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        else:
            log_probs = jnp.log(probs.astype(jnp.float32))
        return self.State.from_rows(
            capacity=self.capacity, mask=mask, parent=self, log_probs=log_probs
        )


__all__ = [
    "InceptionScore",
    "inception_score",
]
