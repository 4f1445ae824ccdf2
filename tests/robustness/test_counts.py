"""Counts inside one batch are exact past 2^24 (int32 or double-float reductions)."""

import numpy as np
import pytest

import metrix as mx
from metrix.core import numerics

N = 2**24 + 8  # a float32 count stops at 2^24 = 16,777,216

pytestmark = pytest.mark.slow  # each case reduces 16.8M elements (about a second each)


@pytest.fixture(scope="module")
def ones():
    return np.ones(N, bool)


def test_confusion_matrix(ones):
    state = mx.ConfusionMatrix(task="binary").get_state(preds=ones, labels=ones)
    assert state.counts_host().tolist() == [[0, 0], [0, N]]


def test_histogram():
    state = mx.Histogram(num_bins=2).get_state(values=np.zeros(N, np.int8))
    assert [numerics.df_to_python(c) for c in state.counts] == [N, 0]


def test_binned_roc_auc_counts(ones):
    state = mx.RocAuc(task="binary", thresholds=4).get_state(
        preds=np.full(N, 0.7, np.float32), labels=ones
    )
    assert sum(numerics.df_to_python(c) for c in state.positives[0]) == N


def test_binary_accuracy(ones):
    state = mx.BinaryAccuracy().get_state(preds=ones, labels=ones)
    assert state.exact_count == N and numerics.df_to_python(state.total) == N


def test_average_and_sum_of_int8_ones():
    ones8 = np.ones(N, np.int8)
    assert mx.Average().get_state(values=ones8).exact_count == N
    assert numerics.df_to_python(mx.Sum().get_state(values=ones8).total) == N


def test_mean_iou_confusion():
    ones8 = np.ones(N, np.int8)
    state = mx.MeanIoU(num_classes=2).get_state(targets=ones8, preds=ones8)
    assert numerics.df_to_python(state.confusion[1, 1]) == N


def test_expected_calibration_error_bin_counts(ones):
    state = mx.ExpectedCalibrationError(num_bins=2).get_state(
        preds=np.full(N, 0.75, np.float32), labels=ones
    )
    assert numerics.df_to_python(state.count[1]) == N


def test_std_count():
    assert numerics.df_to_python(mx.Std().get_state(values=np.zeros(N, np.int8)).count) == N
