"""LPIPS as pure, jit-safe functions: the maths under ``mx.LPIPS`` and ``LPIPSMetric``.

Learned Perceptual Image Patch Similarity (Zhang et al., 2018) between images ``x`` and
``y``, with backbone taps ``f_l`` (l = 1..L, C_l channels) and calibration weights
``w_l >= 0`` (the 1x1 "lin" heads)::

    x' = (x - shift) / scale                        # lpips' ScalingLayer, x in [-1, 1]
    u_l = f_l(x') / (||f_l(x')||_2 over channels + 1e-10), v_l likewise for y
    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (u_{l,hwc} - v_{l,hwc})^2

With ``spatial=True`` each layer's ``(h, w)`` map is first resized to the image size with
bilinear interpolation (``align_corners=False``, as lpips' ``nn.Upsample``) and the layers
are summed per pixel: an ``(N, H, W)`` distance map instead of ``(N,)``.

Weights are inputs: ``backbone_params`` (see :mod:`metrix.backbones.lpips_nets`) and the
``calibration`` pytree ``{"lin0": (C_0,), ..., "lin{L-1}": (C_{L-1},)}`` are passed into
``jit`` as arguments. :func:`load_calibration` reads lpips' own shipped weights
(``lpips/weights/v0.1/{alex,vgg,squeeze}.pth``) or a converted safetensors/npz file.

**Non-negativity of the calibration.** The weights are stored and used raw, exactly as
lpips does at inference, so the shipped weights (which contain exact zeros) are reproduced
bit for bit. When training them, call :func:`project_nonnegative` after every optimizer
step (projected gradient descent), which is what lpips' trainer does with ``clamp(min=0)``.
A softplus parametrisation was not chosen: it cannot represent the shipped zeros.

**Speed on CPU.** :func:`compiled_lpips_distance` is ``lpips_distance`` as one compiled
program per input shape. On CPU it compiles with ``LPIPS_CPU_COMPILER_OPTIONS[net]``:
these hand the convolutions to XLA's own (Eigen) kernels instead of YNNPACK, which are
faster on all three trunks and give the same distances to ~1e-8 (figures:
benchmarks/RESULTS.md, "Measurements behind implementation choices").
The options only reach programs metrix compiles itself: called inside your own
``jax.jit`` the function is inlined into your program and compiled with your options
(pass ``compiler_options=LPIPS_CPU_COMPILER_OPTIONS[net]`` to your top-level ``jax.jit``
to get the same kernels there: alex 64x64 ran 1,065 pairs/s inlined with XLA's defaults
vs 1,202 with the options).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metrix.backbones.lpips_nets import (
    LPIPS_CHANNELS,
    _net_key,
    find_lpips_calibration_file,
    load_calibration,
    lpips_backbone,
    save_calibration,
)
from metrix.backbones.xla_cpu import EIGEN_KERNELS, cpu_jit

__all__ = [
    "LPIPS_CHANNELS",
    "LPIPS_CPU_COMPILER_OPTIONS",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "compiled_lpips_distance",
    "compiled_lpips_from_features",
    "find_lpips_calibration_file",
    "load_calibration",
    "lpips_distance",
    "lpips_features",
    "lpips_from_features",
    "normalize_channels",
    "project_nonnegative",
    "save_calibration",
    "scale_input",
    "shipped_calibration",
    "shipped_calibration_or_warn",
]

_HIGHEST = jax.lax.Precision.HIGHEST

# lpips' ScalingLayer: maps [-1, 1] images to roughly ImageNet-normalised ones,
# i.e. ((x + 1) / 2 - mean) / std with mean, std rewritten for [-1, 1] inputs.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

_EPS = 1e-10  # lpips' normalize_tensor epsilon


@functools.lru_cache(maxsize=8)
def _read_shipped_calibration(net: str, path: str, mtime: float) -> dict[str, np.ndarray]:
    """lpips' shipped calibration, read once per file version (torch reads the ``.pth``)."""
    del mtime  # part of the cache key only: an updated file is read again
    calibration = load_calibration(net, path)
    for weights in calibration.values():
        weights.setflags(write=False)  # shared by every caller of the cache
    return calibration


def shipped_calibration(net: str) -> tuple[dict[str, np.ndarray] | None, str]:
    """``(calibration, "")`` from the installed lpips package's ``weights/v0.1/{net}.pth``,
    or ``(None, why it cannot be read)``: lpips not installed, or torch (which reads the
    ``.pth``) missing. Read once per process; never raises for a missing package."""
    path = find_lpips_calibration_file(net)
    if path is None:
        return None, f"the lpips package (which ships weights/v0.1/{net}.pth) is not installed"
    try:
        return _read_shipped_calibration(net, path, os.path.getmtime(path)), ""
    except ImportError:
        return None, f"reading lpips' {path} needs torch, which is not installed"


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the metrix and flax packages (nnx's
    metaclass calls ``__init__`` through a varying number of its own frames)."""
    import flax

    inside = tuple(
        os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sys.modules["metrix"], flax)
    )
    frame, level = sys._getframe(1), 1
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(inside):
            return level
        frame, level = frame.f_back, level + 1
    return 1


def shipped_calibration_or_warn(net: str, owner: str) -> dict[str, np.ndarray] | None:
    """:func:`shipped_calibration`, or None after a ``UserWarning`` (at the caller's line)
    naming what to install: ``owner`` then draws random weights."""
    calibration, why = shipped_calibration(net)
    if calibration is None:
        warnings.warn(
            f"{owner}({net!r}): {why}, so the calibration weights are drawn at random from "
            "rngs and the distances are not LPIPS values. Install them with `pip install "
            f"lpips torch` (or convert once: python -m metrix.backbones.lpips_nets calibration "
            f"{net} out.safetensors, then calibration='out.safetensors'); pass "
            "calibration='random' to train from random weights without this warning.",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return calibration


def scale_input(images: jax.Array, normalize: bool = False) -> jax.Array:
    """``(x - shift) / scale`` per RGB channel (NHWC); ``normalize=True`` first maps [0,1] to [-1,1]."""
    x = jnp.asarray(images, jnp.float32)
    if normalize:
        x = 2.0 * x - 1.0
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    return (x - shift) / scale


def normalize_channels(features: jax.Array, eps: float = _EPS) -> jax.Array:
    """``f / (sqrt(sum_c f^2) + eps)`` over the last (channel) axis.

    The square root is guarded where the sum is 0 (common after a ReLU): the value is the
    same (0), but the gradient stays finite instead of ``0 * inf = nan``.
    """
    sq = jnp.sum(jnp.square(features), axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return features / (norm + eps)


def project_nonnegative(calibration: Any) -> Any:
    """``max(w, 0)`` on every leaf: apply after each optimizer step (lpips' ``clamp(min=0)``)."""
    return jax.tree_util.tree_map(lambda w: jnp.maximum(w, 0), calibration)


def _as_map(features: jax.Array) -> jax.Array:
    """(N, H, W, C) as is; (N, C) vectors as (N, 1, 1, C) maps."""
    features = jnp.asarray(features)
    if features.ndim == 2:
        return features[:, None, None, :]
    if features.ndim != 4:
        raise ValueError(
            f"LPIPS features must be (N, H, W, C) or (N, C); got shape {features.shape}"
        )
    return features


def _layer_weights(
    calibration: Mapping[str, Any] | Sequence[Any], n_layers: int
) -> list[jax.Array]:
    if isinstance(calibration, Mapping):
        missing = [f"lin{k}" for k in range(n_layers) if f"lin{k}" not in calibration]
        if missing:
            raise ValueError(f"LPIPS calibration lacks {missing} for {n_layers} feature layers")
        return [jnp.asarray(calibration[f"lin{k}"]).reshape(-1) for k in range(n_layers)]
    if len(calibration) != n_layers:
        raise ValueError(
            f"LPIPS calibration has {len(calibration)} layers for {n_layers} feature layers"
        )
    return [jnp.asarray(w).reshape(-1) for w in calibration]


@functools.lru_cache(maxsize=64)
def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's bilinear resize with ``align_corners=False``.

    Output pixel i samples the input at ``s = (i + 0.5) * n_in / n_out - 0.5`` clamped at 0,
    blending pixels ``floor(s)`` and ``min(floor(s) + 1, n_in - 1)`` linearly.
    """
    # float32 arithmetic in torch's order, so the blend weights round as torch's do
    scale = np.float32(n_in) / np.float32(n_out)
    i = np.arange(n_out, dtype=np.float32)
    src = np.maximum(scale * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo.astype(np.float32)
    matrix = np.zeros((n_out, n_in), np.float32)
    np.add.at(matrix, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(matrix, (np.arange(n_out), hi), frac)
    return matrix


def _upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of (N, h, w) maps to (N, H, W), as ``nn.Upsample(size, 'bilinear')``."""
    if maps.shape[1:] == tuple(size):
        return maps
    rows = jnp.asarray(_bilinear_matrix(size[0], maps.shape[1]))
    cols = jnp.asarray(_bilinear_matrix(size[1], maps.shape[2]))
    return jnp.einsum("Hh,nhw,Ww->nHW", rows, maps, cols, precision=_HIGHEST)


def lpips_from_features(
    features_a: Sequence[jax.Array],
    features_b: Sequence[jax.Array],
    calibration: Mapping[str, Any] | Sequence[Any],
    spatial: bool = False,
    image_size: tuple[int, int] | None = None,
) -> jax.Array:
    """LPIPS distance from per-layer backbone taps; ``(N,)``, or ``(N, H, W)`` if ``spatial``.

    ``features_a[l]``, ``features_b[l]``: ``(N, H_l, W_l, C_l)`` NHWC maps, or ``(N, C_l)``
    vectors (treated as 1x1 maps). ``calibration``: ``{"lin{l}": (C_l,)}`` or a sequence of
    ``(C_l,)`` weights. Per layer: unit-normalise channels, square the difference, weight
    and sum channels, average over space, then sum layers (see the module docstring).
    ``image_size`` is the ``(H, W)`` of the spatial output (default: the first layer's).
    Differentiable in the features and the calibration.
    """
    if len(features_a) != len(features_b):
        raise ValueError(f"LPIPS got {len(features_a)} layers for a and {len(features_b)} for b")
    maps_a = [_as_map(f) for f in features_a]
    maps_b = [_as_map(f) for f in features_b]
    layer_weights = _layer_weights(calibration, len(maps_a))
    if spatial and image_size is None:
        image_size = maps_a[0].shape[1:3]
    total = None
    for fa, fb, w in zip(maps_a, maps_b, layer_weights):
        if fa.shape != fb.shape:
            raise ValueError(f"LPIPS feature shapes differ: {fa.shape} vs {fb.shape}")
        if fa.shape[-1] != w.shape[0]:
            raise ValueError(
                f"LPIPS layer with {fa.shape[-1]} channels got {w.shape[0]} calibration weights"
            )
        diff = jnp.square(normalize_channels(fa) - normalize_channels(fb))
        per_pixel = jnp.einsum("nhwc,c->nhw", diff, w.astype(diff.dtype), precision=_HIGHEST)
        layer = _upsample(per_pixel, image_size) if spatial else jnp.mean(per_pixel, axis=(1, 2))
        total = layer if total is None else total + layer
    return total


# lpips_from_features as one compiled program per input shape: eagerly, its dozens of
# small operations would each be dispatched on their own. Inside a caller's jit or grad it
# is inlined.
compiled_lpips_from_features = jax.jit(
    lpips_from_features, static_argnames=("spatial", "image_size")
)


def lpips_features(
    backbone_params: Any, images: jax.Array, net: str = "alex", normalize: bool = False
):
    """Backbone taps of NHWC ``images`` in [-1, 1] (or [0, 1] with ``normalize``), after scaling."""
    return lpips_backbone(_net_key(net)).apply(
        {"params": backbone_params}, scale_input(images, normalize)
    )


# metrix.backbones.xla_cpu.EIGEN_KERNELS (YNNPACK off, see there): XLA's Eigen convolutions are
# faster on all three trunks; keeping YNNPACK for convolutions or reductions only was as slow
# as the default (figures: benchmarks/RESULTS.md).
LPIPS_CPU_COMPILER_OPTIONS: dict[str, dict[str, Any]] = {
    net: dict(EIGEN_KERNELS) for net in ("alex", "squeeze", "vgg")
}

_DISTANCE_STATIC = ("net", "spatial", "normalize")


def lpips_distance(
    backbone_params: Any,
    calibration: Mapping[str, Any] | Sequence[Any],
    images_a: jax.Array,
    images_b: jax.Array,
    net: str = "alex",
    spatial: bool = False,
    normalize: bool = False,
) -> jax.Array:
    """LPIPS between NHWC image batches; ``(N,)`` distances, or ``(N, H, W)`` if ``spatial``.

    Images are in [-1, 1] (``normalize=True``: in [0, 1]). Both batches run through the
    backbone as one batch of 2N. jit with ``net``, ``spatial``, ``normalize`` static, e.g.
    ``jax.jit(lpips_distance, static_argnames=("net", "spatial", "normalize"))``.
    """
    images_a = jnp.asarray(images_a)
    images_b = jnp.asarray(images_b)
    if images_a.shape != images_b.shape or images_a.ndim != 4 or images_a.shape[-1] != 3:
        raise ValueError(
            f"LPIPS needs two NHWC RGB batches of one shape; got {images_a.shape} and {images_b.shape}"
        )
    n = images_a.shape[0]
    taps = lpips_features(backbone_params, jnp.concatenate([images_a, images_b]), net, normalize)
    return lpips_from_features(
        [t[:n] for t in taps],
        [t[n:] for t in taps],
        calibration,
        spatial=spatial,
        image_size=images_a.shape[1:3],
    )


_DISTANCE = {
    net: cpu_jit(lpips_distance, options, static_argnames=_DISTANCE_STATIC)
    for net, options in LPIPS_CPU_COMPILER_OPTIONS.items()
}


def compiled_lpips_distance(
    backbone_params: Any,
    calibration: Mapping[str, Any] | Sequence[Any],
    images_a: jax.Array,
    images_b: jax.Array,
    net: str = "alex",
    spatial: bool = False,
    normalize: bool = False,
) -> jax.Array:
    """:func:`lpips_distance` as one compiled program per shape (same arguments and result).

    Called on concrete CPU arrays it compiles with ``LPIPS_CPU_COMPILER_OPTIONS[net]``;
    under a trace (your ``jit``, ``grad``, ``vmap``) or on other platforms it is a plain
    ``jax.jit`` that inlines into the caller (JAX accepts compiler options on top-level
    jits only).
    """
    return _DISTANCE[_net_key(net)](
        backbone_params,
        calibration,
        images_a,
        images_b,
        net=net,
        spatial=spatial,
        normalize=normalize,
    )
