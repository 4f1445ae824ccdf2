"""Save and restore merged metric states: resumable evaluation without pickle.

A checkpoint is one msgpack file (``flax.serialization``) holding the state leaves as numpy
arrays, a fingerprint of the pytree structure (the treedef, whose static metadata includes
each state's parent metric, so a checkpoint of different metrics is refused) and a small
``info`` dict (e.g. how many batches were already merged). Nothing is executed on load:
msgpack decodes to plain dicts, lists, strings and arrays, and the restored leaves are put
back into the structure of the ``like`` pytree the caller provides.

Files are written to a temporary name and renamed into place, so a process killed while
saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

__all__ = ["CheckpointError", "read_checkpoint_info", "restore_states", "save_states"]

_FORMAT = "metrix-states-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, or does not match the expected states."""


def _structure(tree: Any) -> str:
    return str(jax.tree.structure(tree))


def save_states(path: str | os.PathLike, states: Any, *, info: dict | None = None) -> Path:
    """Write ``states`` (any pytree of states) to ``path`` atomically; returns the path.

    ``info`` is a JSON-serialisable dict stored beside the leaves (read it back with
    :func:`read_checkpoint_info`).
    """
    path = Path(path)
    leaves = [np.asarray(x) for x in jax.device_get(jax.tree.leaves(states))]
    payload = {
        "format": _FORMAT,
        "structure": _structure(states),
        "info": json.dumps(info or {}),
        "leaves": {str(i): leaf for i, leaf in enumerate(leaves)},
    }
    data = serialization.msgpack_serialize(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    return path


def _read(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - msgpack raises many types for a truncated or foreign file
        raise CheckpointError(
            f"{path}: not a metrix checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a metrix checkpoint (format {payload.get('format')!r})")
    return payload


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The ``info`` dict saved with the states."""
    return json.loads(_read(path)["info"])


def restore_states(path: str | os.PathLike, like: Any) -> Any:
    """The states saved at ``path``, in the structure of ``like`` (e.g. ``mx.empty_states(metrics)``).

    Raises :class:`CheckpointError` when the file was written for a different pytree of
    states (other metrics, other configuration) or a leaf's shape or dtype differs.
    """
    payload = _read(path)
    expected = _structure(like)
    if payload["structure"] != expected:
        raise CheckpointError(
            f"{path}: the checkpoint holds states of a different structure or metric "
            f"configuration.\n  saved:    {payload['structure']}\n  expected: {expected}"
        )
    like_leaves, treedef = jax.tree.flatten(like)
    saved = payload["leaves"]
    if len(saved) != len(like_leaves):
        raise CheckpointError(f"{path}: {len(saved)} leaves saved, {len(like_leaves)} expected")
    leaves = []
    for i, ref in enumerate(like_leaves):
        leaf = np.asarray(saved[str(i)])
        if leaf.shape != np.shape(ref) or leaf.dtype != np.dtype(ref.dtype):
            raise CheckpointError(
                f"{path}: leaf {i} is {leaf.dtype}{list(leaf.shape)}, expected "
                f"{np.dtype(ref.dtype)}{list(np.shape(ref))}"
            )
        leaves.append(jax.numpy.asarray(leaf))
    return jax.tree.unflatten(treedef, leaves)
