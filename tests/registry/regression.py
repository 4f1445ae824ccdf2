"""Registry examples for regression, statistics extras, image, segmentation, ranking and text."""

import numpy as np

import metrix as mx
from metrix.ranking import DCG  # until exported as mx.DCG
from metrix.segmentation import SoftDice  # until exported as mx.SoftDice
from tests.registry import Example


def _pairs(rng, n):
    targets = rng.normal(size=(n,)) * 2 + 100.0  # an offset: moments must not cancel
    preds = targets + rng.normal(size=(n,))
    return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}


def _pairs2(rng, n):
    targets = rng.normal(size=(n, 2)) * [1.0, 5.0] + 3.0
    preds = targets + rng.normal(size=(n, 2))
    return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}


def _positive_pairs(rng, n):
    targets = rng.uniform(1.0, 3.0, size=(n, 3))
    preds = targets + rng.normal(size=(n, 3)) * 0.3
    return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}


def _values(rng, n):
    return {"values": rng.uniform(size=(n, 3)).astype(np.float32)}


def _images(size, channels):
    def make(rng, n):
        targets = rng.uniform(size=(n, size, size, channels))
        preds = np.clip(targets + 0.2 * rng.normal(size=targets.shape), 0, 1)
        return {"preds": preds.astype(np.float32), "targets": targets.astype(np.float32)}

    return make


def _segmentation(rng, n):
    targets = rng.integers(0, 4, size=(n, 4, 4)).astype(np.int32)
    preds = np.where(rng.uniform(size=targets.shape) < 0.5, targets, rng.integers(0, 4, size=targets.shape))
    return {"targets": targets, "preds": preds.astype(np.int32)}


def _soft_masks(rng, n):
    preds = rng.uniform(size=(n, 4, 4))
    targets = (rng.uniform(size=(n, 4, 4)) < preds).astype(np.float32)
    return {"preds": preds.astype(np.float32), "targets": targets}


def _ranking(rng, n):
    return {
        "scores": rng.uniform(size=(n, 6)).astype(np.float32),
        "relevance": rng.integers(0, 3, size=(n, 6)).astype(np.int32),
        "item_mask": np.arange(6)[None, :] < rng.integers(2, 7, size=(n, 1)),
    }


def _tokens(rng, n):
    return {
        "logits": rng.normal(size=(n, 5, 7)).astype(np.float32),
        "labels": rng.integers(0, 7, size=(n, 5)).astype(np.int32),
    }


_PAIR = ("preds", "targets")
_MOMENTS = {"rtol": 1e-4, "atol": 1e-5}  # Chan merges in float32: splits differ by rounding
_RANKING = ("scores", "relevance", "item_mask")

EXAMPLES = [
    # regression
    Example("MSE", mx.MSE(), _pairs, _PAIR),
    Example("RMSE", mx.RMSE(), _pairs, _PAIR),
    Example("MAE", mx.MAE(), _pairs, _PAIR),
    Example("MAPE", mx.MAPE(), _positive_pairs, _PAIR),
    Example("SMAPE", mx.SMAPE(), _positive_pairs, _PAIR),
    Example("MaxError", mx.MaxError(), _pairs, _PAIR),
    Example("R2Score", mx.R2Score(), _pairs, _PAIR, **_MOMENTS),
    Example("R2Score_multi_weighted", mx.R2Score(num_outputs=2, multioutput="variance_weighted"), _pairs2, _PAIR, **_MOMENTS),
    Example("R2Score_adjusted_raw", mx.R2Score(num_outputs=2, multioutput="raw_values", adjusted=1), _pairs2, _PAIR, **_MOMENTS),
    Example("ExplainedVariance", mx.ExplainedVariance(num_outputs=2), _pairs2, _PAIR, **_MOMENTS),
    Example("PearsonCorrCoef", mx.PearsonCorrCoef(), _pairs, _PAIR, **_MOMENTS),
    Example("ConcordanceCorrCoef", mx.ConcordanceCorrCoef(num_outputs=2), _pairs2, _PAIR, **_MOMENTS),
    Example("SpearmanCorrCoef", mx.SpearmanCorrCoef(capacity=128), _pairs, _PAIR),
    Example("SpearmanCorrCoef_multi", mx.SpearmanCorrCoef(capacity=128, num_outputs=2), _pairs2, _PAIR),
    Example("CosineSimilarity", mx.CosineSimilarity(), _positive_pairs, _PAIR),
    # statistics
    Example("Norm_per_example", mx.Norm(per_example=True), _values, ("values",)),
    Example("Norm_global", mx.Norm(), _values, ("values",), split_invariant=False, mask_input=None),
    Example("Norm_rows_kauldron", mx.Norm(axis=-1), _values, ("values",)),  # mean row norm
    Example("Norm_concat", mx.Norm(axis=-1, aggregation_type="concat"), _values, ("values",)),
    Example("Histogram", mx.Histogram(num_bins=8), _values, ("values",)),
    Example("Quantiles", mx.Quantiles(quantiles=(0.1, 0.5, 0.9), num_bins=64), _values, ("values",)),
    # image (small images keep the generic tests fast; MS-SSIM with 3 scales of a 3-pixel window)
    Example("PSNR", mx.PSNR(), _images(8, 3), _PAIR),
    Example("SSIM", mx.SSIM(window_size=5, sigma=1.0), _images(8, 2), _PAIR),
    Example(
        "MultiScaleSSIM",
        mx.MultiScaleSSIM(window_size=3, sigma=0.5, betas=(0.3, 0.3, 0.4)),
        _images(12, 1),
        _PAIR,
    ),
    # segmentation
    Example("MeanIoU", mx.MeanIoU(num_classes=4), _segmentation, ("targets", "preds")),
    Example("Dice", mx.Dice(num_classes=4, ignore_index=3), _segmentation, ("targets", "preds")),
    Example(
        "MeanIoU_class_ids",
        mx.MeanIoU(num_classes=4, class_ids=(0, 2)),
        _segmentation,
        ("targets", "preds"),
    ),
    Example("SoftDice", SoftDice(), _soft_masks, ("preds", "targets")),
    # ranking
    Example("NDCG", mx.NDCG(k=3), _ranking, _RANKING),
    Example("NDCG_exponential", mx.NDCG(gain="exponential", ignore_ties=True), _ranking, _RANKING),
    Example("DCG", DCG(k=3), _ranking, _RANKING),
    Example("DCG_exponential", DCG(gain="exponential", ignore_ties=True), _ranking, _RANKING),
    Example("MRR", mx.MRR(), _ranking, _RANKING),
    Example("MAP", mx.MAP(k=4), _ranking, _RANKING),
    Example("PrecisionAtK", mx.PrecisionAtK(k=2), _ranking, _RANKING),
    Example("RecallAtK", mx.RecallAtK(k=2, skip_empty=True), _ranking, _RANKING),
    Example("HitRate", mx.HitRate(k=2), _ranking, _RANKING),
    # text
    Example("Perplexity", mx.Perplexity(), _tokens, ("logits", "labels")),
]
