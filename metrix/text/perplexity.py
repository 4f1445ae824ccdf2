"""Text metrics: perplexity.

Perplexity is token-weighted: the state sums the negative log-likelihood and the number of
(unmasked) tokens over every batch, so ``compute() = exp(total NLL / total tokens)``. (Averaging
per-batch perplexities or per-batch mean NLLs instead, as metrax does, overweights short batches.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.states import AverageState
from metrix.core.weights import checked_weights


def token_nll(labels, logits=None, log_probs=None):
    """Per-token negative log-likelihood ``-log p(label)``.

    From ``logits`` (normalised here with ``log_softmax``) or already normalised
    ``log_probs``; both ``(*b, vocab)``. Labels outside ``[0, vocab)`` give NaN (mask them).
    """
    if (logits is None) == (log_probs is None):
        raise TypeError("token_nll needs exactly one of logits= or log_probs=")
    scores = logits if log_probs is None else log_probs
    scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
    if log_probs is None:
        scores = jax.nn.log_softmax(scores, axis=-1)
    vocab = scores.shape[-1]
    inside = (labels >= 0) & (labels < vocab)
    picked = jnp.take_along_axis(scores, jnp.clip(labels, 0, vocab - 1)[..., None], axis=-1)[..., 0]
    return jnp.where(inside, -picked, jnp.nan)


class Perplexity(Metric):
    """``exp(sum_tokens NLL / number of tokens)`` over every unmasked token of every batch.

    Give ``logits`` or ``log_probs`` (``(*b, vocab)``) and integer ``labels`` (``*b``).
    ``mask`` (padding) covers the leading axes of the labels; tokens whose label equals
    ``ignore_index`` (if set, e.g. -100) are skipped too. The perplexity of no tokens is NaN.

    ``weights`` (optional, per token over the leading axes of the labels; keras-hub's and
    metrax's ``sample_weight``): ``exp(sum w NLL / sum w)`` over the kept tokens. A negative,
    NaN or infinite kept weight is refused eagerly (NaN under jit; :mod:`metrix.core.weights`).
    """

    required_one_of = (("logits", "log_probs"),)

    logits: Key | None = None
    log_probs: Key | None = None
    labels: Key = REQUIRED
    mask: Key | None = None
    weights: Key | None = None
    ignore_index: int | None = None

    class State(AverageState):
        """Exact sums of token NLL and token count (``exp`` of their ratio)."""

        def compute(self):
            return jnp.exp(super().compute())

    def get_state(
        self,
        logits: Float[Array, "*b v"] | None = None,
        log_probs: Float[Array, "*b v"] | None = None,
        labels: Integer[Array, "*b"] | None = None,
        mask: Shaped[Array, "*m"] | None = None,
        weights: Shaped[Array, "*w"] | None = None,
    ) -> State:
        if labels is None:
            raise TypeError("Perplexity.get_state() needs labels")
        if (logits is None) == (log_probs is None):
            raise TypeError("Perplexity.get_state() needs exactly one of logits= or log_probs=")
        keep = broadcast_mask(mask, labels.shape)
        if self.ignore_index is not None:
            keep = keep & (labels != self.ignore_index)
        nll = token_nll(labels, logits, log_probs)
        if weights is None:
            return self.State.from_values(nll, mask=keep)
        w, keep = checked_weights(weights, nll.shape, keep)
        return self.State.from_values(nll, mask=keep, weights=w)


__all__ = ["Perplexity", "token_nll"]
