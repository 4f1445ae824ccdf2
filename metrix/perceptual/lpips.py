"""LPIPS as a mergeable metric: the average learned perceptual distance between image pairs.

Learned Perceptual Image Patch Similarity (Zhang et al., 2018), version 0.1, with backbone
taps ``f_l`` (AlexNet, VGG16 or SqueezeNet1.1) and calibration weights ``w_l >= 0``::

    u_l = f_l(x') / (||f_l(x')||_2 over channels + 1e-10)      v_l likewise for y
    d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (u_{l,hwc} - v_{l,hwc})^2

(``x'`` is the image after lpips' scaling layer; the maths is :mod:`metrix.perceptual.lpips_math`).
The state is the exact mean of ``d`` over all unmasked image pairs (an ``AverageState``),
so any split into batches, devices or hosts gives the same value. With ``capacity=N`` every
pair's distance is kept too, in a fixed-capacity buffer (``compute()`` then returns
``{"lpips": mean, "per_image": (N,) distances, NaN past the filled rows}``).

Images may have any batch axes ``(*b, H, W, 3)`` (none: one pair). Weights not passed to
``get_state`` are read once from :func:`default_weights_dir` (Kauldron-style use, where the
metric finds its own weights; a missing file is a ``FileNotFoundError`` saying how to make
it). :class:`LpipsVgg` is Kauldron's ``LpipsVgg``: VGG, keys ``pred``/``target``, ``in_vrange``.

Two metrics, one per kind of input (the same state and maths):

* :class:`LPIPS` takes images, ``get_state(img_a, img_b, backbone_params, calibration,
  mask=None)``, and runs the backbone itself.
* :class:`LPIPSFromFeatures` takes per-layer features you already extracted,
  ``get_state(features_a, features_b, calibration, mask=None)``; it has no backbone.

**Weights are inputs** (never constants in the compiled program): ``backbone_params`` and
``calibration`` are pytrees passed to ``get_state`` like images, so one compiled program
serves any weights and ``jax.grad`` with respect to the calibration works. Load them once
with :meth:`LPIPS.load_weights` (the calibration defaults to the lpips package's shipped
``weights/v0.1/{net}.pth``, found without importing lpips)::

    metric = mx.LPIPS(net="alex")
    weights = metric.load_weights(backbone_path="alex.safetensors")  # {"backbone_params", "calibration"}
    state = metric.get_state(img_a, img_b, **weights)  # one compiled program per shape

``get_state`` called eagerly runs the backbone and distances as one program compiled by
metrix (on CPU with ``metrix.perceptual.lpips_math.LPIPS_CPU_COMPILER_OPTIONS[net]``, the faster
convolutions), then a tiny compiled state step; inside your own ``jax.jit`` both are
inlined and compiled with your options.

**Non-negative calibration.** The weights are used as given (lpips does the same at
inference, and its shipped weights contain exact zeros). When you train them, apply
:func:`metrix.perceptual.lpips_math.project_nonnegative` after every optimizer step (projected gradient
descent, lpips' ``clamp(min=0)``); ``examples/train_lpips_2afc.py`` shows the loop.

**Spatial mode.** ``spatial=True`` computes lpips' per-pixel map (each layer's map resized
bilinearly to the image size, then summed) and accumulates each pair's *mean of the map*:
the state stays a per-image average, the maps themselves are not kept (they would make the
state as large as the data). Read maps with :meth:`LPIPS.distances`.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Shaped

from metrix.backbones.lpips_nets import load_backbone_params
from metrix.backbones.weights import MissingWeightsError
from metrix.core.buffers import BufferState
from metrix.core.fields import concat_field, nested_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.metric import Metric
from metrix.core.state import State
from metrix.core.states import AverageState
from metrix.perceptual import lpips_math as lpips_core

__all__ = [
    "LPIPS",
    "LPIPSDistances",
    "LPIPSFromFeatures",
    "LPIPSState",
    "LPIPSWithDistances",
    "LpipsVgg",
    "default_weights_dir",
]

_VERSIONS = ("0.1",)

# One compiled program per input shape, also when get_state runs eagerly (op-by-op
# dispatch through a whole backbone is ~10x slower), compiled with metrix's CPU
# convolution settings (see lpips_core.compiled_lpips_distance). Under an outer jit it is inlined.
_distance = lpips_core.compiled_lpips_distance
def _check_image_range(normalize: bool, *images) -> None:
    """Eagerly, refuse pixels outside the documented range, and warn on the most common LPIPS
    mistake: [0, 1] images given with ``normalize=False`` (which expects [-1, 1]). Under
    ``jit`` the values are unknown and nothing is checked (documented)."""
    if any(isinstance(x, jax.core.Tracer) for x in images):
        return
    low, high = (0.0, 1.0) if normalize else (-1.0, 1.0)
    lo = min(float(jnp.min(x)) for x in images)
    hi = max(float(jnp.max(x)) for x in images)
    if lo < low - 1e-3 or hi > high + 1e-3:
        raise ValueError(
            f"LPIPS(normalize={normalize}) expects images in [{low:g}, {high:g}], got values in "
            f"[{lo:.4g}, {hi:.4g}]" + ("" if normalize else
            " (uint8-like 0..255 pixels: divide by 255 and pass normalize=True)")
        )
    if not normalize and lo >= 0.0:
        warnings.warn(
            "LPIPS(normalize=False) expects images in [-1, 1], but every pixel is in [0, 1]: if "
            "these are [0, 1] images, pass normalize=True (distances are wrong otherwise)",
            UserWarning,
            stacklevel=4,
        )


def _is_half(x) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32


_from_features = jax.jit(lpips_core.lpips_from_features, static_argnames=("spatial", "image_size"))


# ---------------------------------------------------------------------------------------
# States
# ---------------------------------------------------------------------------------------


class LPIPSState(AverageState):
    """Exact mean of the per-pair LPIPS distances (NaN when no pair was seen)."""


class LPIPSDistances(BufferState):
    """Every pair's distance, in arrival order, in a fixed-capacity buffer."""

    distances: jax.Array = concat_field(item_shape=())


class LPIPSWithDistances(State):
    """The mean plus each pair's distance (metrics configured with ``capacity=N``)."""

    average: LPIPSState = nested_field(LPIPSState)
    pairs: LPIPSDistances = nested_field(LPIPSDistances)

    def compute(self):
        """``{"lpips": mean, "per_image": (capacity,) distances, NaN past the filled rows}``.

        An overflowed buffer raises :class:`metrix.CapacityOverflowError` eagerly (NaN under jit).
        """
        per_image = jnp.where(self.pairs.valid_mask(), self.pairs.distances, jnp.nan)
        return {"lpips": self.average.compute(), "per_image": self.pairs.check_capacity(per_image)}


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


class _LPIPSBase(Metric):
    """Shared configuration checks and state building (not a public metric)."""

    # A float mask weighs its pair in LpipsVgg (as in Kauldron); elsewhere, as everywhere in
    # metrix, a mask selects (0/1 values only).
    float_mask_weighs: ClassVar[bool] = False

    def _check_config(self) -> None:
        if self.capacity is not None and (not isinstance(self.capacity, int) or self.capacity <= 0):
            raise ValueError(f"capacity must be a positive int or None, got {self.capacity!r}")
        if not isinstance(self.spatial, bool):
            raise TypeError(f"spatial must be True or False, got {self.spatial!r}")

    def empty(self) -> State:
        if self.capacity is None:
            return LPIPSState.empty(parent=self)
        return LPIPSWithDistances(
            parent=self,
            average=LPIPSState.empty(parent=self),
            pairs=LPIPSDistances.empty(parent=self),
        )

    def state_from_distances(self, distances, mask=None, weights=None) -> State:
        """The state of per-pair distances ``(N,)`` with an optional ``(N,)`` mask, and
        optional ``(N,)`` weights ``w`` (the mean is then ``sum w d / sum w``; a pair of
        weight 0 is not kept in the ``capacity`` buffer)."""
        average = LPIPSState.from_values(distances, mask=mask, weights=weights, parent=self)
        if self.capacity is None:
            return average
        keep = None if mask is None else jnp.asarray(mask, bool)
        if weights is not None:
            nonzero = jnp.asarray(weights) != 0
            keep = nonzero if keep is None else keep & nonzero
        pairs = LPIPSDistances.from_rows(
            capacity=self.capacity,
            mask=keep,
            parent=self,
            distances=jnp.asarray(distances, jnp.float32),
        )
        return LPIPSWithDistances(parent=self, average=average, pairs=pairs)


class LPIPS(_LPIPSBase):
    """Mean LPIPS distance between image pairs ``img_a``, ``img_b`` (lower is more similar).

    Inputs: NHWC RGB batches ``(N, H, W, 3)`` in [-1, 1] (``normalize=True``: in [0, 1]);
    ``backbone_params`` (the ``net`` trunk, :func:`metrix.backbones.lpips_nets.load_backbone_params`)
    and ``calibration`` (``{"lin{l}": (C_l,)}``) as pytrees; ``mask`` ``(N,)`` drops pairs.

    Config: ``net`` in ``"alex" | "vgg" | "squeeze"``; ``version="0.1"`` (the only one);
    ``spatial`` (accumulate each pair's mean of lpips' per-pixel map, see the module
    docstring); ``capacity`` (keep every pair's distance too). ``compute()`` is the mean, or
    ``{"lpips": mean, "per_image": ...}`` with ``capacity``.
    """

    img_a: Key = REQUIRED
    img_b: Key = REQUIRED
    # Unset weights are read once from default_weights_dir() (see get_state).
    backbone_params: Key | None = None
    calibration: Key | None = None
    mask: Key | None = None
    # Kauldron's names for the two images (kd.metrics.LpipsVgg): another name for each.
    pred: Key | None = None
    target: Key | None = None
    key_aliases: ClassVar[dict[str, str]] = {"pred": "img_a", "target": "img_b"}

    net: str = "alex"
    version: str = "0.1"
    spatial: bool = False
    normalize: bool = False
    capacity: int | None = None

    State = LPIPSState

    def __post_init__(self):
        if self.net not in lpips_core.LPIPS_CHANNELS:
            raise ValueError(
                f"unknown net {self.net!r}; expected one of {sorted(lpips_core.LPIPS_CHANNELS)}"
            )
        if self.version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}, got {self.version!r}")
        self._check_config()

    def load_weights(self, *, backbone_path: Any, calibration_path: Any = None) -> dict[str, Any]:
        """``{"backbone_params": ..., "calibration": ...}`` read once from local files, on device.

        ``backbone_path``: a converted ``.safetensors``/``.npz`` trunk (or a torchvision ``.pth``,
        converted on the fly with torch). ``calibration_path=None`` uses the lpips package's
        shipped ``weights/v{version}/{net}.pth`` (located without importing lpips; reading a
        ``.pth`` needs torch), else a ``.pth``/``.safetensors``/``.npz`` file. A missing file
        raises :class:`~metrix.backbones.weights.MissingWeightsError` saying how to make it.
        Pass the result as ``metric.get_state(img_a, img_b, **weights)``.
        """
        backbone = load_backbone_params(self.net, backbone_path)
        calibration = lpips_core.load_calibration(self.net, calibration_path, version=self.version)
        return {
            "backbone_params": jax.device_put(backbone),
            "calibration": jax.device_put(calibration),
        }

    def distances(self, img_a, img_b, backbone_params=None, calibration=None) -> jax.Array:
        """Per-pair distances ``(*b,)``, or lpips' per-pixel maps ``(*b, H, W)`` if ``spatial``,
        for images ``(*b, H, W, 3)`` (any number of batch axes, none for a single pair)."""
        backbone_params, calibration = self._weights_or_defaults(backbone_params, calibration)
        _check_image_range(self.normalize, img_a, img_b)
        batch = jnp.shape(img_a)[:-3]
        d = _distance(
            backbone_params,
            calibration,
            _flat_images(img_a),
            _flat_images(img_b),
            net=self.net,
            spatial=self.spatial,
            normalize=self.normalize,
        )
        return d.reshape(batch + d.shape[1:])

    def _weights_or_defaults(self, backbone_params, calibration):
        """The given weights, or those read from :func:`default_weights_dir` (cached)."""
        if backbone_params is None or calibration is None:
            backbone, shipped = _default_weights(type(self).__name__, self.net, self.version)
            backbone_params = backbone if backbone_params is None else backbone_params
            calibration = shipped if calibration is None else calibration
        _check_calibration_layers(calibration, len(lpips_core.LPIPS_CHANNELS[self.net]))
        return backbone_params, calibration

    def get_state(
        self,
        img_a: Float[Array, "*b h w 3"],
        img_b: Float[Array, "*b h w 3"],
        backbone_params: Any = None,
        calibration: Any = None,
        mask: Shaped[Array, "*b"] | Shaped[Array, "*b 1"] | None = None,
    ) -> State:
        """``backbone_params`` / ``calibration`` left out are read from the default files
        (:func:`default_weights_dir`; a missing file raises ``MissingWeightsError``, a
        ``FileNotFoundError`` saying how to make it). ``mask``: one entry per pair, shaped
        like the batch axes (Kauldron's trailing ``1`` is accepted)."""
        distances = self.distances(img_a, img_b, backbone_params, calibration)
        return self.run_compiled(_state_of_distances, distances, mask)


class LpipsVgg(LPIPS):
    """Kauldron's ``kd.metrics.LpipsVgg``: :class:`LPIPS` with ``net="vgg"`` and images in
    ``in_vrange`` (default ``(0, 1)``), keys ``pred`` / ``target`` / ``mask``.

    Images are mapped linearly to [0, 1], ``x01 = (x - lo) / (hi - lo)``, then scored as
    ``LPIPS(net="vgg", normalize=True)`` (lpips' scaling layer on ``2 x01 - 1``). The weights
    are the torchvision VGG16 trunk and lpips' VGG calibration, read from
    :func:`default_weights_dir` when not passed (Kauldron reads its own bundled file).
    ``mask`` ``(*b,)`` or ``(*b, 1)``: boolean selects pairs; a float mask weighs them, as in
    Kauldron, ``sum_i m_i d_i / sum_i m_i``.
    """

    net: str = "vgg"
    normalize: bool = True
    in_vrange: tuple[float, float] = (0.0, 1.0)

    float_mask_weighs: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        if self.net != "vgg":
            raise ValueError(f"LpipsVgg is VGG only, got net={self.net!r}: use LPIPS(net=...)")
        lo, hi = (float(v) for v in self.in_vrange)
        if not lo < hi:
            raise ValueError(
                f"LpipsVgg: in_vrange must be (low, high) with low < high, got {self.in_vrange!r}"
            )
        if not self.normalize:
            raise ValueError(
                "LpipsVgg: the input range is set by in_vrange (e.g. in_vrange=(-1, 1)); "
                "normalize=False is not accepted"
            )
        object.__setattr__(self, "in_vrange", (lo, hi))

    def distances(self, img_a, img_b, backbone_params=None, calibration=None) -> jax.Array:
        lo, hi = self.in_vrange
        _check_in_vrange(self.in_vrange, img_a, img_b)
        img_a, img_b = ((jnp.asarray(x) - lo) / (hi - lo) for x in (img_a, img_b))
        return super().distances(img_a, img_b, backbone_params, calibration)


class LPIPSFromFeatures(_LPIPSBase):
    """Mean LPIPS distance from per-layer features you extracted (no backbone inside).

    Inputs: ``features_a``, ``features_b``: sequences of per-layer ``(N, H_l, W_l, C_l)`` NHWC
    maps (or ``(N, C_l)`` vectors, as 1x1 maps); ``calibration`` ``{"lin{l}": (C_l,)}`` or a
    sequence of ``(C_l,)`` weights; ``mask`` ``(N,)`` drops pairs.

    Config: ``net`` (optional: checks the channel counts, and names the shipped calibration
    for :meth:`load_weights`); ``spatial`` with ``image_size=(H, W)`` (default: the first
    layer's size) accumulates each pair's mean of the per-pixel map resized to that size;
    ``capacity`` keeps every pair's distance too.
    """

    features_a: Key = REQUIRED
    features_b: Key = REQUIRED
    calibration: Key = REQUIRED
    mask: Key | None = None

    net: str | None = None
    version: str = "0.1"
    spatial: bool = False
    image_size: tuple[int, int] | None = None
    capacity: int | None = None

    State = LPIPSState

    def __post_init__(self):
        if self.net is not None and self.net not in lpips_core.LPIPS_CHANNELS:
            raise ValueError(
                f"unknown net {self.net!r}; expected one of "
                f"{sorted(lpips_core.LPIPS_CHANNELS)} or None"
            )
        if self.version not in _VERSIONS:
            raise ValueError(f"version must be one of {_VERSIONS}, got {self.version!r}")
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(s) for s in self.image_size))
        self._check_config()

    def load_weights(self, *, calibration_path: Any = None) -> dict[str, Any]:
        """``{"calibration": ...}`` for ``net`` (default: the lpips package's shipped file)."""
        if self.net is None:
            raise ValueError(
                "LPIPSFromFeatures.load_weights: set net= to know which calibration to load"
            )
        calibration = lpips_core.load_calibration(self.net, calibration_path, version=self.version)
        return {"calibration": jax.device_put(calibration)}

    def distances(self, features_a, features_b, calibration) -> jax.Array:
        """Per-pair distances ``(N,)``, or per-pixel maps ``(N, H, W)`` if ``spatial``."""
        # Half-precision features are widened: the unit-normalisation and squared differences
        # of the distance lose 2-3 digits in bf16 (the features' own rounding remains).
        features_a, features_b = (
            [f.astype(jnp.float32) if _is_half(f) else f for f in feats]
            for feats in (features_a, features_b)
        )
        if self.net is not None:
            expected = lpips_core.LPIPS_CHANNELS[self.net]
            for side, feats in (("features_a", features_a), ("features_b", features_b)):
                got = tuple(int(jnp.shape(f)[-1]) for f in feats)
                if got != expected:
                    raise ValueError(
                        f"LPIPSFromFeatures(net={self.net!r}): {side} has channels {got}, expected {expected}"
                    )
        return _from_features(
            features_a, features_b, calibration, spatial=self.spatial, image_size=self.image_size
        )

    def get_state(
        self,
        features_a: Sequence[Any],
        features_b: Sequence[Any],
        calibration: Any,
        mask: Shaped[Array, "n"] | None = None,
    ) -> State:
        if isinstance(features_a, (jax.Array, Mapping)) or isinstance(
            features_b, (jax.Array, Mapping)
        ):
            raise TypeError(
                "features_a and features_b must be sequences (list or tuple) of per-layer arrays"
            )
        _check_calibration_layers(calibration, len(features_a))
        distances = self.distances(features_a, features_b, calibration)
        return self.run_compiled(_state_of_distances, distances, mask)


def _state_of_distances(metric: _LPIPSBase, d, mask):
    """The state of a batch's distances (a spatial map's mean per pair first).

    Run through ``metric.run_compiled``: compiled apart from the distances, since the
    capacity buffer's scatter is slow op by op, and the distance program stays one per input shape, shared by metrics that differ in
    capacity or mask. Inlined under a user's jit.
    """
    if metric.spatial:
        d = jnp.mean(d, axis=(-2, -1))
    weights = None
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.ndim == d.ndim + 1 and mask.shape[-1] == 1:
            mask = mask[..., 0]  # Kauldron's (*b, 1) masks
        mask = mask.reshape(-1)
        if metric.float_mask_weighs and jnp.issubdtype(mask.dtype, jnp.floating):
            mask, weights = None, mask  # Kauldron's AverageState: sum(m d) / sum(m)
    return metric.state_from_distances(d.reshape(-1), mask, weights)


def _flat_images(x):
    """``(*b, H, W, 3)`` -> ``(N, H, W, 3)``; a single ``(H, W, 3)`` image is one pair."""
    x = jnp.asarray(x)
    return x.reshape((-1,) + x.shape[-3:])


def _check_in_vrange(vrange, *images) -> None:
    """Eagerly, refuse pixels outside ``in_vrange`` (under ``jit`` nothing is checked)."""
    if any(isinstance(x, jax.core.Tracer) for x in images):
        return
    lo = min(float(jnp.min(x)) for x in images)
    hi = max(float(jnp.max(x)) for x in images)
    if lo < vrange[0] - 1e-3 or hi > vrange[1] + 1e-3:
        raise ValueError(
            f"LpipsVgg(in_vrange={vrange}) got pixel values in [{lo:.4g}, {hi:.4g}]: set "
            "in_vrange to the images' range"
        )


def default_weights_dir() -> str:
    """``$METRIX_LPIPS_WEIGHTS`` if set, else ``~/.cache/metrix/lpips``: where metrics given no
    weights read ``{net}.safetensors`` (the backbone) and ``{net}_calibration.safetensors``
    (the calibration; when absent, the lpips package's shipped file is used)."""
    return os.environ.get(
        "METRIX_LPIPS_WEIGHTS", os.path.join(os.path.expanduser("~"), ".cache", "metrix", "lpips")
    )


def _default_weights(owner: str, net: str, version: str):
    """The default files' weights on device, read once per file version (path and mtime)."""
    folder = default_weights_dir()
    backbone_path = os.path.join(folder, f"{net}.safetensors")
    calibration_path = os.path.join(folder, f"{net}_calibration.safetensors")
    stamp = tuple(
        os.path.getmtime(p) if os.path.exists(p) else None
        for p in (backbone_path, calibration_path)
    )
    try:
        return _read_default_weights(net, version, backbone_path, calibration_path, stamp)
    except MissingWeightsError as err:
        raise MissingWeightsError(
            f"`{owner}` requires the LPIPS {net} weights when get_state is given no "
            f"backbone_params / calibration; they are read from {folder} "
            f"($METRIX_LPIPS_WEIGHTS): {backbone_path} for the backbone and {calibration_path} "
            f"(or the lpips package's file) for the calibration, or pass weights from "
            f"load_weights(). {err}"
        ) from None


@functools.lru_cache(maxsize=4)
def _read_default_weights(net, version, backbone_path, calibration_path, stamp):
    del stamp  # part of the cache key only: a rewritten file is read again
    backbone = load_backbone_params(net, backbone_path)
    calibration = lpips_core.load_calibration(
        net, calibration_path if os.path.exists(calibration_path) else None, version=version
    )
    # Placed on device for real even when first read inside a jit trace: the cache must
    # never hold tracers.
    with jax.ensure_compile_time_eval():
        return jax.device_put(backbone), jax.device_put(calibration)


def _check_calibration_layers(calibration: Any, n_layers: int) -> None:
    """A clear error before tracing when the calibration does not have one weight vector per layer."""
    if isinstance(calibration, Mapping):
        keys = set(calibration)
        expected = {f"lin{k}" for k in range(n_layers)}
        if keys != expected:
            raise ValueError(
                f"calibration has keys {sorted(keys)}; expected {sorted(expected)} "
                "(one (C_l,) weight vector per feature layer)"
            )
    elif isinstance(calibration, Sequence):
        if len(calibration) != n_layers:
            raise ValueError(
                f"calibration has {len(calibration)} layers, expected {n_layers}"
            )
    else:
        raise TypeError(
            f"calibration must be a {{'lin0': (C_0,), ...}} mapping or a sequence of "
            f"(C_l,) arrays, got {type(calibration).__name__}"
        )
