"""The FID InceptionV3 (TF ``inception-2015-12-05``) in Flax linen: network and input pipeline.

Import it as :mod:`metrix.backbones.inception` (this module and the weights module together).

This is the network that pytorch-fid, clean-fid and torch-fidelity use for FID, KID and
Inception Score: torchvision's InceptionV3 layout with 1008 classes, no auxiliary head, and the
TensorFlow quirks the released weights were trained with:

* the average-pool branches of ``Mixed_5b..Mixed_7b`` divide by the number of *real*
  pixels under the 3x3 window (``count_include_pad=False``), not by 9;
* the pool branch of the last block ``Mixed_7c`` is a 3x3 *max* pool (stride 1, pad 1);
* every convolution is followed by inference-mode BatchNorm, eps = 1e-3:
  ``y = (x - running_mean) / sqrt(running_var + 1e-3) * weight + bias``, then ReLU.

Input pipeline: NHWC images (NCHW is not accepted), ``uint8`` in [0, 255] or floating point
in [0, 1], prepared as one of the ``MODES`` (clean-fid's names):

* ``"legacy_pytorch"`` (default; pytorch-fid's ``InceptionV3(resize_input=True,
  normalize_input=True)``): ``x / 255``, PyTorch's ``F.interpolate(mode="bilinear",
  align_corners=False)`` to 299x299 (half-pixel centres, *no* antialiasing when shrinking;
  ``jax.image.resize`` would antialias, so it is not used), then ``2 * x - 1``;
* ``"clean"`` (clean-fid's default): Pillow's antialiased bicubic resize to 299x299 of the
  float image in [0, 255] (each channel a mode ``"F"`` image), clipped to [0, 255], then
  ``(x - 128) / 128`` (the TF graph's own normalisation, clean-fid's ``InceptionV3W``).

Both resizes are matrix products (:mod:`metrix.backbones.resize`), so they run under ``jit``
on the device. torch-fidelity resizes differently again (a TF1-style resize without
half-pixel centres), so its features differ from both when images are not 299x299.

Taps (the ``outputs`` of :class:`InceptionV3`, the ``taps`` of :func:`inception_features`):

=====================  ==============  ==========================================
name                   shape           where
=====================  ==============  ==========================================
``"64"``               (N, 64)         first max pool (after ``Conv2d_2b_3x3``)
``"192"``              (N, 192)        second max pool (after ``Conv2d_4a_3x3``)
``"768"``              (N, 768)        ``Mixed_6e`` output (what feeds the aux head)
``"2048"``             (N, 2048)       final global average pool ("pool3")
``"logits"``           (N, 1008)       ``fc`` output (Inception Score uses its softmax)
``"logits_unbiased"``  (N, 1008)       ``fc`` without its bias (torch-fidelity's tap)
``"64_map"`` etc.      (N, H, W, C)    the spatial maps of 64 / 192 / 768, unpooled
=====================  ==============  ==========================================

The 64/192/768 vectors are the spatial means of the maps, exactly what pytorch-fid's
``fid_score`` does (``adaptive_avg_pool2d`` to 1x1) before computing statistics. The alias
``"pool3"`` means ``"2048"``. The ``logits`` taps need weights with the output layer
(pytorch-fid's ``.pth``; the TorchScript layout has none).

Weights: converted once from pytorch-fid's ``.pth`` or the TorchScript ``.pt``
(:mod:`metrix.backbones.inception_weights`; ``python -m metrix.backbones.inception convert
SRC OUT``) and loaded with :func:`load_params`. The params are a plain nested dict passed to
every call, so one compiled program serves any weights (one compilation per image shape,
dtype, mode and set of taps).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from metrix.backbones.resize import (
    FID_MODES as MODES,
)
from metrix.backbones.resize import (
    check_fid_mode as check_mode,
)
from metrix.backbones.resize import (
    resize_bicubic_pil,
    resize_bilinear_torch,
)

__all__ = [
    "MODES",
    "TAPS",
    "InceptionV3",
    "check_mode",
    "inception_features",
    "preprocess",
    "resize_bicubic_pil",
    "resize_bilinear_torch",
]

INPUT_SIZE = 299
BN_EPS = 1e-3
NUM_CLASSES = 1008

TAPS = (
    "64", "192", "768", "2048", "logits", "logits_unbiased", "64_map", "192_map", "768_map",
)
_TAP_ALIASES = {"pool3": "2048"}
_LOGIT_TAPS = ("logits", "logits_unbiased")
# How far the network must run for each tap (0: stem, 1: second pool, 2: Mixed_6e, 3: the rest).
_TAP_STAGE = {"64": 0, "64_map": 0, "192": 1, "192_map": 1, "768": 2, "768_map": 2,
              "2048": 3, "logits": 3, "logits_unbiased": 3}
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- input pipeline


def preprocess(
    images: jax.Array,
    *,
    resize_input: bool = True,
    normalize_input: bool = True,
    mode: str = "legacy_pytorch",
) -> jax.Array:
    """uint8 [0, 255] or float [0, 1] NHWC images -> float32 network input, per ``mode``.

    ``"legacy_pytorch"``: ``x / 255`` -> (``resize_input``) PyTorch bilinear to 299 ->
    (``normalize_input``) ``2x - 1``, pytorch-fid's order. ``"clean"``: ``x`` in [0, 255] ->
    Pillow bicubic to 299, clipped to [0, 255] -> ``(x - 128) / 128``, clean-fid's order.
    """
    check_mode(mode)
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"InceptionV3 expects NHWC images of rank 4, got shape {images.shape}")
    if images.shape[-1] != 3:
        raise ValueError(
            f"InceptionV3 expects NHWC images with 3 channels last, got shape {images.shape}"
            " (NCHW input is not accepted: transpose with x.transpose(0, 2, 3, 1))"
        )
    if images.dtype == jnp.uint8:
        unit = images.astype(jnp.float32) / 255.0
        pixels = images.astype(jnp.float32)  # exact 0..255 values for the clean pipeline
    elif jnp.issubdtype(images.dtype, jnp.floating):
        unit = images.astype(jnp.float32)
        pixels = unit * 255.0
    else:
        raise TypeError(f"InceptionV3 expects uint8 or float images, got dtype {images.dtype}")
    size = (INPUT_SIZE, INPUT_SIZE)
    if mode == "clean":
        if resize_input:
            pixels = jnp.clip(resize_bicubic_pil(pixels, size), 0.0, 255.0)
        return (pixels - 128.0) / 128.0 if normalize_input else pixels / 255.0
    if resize_input:
        unit = resize_bilinear_torch(unit, size)
    return 2.0 * unit - 1.0 if normalize_input else unit


# ----------------------------------------------------------------------------- layers


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class FrozenBatchNorm(nn.Module):
    """Inference BatchNorm: ``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis.

    The running statistics are ordinary entries of ``params`` (they never update here).
    """

    eps: float = BN_EPS

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        mean = self.param("mean", nn.initializers.zeros, (features,), jnp.float32)
        var = self.param("var", nn.initializers.ones, (features,), jnp.float32)
        return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


class BasicConv(nn.Module):
    """Conv (no bias) -> inference BatchNorm -> ReLU, torchvision's ``BasicConv2d``."""

    features: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: int | tuple[int, int] = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad_h, pad_w = _pair(self.padding)
        x = nn.Conv(
            self.features,
            _pair(self.kernel),
            strides=_pair(self.strides),
            padding=((pad_h, pad_h), (pad_w, pad_w)),
            use_bias=False,
            precision=_HIGHEST,
            name="conv",
        )(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def _avg_pool_3x3_same(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average over real pixels only (TF's pool; ``count_include_pad=False``)."""
    return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
    """35x35 block (``Mixed_5b/c/d``): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(64, 1, name="branch1x1")(x)
        b5 = BasicConv(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (``Mixed_6a``): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block (``Mixed_6b..e``) with factorised 7x7 convolutions and an avgpool branch."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        b1 = BasicConv(192, 1, name="branch1x1")(x)
        b7 = BasicConv(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv(192, 1, name="branch_pool")(_avg_pool_3x3_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (``Mixed_7a``): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = BasicConv(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block (``Mixed_7b`` with ``pool="avg"``, ``Mixed_7c`` with ``pool="max"``).

    The FID graph's last block pools with a 3x3 stride-1 *max* pool (pad 1) where the
    paper and torchvision average; the weights were trained that way, so we keep it.
    """

    pool: str = "avg"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = BasicConv(320, 1, name="branch1x1")(x)
        b3 = BasicConv(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
             BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)],
            axis=-1,
        )
        bd = BasicConv(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [BasicConv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
             BasicConv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)],
            axis=-1,
        )
        if self.pool == "avg":
            pooled = _avg_pool_3x3_same(x)
        elif self.pool == "max":  # max pool pads with -inf, like F.max_pool2d(padding=1)
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
        bp = BasicConv(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


# ----------------------------------------------------------------------------- network


def _canonical_taps(taps: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(taps, str):
        taps = (taps,)
    taps = tuple(taps)
    if not taps:
        raise ValueError(f"ask for at least one tap out of {TAPS}")
    unknown = [t for t in taps if t not in TAPS and t not in _TAP_ALIASES]
    if unknown:
        raise ValueError(
            f"unknown InceptionV3 tap(s) {unknown}; choose from {TAPS} (alias 'pool3' = '2048')"
        )
    return taps


class InceptionV3(nn.Module):
    """FID InceptionV3; ``apply({"params": params}, images)`` returns ``{tap: features}``.

    Attributes:
      outputs: tap names (see the module docstring), e.g. ``("2048",)`` or ``("2048", "logits")``.
        The network stops after the last stage a requested tap needs.
      resize_input: bilinear resize to 299x299 as pytorch-fid does (turn off only for inputs
        that are already 299x299 or to feed other sizes deliberately).
      normalize_input: map to the network's [-1, 1] range; turn off for inputs already there.
      mode: ``"legacy_pytorch"`` (pytorch-fid) or ``"clean"`` (clean-fid): the resize and
        normalisation of :func:`preprocess`.
    """

    outputs: tuple[str, ...] = ("2048",)
    resize_input: bool = True
    normalize_input: bool = True
    mode: str = "legacy_pytorch"

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        taps = _canonical_taps(self.outputs)
        # During init every parameter must be created, whatever was requested.
        needed = max(_TAP_STAGE[_TAP_ALIASES.get(t, t)] for t in taps)
        last_stage = 3 if self.is_initializing() else needed
        found: dict[str, jax.Array] = {}

        x = preprocess(
            images,
            resize_input=self.resize_input,
            normalize_input=self.normalize_input,
            mode=self.mode,
        )
        x = BasicConv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv(32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = found["64_map"] = _max_pool_3x3_stride2(x)
        if last_stage >= 1:
            x = BasicConv(80, 1, name="Conv2d_3b_1x1")(x)
            x = BasicConv(192, 3, name="Conv2d_4a_3x3")(x)
            x = found["192_map"] = _max_pool_3x3_stride2(x)
        if last_stage >= 2:
            x = InceptionA(32, name="Mixed_5b")(x)
            x = InceptionA(64, name="Mixed_5c")(x)
            x = InceptionA(64, name="Mixed_5d")(x)
            x = InceptionB(name="Mixed_6a")(x)
            x = InceptionC(128, name="Mixed_6b")(x)
            x = InceptionC(160, name="Mixed_6c")(x)
            x = InceptionC(160, name="Mixed_6d")(x)
            x = found["768_map"] = InceptionC(192, name="Mixed_6e")(x)
        if last_stage >= 3:
            x = InceptionD(name="Mixed_7a")(x)
            x = InceptionE("avg", name="Mixed_7b")(x)
            x = InceptionE("max", name="Mixed_7c")(x)
            pool3 = found["2048"] = jnp.mean(x, axis=(1, 2))
            # The output layer runs only when asked for: weights without it (the TorchScript
            # layout) still give every other tap.
            if self.is_initializing() or any(t in _LOGIT_TAPS for t in taps):
                fc = nn.Dense(NUM_CLASSES, precision=_HIGHEST, name="fc")
                found["logits"] = fc(pool3)  # dropout is the identity at inference
                kernel = fc.variables["params"]["kernel"]
                found["logits_unbiased"] = jnp.dot(pool3, kernel, precision=_HIGHEST)
        for name in ("64", "192", "768"):
            if name + "_map" in found:
                found[name] = jnp.mean(found[name + "_map"], axis=(1, 2))
        return {t: found[_TAP_ALIASES.get(t, t)] for t in taps}


@functools.partial(jax.jit, static_argnames=("taps", "resize_input", "normalize_input", "mode"))
def _features_jit(params, images, taps, resize_input, normalize_input, mode):
    module = InceptionV3(
        outputs=taps, resize_input=resize_input, normalize_input=normalize_input, mode=mode
    )
    return module.apply({"params": params}, images)


def inception_features(
    params: Mapping[str, Any],
    images: jax.Array,
    taps: str | Sequence[str] = ("2048",),
    *,
    resize_input: bool = True,
    normalize_input: bool = True,
    mode: str = "legacy_pytorch",
) -> dict[str, jax.Array]:
    """Jitted ``{tap: features}`` for NHWC uint8 [0, 255] or float [0, 1] ``images``.

    ``params`` is an argument of the compiled function (never a constant), so new weights
    do not recompile; a new image shape, dtype, mode or set of taps does. ``mode`` picks
    the input pipeline (:data:`MODES`, see :func:`preprocess`).

    Example::

        params = load_params("inception_fid.safetensors")
        feats = inception_features(params, images, taps=("2048", "logits"))
        feats["2048"].shape, feats["logits"].shape    # (N, 2048), (N, 1008)
    """
    taps = _canonical_taps(taps)
    check_mode(mode, "inception_features")
    if any(t in _LOGIT_TAPS for t in taps) and isinstance(params, Mapping) and "fc" not in params:
        raise ValueError(
            f"InceptionV3 taps {[t for t in taps if t in _LOGIT_TAPS]} need the 1008-way output "
            "layer, and these weights have none (the TorchScript inception-2015-12-05.pt layout "
            "carries only the layers up to pool3): convert pytorch-fid's "
            "pt_inception-2015-12-05-6726825d.pth for Inception Score"
        )
    return _features_jit(params, images, taps, resize_input, normalize_input, mode)


# ----------------------------------------------------------------------------- weights


@functools.lru_cache(maxsize=1)
def _param_shapes() -> dict[str, tuple[int, ...]]:
    """Flat ``{"a/b/c": shape}`` of the module's params (abstract init, no FLOPs)."""
    images = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    variables = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0), images)
    return {k: tuple(v.shape) for k, v in _flatten_abstract(variables["params"]).items()}


def _flatten_abstract(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten_abstract(value, f"{prefix}{name}/"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat
