"""Image resizes that reproduce other libraries' kernels exactly, as jit-able matrix products.

A separable resize is two matrix products: ``out = R @ image @ C^T`` with ``R`` (out_h, in_h)
and ``C`` (out_w, in_w) holding each output pixel's weights over the input pixels. Building
the matrices on the host with the reference library's own arithmetic gives the same pixels as
that library, on any device and under ``jit``, with no host round trip for the images.

* :func:`resize_bilinear_torch`: ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)``, pytorch-fid's resize (two taps, no antialiasing when shrinking).
* :func:`resize_bicubic_pil`: Pillow's ``Image.resize(size, Image.BICUBIC)`` on a float
  (mode ``"F"``) image, clean-fid's resize: the Keys cubic (a = -0.5), *antialiased*: when
  shrinking by ``s`` the kernel is stretched by ``s`` so every input pixel contributes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_HIGHEST = jax.lax.Precision.HIGHEST

# The FID input pipelines, by clean-fid's names (metrix.backbones.inception.preprocess).
FID_MODES = ("legacy_pytorch", "clean")


def check_fid_mode(mode: str, what: str = "InceptionV3") -> str:
    """``mode`` if it is one of :data:`FID_MODES`, else a ``ValueError`` naming ``what``."""
    if mode not in FID_MODES:
        hint = (
            " (clean-fid's 'legacy_tensorflow' resizes inside TF's graph; it is not provided)"
            if mode == "legacy_tensorflow"
            else ""
        )
        raise ValueError(f"{what}: mode must be one of {FID_MODES}, got {mode!r}{hint}")
    return mode

__all__ = [
    "FID_MODES",
    "check_fid_mode",
    "pil_bicubic_matrix",
    "resize_bicubic_pil",
    "resize_bilinear_torch",
    "resize_separable",
    "torch_bilinear_matrix",
]


@functools.lru_cache(maxsize=64)
def torch_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
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
    matrix.setflags(write=False)
    return matrix


def _keys_cubic(x: float) -> float:
    """Pillow's bicubic kernel: Keys' cubic convolution with ``a = -0.5``, support 2."""
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def pil_bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) matrix of Pillow's antialiased bicubic resize along one axis.

    Pillow's ``precompute_coeffs`` in double precision: ``scale = in / out``, the kernel
    widened by ``filterscale = max(scale, 1)``; output pixel ``i`` is centred at
    ``c = (i + 0.5) * scale`` and reads input pixels ``x`` in ``[int(c - support + 0.5),
    int(c + support + 0.5))`` (clipped to the image, ``support = 2 * filterscale``) with
    weights ``cubic((x - c + 0.5) / filterscale)`` normalised to sum 1 per output pixel.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    matrix = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)  # C's (int) cast truncates toward zero
        hi = min(int(centre + support + 0.5), in_size)
        weights = np.array(
            [_keys_cubic((x - centre + 0.5) / filterscale) for x in range(lo, hi)], np.float64
        )
        total = weights.sum()
        matrix[i, lo:hi] = weights / total if total != 0.0 else weights
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


def resize_separable(images: jax.Array, rows: np.ndarray | None, cols: np.ndarray | None):
    """``rows @ image @ cols^T`` for NHWC ``images``: columns first, then rows (Pillow's
    order), each at HIGHEST precision so TF32 matmuls cannot perturb the pixels on GPUs.
    A ``None`` matrix leaves that axis as it is."""
    if cols is not None:
        images = jnp.einsum("pw,nhwc->nhpc", jnp.asarray(cols), images, precision=_HIGHEST)
    if rows is not None:
        images = jnp.einsum("oh,nhwc->nowc", jnp.asarray(rows), images, precision=_HIGHEST)
    return images


def resize_bilinear_torch(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize NHWC ``images`` to ``size = (H, W)`` like ``F.interpolate(mode="bilinear",
    align_corners=False)``; an unchanged size returns the input (PyTorch copies it)."""
    _, height, width, _ = images.shape
    if (height, width) == tuple(size):
        return images
    return resize_separable(
        images, torch_bilinear_matrix(height, size[0]), torch_bilinear_matrix(width, size[1])
    )


def resize_bicubic_pil(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize NHWC float ``images`` to ``size = (H, W)`` like Pillow's ``Image.resize((W, H),
    BICUBIC)`` on each channel as a mode ``"F"`` image (what clean-fid does before Inception).

    An axis whose size is unchanged is copied, as Pillow skips that pass. Bicubic weights
    can be negative, so values may leave the input's range (clean-fid clips afterwards).
    """
    _, height, width, _ = images.shape
    rows = None if height == size[0] else pil_bicubic_matrix(height, size[0])
    cols = None if width == size[1] else pil_bicubic_matrix(width, size[1])
    return resize_separable(images, rows, cols)

