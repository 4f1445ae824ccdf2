"""MeanAveragePrecision against pycocotools' COCOeval (and torchmetrics on one case).

Each case builds the COCO ground-truth and result dicts from the same padded arrays the
metric reads (boxes converted to COCO's ``xywh`` in float64 here, areas ``w h`` unless given),
runs ``loadRes`` / ``evaluate`` / ``accumulate`` / ``summarize``, and compares ``stats`` and
the precision / recall arrays with the metric's values over several merged, uneven batches.
The data: random boxes of every size range, several classes, crowd targets, images without
targets or without detections, tied scores, padding holding NaN, and masked-out images.
"""

import contextlib
import io
import itertools
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.detection import MeanAveragePrecision, coco_box_iou, to_xywh
from metrix.detection import coco as coco_lib

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10",
         "mar_100", "mar_small", "mar_medium", "mar_large"]
ATOL = 1e-6
D, T = 12, 6  # padded detections / targets per image in the inputs


def _from_xywh(xywh, box_format):
    x, y, w, h = np.moveaxis(xywh, -1, 0)
    if box_format == "xywh":
        return xywh
    if box_format == "xyxy":
        return np.stack([x, y, x + w, y + h], -1)
    return np.stack([x + w / 2, y + h / 2, w, h], -1)


def make_data(seed, n, box_format="xyxy", classes=4, d=D, t=T, score_decimals=2, crowd=True):
    """Padded per-image arrays: targets of every size, detections near them (some with the
    wrong class) and random false positives; NaN in the padding."""
    rng = np.random.default_rng(seed)
    size = np.exp(rng.uniform(np.log(3), np.log(250), (n, t, 2)))  # small, medium and large
    corner = rng.uniform(0, 400, (n, t, 2))
    t_xywh = np.concatenate([corner, size], -1)
    n_t = rng.integers(0, t + 1, n)
    n_t[::5] = 0  # images without targets
    target_mask = np.arange(t) < n_t[:, None]
    target_labels = rng.integers(0, classes, (n, t))
    iscrowd = (rng.random((n, t)) < 0.12) if crowd else np.zeros((n, t), bool)
    # Detections: jittered copies of targets (of the same image) and random boxes.
    source = (rng.random((n, d)) * np.maximum(n_t, 1)[:, None]).astype(np.int64)  # real ones
    near = np.take_along_axis(t_xywh, source[..., None], 1)
    jitter = rng.normal(0, 0.07, (n, d, 4)) * np.concatenate([near[..., 2:], near[..., 2:]], -1)
    d_xywh = np.where(rng.random((n, d, 1)) < 0.7, near + jitter, np.concatenate(
        [rng.uniform(0, 400, (n, d, 2)), np.exp(rng.uniform(np.log(3), np.log(250), (n, d, 2)))],
        -1))
    d_xywh[..., 2:] = np.abs(d_xywh[..., 2:])
    pred_labels = np.take_along_axis(target_labels, source, 1)
    wrong = rng.random((n, d)) < 0.2
    pred_labels = np.where(wrong, rng.integers(0, classes, (n, d)), pred_labels)
    n_d = rng.integers(0, d + 1, n)
    n_d[3::7] = 0  # images without detections
    pred_mask = np.arange(d) < n_d[:, None]
    pred_mask &= rng.random((n, d)) < 0.9  # holes anywhere, not only at the end
    scores = np.round(rng.random((n, d)), score_decimals)  # rounding: tied scores
    data = {
        "pred_boxes": _from_xywh(d_xywh, box_format).astype(np.float32),
        "pred_scores": scores.astype(np.float32),
        "pred_labels": pred_labels.astype(np.int32),
        "pred_mask": pred_mask,
        "target_boxes": _from_xywh(t_xywh, box_format).astype(np.float32),
        "target_labels": target_labels.astype(np.int32),
        "target_mask": target_mask,
        "target_iscrowd": iscrowd,
        # 0 = "use the box area"; passed by default so most tests share one compiled program
        "target_area": np.zeros((n, t), np.float32),
    }
    data["pred_boxes"][~pred_mask] = np.nan  # a masked-out entry changes nothing
    data["target_boxes"][~target_mask] = np.nan
    return data


def _xywh_here(boxes, box_format):
    """The test's own float64 conversion to COCO boxes."""
    b = np.asarray(boxes, np.float64)
    if box_format == "xywh":
        return b
    if box_format == "xyxy":
        return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], -1)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., 2:]], -1)


def coco_eval(data, box_format="xyxy", images=None, cat_ids=None, **params):
    """pycocotools on ``data`` (images selected by ``images``); returns the COCOeval object."""
    n = data["pred_scores"].shape[0]
    images = np.ones(n, bool) if images is None else np.asarray(images, bool)
    gt_boxes = _xywh_here(data["target_boxes"], box_format)
    dt_boxes = _xywh_here(data["pred_boxes"], box_format)
    area = data.get("target_area")
    annotations, results, labels = [], [], set()
    for i in np.flatnonzero(images):
        for j in np.flatnonzero(data["target_mask"][i]):
            box = gt_boxes[i, j].tolist()
            given = 0.0 if area is None else float(area[i, j])
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(i) + 1, "bbox": box,
                "area": given if given > 0 else box[2] * box[3],
                "category_id": int(data["target_labels"][i, j]),
                "iscrowd": int(data["target_iscrowd"][i, j]) if "target_iscrowd" in data else 0,
            })
            labels.add(int(data["target_labels"][i, j]))
        for j in np.flatnonzero(data["pred_mask"][i]):
            results.append({
                "image_id": int(i) + 1, "bbox": dt_boxes[i, j].tolist(),
                "score": float(data["pred_scores"][i, j]),
                "category_id": int(data["pred_labels"][i, j]),
            })
            labels.add(int(data["pred_labels"][i, j]))
    gt = COCO()
    gt.dataset = {
        "images": [{"id": int(i) + 1} for i in np.flatnonzero(images)],
        "annotations": annotations,
        "categories": [{"id": c} for c in sorted(labels)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        for key, value in params.items():
            setattr(ev.params, key, value)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _metric(box_format="xyxy", **config):
    config = {"capacity": 64, "detections_per_image": D, "targets_per_image": T, **config}
    return MeanAveragePrecision(box_format=box_format, **config)


def _merged(metric, data, cuts, jit=False, mask=None):
    """One state per batch ``[cuts[i], cuts[i+1])``, merged in order."""
    get_state = jax.jit(metric.get_state) if jit else metric.get_state
    merge = jax.jit(lambda a, b: a.merge(b)) if jit else (lambda a, b: a.merge(b))
    state = metric.empty()
    for lo, hi in itertools.pairwise(cuts):
        batch = {k: v[lo:hi] for k, v in data.items()}
        if mask is not None:
            batch["mask"] = mask[lo:hi]
        state = merge(state, get_state(**batch))
    return state


def _assert_stats(values, stats):
    actual = np.array([float(values[name]) for name in NAMES])
    np.testing.assert_allclose(actual, stats, rtol=0, atol=ATOL)


N = 40
# Uneven batches of two shapes (13, 7): every metric below with the default layout (capacity,
# boxes per image, format) shares their two compiled get_state programs.
CUTS = (0, 13, 20, 33, N)


@pytest.mark.parametrize("box_format", ["xyxy", "xywh", "cxcywh"])
def test_merged_batches_match_cocoeval(box_format):
    data = make_data(0, N, box_format)
    cuts = CUTS if box_format == "xyxy" else (0, N)  # other formats: one compile each
    if box_format != "xyxy":
        del data["target_area"]  # the default: box areas
    values = _merged(_metric(box_format), data, cuts).compute()
    ev = coco_eval(data, box_format)
    _assert_stats(values, ev.stats)
    assert float(values["map"]) > 0.05  # the data is not degenerate
    assert -1 < float(values["map_small"]) and -1 < float(values["map_large"])


def test_jit_and_image_mask_match_cocoeval_on_the_kept_images():
    data = make_data(1, N)
    keep = np.random.default_rng(1).random(N) < 0.7
    values = _merged(_metric(), data, CUTS, jit=True, mask=keep).compute()
    _assert_stats(values, coco_eval(data, images=keep).stats)


def test_precision_recall_arrays_equal_cocoeval():
    """coco.evaluate's precision (T, R, K, A, M) and recall equal COCOeval's eval arrays."""
    data = make_data(2, N, score_decimals=1)  # many ties
    dets, gts = _merged(_metric(), data, CUTS).host_boxes()
    result = coco_lib.evaluate(dets, gts)
    ev = coco_eval(data)
    np.testing.assert_array_equal(result.classes, ev.params.catIds)
    np.testing.assert_allclose(result.precision, ev.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.recall, ev.eval["recall"], rtol=0, atol=1e-12)


def test_per_class_values_match_cocoeval_restricted_to_each_class():
    data = make_data(3, N)
    values = _merged(_metric(class_metrics=True), data, CUTS).compute()
    classes = np.asarray(values["classes"])
    for k, c in enumerate(classes.tolist()):
        stats = coco_eval(data, cat_ids=[c]).stats
        np.testing.assert_allclose(float(values["map_per_class"][k]), stats[0], atol=ATOL)
        np.testing.assert_allclose(float(values["mar_100_per_class"][k]), stats[8], atol=ATOL)
    _assert_stats(values, coco_eval(data).stats)


def test_class_with_detections_only_is_minus_one():
    data = make_data(4, N)
    data["pred_labels"][0, 0], data["pred_mask"][0, 0] = 9, True  # class 9 has no target
    data["pred_boxes"][0, 0] = [1, 1, 30, 30]
    values = _merged(_metric(class_metrics=True), data, CUTS).compute()
    assert int(values["classes"][-1]) == 9
    assert float(values["map_per_class"][-1]) == -1 and float(values["mar_100_per_class"][-1]) == -1
    _assert_stats(values, coco_eval(data).stats)


def test_more_than_100_detections_per_image():
    """COCOeval keeps the top 100 per image *and class*: 130 detections in 2 classes. The
    one-shot call sizes its own buffers (to this layout: the two share one compile)."""
    d = 130
    data = make_data(5, 6, d=d, t=T, classes=2, score_decimals=3)
    data["pred_mask"][:] = True
    data["pred_boxes"] = np.nan_to_num(data["pred_boxes"], nan=5.0)
    data["pred_labels"][:2] = 0  # two images with 130 detections of one class
    stats = coco_eval(data).stats
    metric = _metric(capacity=6, detections_per_image=d)
    _assert_stats(_merged(metric, data, (0, 6)).compute(), stats)
    too_small = MeanAveragePrecision(capacity=2, detections_per_image=3)
    _assert_stats(too_small(**data), stats)


def test_custom_thresholds_match_cocoeval():
    iou = (0.3, 0.5, 0.75, 0.9)
    rec = tuple(np.linspace(0, 1, 11).tolist())
    data = make_data(6, N)
    metric = _metric(iou_thresholds=iou, rec_thresholds=rec, max_detection_thresholds=(2, 5, 100))
    values = _merged(metric, data, CUTS).compute()
    ev = coco_eval(data, iouThrs=np.array(iou), recThrs=np.array(rec), maxDets=[2, 5, 100])
    actual = [float(values[k]) for k in ["map", "map_50", "map_75", "map_small", "map_medium",
                                         "map_large", "mar_2", "mar_5", "mar_100", "mar_small",
                                         "mar_medium", "mar_large"]]
    np.testing.assert_allclose(actual, ev.stats, atol=ATOL)


def test_map_uses_the_last_max_detection_setting():
    """COCOeval's summarize reads ``map`` at maxDets=100 (-1 when absent); metrix reads the
    last setting: the mean of COCOeval's defined precision entries there."""
    data = make_data(7, N)
    values = _merged(_metric(max_detection_thresholds=(1, 3, 5)), data, CUTS).compute()
    ev = coco_eval(data, maxDets=[1, 3, 5])
    p = ev.eval["precision"][:, :, :, 0, -1]
    np.testing.assert_allclose(float(values["map"]), np.mean(p[p > -1]), atol=ATOL)
    np.testing.assert_allclose(float(values["mar_5"]), ev.stats[8], atol=ATOL)


def test_target_area_and_crowd_regions():
    data = make_data(8, N)
    rng = np.random.default_rng(8)
    area = rng.uniform(10, 12000, data["target_labels"].shape).astype(np.float32)
    area[:, 0] = 0  # 0: use the box area
    area[:, 1] = -1  # so does a negative area
    data["target_area"] = area
    data["target_iscrowd"] = rng.random(area.shape) < 0.3
    values = _merged(_metric(), data, CUTS).compute()
    _assert_stats(values, coco_eval(data).stats)


def test_bf16_inputs_match_cocoeval_on_the_rounded_values():
    data = make_data(9, N)
    half = dict(data)
    for key in ("pred_boxes", "pred_scores", "target_boxes"):
        half[key] = jnp.asarray(data[key], jnp.bfloat16)
    values = _metric().get_state(**half).compute()  # one batch: bf16 compiles its own
    rounded = {k: (np.asarray(jnp.asarray(v, jnp.float32)) if k in ("pred_boxes", "pred_scores",
                                                                      "target_boxes") else v)
               for k, v in half.items()}
    _assert_stats(values, coco_eval(rounded).stats)


def test_no_detections_anywhere_gives_zero():
    data = make_data(10, N)
    data["pred_mask"][:] = False
    values = _merged(_metric(), data, CUTS).compute()
    assert float(values["map"]) == 0 and float(values["mar_100"]) == 0


def test_empty_state_is_all_minus_one():
    values = _metric(class_metrics=True).empty().compute()
    assert all(float(values[k]) == -1 for k in NAMES)
    assert values["classes"].shape == (0,)


def test_box_iou_is_pycocotools_iou():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(11)
    d = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(0, 40, (20, 2))], -1)
    g = np.concatenate([rng.uniform(0, 50, (9, 2)), rng.uniform(0, 40, (9, 2))], -1)
    crowd = rng.random(9) < 0.4
    expected = mask_utils.iou(d.tolist(), g.tolist(), crowd.astype(np.uint8).tolist())
    np.testing.assert_array_equal(coco_box_iou(d, g, crowd), expected)
    np.testing.assert_array_equal(to_xywh(_from_xywh(d, "xywh"), "xywh"), d)


# -- torchmetrics -------------------------------------------------------------------------------


def _torchmetrics_map():
    # torchvision's compiled ops do not load on this CPU torch; its pure-Python parts do.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.detection").MeanAveragePrecision


@pytest.mark.slow  # importing torchmetrics takes ~10 s here
def test_matches_torchmetrics():
    tm_map = _torchmetrics_map()
    torch = pytest.importorskip("torch")
    data = make_data(12, 16, "xywh")  # xywh: torchmetrics converts no coordinate
    tm = tm_map(box_format="xywh", class_metrics=True)
    for i in range(16):
        pm, tmask = data["pred_mask"][i], data["target_mask"][i]
        tm.update(
            [{"boxes": torch.tensor(data["pred_boxes"][i][pm]),
              "scores": torch.tensor(data["pred_scores"][i][pm]),
              "labels": torch.tensor(data["pred_labels"][i][pm]).long()}],
            [{"boxes": torch.tensor(data["target_boxes"][i][tmask]),
              "labels": torch.tensor(data["target_labels"][i][tmask]).long(),
              "iscrowd": torch.tensor(data["target_iscrowd"][i][tmask]).long()}],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        expected = tm.compute()
    values = _merged(_metric("xywh", class_metrics=True), data, (0, 5, 16)).compute()
    for key, value in values.items():
        reference = expected[key].numpy().reshape(np.shape(value))
        np.testing.assert_allclose(np.asarray(value), reference, atol=ATOL, err_msg=key)


# -- errors -------------------------------------------------------------------------------------


def test_image_overflow_raises_at_compute():
    data = make_data(13, 10)
    state = _metric(capacity=6).get_state(**data)
    with pytest.raises(mx.CapacityOverflowError, match="capacity"):
        state.compute()


def test_box_overflow_raises_eagerly_and_at_compute_under_jit():
    data = make_data(14, 6)
    data["pred_mask"][2] = True
    data["pred_boxes"] = np.nan_to_num(data["pred_boxes"], nan=1.0)
    metric = _metric(detections_per_image=D - 1)
    with pytest.raises(mx.CapacityOverflowError, match="MeanAveragePrecision.*detections_per"):
        metric.get_state(**data)
    state = jax.jit(metric.get_state)(**data)
    with pytest.raises(mx.CapacityOverflowError, match="detections_per_image"):
        state.compute()


def test_invalid_boxes_raise_naming_the_metric():
    data = make_data(15, 7)
    data["target_mask"][1, 0] = True
    data["target_boxes"][1, 0] = [10, 10, 5, 20]  # x2 < x1
    with pytest.raises(ValueError, match="MeanAveragePrecision.*negative width"):
        _metric().get_state(**data)
    data = make_data(15, 7)
    data["pred_mask"][1, 0], data["pred_scores"][1, 0] = True, np.nan
    with pytest.raises(ValueError, match="not finite"):
        _metric().get_state(**data)
    state = jax.jit(_metric().get_state)(**data)
    with pytest.raises(ValueError, match="not finite"):
        state.compute()


def test_compute_under_jit_is_refused():
    state = _metric().get_state(**make_data(16, 7))
    with pytest.raises(TypeError, match="outside jit"):
        jax.jit(lambda s: s.compute())(state)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"box_format": "yxyx"}, "box_format"),
        ({"iou_thresholds": (0.5, 1.5)}, "iou_thresholds"),
        ({"iou_thresholds": ()}, "iou_thresholds"),
        ({"rec_thresholds": "0.5"}, "rec_thresholds"),
        ({"max_detection_thresholds": (1, 10)}, "max_detection_thresholds"),
        ({"max_detection_thresholds": (1, 0, 10)}, "max_detection_thresholds"),
        ({"capacity": 0}, "capacity"),
        ({"detections_per_image": 2.5}, "detections_per_image"),
        ({"class_metrics": 1}, "class_metrics"),
    ],
)
def test_bad_options_raise_at_construction(config, match):
    with pytest.raises((ValueError, TypeError), match=f"MeanAveragePrecision.*{match}"):
        MeanAveragePrecision(**config)


def test_lists_become_tuples_and_thresholds_are_sorted():
    m = MeanAveragePrecision(iou_thresholds=[0.5, 0.75], max_detection_thresholds=[100, 1, 10])
    assert m.iou_thresholds == (0.5, 0.75) and m.max_detection_thresholds == (1, 10, 100)
    hash(m)


def test_shape_mismatch_names_the_argument():
    data = make_data(17, 7)
    data["pred_scores"] = data["pred_scores"][:, :-1]
    with pytest.raises(mx.InputTypeError, match="pred_scores"):
        _metric().get_state(**data)
