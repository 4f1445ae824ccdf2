"""What the generative metrics share: feature extraction, masks, feature buffers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Shaped

from metrix.backbones.resize import check_fid_mode
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field, nested_field
from metrix.core.keys import Key
from metrix.core.metric import Metric
from metrix.core.refuse import metric_name, refuse
from metrix.core.sharing import compute_once
from metrix.core.state import State

_HIGHEST = jax.lax.Precision.HIGHEST
_PRECISIONS = ("float32", "float64")


# ---------------------------------------------------------------------------------------
# Shared input handling
# ---------------------------------------------------------------------------------------


def _features(metric, x, params, side: str):
    """``x`` as (N, d) float features: rows as given, or images run through InceptionV3."""
    if x.ndim == 2:
        return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
    if x.ndim == 4:
        if params is None:
            raise TypeError(
                f"{side} has shape {x.shape} (NHWC images), so "
                "get_state() needs params= (FID InceptionV3 params from "
                "metrix.backbones.inception.load_params)."
            )
        return image_features(params, x, metric.tap, metric.mode)
    raise ValueError(f"{side} must be (N, d) features or (N, H, W, C) images, got shape {x.shape}")


# Taps computed by the full network: one pass gives them all (the output layer is ~2% of it).
_FINAL_TAPS = ("2048", "pool3", "logits", "logits_unbiased")


def _check_float_range(images) -> None:
    """Eagerly, float images outside [0, 1] are refused (0..255 floats would be scaled by
    255 again and give a large, plausible FID). Under ``jit`` nothing is checked."""
    if isinstance(images, jax.core.Tracer) or not jnp.issubdtype(images.dtype, jnp.floating):
        return
    lo, hi = float(jnp.min(images)), float(jnp.max(images))
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]: pass uint8 "
            "0..255 pixels as uint8, or divide float pixels by 255"
        )


def image_features(params, images, tap: str, mode: str):
    """The InceptionV3 ``tap`` of NHWC ``images`` in ``mode``, one pass per shared scope.

    Inside :func:`metrix.get_states` or a :class:`~metrix.Collection`, FID, KID,
    InceptionScore, PrecisionRecall and DensityCoverage reading the same images and params
    share one backbone pass (:mod:`metrix.core.sharing`): a final tap computes pool3 and,
    when the weights have it, the output layer's logits together.
    """
    from metrix.backbones.inception import inception_features  # flax only when needed

    name = "2048" if tap == "pool3" else tap
    with_logits = isinstance(params, Mapping) and "fc" in params
    if name == "2048" or (name in _FINAL_TAPS and with_logits):
        taps = ("2048", "logits", "logits_unbiased") if with_logits else ("2048",)
    else:  # an earlier tap, or logits the weights lack (inception_features says so)
        taps = (name,)
    def backbone_pass():
        _check_float_range(images)  # once per shared pass, like the pass itself
        return inception_features(params, images, taps=taps, mode=mode)

    features = compute_once((images, params), ("inception", mode, taps), backbone_pass)
    return features[name]


def _side_mask(mask, side_mask, n: int, side: str):
    """The mask of one side: ``side_mask & mask`` (either may be None)."""
    out = None
    for m in (mask, side_mask):
        if m is None:
            continue
        m = jnp.asarray(m)
        m = m if m.dtype == jnp.bool_ else m != 0
        if m.shape != (n,):
            raise ValueError(f"a {side} mask of shape {m.shape} does not cover {n} rows")
        out = m if out is None else out & m
    return out


def _check_width(metric, feats, side: str):
    if feats.shape[-1] != metric.num_features:
        raise ValueError(
            f"{side} features have {feats.shape[-1]} dimensions but the metric has "
            f"num_features={metric.num_features}"
        )


# ---------------------------------------------------------------------------------------
# Feature buffers (KID, precision/recall, density/coverage)
# ---------------------------------------------------------------------------------------


class FeatureBuffer(BufferState):
    """Rows of ``num_features`` features in a fixed-capacity buffer (``capacity`` rows)."""

    features: jax.Array = concat_field(item_shape=lambda m: (m.num_features,))


class PairedFeatures(State):
    """Real and generated :class:`FeatureBuffer` side by side."""

    real: FeatureBuffer = nested_field(FeatureBuffer)
    generated: FeatureBuffer = nested_field(FeatureBuffer)

    @classmethod
    def from_inputs(cls, metric, real, generated, real_mask, generated_mask, mask, params):
        sides = {}
        for side, x, side_mask in (
            ("real", real, real_mask),
            ("generated", generated, generated_mask),
        ):
            if x is None:
                sides[side] = FeatureBuffer.empty(metric)
                continue
            feats = _features(metric, x, params, side).astype(jnp.float32)
            _check_width(metric, feats, side)
            keep = _side_mask(mask, side_mask, feats.shape[0], side)
            sides[side] = FeatureBuffer.from_rows(
                capacity=metric.capacity, mask=keep, parent=metric, features=feats
            )
        return cls(parent=metric, **sides)

    def _check_counts(self, minimum: int, what: str):
        """Raise eagerly when a side has fewer than ``minimum`` rows; False (NaN) under jit."""
        for side, count in (("real", self.real.count), ("generated", self.generated.count)):
            refuse(
                count < minimum,
                None,
                lambda _, side=side, count=count: f"{metric_name(self)}: {what} needs at least "
                f"{minimum} {side} rows, got {int(count)}",
            )
        return (self.real.count >= minimum) & (self.generated.count >= minimum)

    def _finish(self, values: dict, ok):
        values = {k: jnp.where(ok, v, jnp.nan) for k, v in values.items()}
        return self.generated.check_capacity(self.real.check_capacity(values))



class _PairedFeatureMetric(Metric):
    """Inputs shared by the buffer-based generative metrics (KID, PrecisionRecall, ...).

    Features ``(N, d)`` or NHWC images (then the InceptionV3 ``tap`` runs with ``params``)
    for each side, per-side masks and a ``mask`` for both; rows go to two
    :class:`FeatureBuffer` of ``capacity`` rows. Subclasses define ``State.compute``.
    """

    required_one_of = (("real", "generated"),)

    real: Key | None = None
    generated: Key | None = None
    real_mask: Key | None = None
    generated_mask: Key | None = None
    mask: Key | None = None
    params: Key | None = None
    num_features: int = 2048
    capacity: int = 10_000
    mode: str = "legacy_pytorch"

    State = PairedFeatures

    def __post_init__(self):
        check_fid_mode(self.mode, type(self).__name__)

    def get_state(
        self,
        real: Shaped[Array, "nr ..."] | None = None,
        generated: Shaped[Array, "ng ..."] | None = None,
        real_mask: Shaped[Array, "nr"] | None = None,
        generated_mask: Shaped[Array, "ng"] | None = None,
        mask: Shaped[Array, "n"] | None = None,
        params: Any = None,
    ) -> State:
        return self.State.from_inputs(
            self, real, generated, real_mask, generated_mask, mask, params
        )
