"""Evaluation loops: batches in, metric values out, states merged inside ``jit``.

:func:`evaluate` runs one compiled step per batch::

    states = merge(states, get_states(metrics, step_fn(batch)))

with the merged states carried from step to step on the device (no host round trip: JAX
dispatches the steps asynchronously and nothing is read back until the end or a checkpoint).
:func:`evaluate_scan` runs pre-stacked batches in a single ``lax.scan``.

Devices. With ``mesh=``, every batch is placed with ``NamedSharding(mesh, P(first_axis))``
(its leading axis split over the mesh's first axis) and the carried states are replicated.
The step is ``jax.jit`` over these global arrays, so ``get_states`` sees the whole batch and
XLA inserts the cross-device reductions itself: the states are globally correct after every
step and no explicit ``allreduce`` is needed (that one is for hand-written ``shard_map``).

Padding. A static batch size avoids a recompile for a short last batch: :func:`pad_batch` pads
every array to ``batch_size`` rows and sets ``batch["mask"]`` (True for real rows). The mask
reaches the metrics through their keys like any input: if ``step_fn`` returns
``{"batch": batch, "preds": ...}``, configure ``mask="batch.mask"`` on every metric
(masked-out rows change nothing, principle 5). A metric without a mask key would count the
padding rows, so either give every metric the mask or do not pad.

Resuming. ``checkpoint=path, checkpoint_every=N`` saves the merged states (and the number of
batches merged) every N batches; rerunning the same call with the same path restores them and
skips the batches already merged (it still iterates past them, so a data iterator with side
effects sees them again), giving exactly the result of an uninterrupted run.

A checkpoint also holds a fingerprint of the metrics' config and of the data stream (every
batch's shapes and dtypes, digests of the first and of the last merged batch; see
:mod:`metrix.runtime.checkpoint`). A rerun whose metrics or data differ raises
``CheckpointMismatchError`` naming the file and what differs, instead of returning the first
data's values or mixing two data sets;
``resume="force"`` resumes anyway, ``resume="restart"`` ignores the file (and overwrites it).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metrix.core.state import State
from metrix.core.tree import compute, empty_states, get_states, merge
from metrix.runtime.checkpoint import (
    ResumeCheck,
    StreamRecord,
    batch_digest,
    batch_signature,
    fingerprint_info,
    metrics_fingerprint,
    read_checkpoint_info,
    restore_states,
    save_states,
)
from metrix.runtime.writers import write

__all__ = ["evaluate", "evaluate_scan", "initial_states", "pad_batch"]

_RESUME = ("check", "force", "restart")


def _is_state(x) -> bool:
    return isinstance(x, State)


# ---------------------------------------------------------------------------------------
# Padding
# ---------------------------------------------------------------------------------------


def pad_batch(batch: Mapping[str, Any], batch_size: int, *, mask_key: str = "mask") -> dict:
    """Pad every array of ``batch`` along axis 0 to ``batch_size`` rows; add ``batch[mask_key]``.

    The mask is True for the real rows (combined with an existing ``batch[mask_key]``).
    Padding rows repeat zeros. Arrays must share their leading size ``n <= batch_size``.
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"pad_batch needs a dict-like batch, got {type(batch).__name__}")
    sizes = {np.shape(v)[0] for v in jax.tree.leaves(batch) if np.ndim(v) >= 1}
    if len(sizes) != 1:
        raise ValueError(f"pad_batch: arrays have different leading sizes {sorted(sizes)}")
    n = sizes.pop()
    if n > batch_size:
        raise ValueError(f"pad_batch: batch has {n} rows, more than batch_size={batch_size}")

    def pad(x):
        x = np.asarray(x)
        if x.ndim == 0 or n == batch_size:
            return x
        widths = [(0, batch_size - n)] + [(0, 0)] * (x.ndim - 1)
        return np.pad(x, widths)

    out = {k: jax.tree.map(pad, v) for k, v in batch.items()}
    real = np.arange(batch_size) < n
    if mask_key in batch:
        real = real & out[mask_key].astype(bool)
    out[mask_key] = real
    return out


# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------


_NO_PARAMS = object()


def _step_states(metrics, step_fn, params=_NO_PARAMS):
    """``batch -> states``, or ``(params, batch) -> states`` when the step takes params."""
    if params is _NO_PARAMS:
        return lambda batch: get_states(metrics, step_fn(batch))
    return lambda p, batch: get_states(metrics, step_fn(p, batch))


def initial_states(
    metrics: Any, step_fn: Callable, example_batch: Any, params: Any = _NO_PARAMS
) -> Any:
    """The identity of merge for the states ``step_fn`` batches produce.

    ``mx.empty_states(metrics)`` when every metric knows its shapes; otherwise the shapes of
    the first step's states (traced with ``jax.eval_shape``, nothing computed) made empty
    with ``state.empty_like()``.
    """
    try:
        return empty_states(metrics)
    except (ValueError, TypeError):
        pass  # some metric's shapes depend on the data
    args = (example_batch,) if params is _NO_PARAMS else (params, example_batch)
    shapes = jax.eval_shape(_step_states(metrics, step_fn, params), *args)

    @jax.jit
    def build():
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jax.tree.map(lambda s: s.empty_like(), zeros, is_leaf=_is_state)

    return build()


def _auto_mesh(mesh: Mesh | None) -> Mesh | None:
    """The same devices and axis names with ``Auto`` axis types.

    ``jax.make_mesh`` makes ``Explicit`` axes by default, which put shardings into the types
    of every intermediate array, and many metric computations (scatters, sorts) would then
    need explicit output shardings. Under ``Auto`` axes XLA propagates the shardings itself.
    """
    if mesh is None:
        return None
    return Mesh(mesh.devices, mesh.axis_names)


def _data_axis(mesh: Mesh) -> str:
    return mesh.axis_names[0]


def _shard_batch(batch: Any, mesh: Mesh | None, *, axis: int = 0) -> Any:
    """Place ``batch`` with its ``axis`` split over the mesh's first axis (no-op without mesh)."""
    if mesh is None:
        return batch
    name = _data_axis(mesh)
    devices = mesh.shape[name]

    def place(x):
        x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim <= axis:
            return jax.device_put(x, NamedSharding(mesh, PartitionSpec()))
        if x.shape[axis] % devices:
            raise ValueError(
                f"evaluate: a batch array of shape {x.shape} cannot be split over {devices} "
                f"devices along axis {axis}; use a batch size divisible by {devices} "
                "(metrix.runtime.evaluate.pad_batch pads the last batch and adds a mask)"
            )
        spec = PartitionSpec(*([None] * axis), name)
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(place, batch)


def _replicate(tree: Any, mesh: Mesh | None) -> Any:
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def _progress(iterable, total, enabled):
    if enabled is None:
        enabled = sys.stderr.isatty() and (total is None or total > 20)
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is a nicety; tqdm is optional
        return iterable
    return tqdm(iterable, total=total, desc="metrix evaluate", unit="batch", leave=False)


def _finish(states, return_states):
    states = jax.block_until_ready(states)
    values = compute(states)
    return (values, states) if return_states else values


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------


def evaluate(
    metrics: Any,
    step_fn: Callable[[Any], Any],
    batches: Iterable[Any],
    *,
    mesh: Mesh | None = None,
    params: Any = _NO_PARAMS,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    progress: bool | None = None,
    return_states: bool = False,
    writer: Any = None,
    step: int | None = None,
    resume: str = "check",
) -> Any:
    """Evaluate a pytree of metrics over ``batches``; returns ``mx.compute`` of the merged states.

    Args:
      metrics: any pytree (dict, nested dict, list) of metrics, e.g. ``mx.load_config(path)``.
      step_fn: ``batch -> context``, traced inside ``jax.jit`` (a model's forward pass); the
        metrics' keys are paths into the context (``"preds.logits"``, ``"batch.label"``).
      batches: an iterable of batches (pytrees of arrays with a leading batch axis). Keep the
        batch size static (see :func:`pad_batch`) or each new shape compiles once more.
      mesh: split every batch's leading axis over ``mesh.axis_names[0]``; states stay
        replicated and are globally correct (see the module docstring).
      params: when given, ``step_fn`` is called as ``step_fn(params, batch)`` and ``params``
        (model weights, any pytree) is an argument of the compiled step, not a constant baked
        into it (principle 8); replicated over the mesh.
      checkpoint, checkpoint_every: save the merged states every N batches (and at the end)
        to this file; if it exists, resume from it, skipping the batches already merged.
      resume: what to do with an existing ``checkpoint``: ``"check"`` (default) resumes only
        if its fingerprint matches these metrics and this data (else
        ``CheckpointMismatchError`` naming the file and what differs; checkpoints written
        before fingerprints are refused the same way), ``"force"`` resumes whatever it holds,
        ``"restart"`` ignores it and evaluates from scratch (overwriting it).
      progress: show a tqdm bar (default: when stderr is a terminal and the run is long).
      return_states: return ``(values, states)`` instead of the values.
      writer, step: also write the values with :func:`metrix.write` to ``writer`` (a CLU-style
        writer, ``mx.TensorBoardWriter``, ``mx.WandbWriter``) at ``step`` (default: the number
        of batches evaluated).
    """
    if checkpoint_every is not None and checkpoint is None:
        raise ValueError("evaluate: checkpoint_every needs checkpoint=<path>")
    if checkpoint is not None and checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"evaluate: checkpoint_every must be >= 1, got {checkpoint_every}")
    if resume not in _RESUME:
        close = difflib.get_close_matches(str(resume), _RESUME, n=1)
        raise ValueError(
            f"evaluate: resume must be one of {_RESUME}, got {resume!r}"
            + (f". Did you mean {close[0]!r}?" if close else "")
        )

    mesh = _auto_mesh(mesh)
    step_states = _step_states(metrics, step_fn, params)
    sharded = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None
    extra = () if params is _NO_PARAMS else (_replicate(params, mesh),)

    def update(states, *args):
        return merge(states, step_states(*args))

    # Replicated carried states keep one input sharding from step to step (no recompiles).
    update = jax.jit(update, out_shardings=sharded) if mesh is not None else jax.jit(update)

    total = len(batches) if hasattr(batches, "__len__") else None
    iterator = iter(batches)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("evaluate: no batches") from None

    def all_batches():
        yield first
        yield from iterator

    states = _replicate(initial_states(metrics, step_fn, _shard_batch(first, mesh), params), mesh)
    done, check = 0, None
    if checkpoint is not None:
        metrics_fp, first_digest = metrics_fingerprint(metrics), batch_digest(first)
        record = StreamRecord()
    if checkpoint is not None and resume != "restart" and os.path.exists(checkpoint):
        info = read_checkpoint_info(checkpoint)
        if resume == "check":
            check = ResumeCheck(checkpoint, info)
            check.start(metrics_fp, first)
        states = _replicate(restore_states(checkpoint, like=states), mesh)
        done = int(info.get("batches_done", 0))

    def save(index, batch, complete):
        info = fingerprint_info(metrics_fp, record, first_digest, batch, index, complete)
        save_states(checkpoint, states, info=info)

    index, batch = 0, None
    for index, batch in enumerate(_progress(all_batches(), total, progress), start=1):
        if checkpoint is not None:
            signature = batch_signature(batch)
            record.add(signature)
        if index <= done:
            if check is not None:
                check.batch(index, signature, batch, record)
            continue  # merged before the interruption
        states = update(states, *extra, _shard_batch(batch, mesh))
        if checkpoint_every is not None and index % checkpoint_every == 0:
            save(index, batch, complete=False)
    if check is not None:
        check.end(index)
    if checkpoint is not None and index > done:
        save(index, batch, complete=True)
    result = _finish(states, return_states)
    if writer is not None:
        values = result[0] if return_states else result
        write(writer, index if step is None else step, jax.device_get(values), metrics=metrics)
    return result


def evaluate_scan(
    metrics: Any,
    step_fn: Callable[[Any], Any],
    stacked_batches: Any,
    *,
    mesh: Mesh | None = None,
    params: Any = _NO_PARAMS,
    return_states: bool = False,
) -> Any:
    """:func:`evaluate` fused into one compiled ``lax.scan`` over pre-stacked batches.

    ``stacked_batches`` is a pytree whose arrays have a leading axis of batches and then the
    batch axis (``(num_batches, batch_size, ...)``); with ``mesh=`` the batch axis (axis 1) is
    split over the mesh's first axis. One compilation and one dispatch for the whole run;
    the data must fit in device memory at once.
    """
    mesh = _auto_mesh(mesh)
    lengths = {np.shape(x)[0] for x in jax.tree.leaves(stacked_batches)}
    if len(lengths) != 1:
        raise ValueError(
            f"evaluate_scan: leaves have different numbers of batches {sorted(lengths)}"
        )
    stacked = _shard_batch(stacked_batches, mesh, axis=1)
    first = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), stacked)
    init = _replicate(initial_states(metrics, step_fn, first, params), mesh)
    step_states = _step_states(metrics, step_fn, params)
    extra = () if params is _NO_PARAMS else (_replicate(params, mesh),)

    def run(init, stacked, *extra):
        def body(states, batch):
            return merge(states, step_states(*extra, batch)), None

        return jax.lax.scan(body, init, stacked)[0]

    sharded = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None
    run = jax.jit(run, out_shardings=sharded) if mesh is not None else jax.jit(run)
    return _finish(run(init, stacked, *extra), return_states)
