"""Behaviours of the calibrax-style layers (seeds 000 and 004) that users rely on.

Expected values are written out by hand, not computed by metrix.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import metrix as mx
from metrix import stateful
from metrix.learning import ArcFaceLoss, CosFaceLoss, ProxyAnchorLoss, ProxyNCALoss
from metrix.metric_learning.miners import MinedIndices
from metrix.stateful import BERTScoreMetric, FIDMetric, InceptionScoreMetric, LPIPSMetric


def test_mined_indices_from_three_arrays_are_all_valid():
    idx = MinedIndices(jnp.array([0, 2]), jnp.array([1, 3]), jnp.array([2, 0]))
    np.testing.assert_array_equal(np.asarray(idx.valid), [True, True])
    np.testing.assert_array_equal(idx.to_numpy(), [[0, 1, 2], [2, 3, 0]])
    # Still a pytree: passes through jit with the filled-in mask.
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda i: i.valid)(idx)), [True, True])


def test_mined_indices_explicit_valid_is_kept():
    idx = MinedIndices(jnp.array([0, 2]), jnp.array([1, 3]), jnp.array([2, 0]),
                       jnp.array([True, False]))
    np.testing.assert_array_equal(idx.to_numpy(), [[0, 1, 2]])


def test_mined_indices_mismatched_lengths_name_the_class():
    with pytest.raises(ValueError, match="MinedIndices.*same shape"):
        MinedIndices(jnp.array([0, 1]), jnp.array([1]), jnp.array([2, 3]))


def test_triplet_loss_on_hand_built_indices():
    # Points on a line: 0 at 0, 1 at 1, 2 at 3, 3 at 4; labels 0,0,1,1.
    x = jnp.array([[0.0], [1.0], [3.0], [4.0]])
    labels = jnp.array([0, 0, 1, 1])
    idx = MinedIndices(jnp.array([0, 1]), jnp.array([1, 0]), jnp.array([2, 2]))
    # Triplet (0,1,2): d_ap = 1, d_an = 3 -> relu(1 - 3 + 2.5) = 0.5.
    # Triplet (1,0,2): d_ap = 1, d_an = 2 -> relu(1 - 2 + 2.5) = 1.5. Mean 1.0.
    loss = mx.TripletMarginLoss(margin=2.5)(embeddings=x, labels=labels, indices=idx)
    np.testing.assert_allclose(float(loss), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# The stateful tier classes (metrix.stateful) against calibrax 0.1.1's documented values
# ---------------------------------------------------------------------------------------

# Four corners of a square of side 2: mean (1, 1), covariance (4/3) I (ddof = 1).
SQUARE = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], np.float32)
# Scaled by 2 about its mean and moved to mean (4, 1): covariance (16/3) I.
SQUARE_SCALED = 2 * (SQUARE - 1) + np.array([4.0, 1.0], np.float32)
# FID = |(3, 0)|^2 + tr(4/3 I) + tr(16/3 I) - 2 tr sqrt(64/9 I) = 9 + 8/3 + 32/3 - 32/3.
SQUARE_FID = 9 + 8 / 3


def _lpips_features(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, c)).astype(np.float32) for c in (64, 128, 256, 512, 512)]


def _empty_values(metric):
    return {k: float(v) for k, v in metric.compute().items()}


@pytest.mark.parametrize(
    "build, feed, empty",
    [
        (lambda: FIDMetric(), lambda m: m.update(real=SQUARE, generated=SQUARE_SCALED),
         {"fid": float("inf")}),
        (lambda: FIDMetric(feature_dim=2), lambda m: m.update(real=SQUARE, generated=SQUARE),
         {"fid": float("inf")}),
        (lambda: InceptionScoreMetric(), lambda m: m.update(probabilities=np.eye(3)),
         {"inception_score": 0.0, "inception_score_std": 0.0}),
        (lambda: BERTScoreMetric(),
         lambda m: m.update(candidate_embeddings=np.eye(2), reference_embeddings=np.eye(2)),
         {"bertscore_f1": 0.0, "bertscore_precision": 0.0, "bertscore_recall": 0.0}),
        (lambda: LPIPSMetric(calibration="random", rngs=nnx.Rngs(0)),
         lambda m: m.update(features_a=_lpips_features(2, 1), features_b=_lpips_features(2, 2)),
         {"lpips": 0.0}),
    ],
    ids=["fid-inferred", "fid-explicit", "inception-score", "bertscore", "lpips"],
)
def test_empty_compute_is_the_seed_value_before_update_and_after_reset(build, feed, empty):
    metric = build()
    assert _empty_values(metric) == empty  # before any update
    feed(metric)
    assert _empty_values(metric) != empty
    metric.reset()
    assert _empty_values(metric) == empty  # after reset: the same


def test_fid_one_empty_side_is_inf_as_the_seed_library():
    fid = FIDMetric()
    fid.update(real=SQUARE)
    assert float(fid.compute()["fid"]) == float("inf")
    fid.update(generated=SQUARE_SCALED)
    np.testing.assert_allclose(float(fid.compute()["fid"]), SQUARE_FID, rtol=1e-6)


def test_fid_infers_feature_dim_from_the_first_batch_and_merges_batches():
    fid = FIDMetric()
    assert fid.feature_dim is None
    fid.update(real=SQUARE[:1], generated=SQUARE_SCALED[:3])
    assert fid.feature_dim == 2
    fid.update(real=SQUARE[1:], generated=SQUARE_SCALED[3:])
    np.testing.assert_allclose(float(fid.compute()["fid"]), SQUARE_FID, rtol=1e-6)


def test_fid_inferred_or_explicit_mismatch_names_the_metric_and_the_dims():
    fid = FIDMetric()
    fid.update(real=SQUARE, generated=SQUARE)
    with pytest.raises(ValueError, match=r"FIDMetric: real features have 3 dimensions but "
                                         r"feature_dim=2 \(inferred from the first batch\)"):
        fid.update(real=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="FIDMetric: generated features have 2 dimensions but "
                                         "feature_dim=4; .* FIDMetric\\(feature_dim=2\\)"):
        FIDMetric(feature_dim=4).update(generated=SQUARE)


def test_fid_first_batch_refused_whole_does_not_fix_the_width():
    fid = FIDMetric()
    with pytest.raises(ValueError, match="generated features have 3 dimensions but feature_dim=2"):
        fid.update(real=SQUARE, generated=np.ones((4, 3), np.float32))
    assert fid.feature_dim is None
    fid.update(real=np.ones((4, 3), np.float32))  # a new first batch decides
    assert fid.feature_dim == 3


def test_fid_reset_forgets_an_inferred_width_but_keeps_a_given_one():
    inferred, given = FIDMetric(), FIDMetric(feature_dim=2)
    for fid in (inferred, given):
        fid.update(real=SQUARE, generated=SQUARE)
        fid.reset()
    assert inferred.feature_dim is None and given.feature_dim == 2
    inferred.update(real=np.ones((2, 5), np.float32))  # a new evaluation of another width
    assert inferred.feature_dim == 5
    with pytest.raises(ValueError, match="feature_dim=2"):
        given.update(real=np.ones((2, 5), np.float32))


def test_inferred_fid_takes_the_width_of_a_merged_state():
    a, b = FIDMetric(), FIDMetric()
    b.update(real=SQUARE, generated=SQUARE_SCALED)
    a.merge(b.state)  # e.g. a state restored from another host
    assert a.feature_dim == 2
    np.testing.assert_allclose(float(a.compute()["fid"]), SQUARE_FID, rtol=1e-6)
    c = InceptionScoreMetric()
    c.update(probabilities=np.eye(3))
    with pytest.raises(TypeError, match="fid: can only take the state of a FID"):
        FIDMetric().merge(c.state)


def test_inception_score_of_confident_diverse_rows_is_the_class_count():
    # One-hot rows over 3 classes: p(y) uniform, each KL = log 3, IS = exp(log 3) = 3.
    metric = InceptionScoreMetric()
    metric.update(probabilities=np.eye(3)[:2])
    metric.update(probabilities=np.eye(3)[2:])
    np.testing.assert_allclose(float(metric.compute()["inception_score"]), 3.0, rtol=1e-6)


def test_lpips_empty_value_under_nnx_jit():
    metric = LPIPSMetric(calibration="random", rngs=nnx.Rngs(0))
    compute = nnx.jit(lambda m: m.compute()["lpips"])
    assert float(compute(metric)) == 0.0
    metric.update(features_a=_lpips_features(2, 1), features_b=_lpips_features(2, 2))
    assert float(compute(metric)) > 0.0


def _lpips_pth_weights(net):
    path = stateful.lpips_core.find_lpips_calibration_file(net)
    if path is None:
        pytest.skip("lpips package not installed")
    torch = pytest.importorskip("torch")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [state[f"lin{k}.model.1.weight"].numpy().reshape(-1) for k in range(5)]


def test_lpips_default_calibration_is_the_lpips_package_weights():
    expected = _lpips_pth_weights("vgg")  # read with torch itself, not metrix's loader
    metric = LPIPSMetric(rngs=nnx.Rngs(0))
    for k, w in enumerate(expected):
        np.testing.assert_array_equal(np.asarray(metric.calibration()[f"lin{k}"]), w)
    # The seed library's attribute: one weight per VGG layer.
    assert [p[...].shape for p in metric._layer_weights] == [(64,), (128,), (256,), (512,), (512,)]


def test_lpips_without_the_weights_warns_naming_the_package_and_stays_random(monkeypatch):
    monkeypatch.setattr(stateful.lpips_core, "find_lpips_calibration_file", lambda net: None)
    with pytest.warns(
        UserWarning, match=r"LPIPSMetric\('vgg'\): the lpips package .*pip install lpips"
    ) as record:
        metric = LPIPSMetric(rngs=nnx.Rngs(0))
    assert record[0].filename == __file__  # reported at the user's line, not inside flax
    for w, c in zip(metric._layer_weights, (64, 128, 256, 512, 512)):
        assert 0.0 <= float(w[...].min()) and float(w[...].max()) <= 1 / np.sqrt(c)
    # calibration="random" is the same draw, asked for: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        random = LPIPSMetric(calibration="random", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(np.asarray(random.lin0[...]), np.asarray(metric.lin0[...]))


def test_lpips_explicit_lpips_calibration_without_the_package_is_an_error(monkeypatch):
    monkeypatch.setattr(stateful.lpips_core, "find_lpips_calibration_file", lambda net: None)
    monkeypatch.setattr(
        "metrix.backbones.lpips_nets.find_lpips_calibration_file", lambda net, version="0.1": None
    )
    with pytest.raises(FileNotFoundError, match="pip install lpips"):
        LPIPSMetric(calibration="lpips", rngs=nnx.Rngs(0))


def test_weighted_losses_expose_the_seed_attribute_names():
    for cls in (ProxyNCALoss, ProxyAnchorLoss):
        loss = cls(num_classes=5, embedding_dim=8, rngs=nnx.Rngs(0))
        assert loss._proxies is loss.proxies and loss._proxies[...].shape == (5, 8)
    for cls in (ArcFaceLoss, CosFaceLoss):
        loss = cls(num_classes=5, embedding_dim=8, rngs=nnx.Rngs(0))
        assert loss._weight is loss.weights and loss._weight[...].shape == (8, 5)


def test_tier_one_compute_under_jit_gives_the_same_empty_and_full_values():
    fid_metric = FIDMetric(feature_dim=2).metric

    def fid_of(state):
        fid = FIDMetric(feature_dim=2)
        fid.state = state
        return fid.compute()["fid"]

    assert float(jax.jit(fid_of)(fid_metric.empty())) == float("inf")
    full = fid_metric.get_state(real=SQUARE, generated=SQUARE_SCALED)
    np.testing.assert_allclose(float(jax.jit(fid_of)(full)), SQUARE_FID, rtol=1e-6)

    bertscore = BERTScoreMetric()  # its empty() state is a BERTScoreSums

    def bertscore_of(state):
        bertscore.state = state
        return bertscore.compute()["bertscore_f1"]

    assert float(jax.jit(bertscore_of)(bertscore.metric.empty())) == 0.0
