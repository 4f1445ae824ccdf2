"""AlexNet, VGG16 and SqueezeNet1.1 feature taps, as the LPIPS metric reads them.

LPIPS (Zhang et al. 2018) compares images through the ``.features`` trunk of torchvision's
``alexnet``, ``vgg16`` and ``squeezenet1_1``, read after given ReLUs:

======== =============================================== ==========================
net      taps (torchvision ``features`` index of the ReLU) channels
======== =============================================== ==========================
alex     relu1..relu5 (1, 4, 7, 9, 11)                   64, 192, 384, 256, 256
vgg      relu1_2, relu2_2, relu3_3, relu4_3, relu5_3     64, 128, 256, 512, 512
         (3, 8, 15, 22, 29)
squeeze  after features 1, 4, 7, 9, 10, 11, 12           64, 128, 256, 384, 384,
                                                         512, 512
======== =============================================== ==========================

The modules here are Flax linen, NHWC, and return the tuple of taps. Parameters are a
nested dict keyed by the torchvision ``features`` index (``features_0/kernel`` for
``features.0.weight``; ``features_3/squeeze/kernel`` for a SqueezeNet Fire module), so a
torchvision or lpips checkpoint converts by renaming and transposing only::

    params = convert_torchvision_state_dict("alex", read_torch_state_dict("alexnet-owt-7be5be79.pth"))
    taps = lpips_backbone("alex").apply({"params": params}, images_nhwc)

The weights are an input (never a constant in the compiled program). Convert a torchvision
checkpoint once, then load the safetensors file at run time without torch::

    python -m metrix.backbones.lpips_nets convert alex alexnet-owt-7be5be79.pth alex.safetensors
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metrix.backbones import weights as weight_io
from metrix.backbones.weights import MissingWeightsError

__all__ = [
    "LPIPS_CHANNELS",
    "LPIPS_NETS",
    "TORCHVISION_FILES",
    "AlexNetFeatures",
    "MissingWeightsError",
    "SqueezeNet11Features",
    "VGG16Features",
    "convert_torchvision_state_dict",
    "find_lpips_calibration_file",
    "load_backbone_params",
    "load_calibration",
    "lpips_backbone",
    "params_shapes",
    "save_calibration",
]

# Channels of each tap, in order: the width of each LPIPS calibration head.
LPIPS_CHANNELS: dict[str, tuple[int, ...]] = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
    "squeeze": (64, 128, 256, 384, 384, 512, 512),
}

_HIGHEST = jax.lax.Precision.HIGHEST

# torchvision's ImageNet checkpoints, as named on download.pytorch.org/models/.
TORCHVISION_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def _conv(
    features: int, kernel: int, stride: int = 1, padding: int = 0, name: str | None = None
) -> nn.Conv:
    """A torch ``Conv2d(k, stride, padding)`` with bias, in NHWC."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        precision=_HIGHEST,
        name=name,
    )


def _max_pool(x: jax.Array, window: int, stride: int, ceil_mode: bool = False) -> jax.Array:
    """torch ``MaxPool2d(window, stride, padding=0, ceil_mode)`` on NHWC.

    ``ceil_mode=True`` makes the output ``ceil((n - window) / stride) + 1`` long: the last
    window may hang past the end of the input. We pad the bottom/right with ``-inf`` by
    exactly the overhang, so the extra window takes the max over the in-range values only.
    (With no padding, that last window always starts inside the input, so torch's rule of
    dropping windows that start in the padding never applies.)

    Written as the elementwise max of the ``window**2`` strided slices rather than a
    ``reduce_window``: XLA:CPU fuses the slices (and the ReLU before them) into one loop,
    where a ``reduce_window`` runs on its own (figures: benchmarks/RESULTS.md, "Measurements
    behind implementation choices").
    """
    outs, pads = [], []
    for n in x.shape[1:3]:
        if ceil_mode:
            out = math.ceil((n - window) / stride) + 1
        else:
            out = (n - window) // stride + 1
        outs.append(out)
        pads.append((0, max(0, (out - 1) * stride + window - n)))
    if any(after for _, after in pads):
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    pooled = None
    for i in range(window):
        for j in range(window):
            part = x[
                :,
                i : i + stride * (outs[0] - 1) + 1 : stride,
                j : j + stride * (outs[1] - 1) + 1 : stride,
            ]
            pooled = part if pooled is None else jnp.maximum(pooled, part)
    return pooled


class AlexNetFeatures(nn.Module):
    """torchvision ``alexnet().features`` up to relu5; returns (relu1, ..., relu5), NHWC."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        relu1 = nn.relu(_conv(64, 11, stride=4, padding=2, name="features_0")(x))
        h = _max_pool(relu1, 3, 2)
        relu2 = nn.relu(_conv(192, 5, padding=2, name="features_3")(h))
        h = _max_pool(relu2, 3, 2)
        relu3 = nn.relu(_conv(384, 3, padding=1, name="features_6")(h))
        relu4 = nn.relu(_conv(256, 3, padding=1, name="features_8")(relu3))
        relu5 = nn.relu(_conv(256, 3, padding=1, name="features_10")(relu4))
        return relu1, relu2, relu3, relu4, relu5


# VGG16 "D" configuration, as torchvision numbers its features: (index of conv, channels);
# a 2x2 max pool precedes each block after the first; the tap is the last ReLU of a block.
_VGG16_BLOCKS = (
    ((0, 64), (2, 64)),
    ((5, 128), (7, 128)),
    ((10, 256), (12, 256), (14, 256)),
    ((17, 512), (19, 512), (21, 512)),
    ((24, 512), (26, 512), (28, 512)),
)


class VGG16Features(nn.Module):
    """torchvision ``vgg16().features`` up to relu5_3; returns (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        taps = []
        h = x
        for block_index, block in enumerate(_VGG16_BLOCKS):
            if block_index > 0:
                h = _max_pool(h, 2, 2)
            for conv_index, channels in block:
                h = nn.relu(_conv(channels, 3, padding=1, name=f"features_{conv_index}")(h))
            taps.append(h)
        return tuple(taps)


class Fire(nn.Module):
    """SqueezeNet Fire module: 1x1 squeeze, then concat(1x1 expand, 3x3 expand), all ReLU."""

    squeeze: int
    expand: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = nn.relu(_conv(self.squeeze, 1, name="squeeze")(x))
        e1 = nn.relu(_conv(self.expand, 1, name="expand1x1")(s))
        e3 = nn.relu(_conv(self.expand, 3, padding=1, name="expand3x3")(s))
        return jnp.concatenate([e1, e3], axis=-1)  # torch.cat(dim=1): 1x1 first


class SqueezeNet11Features(nn.Module):
    """torchvision ``squeezenet1_1().features``; returns its seven LPIPS taps (relu1..relu7)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        relu1 = nn.relu(_conv(64, 3, stride=2, name="features_0")(x))
        h = _max_pool(relu1, 3, 2, ceil_mode=True)
        h = Fire(16, 64, name="features_3")(h)
        relu2 = Fire(16, 64, name="features_4")(h)
        h = _max_pool(relu2, 3, 2, ceil_mode=True)
        h = Fire(32, 128, name="features_6")(h)
        relu3 = Fire(32, 128, name="features_7")(h)
        h = _max_pool(relu3, 3, 2, ceil_mode=True)
        relu4 = Fire(48, 192, name="features_9")(h)
        relu5 = Fire(48, 192, name="features_10")(relu4)
        relu6 = Fire(64, 256, name="features_11")(relu5)
        relu7 = Fire(64, 256, name="features_12")(relu6)
        return relu1, relu2, relu3, relu4, relu5, relu6, relu7


LPIPS_NETS: dict[str, type[nn.Module]] = {
    "alex": AlexNetFeatures,
    "vgg": VGG16Features,
    "squeeze": SqueezeNet11Features,
}
_ALIASES = {"alexnet": "alex", "vgg16": "vgg", "squeezenet": "squeeze", "squeezenet1_1": "squeeze"}


def _net_name(net: str) -> str:
    name = _ALIASES.get(net, net)
    if name not in LPIPS_NETS:
        raise ValueError(f"unknown LPIPS backbone {net!r}; expected one of {sorted(LPIPS_NETS)}")
    return name


def lpips_backbone(net: str) -> nn.Module:
    """The Flax module for ``net`` in ``{"alex", "vgg", "squeeze"}``."""
    return LPIPS_NETS[_net_name(net)]()


def params_shapes(net: str) -> dict[str, Any]:
    """The expected parameter pytree of ``net`` as ``jax.ShapeDtypeStruct`` leaves (no compute)."""
    module = lpips_backbone(net)
    dummy = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), dummy)
    return variables["params"]


# A state dict key names one tensor of feature layer ``index`` (optionally inside a Fire
# sub-layer). torchvision writes ``features.3.squeeze.weight``; lpips keeps the torchvision
# index inside its slices: ``net.slice2.3.squeeze.weight`` (whole LPIPS model) or
# ``slice2.3.squeeze.weight`` (``model.net``).
_KEY = re.compile(
    r"^(?:module\.)?(?:features|(?:net\.)?slice\d+)\.(?P<index>\d+)\.(?:(?P<sub>squeeze|expand1x1|expand3x3)\.)?"
    r"(?P<kind>weight|bias)$"
)


@functools.cache
def _expected_shapes(net: str) -> dict[str, tuple[int, ...]]:
    """``{"features_0/kernel": (11, 11, 3, 64), ...}`` for ``net`` (cached: traced once)."""
    return {
        "/".join(str(entry.key) for entry in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(params_shapes(net))
    }


def _check_tree(net: str, params: Mapping[str, Any]) -> None:
    """Raise ValueError listing missing, unexpected and mis-shaped parameters."""
    shapes = _expected_shapes(net)
    got = weight_io.flatten(params)
    missing = sorted(set(shapes) - set(got))
    extra = sorted(set(got) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(got) if tuple(got[k].shape) != tuple(shapes[k]))
    if missing or extra or wrong:
        detail = []
        if missing:
            detail.append(f"missing {missing}")
        if extra:
            detail.append(f"unexpected {extra}")
        if wrong:
            detail.append(
                "wrong shapes "
                + ", ".join(f"{k}: {tuple(got[k].shape)} != {tuple(shapes[k])}" for k in wrong)
            )
        raise ValueError(f"{net} LPIPS backbone parameters do not match: " + "; ".join(detail))


def convert_torchvision_state_dict(net: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename and transpose a torchvision (or lpips) state dict into this module's params.

    Accepts torchvision keys (``features.0.weight``; ``classifier.*`` is ignored) and lpips
    keys (``net.slice1.0.weight`` from a whole ``lpips.LPIPS`` model, ``slice1.0.weight``
    from its ``.net``; ``lin*`` and ``scaling_layer.*`` are ignored). Conv kernels go from
    torch's OIHW to Flax's HWIO. Values may be numpy arrays or torch tensors; the result
    holds float32 numpy arrays and is checked against the expected shapes.
    """
    name = _net_name(net)
    params: dict[str, Any] = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match is None:
            continue  # classifier, lpips' linear heads and scaling buffers are not backbone
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        array = array.astype(np.float32)
        if match["kind"] == "weight":
            leaf, array = "kernel", np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO
        else:
            leaf = "bias"
        node = params.setdefault(f"features_{match['index']}", {})
        if match["sub"]:
            node = node.setdefault(match["sub"], {})
        node[leaf] = array
    _check_tree(name, params)
    return params


def _how_to_make(net: str, path: str) -> str:
    source = TORCHVISION_FILES[net]
    return (
        f"Expected the {net} LPIPS backbone converted from torchvision's {source} "
        f"(https://download.pytorch.org/models/{source}). Convert it once (needs torch, CPU is enough):\n"
        f"    python -m metrix.backbones.lpips_nets convert {net} {source} {path}"
    )


def load_backbone_params(net: str, path: str | os.PathLike) -> dict[str, Any]:
    """Load the ``net`` backbone params from a converted ``.safetensors``/``.npz`` file.

    A ``.pth`` path is converted on the fly (needs torch). A missing file raises
    :class:`MissingWeightsError` naming torchvision's checkpoint file and the conversion
    command. The parameter tree is checked against the network's expected shapes.
    """
    name = _net_name(net)
    path = os.fspath(path)
    how = _how_to_make(name, path if not path.endswith(".pth") else f"{name}.safetensors")
    if path.endswith(".pth"):
        if not os.path.exists(path):
            raise MissingWeightsError(
                f"LPIPS {name} backbone: weight file {path!r} does not exist.\n{how}"
            )
        return convert_torchvision_state_dict(name, weight_io.read_torch_state_dict(path))
    params = weight_io.load(path, what=f"LPIPS {name} backbone", how_to_make=how)
    _check_tree(name, params)
    return params


# ---------------------------------------------------------------------------------------
# LPIPS calibration (the 1x1 "lin" heads): lpips' shipped .pth or converted files
# ---------------------------------------------------------------------------------------


def _net_key(net: str) -> str:
    if net not in LPIPS_CHANNELS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(LPIPS_CHANNELS)}")
    return net


def find_lpips_calibration_file(net: str, version: str = "0.1") -> str | None:
    """Path of the ``lpips`` package's shipped ``weights/v{version}/{net}.pth``, or None.

    Located through ``importlib.util.find_spec`` only: lpips (and so torch/torchvision) is
    not imported.
    """
    _net_key(net)
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        path = os.path.join(root, "weights", f"v{version}", f"{net}.pth")
        if os.path.isfile(path):
            return path
    return None


def _calibration_from_state_dict(net: str, state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Pick ``lin{k}.model.1.weight`` (or ``lins.{k}.model.1.weight``) of shape (1, C, 1, 1)."""
    calibration = {}
    for k, _ in enumerate(LPIPS_CHANNELS[net]):
        for key in (f"lin{k}.model.1.weight", f"lins.{k}.model.1.weight", f"lin{k}.model.0.weight"):
            if key in state:
                calibration[f"lin{k}"] = np.asarray(state[key], np.float32).reshape(-1)
                break
        else:
            raise ValueError(
                f"LPIPS {net} calibration: no 'lin{k}.model.1.weight' in the state dict"
            )
    return calibration


def _check_calibration(net: str, calibration: Mapping[str, Any]) -> None:
    expected = {f"lin{k}": (c,) for k, c in enumerate(LPIPS_CHANNELS[net])}
    got = {k: tuple(np.shape(v)) for k, v in calibration.items()}
    if got != expected:
        raise ValueError(f"LPIPS {net} calibration has shapes {got}; expected {expected}")


def load_calibration(
    net: str, path: str | os.PathLike | None = None, version: str = "0.1"
) -> dict[str, np.ndarray]:
    """Read LPIPS linear-head weights as ``{"lin0": (C_0,), ...}`` float32 numpy arrays.

    ``path`` may be lpips' ``.pth`` (needs torch, read with ``weights_only=True``), or a
    ``.safetensors``/``.npz`` file written by :func:`save_calibration` (no torch). With
    ``path=None`` the lpips package's shipped weights are used if lpips is installed;
    convert them once with ``python -m metrix.backbones.lpips_nets calibration NET OUT``
    so run time needs neither lpips nor torch.
    """
    net = _net_key(net)
    how = (
        f"The LPIPS {net} calibration ships with the lpips package (weights/v{version}/{net}.pth): "
        f"pip install lpips, then convert once with\n"
        f"    python -m metrix.backbones.lpips_nets calibration {net} lpips_{net}.safetensors"
    )
    if path is None:
        path = find_lpips_calibration_file(net, version)
        if path is None:
            raise MissingWeightsError(f"LPIPS {net} calibration: lpips package not found.\n{how}")
    path = os.fspath(path)
    if path.endswith(".pth"):
        if not os.path.exists(path):
            raise MissingWeightsError(
                f"LPIPS {net} calibration: weight file {path!r} does not exist.\n{how}"
            )
        calibration = _calibration_from_state_dict(net, weight_io.read_torch_state_dict(path))
    else:
        loaded = weight_io.load(path, what=f"LPIPS {net} calibration", how_to_make=how)
        calibration = {k: np.asarray(v, np.float32).reshape(-1) for k, v in loaded.items()}
    _check_calibration(net, calibration)
    return calibration


def save_calibration(calibration: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Write a calibration pytree to ``.safetensors`` or ``.npz`` (readable without torch)."""
    return weight_io.save({k: np.asarray(v, np.float32) for k, v in calibration.items()}, path)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metrix.backbones.lpips_nets",
        description="Convert LPIPS backbone (and calibration) checkpoints to safetensors/npz.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser(
        "convert", help="torchvision (or lpips) .pth -> .safetensors/.npz backbone params"
    )
    convert.add_argument("net", choices=sorted(LPIPS_NETS))
    convert.add_argument("src", help=f"torchvision checkpoint, e.g. {TORCHVISION_FILES['alex']}")
    convert.add_argument("dst", help="output .safetensors or .npz")
    calib = sub.add_parser(
        "calibration",
        help="lpips linear-head weights (.pth; default: the lpips package's own) -> .safetensors/.npz",
    )
    calib.add_argument("net", choices=sorted(LPIPS_NETS))
    calib.add_argument("dst", help="output .safetensors or .npz")
    calib.add_argument(
        "--src",
        default=None,
        help="lpips weights/v0.1/NET.pth (default: found in the lpips package)",
    )
    args = parser.parse_args(argv)
    if args.command == "convert":
        params = convert_torchvision_state_dict(args.net, weight_io.read_torch_state_dict(args.src))
        weight_io.save(params, args.dst)
    else:
        weight_io.save(load_calibration(args.net, args.src), args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
