"""COCO box mAP over ``--images`` images x ``--detections`` detections: metrix against
pycocotools' COCOeval (and torchmetrics' MeanAveragePrecision when it imports), same run.

The data: ``--images`` images (default 500) with up to ``--targets`` targets (default 10)
of 10 classes, crowd regions, sizes from small to large, and ``--detections`` detections
per image (default 50, near the targets or random), padded arrays with masks, fed in
batches of ``--batch`` images. Timed, medians over rounds in a rotated order (with a
``settle()`` pause before each call), each call the whole evaluation, update + compute:

* ``pycocotools``: building the COCO ground-truth / result dicts from the arrays,
  ``loadRes``, ``evaluate``, ``accumulate``, ``summarize`` (the peer);
* ``torchmetrics``: ``update`` per batch (lists of per-image dicts) and ``compute`` (which
  runs pycocotools);
* ``metrix``: a jitted ``get_state`` + ``merge`` per batch, then ``compute()`` (the COCO
  matching and accumulation in numpy on the host); ``metrix compute`` alone too.

Values are checked before any time is trusted (``DISAGREES:`` lines otherwise). Ratios are
metrix / peer (below 1: metrix is faster). Run ``python -m benchmarks.detection``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import time
import types

import jax
import numpy as np

from benchmarks.common import load, row, settle
from metrix.detection.mean_ap import MeanAveragePrecision

NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10",
         "mar_100", "mar_small", "mar_medium", "mar_large")
CLASSES = 10


def make_data(images: int, detections: int, targets: int, seed: int = 0) -> dict:
    """Padded per-image arrays (xyxy boxes), as ``MeanAveragePrecision`` reads them."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 500, (images, targets, 2))
    size = np.exp(rng.uniform(np.log(4), np.log(300), (images, targets, 2)))
    t_boxes = np.concatenate([corner, corner + size], -1)
    n_t = rng.integers(0, targets + 1, images)
    t_labels = rng.integers(0, CLASSES, (images, targets))
    source = (rng.random((images, detections)) * np.maximum(n_t, 1)[:, None]).astype(np.int64)
    near = np.take_along_axis(t_boxes, source[..., None], 1)
    scale = np.concatenate([near[..., 2:] - near[..., :2]] * 2, -1)
    noise = rng.normal(0, 0.08, near.shape) * scale
    far = rng.uniform(0, 600, near.shape)
    d_boxes = np.where(rng.random((images, detections, 1)) < 0.6, near + noise, far)
    d_boxes = np.concatenate([np.minimum(d_boxes[..., :2], d_boxes[..., 2:]),
                              np.maximum(d_boxes[..., :2], d_boxes[..., 2:])], -1)
    labels = np.where(rng.random((images, detections)) < 0.8,
                      np.take_along_axis(t_labels, source, 1),
                      rng.integers(0, CLASSES, (images, detections)))
    return {
        "pred_boxes": d_boxes.astype(np.float32),
        "pred_scores": rng.random((images, detections)).astype(np.float32),
        "pred_labels": labels.astype(np.int32),
        "pred_mask": rng.random((images, detections)) < 0.95,
        "target_boxes": t_boxes.astype(np.float32),
        "target_labels": t_labels.astype(np.int32),
        "target_mask": np.arange(targets) < n_t[:, None],
        "target_iscrowd": rng.random((images, targets)) < 0.05,
    }


def _batches(data, batch):
    n = data["pred_scores"].shape[0]
    return [{k: v[i : i + batch] for k, v in data.items()} for i in range(0, n, batch)]


def run_pycocotools(data) -> np.ndarray:
    """COCOeval on the arrays (the dicts built from them are part of the timed work)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n = data["pred_scores"].shape[0]
    gt_xyxy = data["target_boxes"].astype(np.float64)
    dt_xyxy = data["pred_boxes"].astype(np.float64)
    gt_xywh = np.concatenate([gt_xyxy[..., :2], gt_xyxy[..., 2:] - gt_xyxy[..., :2]], -1)
    dt_xywh = np.concatenate([dt_xyxy[..., :2], dt_xyxy[..., 2:] - dt_xyxy[..., :2]], -1)
    annotations, results = [], []
    for i in range(n):
        for j in np.flatnonzero(data["target_mask"][i]):
            box = gt_xywh[i, j].tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "bbox": box,
                                "area": box[2] * box[3],
                                "category_id": int(data["target_labels"][i, j]),
                                "iscrowd": int(data["target_iscrowd"][i, j])})
        for j in np.flatnonzero(data["pred_mask"][i]):
            results.append({"image_id": i + 1, "bbox": dt_xywh[i, j].tolist(),
                            "score": float(data["pred_scores"][i, j]),
                            "category_id": int(data["pred_labels"][i, j])})
    labels = np.union1d(data["target_labels"][data["target_mask"]],
                        data["pred_labels"][data["pred_mask"]])
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1} for i in range(n)], "annotations": annotations,
                  "categories": [{"id": int(c)} for c in labels]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def _torchmetrics():
    try:
        for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
            sys.modules.setdefault(name, types.ModuleType(name))
        import torch
        from torchmetrics.detection import MeanAveragePrecision as TorchMAP
    except Exception:  # noqa: BLE001 - an optional peer
        return None, None
    return torch, TorchMAP


def run_torchmetrics(torch, torch_map, batches) -> np.ndarray:
    metric = torch_map(box_format="xyxy")
    for b in batches:
        preds, targets = [], []
        for i in range(b["pred_scores"].shape[0]):
            pm, tm = b["pred_mask"][i], b["target_mask"][i]
            preds.append({"boxes": torch.from_numpy(b["pred_boxes"][i][pm]),
                          "scores": torch.from_numpy(b["pred_scores"][i][pm]),
                          "labels": torch.from_numpy(b["pred_labels"][i][pm]).long()})
            targets.append({"boxes": torch.from_numpy(b["target_boxes"][i][tm]),
                            "labels": torch.from_numpy(b["target_labels"][i][tm]).long(),
                            "iscrowd": torch.from_numpy(b["target_iscrowd"][i][tm]).long()})
        metric.update(preds, targets)
    with contextlib.redirect_stdout(io.StringIO()):
        out = metric.compute()
    return np.array([float(out[k]) for k in NAMES])


def _interleaved_settled(runs: dict, repeats: int) -> dict[str, float]:
    """``interleaved_medians``' rotated rounds with a ``settle()`` pause before each call."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            settle()
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--detections", type=int, default=50)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    data = make_data(args.images, args.detections, args.targets)
    batches = _batches(data, args.batch)
    print(
        f"# COCO box mAP: {args.images} images x {args.detections} detections (<= "
        f"{args.targets} targets), batches of {args.batch}; "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, repeats={args.repeats} (median); load {load()} "
        "(shared machine: noisy)"
    )
    metric = MeanAveragePrecision(capacity=args.images, detections_per_image=args.detections,
                                  targets_per_image=args.targets)
    get_state, merge = jax.jit(metric.get_state), jax.jit(lambda a, b: a.merge(b))

    def accumulate():
        state = metric.empty()
        for b in batches:
            state = merge(state, get_state(**b))
        return jax.block_until_ready(state)

    state = accumulate()
    runs = {
        "metrix update+compute": lambda: accumulate().compute(),
        "metrix compute": state.compute,
        "pycocotools": lambda: run_pycocotools(data),
    }
    torch, torch_map = _torchmetrics()
    if torch is not None:
        runs["torchmetrics"] = lambda: run_torchmetrics(torch, torch_map, batches)
    values = {}
    for name, fn in runs.items():
        out = fn()
        values[name] = np.array([float(out[k]) for k in NAMES]) if isinstance(out, dict) else out
    for name, v in values.items():
        # torchmetrics converts boxes to xywh and takes areas in float32 (pycocotools and
        # metrix: float64), which moves a few IoUs / areas across a threshold: 1e-3 for it.
        tolerance = 1e-3 if name == "torchmetrics" else 1e-6
        if np.max(np.abs(v - values["pycocotools"])) > tolerance:
            print(f"DISAGREES: {name} {v.round(6).tolist()} vs pycocotools "
                  f"{values['pycocotools'].round(6).tolist()}")
    times = _interleaved_settled(runs, args.repeats)
    peer = times["pycocotools"]
    rows = []
    for name, seconds in times.items():
        ratio = "" if name == "pycocotools" else f"  ratio vs pycocotools {seconds / peer:.3f}"
        print(f"{name:<24} {seconds * 1e3:9.1f} ms{ratio}")
        rows.append(row(f"detection/{name}", seconds, "s"))
    if torch is None:
        print(f"{'torchmetrics':<24} not installed")
        rows.append(row("detection/torchmetrics", None, "s", note="not installed"))
    print(f"values (map, map_50, mar_100): {values['metrix update+compute'][[0, 1, 8]].round(4)}")
    return rows


if __name__ == "__main__":
    main()
