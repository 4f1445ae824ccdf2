"""Load and save backbone weights as flat ``{"a/b/c": array}`` files in a safe format.

Two formats, both pickle-free: ``.safetensors`` (needs the optional ``safetensors``
package) and ``.npz`` (numpy only, loaded with ``allow_pickle=False``). Nested parameter
dicts are flattened with ``/`` between levels so both formats hold plain named arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np


class MissingWeightsError(FileNotFoundError):
    """A backbone's weight file is absent; the message says which file and how to make it."""


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}`` (numpy arrays)."""
    flat: dict[str, np.ndarray] = {}
    for name, value in params.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, key + "/"))
        else:
            flat[key] = np.asarray(value)
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def save(params: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Write a nested parameter dict to ``path`` (``.safetensors`` or ``.npz``)."""
    path = os.fspath(path)
    flat = {k: np.ascontiguousarray(v) for k, v in flatten(params).items()}
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file  # optional dependency

        save_file(flat, path)
    elif path.endswith(".npz"):
        np.savez(path, **flat)
    else:
        raise ValueError(f"unknown weight format for {path!r}: use .safetensors or .npz")
    return path


def load(path: str | os.PathLike, *, what: str = "weights", how_to_make: str = "") -> dict[str, Any]:
    """Read a nested parameter dict written by :func:`save` (or any flat file of that shape).

    Raises :class:`MissingWeightsError` naming ``what`` the file is for and ``how_to_make``
    it (e.g. the conversion command) when the file does not exist.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        hint = f"\n{how_to_make}" if how_to_make else ""
        raise MissingWeightsError(f"{what}: weight file {path!r} does not exist.{hint}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file  # optional dependency

        flat = load_file(path)
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            flat = {k: data[k] for k in data.files}
    else:
        raise ValueError(f"unknown weight format for {path!r}: use .safetensors or .npz")
    return unflatten(flat)


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch ``.pth`` state dict safely (``weights_only=True``) as numpy arrays.

    torch is needed only here, at conversion time; it is never a run-time dependency.
    """
    try:
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "converting a PyTorch checkpoint needs torch (CPU is enough): pip install torch"
        ) from err
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
