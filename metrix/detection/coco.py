"""COCO box evaluation on the host: greedy matching, then precision / recall accumulation.

This is the definition of pycocotools' ``COCOeval`` (``evaluate``, ``accumulate``,
``summarize`` for ``iouType="bbox"``), written as vectorised numpy over flat arrays of
detections and targets. Every step below follows COCOeval, in float64:

1. **Per image and class**, detections are sorted by score (highest first, ties in input
   order) and only the first ``max_detections[-1]`` are kept.
2. **Ignored targets**, per area range: crowd targets, and targets whose area lies outside
   the range ``[lo, hi]`` (both ends included).
3. **Greedy matching**, per image, class, area range and IoU threshold ``t``: detections in
   score order each take the target of highest IoU ``>= min(t, 1 - 1e-10)`` among the
   targets not yet taken (a crowd target can be taken any number of times); regular targets
   are preferred to ignored ones (an ignored target is only taken when no regular target
   qualifies); among equal IoUs the target listed last wins (COCOeval's ``>=`` update).
   A detection matched to an ignored target is ignored; so is an unmatched detection whose
   own area (``w h``) lies outside the area range.
4. **Accumulation**, per class, area range and ``m`` in ``max_detections``: the first ``m``
   detections of every image (score order) are pooled and sorted by score (ties: image
   order, then rank in the image); ``TP`` / ``FP`` are cumulative counts of matched /
   unmatched detections that are not ignored; ``recall = TP / n_pos`` (``n_pos``: regular
   targets), ``precision = TP / (TP + FP + eps)`` made non-increasing from the right; the
   interpolated precision at each recall threshold ``r`` is the precision at the first
   detection with ``recall >= r`` (0 when recall never reaches ``r``); the recall of the
   setting is the last recall (0 without detections). A class without regular targets has
   precision and recall ``-1`` (undefined).
5. **Summaries**: the mean of the defined (``> -1``) entries over IoU thresholds, recall
   thresholds and classes (-1 when none is defined).

The one sequential part, step 3, loops over the rank of a detection in its (image, class)
group, processing every group, area range and threshold at once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metrix.detection.boxes import coco_box_iou

# COCO's area ranges (pixels^2) and their names; ``1e5 ** 2`` stands for "no upper bound".
AREA_RANGES = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_NAMES = ("all", "small", "medium", "large")
# COCOeval's defaults: np.linspace exactly as pycocotools builds them (0.75 must be exact).
DEFAULT_IOU_THRESHOLDS = tuple(np.linspace(0.5, 0.95, 10).tolist())
DEFAULT_REC_THRESHOLDS = tuple(np.linspace(0.0, 1.0, 101).tolist())
DEFAULT_MAX_DETECTIONS = (1, 10, 100)
# Elements of one matching block (groups x detections x targets): bounds the host memory.
_BLOCK_ELEMENTS = 1 << 21


@dataclasses.dataclass(frozen=True)
class Boxes:
    """Flat host arrays of boxes, one entry per box, in image order.

    ``image`` int (the image's position), ``label`` int, ``box`` ``(n, 4)`` float64 ``xywh``,
    ``area`` float64; ``score`` (detections) float64; ``crowd`` (targets) bool.
    """

    image: np.ndarray
    label: np.ndarray
    box: np.ndarray
    area: np.ndarray
    score: np.ndarray | None = None
    crowd: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class CocoResult:
    """``precision (T, R, K, A, M)`` and ``recall (T, K, A, M)`` as COCOeval's ``eval``.

    Axes: IoU thresholds, recall thresholds, ``classes``, :data:`AREA_RANGES`, max detections.
    """

    precision: np.ndarray
    recall: np.ndarray
    classes: np.ndarray


def _outside(area, ranges=AREA_RANGES):
    """``(n, A)``: the area lies outside each range (COCO's ``area < lo or area > hi``)."""
    lo = np.array([r[0] for r in ranges])
    hi = np.array([r[1] for r in ranges])
    return (area[:, None] < lo) | (area[:, None] > hi)


def _runs(sorted_keys):
    """Start index, length and key of each run of equal values in a sorted array."""
    if sorted_keys.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, sorted_keys[:0]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    lengths = np.diff(np.r_[starts, sorted_keys.size])
    return starts, lengths, sorted_keys[starts]


def _blocks(lengths_d, lengths_t, settings):
    """Consecutive groups (sorted by detections, descending) cut so that each block's padded
    arrays, ``groups x max targets x (max detections + settings)``, stay under
    ``_BLOCK_ELEMENTS`` (the IoUs, and the per-step arrays of every area and threshold)."""
    start = 0
    while start < len(lengths_d):
        stop, max_t, depth = start, 0, int(lengths_d[start]) + settings
        while stop < len(lengths_d):
            max_t = max(max_t, int(lengths_t[stop]))
            if stop > start and (stop + 1 - start) * max_t * depth > _BLOCK_ELEMENTS:
                break
            stop += 1
        yield start, stop
        start = stop


def match(dets: Boxes, gts: Boxes, det_group, gt_group, iou_thresholds):
    """Step 3 of the module docstring: ``(matched, ignored)``, each ``(n_dets, A, T)`` bool.

    ``dets`` are sorted by (group, score rank) and ``det_group`` / ``gt_group`` are sorted
    group ids (image, class); targets keep their input order inside a group.
    """
    n_areas, n_thr = len(AREA_RANGES), len(iou_thresholds)
    thr = np.minimum(np.asarray(iou_thresholds, np.float64), 1 - 1e-10)
    matched = np.zeros((det_group.size, n_areas, n_thr), bool)
    matched_ignored = np.zeros_like(matched)
    gt_ignore = gts.crowd[:, None] | _outside(gts.area)  # (n_gts, A)

    d_start, d_len, d_key = _runs(det_group)
    g_start, g_len, g_key = _runs(gt_group)
    _, di, gi = np.intersect1d(d_key, g_key, assume_unique=True, return_indices=True)
    order = np.argsort(-d_len[di], kind="stable")  # most detections first: active = a prefix
    d_start, d_len = d_start[di][order], d_len[di][order]
    g_start, g_len = g_start[gi][order], g_len[gi][order]

    for lo, hi in _blocks(d_len, g_len, n_areas * n_thr):
        nd, ng = d_len[lo:hi], g_len[lo:hi]
        rows_d, rows_t = int(nd.max()), int(ng.max())
        det_idx = d_start[lo:hi, None] + np.minimum(np.arange(rows_d), nd[:, None] - 1)
        gt_valid = np.arange(rows_t) < ng[:, None]
        gt_idx = g_start[lo:hi, None] + np.minimum(np.arange(rows_t), ng[:, None] - 1)
        crowd = gts.crowd[gt_idx] & gt_valid
        ious = coco_box_iou(dets.box[det_idx], gts.box[gt_idx], crowd)  # (G, D, Tg)
        ignore = gt_ignore[gt_idx].transpose(0, 2, 1)[:, :, None, :]  # (G, A, 1, Tg)
        free = np.broadcast_to(gt_valid[:, None, None, :], (hi - lo, n_areas, n_thr, rows_t))
        free = free.copy()  # targets still available, per area range and threshold
        for r in range(rows_d):
            act = int(np.count_nonzero(nd > r))
            iou = ious[:act, r][:, None, None, :]  # (act, 1, 1, Tg)
            cand = free[:act] & (iou >= thr[:, None])
            regular = cand & ~ignore[:act]
            use = np.where(regular.any(-1, keepdims=True), regular, cand)
            value = np.where(use, iou, -1.0)
            best = value == value.max(-1, keepdims=True)
            pick = rows_t - 1 - np.argmax((use & best)[..., ::-1], axis=-1)  # the last best
            hit = use.any(-1)  # (act, A, T)
            g_i, a_i, t_i = np.nonzero(hit)
            j = pick[g_i, a_i, t_i]
            free[g_i, a_i, t_i, j] &= crowd[g_i, j]  # a crowd target stays available
            out = d_start[lo : lo + act] + r
            matched[out] = hit
            picked_ignored = np.take_along_axis(
                np.broadcast_to(ignore[:act], use.shape), pick[..., None], -1
            )[..., 0]
            matched_ignored[out] = hit & picked_ignored
    ignored = matched_ignored | (~matched & _outside(dets.area)[:, :, None])
    return matched, ignored


def _first_reaching(counts, targets):
    """For nondecreasing integer columns ``counts (n, C)``: the first row where column ``c``
    reaches ``targets[c, r]`` (``n`` when it never does), ``(C, R)``; one ``searchsorted``
    over the columns laid end to end, each shifted above the previous one."""
    n, c = counts.shape
    stride = int(max(counts.max(initial=0), targets.max(initial=0))) + 1
    shift = np.arange(c, dtype=np.int64)[:, None] * stride
    flat = (counts.T.astype(np.int64) + shift).ravel()
    return np.searchsorted(flat, targets + shift, side="left") - np.arange(c)[:, None] * n


def _accumulate_class(tp, fp, n_pos, rec_thresholds):
    """Steps 4 for one class and max-detection setting: ``(precision (A, T, R), recall (A, T))``.

    ``tp`` / ``fp`` ``(n, A, T)`` bool in accumulation order; ``n_pos`` ``(A,)`` regular
    targets (settings with none are left to the caller).
    """
    n, n_areas, n_thr = tp.shape
    if n == 0:
        return np.zeros((n_areas, n_thr, rec_thresholds.size)), np.zeros((n_areas, n_thr))
    tp_sum = np.cumsum(tp, axis=0).reshape(n, -1)  # exact integer counts, columns (a, t)
    fp_sum = np.cumsum(fp, axis=0).reshape(n, -1)
    n_pos_col = np.repeat(np.maximum(n_pos, 1), n_thr)
    recall = tp_sum[-1] / n_pos_col
    precision = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    # recall = tp / n_pos is nondecreasing, so its first row >= r is the first row where tp
    # reaches the smallest integer k with k / n_pos >= r (the same float64 divisions).
    k_min = np.stack(
        [np.searchsorted(np.arange(p + 1) / p, rec_thresholds, side="left") for p in n_pos_col]
    )
    rows = _first_reaching(tp_sum, k_min)  # (A*T, R)
    cols = np.arange(rows.shape[0])[:, None]
    q = np.where(rows < n, precision[np.minimum(rows, n - 1), cols], 0.0)
    return q.reshape(n_areas, n_thr, -1), recall.reshape(n_areas, n_thr)


def evaluate(
    dets: Boxes,
    gts: Boxes,
    *,
    iou_thresholds=DEFAULT_IOU_THRESHOLDS,
    rec_thresholds=DEFAULT_REC_THRESHOLDS,
    max_detections=DEFAULT_MAX_DETECTIONS,
    classes=None,
) -> CocoResult:
    """COCOeval's ``evaluate`` + ``accumulate`` for boxes (module docstring), host numpy.

    ``classes``: the class ids to evaluate (sorted); default: every label seen in ``dets``
    or ``gts``. ``max_detections`` ascending. Returns a :class:`CocoResult`.
    """
    rec = np.asarray(rec_thresholds, np.float64)
    max_detections = sorted(int(m) for m in max_detections)
    if classes is None:
        classes = np.union1d(dets.label, gts.label)
    classes = np.asarray(classes, np.int64)
    n_k, n_a, n_t, n_m = classes.size, len(AREA_RANGES), len(iou_thresholds), len(max_detections)
    precision = -np.ones((n_t, rec.size, n_k, n_a, n_m))
    recall = -np.ones((n_t, n_k, n_a, n_m))
    if n_k == 0:
        return CocoResult(precision, recall, classes)

    def class_index(boxes):
        k = np.minimum(np.searchsorted(classes, boxes.label), n_k - 1)
        return np.where(classes[k] == boxes.label, k, -1)  # -1: a class not evaluated

    # Step 1: detections by (image, class, score desc, input order); rank in the group.
    det_k = class_index(dets)
    keep = det_k >= 0
    order = np.lexsort((np.arange(dets.image.size), -dets.score, det_k, dets.image))
    order = order[keep[order]]
    det_group = dets.image[order] * n_k + det_k[order]
    starts, lengths, _ = _runs(det_group)
    rank = np.arange(order.size) - np.repeat(starts, lengths)
    top = rank < max_detections[-1]
    order, det_group, rank = order[top], det_group[top], rank[top]
    sorted_dets = Boxes(
        image=dets.image[order],
        label=det_k[order],
        box=dets.box[order],
        area=dets.area[order],
        score=dets.score[order],
    )
    gt_k = class_index(gts)
    gt_order = np.flatnonzero(gt_k >= 0)
    gt_key = gts.image[gt_order] * n_k + gt_k[gt_order]
    gt_order = gt_order[np.argsort(gt_key, kind="stable")]
    sorted_gts = Boxes(
        image=gts.image[gt_order],
        label=gt_k[gt_order],
        box=gts.box[gt_order],
        area=gts.area[gt_order],
        crowd=gts.crowd[gt_order],
    )
    gt_group = sorted_gts.image * n_k + sorted_gts.label

    # Steps 2-3.
    matched, ignored = match(sorted_dets, sorted_gts, det_group, gt_group, iou_thresholds)
    regular = ~(sorted_gts.crowd[:, None] | _outside(sorted_gts.area))  # (n_gts, A)
    n_pos = np.stack([np.bincount(sorted_gts.label[regular[:, a]], minlength=n_k)
                      for a in range(n_a)], axis=1)  # (K, A)

    # Step 4: per class, detections by (score desc, image, rank).
    acc = np.lexsort((rank, sorted_dets.image, -sorted_dets.score, sorted_dets.label))
    tp_all = (matched & ~ignored)[acc]
    fp_all = (~matched & ~ignored)[acc]
    acc_rank, acc_k = rank[acc], sorted_dets.label[acc]
    k_start, k_len, k_ids = _runs(acc_k)
    span = dict(zip(k_ids.tolist(), zip(k_start.tolist(), k_len.tolist())))
    for k in range(n_k):
        defined = n_pos[k] > 0
        if not defined.any():
            continue
        start, length = span.get(k, (0, 0))
        for m, max_det in enumerate(max_detections):
            chosen = np.flatnonzero(acc_rank[start : start + length] < max_det) + start
            q, rc = _accumulate_class(tp_all[chosen], fp_all[chosen], n_pos[k], rec)
            precision[:, :, k, defined, m] = q[defined].transpose(1, 2, 0)
            recall[:, k, defined, m] = rc[defined].T
    return CocoResult(precision, recall, classes)


def _mean_defined(values) -> float:
    """COCOeval's summary: the mean of the entries > -1, or -1 when there is none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def summarize(result: CocoResult, iou_thresholds, max_detections) -> dict[str, float]:
    """COCOeval's 12 box summaries under torchmetrics' names, from a :class:`CocoResult`.

    ``map`` (IoU .5:.95 by default), ``map_50``, ``map_75`` (-1 when that threshold is not
    among ``iou_thresholds``), ``map_small|medium|large`` (all at the last max-detection
    setting), ``mar_{m}`` for each ``m`` in ``max_detections``, ``mar_small|medium|large``.
    """
    p, r = result.precision, result.recall
    thresholds = np.asarray(iou_thresholds, np.float64)

    def ap(area=0, iou=None):
        s = p[:, :, :, area, -1]
        return _mean_defined(s if iou is None else s[thresholds == iou])

    def ar(area=0, m=-1):
        return _mean_defined(r[:, :, area, m])

    out = {"map": ap(), "map_50": ap(iou=0.5), "map_75": ap(iou=0.75)}
    out.update({f"map_{name}": ap(area=a) for a, name in enumerate(AREA_NAMES) if a})
    out.update({f"mar_{m}": ar(m=i) for i, m in enumerate(max_detections)})
    out.update({f"mar_{name}": ar(area=a) for a, name in enumerate(AREA_NAMES) if a})
    return out


def per_class(result: CocoResult) -> tuple[np.ndarray, np.ndarray]:
    """Per class: AP over IoU and recall thresholds, and recall at the last max-detection
    setting (area "all"); -1 for a class without regular targets."""
    p, r = result.precision, result.recall
    ap = [_mean_defined(p[:, :, k, 0, -1]) for k in range(result.classes.size)]
    ar = [_mean_defined(r[:, k, 0, -1]) for k in range(result.classes.size)]
    return np.array(ap, np.float64), np.array(ar, np.float64)


__all__ = [
    "AREA_NAMES",
    "AREA_RANGES",
    "DEFAULT_IOU_THRESHOLDS",
    "DEFAULT_MAX_DETECTIONS",
    "DEFAULT_REC_THRESHOLDS",
    "Boxes",
    "CocoResult",
    "evaluate",
    "match",
    "per_class",
    "summarize",
]
