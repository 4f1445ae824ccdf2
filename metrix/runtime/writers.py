"""Writing computed values to a logger: TensorBoard, Weights & Biases, or any CLU-style writer.

:func:`write` takes what ``mx.compute`` / ``mx.evaluate`` return and writes

- every number as a named scalar (:func:`metrix.runtime.report.flatten`: nested names joined
  by ``/``, per-class arrays one scalar per class, named by ``class_names`` or the index);
- the images that summary metrics compute (``ShowImages``, ``ShowConfusionMatrix``) with
  ``write_images``;
- histograms (``Histogram``, ``ShowHistogram``) as bucket counts when the writer can take
  them (``write_histogram_counts``, as :class:`TensorBoardWriter` and :class:`WandbWriter`
  can), otherwise through ``write_histograms`` as samples at the bin centres, repeated by their
  counts (the same histogram for the same buckets; memory grows with the total count).

Curves (``RocCurve``, ``PrecisionRecallCurve``) are not scalars and are not written: plot them
with ``mx.plot``. Any object with CLU's ``MetricWriter`` methods (``write_scalars(step,
scalars)``, ``write_images(step, images)``, ``write_histograms(step, arrays, num_buckets)``)
works, CLU's own writers included; a writer without ``write_images`` / ``write_histograms``
gets only the scalars.

The ready-made writers use the libraries made for the job, installed as extras:
``pip install metrix[tensorboard]`` (tensorboardX writes the event files; TensorBoard reads
them) and ``pip install metrix[wandb]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metrix.runtime.report import flatten, value_kind

__all__ = ["TensorBoardWriter", "WandbWriter", "write"]


def _split(values: Any, metrics: Any, name: str, out: dict[str, dict]) -> None:
    """Sort the tree's entries by what they are: numbers, images, histograms (curves dropped)."""
    kind = value_kind(values, metrics)
    if kind in ("roc", "pr"):
        return
    if kind == "image":
        out["images"][name or "image"] = np.asarray(values)
        return
    if kind == "histogram":
        if isinstance(values, Mapping):  # ShowHistogram: counts with their edges
            counts, edges = values["counts"], values["edges"]
        else:  # Histogram: counts over the metric's [low, high]
            counts = np.asarray(values)
            edges = np.linspace(metrics.low, metrics.high, counts.shape[-1] + 1)
        out["histograms"][name or "histogram"] = (np.asarray(counts, np.float64), np.asarray(edges))
        return
    if isinstance(values, Mapping):
        for key, child in values.items():
            child_metric = metrics.get(key) if isinstance(metrics, Mapping) else None
            _split(child, child_metric, f"{name}/{key}" if name else str(key), out)
        return
    out["numbers"][name or "value"] = values


def write(
    writer: Any,
    step: int,
    values: Any,
    *,
    metrics: Any = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Write computed ``values`` at ``step`` to ``writer``; returns the scalars written.

    ``metrics`` (the same tree of metrics that computed the values) tells curves, images and
    histograms apart from plain arrays; without it they are recognised by their structure.
    ``class_names`` names the elements of per-class arrays (see :func:`metrix.flatten`).
    """
    if not hasattr(writer, "write_scalars"):
        raise TypeError(
            f"mx.write: {type(writer).__name__} has no write_scalars(step, scalars); give a CLU "
            "MetricWriter, mx.TensorBoardWriter(logdir) or mx.WandbWriter(...)"
        )
    step = int(step)
    parts: dict[str, dict] = {"numbers": {}, "images": {}, "histograms": {}}
    _split(values, metrics, "", parts)
    scalars = flatten(parts["numbers"], class_names=class_names)
    if scalars:
        writer.write_scalars(step, scalars)
    if parts["images"] and hasattr(writer, "write_images"):
        writer.write_images(step, parts["images"])
    if parts["histograms"]:
        if hasattr(writer, "write_histogram_counts"):
            for name, (counts, edges) in parts["histograms"].items():
                writer.write_histogram_counts(step, name, counts, edges)
        elif hasattr(writer, "write_histograms"):
            samples, buckets = {}, {}
            for name, (counts, edges) in parts["histograms"].items():
                centres = (edges[:-1] + edges[1:]) / 2
                samples[name] = np.repeat(centres, np.rint(counts).astype(np.int64))
                buckets[name] = len(counts)
            writer.write_histograms(step, samples, num_buckets=buckets)
    if hasattr(writer, "flush"):
        writer.flush()
    return scalars


def _as_images(array: np.ndarray) -> np.ndarray:
    """``(n, h, w, c)`` from ``(h, w)``, ``(h, w, c)`` or ``(n, h, w, c)``."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    return array


def _moments(counts: np.ndarray, edges: np.ndarray) -> tuple[float, float, float, float, float]:
    """(min, max, num, sum, sum of squares) of a histogram, its values at the bin centres."""
    centres = (edges[:-1] + edges[1:]) / 2
    filled = np.nonzero(counts)[0]
    low = float(edges[filled[0]]) if len(filled) else float(edges[0])
    high = float(edges[filled[-1] + 1]) if len(filled) else float(edges[-1])
    return low, high, float(counts.sum()), float(counts @ centres), float(counts @ centres**2)


class TensorBoardWriter:
    """TensorBoard event files in ``logdir`` (written by tensorboardX, read by TensorBoard).

    Has CLU's ``MetricWriter`` methods, so ``mx.write(writer, step, values)`` and code written
    for CLU both use it. Histograms from bucket counts keep the metric's own buckets.
    """

    def __init__(self, logdir, **kwargs):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError(
                "mx.TensorBoardWriter needs tensorboardX: pip install 'metrix[tensorboard]'"
            ) from err
        self.logdir = str(logdir)
        self._writer = SummaryWriter(self.logdir, **kwargs)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(value), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        for name, image in images.items():
            self._writer.add_images(name, _as_images(image), global_step=int(step), dataformats="NHWC")

    def write_histograms(self, step: int, arrays: Mapping[str, Any], num_buckets=None) -> None:
        for name, values in arrays.items():
            bins = num_buckets.get(name) if isinstance(num_buckets, Mapping) else num_buckets
            self._writer.add_histogram(
                name, np.asarray(values, np.float64), global_step=int(step), bins=bins or "tensorflow"
            )

    def write_histogram_counts(self, step: int, name: str, counts, edges) -> None:
        counts, edges = np.asarray(counts, np.float64), np.asarray(edges, np.float64)
        low, high, num, total, squares = _moments(counts, edges)
        self._writer.add_histogram_raw(
            name, low, high, num, total, squares, bucket_limits=edges[1:].tolist(),
            bucket_counts=counts.tolist(), global_step=int(step),
        )

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        for name, text in texts.items():
            self._writer.add_text(name, str(text), global_step=int(step))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class WandbWriter:
    """Weights & Biases logging: ``WandbWriter(project="x", mode="offline")`` starts a run with
    ``wandb.init(**kwargs)``; ``WandbWriter(run=run)`` logs to a run you started. ``close()``
    finishes a run this writer started."""

    def __init__(self, run: Any = None, **init_kwargs):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("mx.WandbWriter needs wandb: pip install 'metrix[wandb]'") from err
        self._wandb = wandb
        self._owned = run is None
        self.run = wandb.init(**init_kwargs) if run is None else run

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        logged = {n: [self._wandb.Image(i) for i in _as_images(x)] for n, x in images.items()}
        self.run.log(logged, step=int(step))

    def write_histograms(self, step: int, arrays: Mapping[str, Any], num_buckets=None) -> None:
        logged = {}
        for name, values in arrays.items():
            bins = num_buckets.get(name) if isinstance(num_buckets, Mapping) else num_buckets
            logged[name] = self._wandb.Histogram(np.asarray(values), num_bins=bins or 64)
        self.run.log(logged, step=int(step))

    def write_histogram_counts(self, step: int, name: str, counts, edges) -> None:
        histogram = self._wandb.Histogram(np_histogram=(np.asarray(counts), np.asarray(edges)))
        self.run.log({name: histogram}, step=int(step))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self.run.log({k: str(v) for k, v in texts.items()}, step=int(step))

    def flush(self) -> None:
        pass  # wandb sends in the background; finish() (close) waits for it

    def close(self) -> None:
        if self._owned:
            self.run.finish()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
