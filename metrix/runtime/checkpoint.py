"""Save and restore merged metric states: resumable evaluation without pickle.

A checkpoint is one msgpack file (``flax.serialization``) holding the state leaves as numpy
arrays, a fingerprint of the pytree structure (the treedef, whose static metadata includes
each state's parent metric, so a checkpoint of different metrics is refused) and a small
``info`` dict (e.g. how many batches were already merged). Nothing is executed on load:
msgpack decodes to plain dicts, lists, strings and arrays, and the restored leaves are put
back into the structure of the ``like`` pytree the caller provides.

Files are written to a temporary name and renamed into place, so a process killed while
saving leaves the previous checkpoint intact.

Fingerprints (what :func:`metrix.runtime.evaluate.evaluate` stores in ``info`` and checks on
resume, so that a checkpoint is never silently resumed on other data): the metrics' config
(``repr`` of each metric by its path in the pytree, :func:`metrics_fingerprint`), the data
stream (the shapes and dtypes of every batch, run-length encoded, :func:`batch_signature`)
and cheap digests of the first batch and of the last merged one (:func:`batch_digest`: a
sample of the values and their float64 sums). :class:`ResumeCheck` compares a stream with
them batch by batch and raises :class:`CheckpointMismatchError` naming the file and what
differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "ResumeCheck",
    "StreamRecord",
    "batch_digest",
    "batch_signature",
    "metrics_fingerprint",
    "read_checkpoint_info",
    "restore_states",
    "save_states",
]

_FORMAT = "metrix-states-v1"
FINGERPRINT_VERSION = 1
_MAX_RUNS = 64  # distinct runs of batch shapes kept by name; later ones only as a digest
_SAMPLE = 4096  # values per array that enter a batch digest (plus the sum of all of them)


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, or does not match the expected states."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint was written for other metrics or other data than the run resuming it."""


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


# ---------------------------------------------------------------------------------------
# Fingerprints of the metrics and of the data stream
# ---------------------------------------------------------------------------------------


def metrics_fingerprint(metrics: Any) -> dict[str, str]:
    """``{path: repr(metric)}`` for every metric of a pytree (a dict, list, nested)."""
    from metrix.core.metric import Metric

    flat = jax.tree_util.tree_flatten_with_path(metrics, is_leaf=lambda x: isinstance(x, Metric))
    return {jax.tree_util.keystr(path) or "<metrics>": repr(m) for path, m in flat[0]}


def _arrays(batch: Any):
    for path, leaf in jax.tree_util.tree_flatten_with_path(batch)[0]:
        yield jax.tree_util.keystr(path) or "<batch>", leaf


def batch_signature(batch: Any) -> str:
    """The structure, shapes and dtypes of a batch, e.g. ``"['x']: float32[32, 6]"``."""
    parts = []
    for name, leaf in _arrays(batch):
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        parts.append(f"{name}: {np.dtype(dtype).name}{list(np.shape(leaf))}")
    return ", ".join(parts)


def batch_digest(batch: Any) -> str:
    """A cheap digest of a batch's values: ``_SAMPLE`` evenly spaced values of each array and
    the float64 sum of all of them (one pass over the batch on the host)."""
    digest = hashlib.sha256()
    for name, leaf in _arrays(batch):
        a = np.asarray(jax.device_get(leaf))
        digest.update(f"{name}:{a.dtype.str}{a.shape};".encode())
        flat = a.reshape(-1)
        if flat.dtype == object:
            digest.update(repr(flat[:_SAMPLE].tolist()).encode())
            continue
        if flat.size > _SAMPLE:
            flat = flat[np.linspace(0, flat.size - 1, _SAMPLE).astype(np.int64)]
        digest.update(np.ascontiguousarray(flat).tobytes())
        if np.issubdtype(a.dtype, np.number) or a.dtype == bool:
            digest.update(repr(float(np.sum(a, dtype=np.float64))).encode())
    return digest.hexdigest()[:32]


class StreamRecord:
    """The shapes of a stream's batches so far: runs ``[signature, count]`` (the first
    ``_MAX_RUNS`` of them), then a digest of the signatures that follow."""

    def __init__(self):
        self.runs: list[list] = []
        self.tail = hashlib.sha256()
        self.tail_batches = 0

    def add(self, signature: str) -> None:
        if self.tail_batches == 0 and self.runs and self.runs[-1][0] == signature:
            self.runs[-1][1] += 1
        elif self.tail_batches == 0 and len(self.runs) < _MAX_RUNS:
            self.runs.append([signature, 1])
        else:
            self.tail.update(signature.encode() + b"\n")
            self.tail_batches += 1

    def to_json(self) -> dict:
        return {"runs": [list(r) for r in self.runs], "tail": self.tail.hexdigest()[:32],
                "tail_batches": self.tail_batches}


def _expected_signature(runs: list, index: int) -> str | None:
    """The signature of batch ``index`` (1-based) in saved runs, None past them."""
    for signature, count in runs:
        if index <= count:
            return signature
        index -= count
    return None


_OVERRIDE = (
    "Pass resume='force' to resume anyway (the values then mix both), or resume='restart' "
    "(or delete the file) to evaluate from scratch."
)


class ResumeCheck:
    """Compares a run resuming checkpoint ``path`` with the fingerprint saved in its ``info``.

    ``start(metrics_fp, first_batch)`` before restoring, ``batch(index, signature, batch,
    record)`` for every batch already merged (``index <= done``; ``record``: the
    :class:`StreamRecord` of this stream so far, with the batch) and ``end(index)`` once the
    stream is exhausted. Each raises
    :class:`CheckpointMismatchError` naming the file and what differs.
    """

    def __init__(self, path, info: dict):
        self.path = path
        self.done = int(info.get("batches_done", 0))
        self.saved = info.get("fingerprint")

    def _fail(self, what: str, override: bool = True) -> None:
        raise CheckpointMismatchError(
            f"{self.path}: this checkpoint was written by a different run: {what}. "
            + (_OVERRIDE if override else "Pass resume='restart' (or delete the file) to "
               "evaluate from scratch.")
        )

    def start(self, metrics_fp: dict, first_batch: Any) -> None:
        saved = self.saved
        if not isinstance(saved, dict) or saved.get("version") != FINGERPRINT_VERSION:
            self._fail(
                f"it holds {self.done} merged batches but no fingerprint of the metrics and the "
                "data (written by an older metrix), so it cannot be checked against this data"
            )
        before = saved.get("metrics", {})
        changed = [
            f"{p}: saved {before.get(p, '(absent)')}, now {metrics_fp.get(p, '(absent)')}"
            for p in sorted(set(before) | set(metrics_fp))
            if before.get(p) != metrics_fp.get(p)
        ]
        if changed:
            self._fail("the metrics differ (" + "; ".join(changed[:3])
                       + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "") + ")",
                       override=False)
        if batch_digest(first_batch) != saved.get("first_batch"):
            self._fail("the first batch holds other values (its digest differs)")

    def batch(self, index: int, signature: str, batch: Any, record: StreamRecord) -> None:
        saved = self.saved
        expected = _expected_signature(saved["batches"]["runs"], index)
        if expected is not None and expected != signature:
            self._fail(f"batch {index} is {{{signature}}}, the checkpoint's was {{{expected}}}")
        if index == self.done:
            tail = record.to_json()
            if (tail["tail"], tail["tail_batches"]) != (
                saved["batches"]["tail"], saved["batches"]["tail_batches"]
            ):
                self._fail(f"the shapes of batches 1..{index} differ")
            if index > 1 and batch_digest(batch) != saved.get("last_batch"):
                self._fail(f"batch {index}, the last one merged, holds other values")

    def end(self, index: int) -> None:
        if index < self.done:
            self._fail(
                f"it has {self.done} batches merged but only {index} batches were given "
                "(a different data set?)"
            )


def fingerprint_info(
    metrics_fp: dict, stream: StreamRecord, first_digest: str, last_batch: Any, done: int,
    complete: bool,
) -> dict:
    """The ``info`` that evaluate saves: the batch count, whether the run finished, and the
    fingerprint :class:`ResumeCheck` reads back."""
    return {
        "batches_done": done,
        "complete": complete,
        "fingerprint": {
            "version": FINGERPRINT_VERSION,
            "metrics": metrics_fp,
            "first_batch": first_digest,
            "last_batch": batch_digest(last_batch),
            "batches": stream.to_json(),
        },
    }
