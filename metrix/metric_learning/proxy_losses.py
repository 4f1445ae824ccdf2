"""Losses with trainable class vectors: ArcFace, CosFace, ProxyNCA, ProxyAnchor."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.state import State
from metrix.metric_learning.distances import _HIGHEST, l2_normalize, safe_sqrt
from metrix.metric_learning.pair_losses import _log1p_sum_exp
from metrix.metric_learning.terms import (
    LossTermsState,
    MetricLearningLoss,
    _count,
    _keep,
    _masked_sum,
    _nonfinite_rows,
)

# ---------------------------------------------------------------------------------------
# Losses with trainable weights: ArcFace, CosFace, ProxyNCA, ProxyAnchor
# ---------------------------------------------------------------------------------------


class _WeightedLoss(MetricLearningLoss):
    """Shared input handling of the losses whose trainable weights are passed as ``params``."""

    def _check_params(self, params, name, shape):
        if not isinstance(params, dict) or name not in params:
            raise TypeError(
                f"{type(self).__name__}: params must be a dict with {name!r} (create it with "
                f"{type(self).__name__}.init(rng)), got {type(params).__name__}"
            )
        got = tuple(params[name].shape)
        if got != shape:
            raise ValueError(f"{type(self).__name__}: params[{name!r}] has shape {got}, expected {shape}")
        return params[name]


def _cosine_logits(embeddings, class_vectors):
    """``cos(e_i, w_c)`` for class vectors as rows of ``class_vectors`` (C, d)."""
    e = l2_normalize(jnp.asarray(embeddings, jnp.float32))
    w = l2_normalize(jnp.asarray(class_vectors, jnp.float32))
    return jnp.matmul(e, w.T, precision=_HIGHEST)


def additive_angular_margin(cosine, margin: float):
    """ArcFace's target logit ``cos(theta + m)``, kept monotonic past ``theta = pi - m``.

    ``cos(theta + m) = c cos m - sin(theta) sin m`` with a safe ``sin(theta) = sqrt(1 - c^2)``
    (no ``acos``: finite gradients at ``|c| = 1``); for ``theta > pi - m`` it is
    ``c - m sin m`` (pytorch-metric-learning's continuation).
    """
    sin = safe_sqrt(1.0 - jnp.square(cosine))
    with_margin = cosine * math.cos(margin) - sin * math.sin(margin)
    return jnp.where(cosine >= -math.cos(margin), with_margin, cosine - margin * math.sin(margin))


def margin_softmax_losses(embeddings, labels, weights, *, margin, scale, kind):
    """Per-example cross-entropy of scaled cosine logits with a margin on the target class.

    ``weights``: ``(embedding_dim, num_classes)`` (pytorch-metric-learning's ``W`` layout).
    ``kind="arcface"``: target ``cos(theta + m)``; ``"cosface"``: ``cos(theta) - m``.
    """
    cosine = _cosine_logits(embeddings, jnp.asarray(weights).T)
    onehot = jax.nn.one_hot(labels, cosine.shape[1], dtype=bool)
    if kind == "arcface":
        target = additive_angular_margin(cosine, margin)
    else:
        target = cosine - margin
    logits = scale * jnp.where(onehot, target, cosine)
    return -jnp.sum(jnp.where(onehot, jax.nn.log_softmax(logits, axis=1), 0.0), axis=1)


class _MarginSoftmaxLoss(_WeightedLoss):
    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    reduction: str = "mean"

    _kind: ClassVar[str] = ""

    def init(self, rng) -> dict:
        """``{"weights": (embedding_dim, num_classes)}`` standard normal (PML's init)."""
        return {"weights": jax.random.normal(rng, (self.embedding_dim, self.num_classes), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ):
        weights = self._check_params(params, "weights", (self.embedding_dim, self.num_classes))
        losses = margin_softmax_losses(
            embeddings, labels, weights, margin=self.margin, scale=self.scale, kind=self._kind
        )
        valid = _keep(embeddings.shape[0], mask)
        return self.State.from_terms(
            [_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)],
            invalid=_nonfinite_rows(embeddings, mask),
        )


class ArcFaceLoss(_MarginSoftmaxLoss):
    """ArcFace (Deng et al. 2019): softmax over ``scale * cos`` with ``cos(theta + margin)``
    for the target class; mean over examples.

    Class weights are a pytree ``params = loss.init(rng)`` = ``{"weights": (d, C)}`` passed
    as an input, so ``jax.grad`` reaches them: ``loss(embeddings, labels, params)``.
    ``margin`` is in radians (PML's ``ArcFaceLoss`` takes degrees: 28.6 deg = 0.5 rad).
    """

    margin: float = 0.5
    scale: float = 64.0
    _kind: ClassVar[str] = "arcface"



class CosFaceLoss(_MarginSoftmaxLoss):
    """CosFace (Wang et al. 2018): softmax over ``scale * cos`` with ``cos(theta) - margin``
    for the target class; mean over examples. Weights as :class:`ArcFaceLoss`.
    """

    margin: float = 0.35
    scale: float = 64.0
    _kind: ClassVar[str] = "cosface"



def proxy_nca_losses(embeddings, labels, proxies, *, softmax_scale: float = 1.0):
    """ProxyNCA per example: ``-log softmax_c(-scale ||e^ - p^_c||^2)[y]`` (unit vectors).

    ``proxies``: ``(num_classes, embedding_dim)``. As pytorch-metric-learning, the target
    proxy is part of the softmax's denominator.
    """
    e = l2_normalize(jnp.asarray(embeddings, jnp.float32))
    p = l2_normalize(jnp.asarray(proxies, jnp.float32))
    sq = jnp.maximum(
        jnp.sum(e * e, 1)[:, None] + jnp.sum(p * p, 1)[None, :] - 2 * jnp.matmul(e, p.T, precision=_HIGHEST),
        0.0,
    )
    log_probs = jax.nn.log_softmax(-softmax_scale * sq, axis=1)
    return -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=1)[:, 0]


class ProxyNCALoss(_WeightedLoss):
    """ProxyNCA (Movshovitz-Attias et al. 2017): NCA against one learned proxy per class.

    ``params = loss.init(rng)`` = ``{"proxies": (num_classes, embedding_dim)}``; mean over
    examples. Matches PML's ``ProxyNCALoss(softmax_scale=1)`` (squared distances between
    normalised vectors), which drops examples whose probability underflows to 0; here they
    count with their (large, finite) loss.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    softmax_scale: float = 1.0
    reduction: str = "mean"


    def init(self, rng) -> dict:
        """``{"proxies": (num_classes, embedding_dim)}`` standard normal (PML's init)."""
        return {"proxies": jax.random.normal(rng, (self.num_classes, self.embedding_dim), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        proxies = self._check_params(params, "proxies", (self.num_classes, self.embedding_dim))
        losses = proxy_nca_losses(embeddings, labels, proxies, softmax_scale=self.softmax_scale)
        valid = _keep(embeddings.shape[0], mask)
        return self.State.from_terms(
            [_masked_sum(valid, losses)], [_count(valid, losses, self.reduction)],
            invalid=_nonfinite_rows(embeddings, mask),
        )


def proxy_anchor_terms(embeddings, labels, proxies, *, margin=0.1, alpha=32.0, mask=None):
    """Proxy-Anchor (Kim et al. 2020) sums over classes ``c`` with cosines ``s_ic``::

        pos_c = log(1 + sum_{i: y_i = c}  exp(-alpha (s_ic - margin)))
        neg_c = log(1 + sum_{i: y_i != c} exp( alpha (s_ic + margin)))

    Returns ``((sum_c pos_c, sum_c neg_c), (#classes present, num_classes))``; the loss is
    ``sum pos / #present + sum neg / num_classes``.
    """
    num_classes = proxies.shape[0]
    keep = _keep(embeddings.shape[0], mask)
    s = _cosine_logits(embeddings, proxies)
    member = jax.nn.one_hot(labels, num_classes, dtype=bool) & keep[:, None]
    other = ~jax.nn.one_hot(labels, num_classes, dtype=bool) & keep[:, None]
    pos = _log1p_sum_exp(-alpha * (s - margin), member, axis=0)
    neg = _log1p_sum_exp(alpha * (s + margin), other, axis=0)
    present = jnp.sum(jnp.any(member, axis=0), dtype=jnp.float32)
    classes = jnp.where(jnp.any(keep), float(num_classes), 0.0)
    return (jnp.sum(pos), jnp.sum(neg)), (present, classes)


class ProxyAnchorLoss(_WeightedLoss):
    """Proxy-Anchor loss (Kim et al. 2020): every proxy is an anchor against the batch.

    ``params = loss.init(rng)`` = ``{"proxies": (num_classes, embedding_dim)}``. The loss
    is ``mean over present classes of pos_c + mean over all classes of neg_c`` (see
    :func:`proxy_anchor_terms`), as PML's ``ProxyAnchorLoss(margin=0.1, alpha=32)``
    (``scale`` here is PML's ``alpha``). Merged states pool the class sums and counts of
    all batches.
    """

    embeddings: Key = REQUIRED
    labels: Key = REQUIRED
    params: Key = REQUIRED
    mask: Key | None = None
    num_classes: int = 100
    embedding_dim: int = 128
    margin: float = 0.1
    scale: float = 32.0

    num_terms: ClassVar[int] = 2


    def init(self, rng) -> dict:
        """``{"proxies": ...}`` Kaiming-normal with fan_out = num_classes (PML's init)."""
        std = math.sqrt(2.0 / self.num_classes)
        return {"proxies": std * jax.random.normal(rng, (self.num_classes, self.embedding_dim), jnp.float32)}

    def get_state(
        self,
        embeddings: Float[Array, "n d"],
        labels: Integer[Array, "n"],
        params: Any = None,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        proxies = self._check_params(params, "proxies", (self.num_classes, self.embedding_dim))
        totals, counts = proxy_anchor_terms(
            embeddings, labels, proxies, margin=self.margin, alpha=self.scale, mask=mask
        )
        return self.State.from_terms(totals, counts, invalid=_nonfinite_rows(embeddings, mask))


__all__ = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "ProxyNCALoss",
    "ProxyAnchorLoss",
    "margin_softmax_losses",
    "proxy_nca_losses",
    "proxy_anchor_terms",
]
