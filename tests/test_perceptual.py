"""LPIPS metrics without torch: closed forms, state algebra details, weights, errors.

Parity with the ``lpips`` package is in ``tests/reference/test_lpips_metric.py``; the
generic algebra (splits, associativity, jit, masks, 8 devices) runs on the registry examples.
Expected values here are closed forms (numpy float64 transcriptions of Zhang et al.'s formula,
zero for identical images, linearity in the calibration).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metrix.backbones import weights as weight_io
from metrix.backbones.lpips_nets import params_shapes
from metrix.backbones.weights import MissingWeightsError
from metrix.core.buffers import CapacityOverflowError
from metrix.core.typecheck import InputTypeError
from metrix.perceptual import lpips as lpips_module
from metrix.perceptual import lpips_math as lpips_core
from metrix.perceptual.lpips import (
    LPIPS,
    LPIPSFromFeatures,
    LPIPSState,
    LpipsVgg,
    LPIPSWithDistances,
)

SIZE = 32
CHANNELS = (4, 6, 3)


def _numpy_lpips(feats_a, feats_b, weights):
    """sum_l mean_hw sum_c w_lc (u - v)^2 with u = f / (||f||_c + 1e-10), in float64."""
    total = 0.0
    for fa, fb, w in zip(feats_a, feats_b, weights):
        fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
        ua = fa / (np.sqrt((fa**2).sum(-1, keepdims=True)) + 1e-10)
        ub = fb / (np.sqrt((fb**2).sum(-1, keepdims=True)) + 1e-10)
        total = total + ((ua - ub) ** 2 @ np.asarray(w, np.float64)).mean(axis=(1, 2))
    return total


def _features(seed, n, spatial=(3, 4)):
    rng = np.random.default_rng(seed)
    return [np.maximum(rng.normal(size=(n, *spatial, c)), 0).astype(np.float32) for c in CHANNELS]


def _weights():
    return {
        f"lin{k}": np.linspace(0.0, 1.0, c, dtype=np.float32) + k for k, c in enumerate(CHANNELS)
    }


def _alex():
    rng = np.random.default_rng(0)
    backbone = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), params_shapes("alex")
    )
    calibration = {
        f"lin{k}": rng.uniform(0, 1, c).astype(np.float32)
        for k, c in enumerate(lpips_core.LPIPS_CHANNELS["alex"])
    }
    return backbone, calibration


def _images(seed, n):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)


# ------------------------------------------------------------------------------ features


def test_from_features_merged_masked_equals_closed_form():
    fa, fb = _features(0, 7), _features(1, 7)
    weights = _weights()
    keep = np.array([1, 1, 0, 1, 0, 1, 1], bool)
    fa[0][2] = np.nan  # a masked-out pair, even NaN, changes nothing
    expected = _numpy_lpips(fa, fb, [weights[f"lin{k}"] for k in range(3)])[keep]
    metric = LPIPSFromFeatures(capacity=8)
    cuts = [(0, 3), (3, 4), (4, 7)]
    states = [
        metric.get_state([f[i:j] for f in fa], [f[i:j] for f in fb], weights, mask=keep[i:j])
        for i, j in cuts
    ]
    out = states[0].merge(states[1]).merge(states[2]).compute()
    np.testing.assert_allclose(np.asarray(out["per_image"][: keep.sum()]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(out["lpips"]), expected.mean(), rtol=1e-5)
    assert np.isnan(np.asarray(out["per_image"][keep.sum() :])).all()


def test_from_features_spatial_is_the_mean_of_the_map():
    """All layers at the output size: the map's per-pixel sum has the scalar distance as mean."""
    fa, fb = _features(2, 3), _features(3, 3)
    weights = [np.ones(c, np.float32) for c in CHANNELS]  # a list of weights works too
    expected = _numpy_lpips(fa, fb, weights)
    spatial = LPIPSFromFeatures(spatial=True, capacity=3).get_state(fa, fb, weights).compute()
    np.testing.assert_allclose(np.asarray(spatial["per_image"]), expected, rtol=1e-5)
    # and the maps themselves are available from distances()
    maps = LPIPSFromFeatures(spatial=True).distances(fa, fb, weights)
    assert maps.shape == (3, 3, 4)


def test_grad_wrt_calibration_closed_form():
    """mean_n d_n is linear in w: its gradient is mean_n mean_hw (u - v)^2 per layer and channel."""
    fa, fb = _features(4, 5), _features(5, 5)
    metric = LPIPSFromFeatures()
    calibration = jax.tree_util.tree_map(jnp.asarray, _weights())
    grads = jax.jit(jax.grad(lambda cal: metric.get_state(fa, fb, cal).compute()))(calibration)
    for k, (a, b) in enumerate(zip(fa, fb)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        ua = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + 1e-10)
        ub = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + 1e-10)
        expected = ((ua - ub) ** 2).mean(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(np.asarray(grads[f"lin{k}"]), expected, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------ images


def test_identical_images_have_zero_distance():
    backbone, calibration = _alex()
    a = _images(0, 2)
    # both batches run as one batch of 2N: the conv may round a copy at another batch
    # position differently in the last bit, hence ~1e-15 rather than exactly 0 (values ~1)
    assert abs(float(LPIPS(net="alex")(a, a, backbone, calibration))) < 1e-9


def test_grad_through_metric_is_linear_in_calibration_and_jit_does_not_retrace():
    backbone, calibration = _alex()
    a, b = _images(1, 3), _images(2, 3)
    metric = LPIPS(net="alex")
    value_and_grad = jax.jit(
        jax.value_and_grad(lambda cal: metric.get_state(a, b, backbone, cal).compute())
    )
    cal = jax.device_put(calibration)
    value, grads = value_and_grad(cal)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    # d(w) = <grad_w d, w> since d is linear in w
    dot = sum(float(jnp.vdot(grads[k], cal[k])) for k in cal)
    np.testing.assert_allclose(dot, float(value), rtol=1e-5)
    # new calibration values reuse the compiled program (weights are inputs, not constants)
    before = value_and_grad._cache_size()
    value_and_grad(jax.tree_util.tree_map(lambda w: 2 * w, cal))
    assert value_and_grad._cache_size() == before


def test_empty_state_matches_real_state_and_is_identity():
    backbone, calibration = _alex()
    a, b = _images(3, 2), _images(4, 2)
    for metric, state_cls in ((LPIPS(), LPIPSState), (LPIPS(capacity=4), LPIPSWithDistances)):
        real = metric.get_state(a, b, backbone, calibration)
        empty = metric.empty()
        assert isinstance(real, state_cls) and isinstance(empty, state_cls)
        assert jax.tree.structure(empty) == jax.tree.structure(real)
        for x, y in zip(jax.tree.leaves(empty), jax.tree.leaves(real)):
            assert x.shape == y.shape and x.dtype == y.dtype
        merged = jax.tree.map(np.asarray, empty.merge(real).compute())
        direct = jax.tree.map(np.asarray, real.compute())
        for x, y in zip(jax.tree.leaves(merged), jax.tree.leaves(direct)):
            np.testing.assert_array_equal(x, y)
    assert np.isnan(float(LPIPS().empty().compute()))


def test_capacity_overflow_is_reported():
    fa, fb = _features(6, 3), _features(7, 3)
    metric = LPIPSFromFeatures(capacity=2)
    state = metric.get_state(fa, fb, _weights())
    with pytest.raises(CapacityOverflowError, match="capacity"):
        state.compute()
    jitted = jax.jit(lambda s: s.compute())(state)
    assert np.isnan(np.asarray(jitted["per_image"])).all()
    assert np.isfinite(float(jitted["lpips"]))  # the mean itself is exact


def test_keys_read_inputs_from_a_context():
    backbone, calibration = _alex()
    a, b = _images(5, 2), _images(6, 2)
    metric = LPIPS(
        img_a="batch.image",
        img_b="preds.image",
        backbone_params="params.lpips.backbone",
        calibration="params.lpips.calibration",
        mask="batch.valid",
    )
    context = {
        "batch": {"image": a, "valid": np.array([True, False])},
        "preds": {"image": b},
        "params": {"lpips": {"backbone": backbone, "calibration": calibration}},
    }
    got = metric.get_state_from_context(context).compute()
    first = LPIPS()(a[:1], b[:1], backbone, calibration)
    np.testing.assert_allclose(float(got), float(first), rtol=1e-6)


# ------------------------------------------------------------------------------ weights


def test_load_weights_from_converted_files(tmp_path):
    backbone, calibration = _alex()
    weight_io.save(backbone, tmp_path / "alex.npz")
    lpips_core.save_calibration(calibration, tmp_path / "cal.npz")
    weights = LPIPS(net="alex").load_weights(
        backbone_path=tmp_path / "alex.npz", calibration_path=tmp_path / "cal.npz"
    )
    assert set(weights) == {"backbone_params", "calibration"}
    assert all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(weights))
    for key, value in calibration.items():
        np.testing.assert_array_equal(np.asarray(weights["calibration"][key]), value)
    np.testing.assert_array_equal(
        np.asarray(weights["backbone_params"]["features_0"]["kernel"]),
        backbone["features_0"]["kernel"],
    )
    a = _images(7, 1)
    assert abs(float(LPIPS(net="alex")(a, a, **weights))) < 1e-9
    only_cal = LPIPSFromFeatures(net="alex").load_weights(calibration_path=tmp_path / "cal.npz")
    assert set(only_cal) == {"calibration"}


def test_missing_backbone_file_says_how_to_make_it(tmp_path):
    target = tmp_path / "alex.safetensors"
    with pytest.raises(MissingWeightsError) as info:
        LPIPS(net="alex").load_weights(backbone_path=target, calibration_path=tmp_path / "cal.npz")
    message = str(info.value)
    assert (
        str(target) in message and "python -m metrix.backbones.lpips_nets convert alex" in message
    )


def test_default_calibration_is_the_lpips_package_file(tmp_path):
    if lpips_core.find_lpips_calibration_file("vgg") is None:
        pytest.skip("lpips is not installed")
    pytest.importorskip("torch")  # reading the shipped .pth needs torch
    backbone = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.float32), params_shapes("vgg"))
    weight_io.save(backbone, tmp_path / "vgg.npz")
    weights = LPIPS(net="vgg").load_weights(backbone_path=tmp_path / "vgg.npz")
    shipped = lpips_core.load_calibration("vgg", lpips_core.find_lpips_calibration_file("vgg"))
    for key, value in shipped.items():
        np.testing.assert_array_equal(np.asarray(weights["calibration"][key]), value)
    assert os.path.basename(lpips_core.find_lpips_calibration_file("vgg")) == "vgg.pth"


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"net": "resnet"}, ValueError, "unknown net"),
        ({"version": "0.0"}, ValueError, "version"),
        ({"capacity": 0}, ValueError, "capacity"),
        ({"spatial": "yes"}, TypeError, "spatial"),
    ],
)
def test_bad_config(kwargs, error, match):
    with pytest.raises(error, match=match):
        LPIPS(**kwargs)
    if "net" not in kwargs:
        with pytest.raises(error, match=match):
            LPIPSFromFeatures(**kwargs)


def test_bad_inputs_fail_with_clear_errors():
    backbone, calibration = _alex()
    a = _images(8, 2)
    with pytest.raises(InputTypeError, match="img_b"):
        LPIPS().get_state(a, a[:, :16], backbone, calibration)
    with pytest.raises(InputTypeError, match="img_a"):
        LPIPS().get_state(a[..., :2], a[..., :2], backbone, calibration)
    with pytest.raises(ValueError, match="lin4"):
        LPIPS().get_state(a, a, backbone, {k: v for k, v in calibration.items() if k != "lin4"})
    with pytest.raises(TypeError, match="calibration must be"):
        LPIPS().get_state(a, a, backbone, 1.0)
    fa = _features(9, 2)
    with pytest.raises(TypeError, match="sequences"):
        LPIPSFromFeatures().get_state(np.stack([f[..., :3] for f in fa], 1), fa, _weights())
    with pytest.raises(ValueError, match="channels"):
        LPIPSFromFeatures(net="alex").get_state(fa, fa, _weights())
    with pytest.raises(ValueError, match="layers"):
        LPIPSFromFeatures().get_state(fa, fa, [np.ones(4)])
    with pytest.raises(ValueError, match="set net="):
        LPIPSFromFeatures().load_weights()


# ------------------------------------------------------------------------------ Kauldron-style use


def _alex_dir(tmp_path):
    """A weights folder as default_weights_dir() expects it (random alex weights)."""
    backbone, calibration = _alex()
    weight_io.save(backbone, tmp_path / "alex.safetensors")
    lpips_core.save_calibration(calibration, tmp_path / "alex_calibration.safetensors")
    return backbone, calibration


def test_pred_and_target_are_other_names_for_the_images():
    backbone, calibration = _alex()
    a, b = _images(10, 2), _images(11, 2)
    by_name = LPIPS(pred="p", target="t", backbone_params="w.b", calibration="w.c")
    context = {"p": a, "t": b, "w": {"b": backbone, "c": calibration}}
    expected = float(LPIPS()(a, b, backbone, calibration))
    assert float(by_name.get_state_from_context(context).compute()) == pytest.approx(expected)
    keyword = LPIPS().get_state(pred=a, target=b, backbone_params=backbone, calibration=calibration)
    assert float(keyword.compute()) == pytest.approx(expected)
    assert abs(float(LPIPS()(pred=a, target=a, backbone_params=backbone, calibration=calibration))) < 1e-9
    with pytest.raises(ValueError, match="another name"):
        LPIPS(img_a="x", pred="p").get_state_from_context({"x": a, "p": a})


def test_single_images_and_extra_batch_axes_are_pairs():
    backbone, calibration = _alex()
    a, b = _images(12, 4), _images(13, 4)
    metric = LPIPS()
    per_pair = metric.distances(a, b, backbone, calibration)
    assert per_pair.shape == (4,)
    single = metric.distances(a[0], b[0], backbone, calibration)
    assert single.shape == ()
    np.testing.assert_allclose(float(single), float(per_pair[0]), rtol=1e-5)
    grid = metric.distances(a.reshape(2, 2, SIZE, SIZE, 3), b.reshape(2, 2, SIZE, SIZE, 3),
                            backbone, calibration)
    np.testing.assert_allclose(np.asarray(grid).reshape(-1), np.asarray(per_pair), rtol=1e-5)
    # Kauldron's (*b, 1) mask and a (*b,) mask keep the same pairs: the mean of pairs 0 and 2.
    keep = np.array([True, False, True, False])
    want = (float(per_pair[0]) + float(per_pair[2])) / 2
    for mask in (keep, keep[:, None]):
        got = metric.get_state(a, b, backbone, calibration, mask=mask).compute()
        assert float(got) == pytest.approx(want, rel=1e-5)
    with pytest.raises(InputTypeError, match="mask"):
        metric.get_state(a, b, backbone, calibration, mask=keep[:3])


def test_weights_left_out_are_read_from_the_default_folder(tmp_path, monkeypatch):
    backbone, calibration = _alex_dir(tmp_path)
    monkeypatch.setenv("METRIX_LPIPS_WEIGHTS", str(tmp_path))
    assert lpips_module.default_weights_dir() == str(tmp_path)
    a, b = _images(14, 2), _images(15, 2)
    expected = float(LPIPS()(a, b, backbone, calibration))
    assert float(LPIPS()(a, b)) == pytest.approx(expected, rel=1e-6)
    # Only the calibration given: the backbone still comes from the folder.
    scaled = {k: 2 * v for k, v in calibration.items()}
    assert float(LPIPS()(a, b, calibration=scaled)) == pytest.approx(2 * expected, rel=1e-5)


def test_default_weights_under_jit(tmp_path, monkeypatch):
    backbone, calibration = _alex_dir(tmp_path)
    monkeypatch.setenv("METRIX_LPIPS_WEIGHTS", str(tmp_path))
    a, b = _images(18, 1), _images(19, 1)
    expected = float(LPIPS()(a, b, backbone, calibration))  # explicit: the folder is not read
    # The folder is first read under jit, while tracing (constants of that program).
    jitted = jax.jit(lambda x, y: LPIPS().get_state(x, y).compute())(a, b)
    assert float(jitted) == pytest.approx(expected, rel=1e-5)
    # The weights read while tracing are cached as arrays, never as leaked tracers.
    assert float(LPIPS()(a, b)) == pytest.approx(expected, rel=1e-5)


def test_missing_default_weights_are_a_file_not_found_error_saying_what_to_run(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("METRIX_LPIPS_WEIGHTS", str(tmp_path / "none"))
    a = _images(16, 1)
    with pytest.raises(FileNotFoundError) as info:
        LPIPS().get_state(a, a)
    message = str(info.value)
    assert isinstance(info.value, MissingWeightsError)
    assert "`LPIPS` requires" in message
    assert str(tmp_path / "none" / "alex.safetensors") in message
    assert "python -m metrix.backbones.lpips_nets convert alex" in message


@pytest.fixture(scope="module")
def vgg_case():
    """Random VGG weights and two [0, 1] image pairs of 16x16 (the smallest VGG input)."""
    rng = np.random.default_rng(17)
    backbone = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), params_shapes("vgg")
    )
    calibration = {
        f"lin{k}": rng.uniform(0, 1, c).astype(np.float32)
        for k, c in enumerate(lpips_core.LPIPS_CHANNELS["vgg"])
    }
    x = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    y = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    return backbone, calibration, x, y


def test_lpips_vgg_is_vgg_on_images_in_in_vrange(vgg_case):
    backbone, calibration, x, y = vgg_case
    want = float(LPIPS(net="vgg", normalize=True)(x, y, backbone, calibration))
    assert want > 0
    got = LpipsVgg()(pred=x, target=y, backbone_params=backbone, calibration=calibration)
    assert float(got) == pytest.approx(want, rel=1e-5)
    # The same images as 0..255 pixels: in_vrange maps them back to [0, 1].
    in_255 = LpipsVgg(in_vrange=(0, 255))(255 * x, 255 * y, backbone, calibration)
    assert float(in_255) == pytest.approx(want, rel=1e-4)
    assert abs(float(LpipsVgg()(x, x, backbone, calibration))) < 1e-9
    with pytest.raises(ValueError, match="in_vrange"):
        LpipsVgg()(255 * x, y, backbone, calibration)


def test_lpips_vgg_float_masks_are_weights(vgg_case):
    # A float mask weighs the pairs in LpipsVgg (Kauldron's AverageState); in LPIPS a mask
    # selects, so a fractional one is refused.
    backbone, calibration, x, y = vgg_case
    d0, d1 = (float(v) for v in LpipsVgg().distances(x, y, backbone, calibration))
    weights = np.array([[0.25], [0.75]], np.float32)
    weighted = LpipsVgg()(x, y, backbone, calibration, mask=weights)
    assert float(weighted) == pytest.approx(0.25 * d0 + 0.75 * d1, rel=1e-5)
    with pytest.raises(ValueError, match="mask"):
        LPIPS(net="vgg", normalize=True)(x, y, backbone, calibration, mask=weights)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"in_vrange": (1.0, 0.0)}, "low < high"), ({"normalize": False}, "in_vrange"),
     ({"net": "alex"}, "VGG only")],
)
def test_lpips_vgg_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LpipsVgg(**kwargs)
