"""The FID InceptionV3 (TF ``inception-2015-12-05``) in Flax linen, with its weight converter.

This is the network that pytorch-fid and torch-fidelity use for FID, KID and Inception
Score: torchvision's InceptionV3 layout with 1008 classes, no auxiliary head, and the
TensorFlow quirks the released weights were trained with:

* the average-pool branches of ``Mixed_5b..Mixed_7b`` divide by the number of *real*
  pixels under the 3x3 window (``count_include_pad=False``), not by 9;
* the pool branch of the last block ``Mixed_7c`` is a 3x3 *max* pool (stride 1, pad 1);
* every convolution is followed by inference-mode BatchNorm, eps = 1e-3:
  ``y = (x - running_mean) / sqrt(running_var + 1e-3) * weight + bias``, then ReLU.

Input pipeline (matches pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``):

1. images are **NHWC** (NCHW is not accepted), either ``uint8`` in [0, 255] (divided by 255)
   or floating point in [0, 1];
2. resized to 299x299 with PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)``
   (half-pixel centres, negative source coordinates clamped to 0, *no* antialiasing when
   shrinking; ``jax.image.resize`` would antialias, so it is not used);
3. scaled to [-1, 1] with ``2 * x - 1`` (for uint8 input this is ``(u - 127.5) / 127.5``).

torch-fidelity feeds the same network slightly differently (uint8 input, its own TF1-style
resize without half-pixel centres, ``(u - 128) / 128``), so its features differ from
pytorch-fid's, and from these, by a small amount when images are not 299x299.

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
``"pool3"`` means ``"2048"``.

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` converted once with
``python -m metrix.backbones.inception convert pt_inception-2015-12-05-6726825d.pth OUT``
(``OUT`` a ``.safetensors`` or ``.npz`` path) and loaded with :func:`load_params`. The params
are a plain nested dict passed to every call, so one compiled program serves any weights
(one compilation per image shape, dtype and set of taps).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metrix.backbones import weights

__all__ = [
    "TAPS",
    "TORCH_WEIGHTS_FILE",
    "InceptionV3",
    "convert_file",
    "convert_torch_state_dict",
    "default_weights_path",
    "inception_features",
    "load_params",
    "preprocess",
    "resize_bilinear_torch",
]

TORCH_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + TORCH_WEIGHTS_FILE
)
INPUT_SIZE = 299
BN_EPS = 1e-3
NUM_CLASSES = 1008

TAPS = (
    "64", "192", "768", "2048", "logits", "logits_unbiased", "64_map", "192_map", "768_map",
)
_TAP_ALIASES = {"pool3": "2048"}
# How far the network must run for each tap (0: stem, 1: second pool, 2: Mixed_6e, 3: the rest).
_TAP_STAGE = {"64": 0, "64_map": 0, "192": 1, "192_map": 1, "768": 2, "768_map": 2,
              "2048": 3, "logits": 3, "logits_unbiased": 3}
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- input pipeline


def _torch_linear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of 1-D linear interpolation as PyTorch computes it.

    ``align_corners=False`` with an explicit output size: ``scale = in / out`` and output
    pixel ``i`` reads source coordinate ``src = max(scale * (i + 0.5) - 0.5, 0)``; it mixes
    pixels ``i0 = floor(src)`` and ``min(i0 + 1, in - 1)`` with weights ``1 - l`` and
    ``l = src - i0``, in float32 like PyTorch's CPU kernel. Shrinking samples two pixels
    only (no antialiasing), as PyTorch does.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    # PyTorch's compiled kernel evaluates scale * (i + 0.5) - 0.5 as one fused multiply-add
    # (a single float32 rounding); float64 arithmetic on the float32 scale is exact here and
    # reproduces it, so the weights match PyTorch's bit for bit.
    dst = np.arange(out_size, dtype=np.float64)
    src = (np.float64(scale) * (dst + 0.5) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    lam0 = (np.float32(1) - lam1).astype(np.float32)
    matrix = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(matrix, (rows, i0), lam0)
    np.add.at(matrix, (rows, i1), lam1)
    return matrix


def resize_bilinear_torch(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize NHWC ``images`` to ``size = (H, W)`` like ``F.interpolate(mode="bilinear",
    align_corners=False)``: separable linear interpolation, rows then columns.

    Each axis is a matrix product with a fixed interpolation matrix (two non-zeros per
    row), at HIGHEST precision so TF32 cannot perturb FID inputs on GPUs.
    """
    _, height, width, _ = images.shape
    if (height, width) == tuple(size):
        return images  # PyTorch's kernel copies the input when the size is unchanged
    rows = jnp.asarray(_torch_linear_resize_matrix(height, size[0]))
    cols = jnp.asarray(_torch_linear_resize_matrix(width, size[1]))
    images = jnp.einsum("oh,nhwc->nowc", rows, images, precision=_HIGHEST)
    return jnp.einsum("pw,nowc->nopc", cols, images, precision=_HIGHEST)


def preprocess(
    images: jax.Array, *, resize_input: bool = True, normalize_input: bool = True
) -> jax.Array:
    """uint8 [0, 255] or float [0, 1] NHWC images -> float32 network input.

    ``uint8 -> x / 255``, then (``resize_input``) the PyTorch bilinear resize to 299x299,
    then (``normalize_input``) ``2 * x - 1``: pytorch-fid's order of operations.
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"InceptionV3 expects NHWC images of rank 4, got shape {images.shape}")
    if images.shape[-1] != 3:
        raise ValueError(
            f"InceptionV3 expects NHWC images with 3 channels last, got shape {images.shape}"
            " (NCHW input is not accepted: transpose with x.transpose(0, 2, 3, 1))"
        )
    if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
    elif jnp.issubdtype(images.dtype, jnp.floating):
        images = images.astype(jnp.float32)
    else:
        raise TypeError(f"InceptionV3 expects uint8 or float images, got dtype {images.dtype}")
    if resize_input:
        images = resize_bilinear_torch(images, (INPUT_SIZE, INPUT_SIZE))
    if normalize_input:
        images = 2.0 * images - 1.0
    return images


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
      normalize_input: map [0, 1] to [-1, 1]; turn off for inputs already in [-1, 1].
    """

    outputs: tuple[str, ...] = ("2048",)
    resize_input: bool = True
    normalize_input: bool = True

    @nn.compact
    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        taps = _canonical_taps(self.outputs)
        # During init every parameter must be created, whatever was requested.
        needed = max(_TAP_STAGE[_TAP_ALIASES.get(t, t)] for t in taps)
        last_stage = 3 if self.is_initializing() else needed
        found: dict[str, jax.Array] = {}

        x = preprocess(images, resize_input=self.resize_input, normalize_input=self.normalize_input)
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
            fc = nn.Dense(NUM_CLASSES, precision=_HIGHEST, name="fc")
            found["logits"] = fc(pool3)  # dropout is the identity at inference
            kernel = fc.variables["params"]["kernel"]
            found["logits_unbiased"] = jnp.dot(pool3, kernel, precision=_HIGHEST)
        for name in ("64", "192", "768"):
            if name + "_map" in found:
                found[name] = jnp.mean(found[name + "_map"], axis=(1, 2))
        return {t: found[_TAP_ALIASES.get(t, t)] for t in taps}


@functools.partial(jax.jit, static_argnames=("taps", "resize_input", "normalize_input"))
def _features_jit(params, images, taps, resize_input, normalize_input):
    module = InceptionV3(outputs=taps, resize_input=resize_input, normalize_input=normalize_input)
    return module.apply({"params": params}, images)


def inception_features(
    params: Mapping[str, Any],
    images: jax.Array,
    taps: str | Sequence[str] = ("2048",),
    *,
    resize_input: bool = True,
    normalize_input: bool = True,
) -> dict[str, jax.Array]:
    """Jitted ``{tap: features}`` for NHWC uint8 [0, 255] or float [0, 1] ``images``.

    ``params`` is an argument of the compiled function (never a constant), so new weights
    do not recompile; a new image shape, dtype or set of taps does.

    Example::

        params = load_params("inception_fid.safetensors")
        feats = inception_features(params, images, taps=("2048", "logits"))
        feats["2048"].shape, feats["logits"].shape    # (N, 2048), (N, 1008)
    """
    return _features_jit(params, images, _canonical_taps(taps), resize_input, normalize_input)


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


_TORCH_LEAF = {
    "conv.weight": ("conv/kernel", lambda w: np.transpose(w, (2, 3, 1, 0))),  # OIHW -> HWIO
    "bn.weight": ("bn/scale", None),
    "bn.bias": ("bn/bias", None),
    "bn.running_mean": ("bn/mean", None),
    "bn.running_var": ("bn/var", None),
}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def convert_torch_state_dict(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """pytorch-fid's ``fid_inception_v3()`` state dict -> params of :class:`InceptionV3`.

    Key layout (torchvision's): ``Conv2d_1a_3x3.conv.weight`` (OIHW, transposed to HWIO),
    ``Mixed_5b.branch1x1.bn.{weight,bias,running_mean,running_var}`` (-> ``bn/{scale,bias,
    mean,var}``), ``fc.weight`` (transposed) and ``fc.bias``. ``num_batches_tracked`` and any
    ``AuxLogits.*`` entries are ignored. Values may be numpy arrays or torch tensors; missing,
    unexpected or mis-shaped entries raise ``ValueError`` listing them.
    """
    flat: dict[str, np.ndarray] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked") or key.startswith("AuxLogits."):
            continue
        if key == "fc.weight":
            flat["fc/kernel"] = _to_numpy(value).T
            continue
        if key == "fc.bias":
            flat["fc/bias"] = _to_numpy(value)
            continue
        for suffix, (leaf, transform) in _TORCH_LEAF.items():
            if key.endswith("." + suffix):
                module_path = key[: -len(suffix) - 1].replace(".", "/")
                array = _to_numpy(value)
                if transform is not None and array.ndim != 4:
                    mismatched.append(f"{key}: got {array.shape}, expected a 4-d OIHW kernel")
                    break
                flat[f"{module_path}/{leaf}"] = transform(array) if transform else array
                break
        else:
            unexpected.append(key)

    expected = _param_shapes()
    unexpected += sorted(set(flat) - set(expected))
    missing = sorted(set(expected) - set(flat))
    mismatched += [
        f"{k}: got {flat[k].shape}, expected {expected[k]}"
        for k in sorted(set(flat) & set(expected))
        if tuple(flat[k].shape) != expected[k]
    ]
    if unexpected or missing or mismatched:
        raise ValueError(
            "not a pytorch-fid FID InceptionV3 state dict:"
            f"\n  unexpected: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}"
            f"\n  missing: {missing[:10]}{' ...' if len(missing) > 10 else ''}"
            f"\n  wrong shape: {mismatched[:10]}"
        )
    return weights.unflatten({k: np.ascontiguousarray(v) for k, v in flat.items()})


def convert_file(pth_path: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Convert pytorch-fid's ``.pth`` to a ``.safetensors`` / ``.npz`` params file (needs torch)."""
    params = convert_torch_state_dict(weights.read_torch_state_dict(pth_path))
    out_dir = os.path.dirname(os.path.abspath(os.fspath(out_path)))
    os.makedirs(out_dir, exist_ok=True)
    return weights.save(params, out_path)


def default_weights_path() -> str:
    """``$METRIX_INCEPTION_WEIGHTS`` if set, else ``~/.cache/metrix/inception_fid.safetensors``."""
    return os.environ.get(
        "METRIX_INCEPTION_WEIGHTS",
        os.path.join(os.path.expanduser("~"), ".cache", "metrix", "inception_fid.safetensors"),
    )


def conversion_command(out_path: str | os.PathLike) -> str:
    """The shell command that converts pytorch-fid's checkpoint into ``out_path``."""
    out_path = os.fspath(out_path)
    return f"python -m metrix.backbones.inception convert {TORCH_WEIGHTS_FILE} {out_path}"


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load converted FID InceptionV3 params (default: :func:`default_weights_path`) as a
    nested dict of float32 jax arrays on the default device.

    Raises :class:`~metrix.backbones.weights.MissingWeightsError` naming the PyTorch file to
    fetch and the exact conversion command when the file does not exist. Never downloads.
    """
    path = os.fspath(path) if path is not None else default_weights_path()
    how_to_make = (
        f"Get pytorch-fid's weights {TORCH_WEIGHTS_FILE} ({TORCH_WEIGHTS_URL})"
        f" and convert them once (needs torch):\n    {conversion_command(path)}"
    )
    params = weights.load(path, what="FID InceptionV3", how_to_make=how_to_make)
    # Device arrays once, so jitted calls don't copy ~95 MB of numpy weights every time.
    return jax.tree_util.tree_map(jnp.asarray, params)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metrix.backbones.inception",
        description="FID InceptionV3 weights: convert pytorch-fid's checkpoint to safetensors/npz.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help=f"convert {TORCH_WEIGHTS_FILE} (pytorch-fid)")
    convert.add_argument("pth", help=f"pytorch-fid state dict, e.g. {TORCH_WEIGHTS_FILE}")
    convert.add_argument("out", help="output file, .safetensors or .npz")
    convert.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        written = convert_file(args.pth, args.out)
    except Exception as err:  # the command line's boundary: one line saying what went wrong
        if args.debug:
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(
            f"{parser.prog} convert: {type(err).__name__}: {text} (--debug for the traceback)",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
