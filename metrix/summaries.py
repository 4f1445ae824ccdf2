"""Summaries: images, histograms and confusion-matrix images on the same state algebra.

A summary is a metric whose ``compute()`` returns arrays ready for an image or histogram
writer (TensorBoard, wandb, ...). Its states merge inside ``jit`` like any other:

* :class:`ShowImages` keeps the first ``num_images`` images in a truncating fixed-capacity
  buffer; ``compute()`` gives float ``[0, 1]`` (or uint8) ``(n, h, w, c)`` images.
* :class:`ShowHistogram` counts values in fixed bins; ``compute()`` gives counts and edges.
* :class:`ShowConfusionMatrix` is a :class:`~metrix.ConfusionMatrix` (the same exact
  counts) whose ``compute()`` gives an ``(h, w, 3)`` image of the normalised matrix.

Single-channel images and confusion matrices are coloured with a small built-in colormap
table (``"viridis"``, ``"magma"``, ``"gray"``; linear interpolation between 17 samples,
within 0.021 of matplotlib's), so no plotting library is needed.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Num, Shaped

from metrix.classification import ConfusionMatrix
from metrix.core import numerics
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import HistogramState

# ---------------------------------------------------------------------------------------
# Colormaps
# ---------------------------------------------------------------------------------------

# 17 evenly spaced samples (positions 0, 1/16, ..., 1) of matplotlib's perceptually uniform
# colormaps (data by van der Walt and Smith, CC0); interpolated linearly in between.
_COLORMAPS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "viridis": (
        (0.2670, 0.0049, 0.3294), (0.2823, 0.0950, 0.4173), (0.2788, 0.1755, 0.4834),
        (0.2590, 0.2515, 0.5247), (0.2297, 0.3224, 0.5457), (0.1994, 0.3876, 0.5546),
        (0.1727, 0.4488, 0.5579), (0.1490, 0.5081, 0.5573), (0.1276, 0.5669, 0.5506),
        (0.1206, 0.6258, 0.5335), (0.1579, 0.6838, 0.5017), (0.2461, 0.7389, 0.4520),
        (0.3692, 0.7889, 0.3829), (0.5160, 0.8312, 0.2943), (0.6785, 0.8637, 0.1895),
        (0.8456, 0.8873, 0.0997), (0.9932, 0.9062, 0.1439),
    ),
    "magma": (
        (0.0015, 0.0005, 0.0139), (0.0396, 0.0311, 0.1335), (0.1131, 0.0655, 0.2768),
        (0.2117, 0.0620, 0.4186), (0.3167, 0.0717, 0.4854), (0.4147, 0.1104, 0.5047),
        (0.5128, 0.1482, 0.5076), (0.6136, 0.1818, 0.4985), (0.7164, 0.2150, 0.4753),
        (0.8169, 0.2559, 0.4365), (0.9043, 0.3196, 0.3881), (0.9609, 0.4183, 0.3596),
        (0.9867, 0.5356, 0.3822), (0.9961, 0.6537, 0.4462), (0.9969, 0.7696, 0.5349),
        (0.9924, 0.8843, 0.6401), (0.9871, 0.9914, 0.7495),
    ),
    "gray": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}

COLORMAPS = tuple(_COLORMAPS)
"""Names of the built-in colormaps."""


def _check_cmap(cmap: str | None) -> None:
    if cmap is not None and cmap not in _COLORMAPS:
        raise ValueError(f"unknown colormap {cmap!r}; built-in ones are {COLORMAPS}")


def apply_colormap(x, name: str = "viridis"):
    """Map values in ``[0, 1]`` (any shape) to RGB in ``[0, 1]`` (shape ``(..., 3)``).

    Values outside ``[0, 1]`` are clipped; NaN maps to black.
    """
    _check_cmap(name)
    table = jnp.asarray(_COLORMAPS[name], jnp.float32)
    x = jnp.asarray(x, jnp.float32)
    positions = jnp.linspace(0.0, 1.0, table.shape[0])
    clipped = jnp.clip(jnp.nan_to_num(x, nan=0.0), 0.0, 1.0)
    rgb = jnp.stack([jnp.interp(clipped, positions, table[:, k]) for k in range(3)], axis=-1)
    return jnp.where(jnp.isnan(x)[..., None], 0.0, rgb)


def _to_uint8(x):
    return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _trim(x, count):
    """The first ``count`` rows when ``count`` is concrete (eager); all rows under jit."""
    try:
        return x[: int(count)]
    except jax.errors.ConcretizationTypeError:
        return x


# ---------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------


def normalize_images(images, in_vrange: tuple[float, float] | None = None):
    """Scale ``(n, h, w, c)`` images to ``[0, 1]``.

    With ``in_vrange=(lo, hi)``: ``clip((x - lo) / (hi - lo), 0, 1)``. Without: each image
    by its own range, ``(x - min) / (max - min)`` (a constant image becomes 0).
    """
    images = jnp.asarray(images, jnp.float32)
    if in_vrange is not None:
        lo, hi = in_vrange
        return jnp.clip((images - lo) / (hi - lo), 0.0, 1.0)
    axes = tuple(range(1, images.ndim))
    lo = jnp.min(images, axis=axes, keepdims=True)
    span = jnp.max(images, axis=axes, keepdims=True) - lo
    return jnp.where(span > 0, (images - lo) / jnp.where(span > 0, span, 1.0), 0.0)


class ShowImages(Metric):
    """The first ``num_images`` images seen (over all merged batches), ready to write.

    ``images`` are rearranged with ``einops`` when ``rearrange`` is set (e.g.
    ``"b c h w -> b h w c"``, with sizes in ``rearrange_kwargs`` as ``(("h", 8),)``), and must
    then be ``(b, h, w)`` or ``(b, h, w, c)``. ``compute()`` returns ``(n, h, w, c)`` float32
    images in ``[0, 1]`` (uint8 with ``uint8=True``): values scaled by ``in_vrange`` (or
    each image by its own min/max when None), single-channel images coloured when ``cmap``
    is set. Eagerly, ``n`` is the number of images stored; under ``jit`` it is
    ``num_images`` and unfilled slots are black. ``image_shape`` (``(h, w, c)`` after the
    rearrange) is only needed for ``empty()``.
    """

    images: Key = REQUIRED
    mask: Key | None = None
    num_images: int = 5
    rearrange: str | None = None
    rearrange_kwargs: tuple[tuple[str, int], ...] = ()
    in_vrange: tuple[float, float] | None = None
    cmap: str | None = None
    uint8: bool = False
    image_shape: tuple[int, int, int] | None = None

    def __post_init__(self):
        _check_cmap(self.cmap)
        if self.num_images < 1:
            raise ValueError(f"ShowImages: num_images must be >= 1, got {self.num_images}")

    # BufferState.empty() reads the buffer's capacity and overflow policy from the metric.
    @property
    def capacity(self) -> int:
        return self.num_images

    @property
    def overflow(self) -> str:
        return "truncate"

    class State(BufferState):
        images: jax.Array = concat_field(item_shape=lambda m: m.image_shape)

        def compute(self):
            m = self.parent
            images = normalize_images(self.images, m.in_vrange)
            if m.cmap is not None and images.shape[-1] == 1:
                images = apply_colormap(images[..., 0], m.cmap)
            # Unfilled slots stay black whatever the normalisation.
            images = jnp.where(self.valid_mask()[:, None, None, None], images, 0.0)
            if m.uint8:
                images = _to_uint8(images)
            return _trim(images, self.count)

    def get_state(self, images: Num[Array, "..."], mask: Shaped[Array, "n"] | None = None) -> State:
        images = jnp.asarray(images, jnp.float32)  # one buffer dtype: empty() and real states agree
        if self.rearrange is not None:
            images = einops.rearrange(images, self.rearrange, **dict(self.rearrange_kwargs))
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(
                f"ShowImages: images must be (b, h, w) or (b, h, w, c) after the rearrange, got "
                f"shape {images.shape}; set rearrange= (e.g. 'b c h w -> b h w c')."
            )
        return self.State.from_rows(
            capacity=self.num_images, mask=mask, overflow="truncate", parent=self, images=images
        )


# ---------------------------------------------------------------------------------------
# Histograms
# ---------------------------------------------------------------------------------------


class ShowHistogram(Metric):
    """Histogram of all unmasked values in ``num_bins`` equal bins over ``[low, high]``.

    The range is fixed in the config so that states merge exactly. ``compute()`` returns
    ``{"counts": (num_bins,), "edges": (num_bins + 1,), "below", "above", "nan"}``: values
    outside the range and NaNs are counted apart, never lost.
    """

    values: Key = REQUIRED
    mask: Key | None = None
    low: float = 0.0
    high: float = 1.0
    num_bins: int = 30

    def __post_init__(self):
        if not self.high > self.low:
            raise ValueError(f"ShowHistogram: need low < high, got [{self.low}, {self.high}]")
        if self.num_bins < 1:
            raise ValueError(f"ShowHistogram: num_bins must be >= 1, got {self.num_bins}")

    class State(HistogramState):
        def compute(self):
            m = self.parent
            return {
                "counts": numerics.df_value(self.counts),
                "edges": jnp.asarray(np.linspace(m.low, m.high, m.num_bins + 1), jnp.float32),
                "below": numerics.df_value(self.below),
                "above": numerics.df_value(self.above),
                "nan": numerics.df_value(self.nan),
            }

    def get_state(self, values: Num[Array, "..."], mask: Shaped[Array, "..."] | None = None) -> State:
        return self.State.from_values(
            values, num_bins=self.num_bins, low=self.low, high=self.high, mask=mask
        )


# ---------------------------------------------------------------------------------------
# Confusion matrix image
# ---------------------------------------------------------------------------------------


def confusion_image(cells, cmap: str = "viridis", cell_size: int = 8):
    """An ``(n * cell_size, n * cell_size, 3)`` RGB image of a matrix with values in ``[0, 1]``."""
    image = apply_colormap(cells, cmap)
    return jnp.repeat(jnp.repeat(image, cell_size, axis=0), cell_size, axis=1)


class ShowConfusionMatrix(ConfusionMatrix):
    """An image of the confusion matrix (rows: labels, columns: predictions).

    The counts are :class:`metrix.ConfusionMatrix`'s (exact, merged by addition; ``preds``
    are scores — argmax — or predicted labels, ``task`` "multiclass" or "binary"). ``compute()``
    normalises them as sklearn (``normalize`` "true" — the default here —, "pred", "all";
    None scales by the largest count), colours them with ``cmap`` and returns a float32
    ``(h, w, 3)`` image in ``[0, 1]``, each cell ``cell_size`` pixels wide (uint8 with
    ``uint8=True``). ``state.counts()`` gives the matrix itself.
    """

    normalize: str | None = "true"
    cmap: str = "viridis"
    cell_size: int = 8
    uint8: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.task == "multilabel":
            raise ValueError("ShowConfusionMatrix: task='multilabel' has no single matrix image")
        _check_cmap(self.cmap)
        if self.cell_size < 1:
            raise ValueError(f"ShowConfusionMatrix: cell_size must be >= 1, got {self.cell_size}")

    class State(ConfusionMatrix.State):
        def compute(self):
            m = self.parent
            cells = super().compute()  # sklearn's normalisation (0/0 -> 0), or the counts
            if m.normalize is None:
                counts = self.counts()
                top = jnp.max(counts)
                cells = jnp.where(top > 0, counts / jnp.where(top > 0, top, 1.0), 0.0)
            image = confusion_image(cells, m.cmap, m.cell_size)
            return _to_uint8(image) if m.uint8 else image


__all__ = [
    "ShowConfusionMatrix",
    "ShowHistogram",
    "ShowImages",
    "apply_colormap",
    "confusion_image",
    "normalize_images",
]
