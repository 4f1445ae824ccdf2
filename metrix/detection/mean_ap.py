"""COCO mean average precision for boxes: ``MeanAveragePrecision`` (pycocotools' COCOeval)."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, Shaped

from metrix.core.buffers import BufferState, CapacityOverflowError
from metrix.core.fields import concat_field
from metrix.core.keys import REQUIRED, Key
from metrix.core.masks import broadcast_mask
from metrix.core.metric import Metric
from metrix.core.refuse import is_concrete, metric_name, refuse
from metrix.detection import coco
from metrix.detection.boxes import box_sizes, check_box_format, to_xywh


def pack_rows(valid, capacity: int, *arrays):
    """The valid entries of each row of ``(B, N, ...)`` arrays moved to the front (in order)
    and cut or zero-padded to ``capacity``; returns ``(count, dropped, *packed)`` (jit-safe).

    ``count`` (B,) entries kept per row, ``dropped`` (B,) valid entries past ``capacity``.
    """
    b = valid.shape[0]
    position = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1
    slot = jnp.where(valid & (position < capacity), position, capacity)  # capacity: dropped
    rows = jnp.arange(b)[:, None]
    packed = [
        jnp.zeros((b, capacity, *x.shape[2:]), x.dtype).at[rows, slot].set(x, mode="drop")
        for x in arrays
    ]
    total = jnp.sum(valid, axis=1, dtype=jnp.int32)
    count = jnp.minimum(total, capacity)
    return (count, total - count, *packed)


def _invalid_boxes(boxes, box_format):
    """Boxes with a non-finite coordinate or a negative width or height."""
    w, h = box_sizes(boxes, box_format)
    return ~jnp.all(jnp.isfinite(boxes), axis=-1) | (w < 0) | (h < 0)


def _detections(m) -> tuple:
    return (m.detections_per_image,)


def _targets(m) -> tuple:
    return (m.targets_per_image,)


class DetectionBuffer(BufferState):
    """One row per image: its detections and targets, packed and padded to fixed sizes.

    Detections: ``pred_boxes (D, 4)`` (as given, in the metric's ``box_format``),
    ``pred_scores (D,)``, ``pred_labels (D,)``, the first ``num_preds`` valid; targets:
    ``target_boxes (T, 4)``, ``target_labels``, ``target_iscrowd``, ``target_area (T,)`` (0:
    use the box area), the first ``num_targets`` valid. ``dropped_boxes`` / ``invalid_boxes``
    count the image's boxes that did not fit / had non-finite values or negative sizes
    (``compute`` refuses either). ``D = detections_per_image``, ``T = targets_per_image``.
    """

    pred_boxes: jax.Array = concat_field(item_shape=lambda m: (*_detections(m), 4))
    pred_scores: jax.Array = concat_field(item_shape=_detections)
    pred_labels: jax.Array = concat_field(item_shape=_detections, dtype=jnp.int32)
    num_preds: jax.Array = concat_field(dtype=jnp.int32)
    target_boxes: jax.Array = concat_field(item_shape=lambda m: (*_targets(m), 4))
    target_labels: jax.Array = concat_field(item_shape=_targets, dtype=jnp.int32)
    target_iscrowd: jax.Array = concat_field(item_shape=_targets, dtype=jnp.bool_)
    target_area: jax.Array = concat_field(item_shape=_targets)
    num_targets: jax.Array = concat_field(dtype=jnp.int32)
    dropped_boxes: jax.Array = concat_field(dtype=jnp.int32)
    invalid_boxes: jax.Array = concat_field(dtype=jnp.int32)

    def host_boxes(self) -> tuple[coco.Boxes, coco.Boxes]:
        """The stored detections and targets as flat float64 ``xywh`` host arrays (eager),
        after refusing overflowed buffers and invalid boxes."""
        name = metric_name(self)
        self.check_capacity(None)
        rows = self.rows()
        dropped, invalid = int(rows["dropped_boxes"].sum()), int(rows["invalid_boxes"].sum())
        m = self.parent
        refuse(
            dropped,
            None,
            f"{name}: {dropped} box(es) did not fit detections_per_image="
            f"{m.detections_per_image} / targets_per_image={m.targets_per_image}; raise them.",
            error=CapacityOverflowError,
        )
        refuse(invalid, None, f"{name}: {invalid} stored box(es) or score(s) are not finite or "
               "have a negative size (accepted under jit); the value is refused.")
        fmt = m.box_format

        def flat(prefix, count):
            valid = np.arange(rows[f"{prefix}_labels"].shape[1]) < rows[count][:, None]
            image = np.broadcast_to(np.arange(valid.shape[0])[:, None], valid.shape)[valid]
            box = to_xywh(rows[f"{prefix}_boxes"][valid], fmt)
            return valid, image, box, rows[f"{prefix}_labels"][valid].astype(np.int64)

        valid, image, box, label = flat("pred", "num_preds")
        score = rows["pred_scores"][valid].astype(np.float64)
        dets = coco.Boxes(image, label, box, box[:, 2] * box[:, 3], score=score)
        valid, image, box, label = flat("target", "num_targets")
        given = rows["target_area"][valid].astype(np.float64)
        area = np.where(given > 0, given, box[:, 2] * box[:, 3])
        gts = coco.Boxes(image, label, box, area, crowd=rows["target_iscrowd"][valid])
        return dets, gts

    def compute(self):
        if not is_concrete(self.count, self.pred_boxes):
            raise TypeError(
                f"{metric_name(self)}.compute runs COCO's matching on the host: call it "
                "outside jit (get_state and merge are jit-safe)."
            )
        m = self.parent
        dets, gts = self.host_boxes()
        result = coco.evaluate(
            dets,
            gts,
            iou_thresholds=m.iou_thresholds,
            rec_thresholds=m.rec_thresholds,
            max_detections=m.max_detection_thresholds,
        )
        summary = coco.summarize(result, m.iou_thresholds, m.max_detection_thresholds)
        out = {k: jnp.asarray(v, jnp.float32) for k, v in summary.items()}
        if m.class_metrics:
            ap, ar = coco.per_class(result)
            out["map_per_class"] = jnp.asarray(ap, jnp.float32)
            out[f"mar_{m.max_detection_thresholds[-1]}_per_class"] = jnp.asarray(ar, jnp.float32)
            out["classes"] = jnp.asarray(result.classes, jnp.int32)
        return out


def _thresholds(name, values, *, length=None, integer=False):
    """A validated, sorted-as-given tuple of thresholds (construction-time checks)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    values = tuple(values)
    if not values or (length is not None and len(values) != length):
        need = f"exactly {length}" if length else "at least one"
        raise ValueError(f"{name} needs {need} value(s), got {values!r}")
    if integer:
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                   for v in values):
            raise ValueError(f"{name} must be positive ints, got {values!r}")
        return tuple(sorted(int(v) for v in values))
    if not all(isinstance(v, (int, float, np.floating)) and 0 <= v <= 1 for v in values):
        raise ValueError(f"{name} must be numbers in [0, 1], got {values!r}")
    return tuple(float(v) for v in values)


@functools.cache
def _layout(cls, box_format, capacity, detections_per_image, targets_per_image):
    """The metric of class ``cls`` with only the options that shape its state set."""
    return cls(box_format=box_format, capacity=capacity,
               detections_per_image=detections_per_image, targets_per_image=targets_per_image)


def _image_rows(metric, pred_boxes, pred_scores, pred_labels, target_boxes, target_labels,
                pred_mask, target_mask, target_iscrowd, target_area, mask):
    """The state of one batch of images (``MeanAveragePrecision.get_state``, jit-safe)."""
    pred_boxes = pred_boxes.astype(jnp.float32)
    pred_scores = pred_scores.astype(jnp.float32)
    target_boxes = target_boxes.astype(jnp.float32)
    valid_d = broadcast_mask(pred_mask, pred_scores.shape)
    valid_t = broadcast_mask(target_mask, target_labels.shape)
    crowd = broadcast_mask(target_iscrowd, target_labels.shape)
    if target_iscrowd is None:
        crowd = jnp.zeros(target_labels.shape, bool)
    area = jnp.zeros(target_labels.shape, jnp.float32)
    if target_area is not None:
        area = target_area.astype(jnp.float32)
    keep = broadcast_mask(mask, pred_scores.shape[:1])

    bad_d = _invalid_boxes(pred_boxes, metric.box_format) | ~jnp.isfinite(pred_scores)
    bad_t = _invalid_boxes(target_boxes, metric.box_format) | ~jnp.isfinite(area)
    invalid = jnp.sum(valid_d & bad_d, 1, dtype=jnp.int32)
    invalid = invalid + jnp.sum(valid_t & bad_t, 1, dtype=jnp.int32)
    num_preds, dropped_d, boxes_d, scores_d, labels_d = pack_rows(
        valid_d, metric.detections_per_image, pred_boxes, pred_scores, pred_labels
    )
    num_targets, dropped_t, boxes_t, labels_t, crowd_t, area_t = pack_rows(
        valid_t, metric.targets_per_image, target_boxes, target_labels, crowd, area
    )
    refuse(
        jnp.sum(jnp.where(keep, invalid, 0)),
        None,
        lambda n: f"{n} valid box(es) or score(s) are not finite or have a negative width "
        "or height; mask them out (pred_mask / target_mask) or fix them.",
    )
    refuse(
        jnp.sum(jnp.where(keep, dropped_d, 0)),
        None,
        lambda n: f"{n} valid detection(s) did not fit: an image has more than "
        f"detections_per_image={metric.detections_per_image}; raise it.",
        error=CapacityOverflowError,
    )
    refuse(
        jnp.sum(jnp.where(keep, dropped_t, 0)),
        None,
        lambda n: f"{n} valid target(s) did not fit: an image has more than "
        f"targets_per_image={metric.targets_per_image}; raise it.",
        error=CapacityOverflowError,
    )
    return metric.State.from_rows(
        capacity=metric.capacity,
        mask=keep,
        parent=metric,
        pred_boxes=boxes_d,
        pred_scores=scores_d,
        pred_labels=labels_d.astype(jnp.int32),
        num_preds=num_preds,
        target_boxes=boxes_t,
        target_labels=labels_t.astype(jnp.int32),
        target_iscrowd=crowd_t,
        target_area=area_t,
        num_targets=num_targets,
        dropped_boxes=dropped_d + dropped_t,
        invalid_boxes=invalid,
    )


class MeanAveragePrecision(Metric):
    """COCO box mAP and mAR, equal to pycocotools' ``COCOeval(iouType="bbox")``.

    ``AP_c = mean_{t, r} p_c(t, r)``: for class ``c``, IoU threshold ``t`` and recall
    threshold ``r``, ``p_c(t, r)`` is the interpolated precision (the highest precision at
    recall ``>= r``) of the detections greedily matched to targets in score order; ``AR_c =
    mean_t recall_c(t)``. ``map`` averages ``AP_c`` over the classes with targets, ``t`` in
    ``iou_thresholds`` (.5:.05:.95) and the 101 ``rec_thresholds``; every rule of COCOeval
    (top ``max_detection_thresholds[-1]`` detections per image and class, crowd targets
    matched by intersection over the detection's area and never counted as positives, the
    closed area ranges small ``[0, 32^2]``, medium ``[32^2, 96^2]``, large ``[96^2, inf)``,
    ties) is written out in :mod:`metrix.detection.coco`.

    Inputs, one row per image, padded (True in a mask = a real entry):
    ``pred_boxes (B, D, 4)`` float, ``pred_scores (B, D)`` float, ``pred_labels (B, D)`` int,
    ``pred_mask (B, D)``; ``target_boxes (B, T, 4)`` float, ``target_labels (B, T)`` int,
    ``target_mask (B, T)``, ``target_iscrowd (B, T)`` (bool or 0/1; default none),
    ``target_area (B, T)`` float (COCO's segment area; entries <= 0, or no array, use the
    box area ``w h``, as torchmetrics); ``mask (B,)`` masks whole images (a masked image is
    not part of the data set at all, unlike an image with no targets). Boxes are in
    ``box_format`` ("xyxy", "xywh" or "cxcywh"; pixels) and converted to COCO's ``xywh`` in
    float64 on the host. ``D`` and ``T`` may differ between batches.

    Returns (``compute``, eager only: the matching runs in numpy on the host) float32
    scalars in [0, 1] under torchmetrics' names: ``map``, ``map_50``, ``map_75``,
    ``map_small``, ``map_medium``, ``map_large``, ``mar_1``, ``mar_10``, ``mar_100`` (one
    per ``max_detection_thresholds``), ``mar_small``, ``mar_medium``, ``mar_large``; with
    ``class_metrics=True`` also ``map_per_class (K,)``, ``mar_100_per_class (K,)`` (named
    after the last max-detection setting) and ``classes (K,)`` (every label seen in
    detections or targets, sorted). A value with nothing to average is ``-1``, as in
    COCOeval and torchmetrics: a class without (non-crowd, in-range) targets, an area range
    without targets, ``map_50`` when 0.5 is not an IoU threshold. Unlike COCOeval's
    ``summarize``, ``map`` uses the last max-detection setting even when it is not 100
    (COCOeval reports -1 there).

    State: a :class:`DetectionBuffer` of ``capacity`` images (default 5,000, ~25 MB at the
    default 100 detections and 100 targets per image); it merges under ``jit``, across
    devices and hosts. More images than ``capacity``, or more valid boxes in an image than
    ``detections_per_image`` / ``targets_per_image``, raise ``mx.CapacityOverflowError``
    (eagerly in ``get_state`` for boxes, at ``compute`` otherwise); a one-shot call,
    ``metric(**inputs)``, sizes its own buffers. Non-finite boxes or scores and boxes of
    negative size raise ``ValueError`` (under ``jit``: stored, counted, refused at compute).
    ``get_state`` compiles once per buffer layout and input shapes (thresholds and
    ``class_metrics`` are read at compute only).
    """

    pred_boxes: Key = REQUIRED
    pred_scores: Key = REQUIRED
    pred_labels: Key = REQUIRED
    target_boxes: Key = REQUIRED
    target_labels: Key = REQUIRED
    pred_mask: Key | None = None
    target_mask: Key | None = None
    target_iscrowd: Key | None = None
    target_area: Key | None = None
    mask: Key | None = None
    box_format: str = "xyxy"
    iou_thresholds: tuple[float, ...] = coco.DEFAULT_IOU_THRESHOLDS
    rec_thresholds: tuple[float, ...] = coco.DEFAULT_REC_THRESHOLDS
    max_detection_thresholds: tuple[int, ...] = coco.DEFAULT_MAX_DETECTIONS
    class_metrics: bool = False
    capacity: int = 5000
    detections_per_image: int = 100
    targets_per_image: int = 100

    State = DetectionBuffer

    def __post_init__(self):
        check_box_format(self.box_format)
        for name in ("iou_thresholds", "rec_thresholds"):
            object.__setattr__(self, name, _thresholds(name, getattr(self, name)))
        thresholds = _thresholds(
            "max_detection_thresholds", self.max_detection_thresholds, length=3, integer=True
        )
        object.__setattr__(self, "max_detection_thresholds", thresholds)
        if not isinstance(self.class_metrics, bool):
            raise TypeError(f"class_metrics must be a bool, got {self.class_metrics!r}")
        for name in ("capacity", "detections_per_image", "targets_per_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def get_state(
        self,
        pred_boxes: Float[Array, "b d 4"],
        pred_scores: Float[Array, "b d"],
        pred_labels: Integer[Array, "b d"],
        target_boxes: Float[Array, "b t 4"],
        target_labels: Integer[Array, "b t"],
        pred_mask: Shaped[Array, "b d"] | None = None,
        target_mask: Shaped[Array, "b t"] | None = None,
        target_iscrowd: Shaped[Array, "b t"] | None = None,
        target_area: Float[Array, "b t"] | None = None,
        mask: Shaped[Array, "b"] | None = None,
    ) -> DetectionBuffer:
        # One compiled program per buffer layout and input shapes: the compute-only options
        # (thresholds, class_metrics) and the keys do not change the state, so metrics that
        # differ only there share it (see _layout).
        layout = _layout(type(self), self.box_format, self.capacity, self.detections_per_image,
                         self.targets_per_image)
        inputs = (pred_boxes, pred_scores, pred_labels, target_boxes, target_labels, pred_mask,
                  target_mask, target_iscrowd, target_area, mask)
        return layout.run_compiled(_image_rows, *inputs).replace(parent=self)

    def empty(self):
        """The identity of merge: a buffer of ``capacity`` empty image rows."""
        return self.State.empty(parent=self)

    def __call__(self, *args, **kwargs):
        """One-shot value, ``get_state(...).compute()``, with the buffers sized to the inputs
        (``capacity`` images, boxes per image): a single call never overflows."""
        try:
            inputs = inspect.signature(type(self).get_state).bind(self, *args, **kwargs).arguments
            (b, d), t = np.shape(inputs["pred_scores"]), np.shape(inputs["target_labels"])[1]
        except (TypeError, ValueError, KeyError, IndexError):  # get_state names the problem
            return self.get_state(*args, **kwargs).compute()
        sized = dataclasses.replace(
            self, capacity=max(b, 1), detections_per_image=max(d, 1), targets_per_image=max(t, 1)
        )
        return sized.get_state(*args, **kwargs).compute()


__all__ = [
    "DetectionBuffer",
    "MeanAveragePrecision",
    "pack_rows",
]
