"""LPIPS pure functions against the ``lpips`` package, and closed forms.

Parity: ``lpips.LPIPS(net, pretrained=True, pnet_rand=True, version="0.1")`` has a random
torchvision trunk (no download) and the real calibration shipped in the lpips package. Its
state dict goes through metrix's converter; metrix reads the calibration through
:func:`load_calibration`. Distances are compared for alex, vgg and squeeze, two image sizes,
``spatial`` off and on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metrix.backbones import xla_cpu
from metrix.backbones.weights import MissingWeightsError
from metrix.perceptual import lpips_math as lpips_core
from tests import torch_references

# Absolute tolerance on distances (float32 on both sides; measured <= 8e-7, values ~0.1-0.5).
ATOL = 1e-5


def _lpips():
    torch = pytest.importorskip("torch")
    torch_references.enable()  # torchvision's compiled ops do not load on the CPU torch
    pytest.importorskip("torchvision")
    return torch, pytest.importorskip("lpips")


_MODELS: dict[str, object] = {}


def _lpips_model(net: str, monkeypatch=None):
    """lpips model with a random trunk and the shipped calibration; downloads are forbidden."""
    torch, lpips = _lpips()
    if net not in _MODELS:

        def no_download(*args, **kwargs):
            raise AssertionError(f"lpips tried to download: {args}")

        saved = torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file
        torch.hub.load_state_dict_from_url = torch.hub.download_url_to_file = no_download
        try:
            torch.manual_seed(0)
            _MODELS[net] = lpips.LPIPS(
                net=net, pretrained=True, pnet_rand=True, version="0.1", verbose=False
            )
        finally:
            torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file = saved
    return _MODELS[net]


def _nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


_features = jax.jit(lpips_core.lpips_features, static_argnames=("net", "normalize"))


@pytest.mark.parametrize(
    "net,size",
    [
        ("alex", (64, 64)),
        ("alex", (100, 120)),
        ("vgg", (64, 64)),
        ("vgg", (100, 120)),
        ("squeeze", (64, 64)),
        ("squeeze", (100, 120)),
    ],
)
def test_distance_matches_lpips_package(net, size):
    torch, _ = _lpips()
    from metrix.backbones.lpips_nets import convert_torchvision_state_dict

    model = _lpips_model(net)
    backbone = convert_torchvision_state_dict(net, model.state_dict())  # lpips' net.sliceK naming
    calibration = lpips_core.load_calibration(net)
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(2, 3, *size, generator=gen) * 2 - 1
    b = torch.rand(2, 3, *size, generator=gen) * 2 - 1
    # one backbone pass (one compile) for both spatial modes; lpips_distance is the same
    # composition and is checked end to end in test_normalize_option_and_jit_match_lpips
    taps = _features(backbone, np.concatenate([_nhwc(a), _nhwc(b)]), net=net)
    taps_a, taps_b = [t[:2] for t in taps], [t[2:] for t in taps]
    for spatial in (False, True):
        model.spatial = spatial
        with torch.no_grad():
            expected = model(a, b).numpy()
        got = _from_features(taps_a, taps_b, calibration, spatial=spatial, image_size=size)
        expected = expected[:, 0] if spatial else expected.reshape(-1)
        assert got.shape == expected.shape
        np.testing.assert_allclose(np.asarray(got), expected, atol=ATOL, rtol=0)
    model.spatial = False


def test_normalize_option_and_jit_match_lpips():
    torch, _ = _lpips()
    from metrix.backbones.lpips_nets import convert_torchvision_state_dict

    model = _lpips_model("alex")
    backbone = convert_torchvision_state_dict("alex", model.state_dict())
    calibration = lpips_core.load_calibration("alex")
    gen = torch.Generator().manual_seed(3)
    a, b = (
        torch.rand(3, 3, 64, 72, generator=gen),
        torch.rand(3, 3, 64, 72, generator=gen),
    )  # [0, 1]
    jitted = jax.jit(lpips_core.lpips_distance, static_argnames=("net", "spatial", "normalize"))
    for spatial in (False, True):
        model.spatial = spatial
        with torch.no_grad():
            expected = model(a, b, normalize=True).numpy()
        expected = expected[:, 0] if spatial else expected.reshape(-1)
        got = jitted(
            backbone, calibration, _nhwc(a), _nhwc(b), net="alex", spatial=spatial, normalize=True
        )
        np.testing.assert_allclose(np.asarray(got), expected, atol=ATOL, rtol=0)
    model.spatial = False


@pytest.mark.parametrize("net,size", [("alex", (64, 64)), ("vgg", (32, 40))])
def test_compiled_distance_matches_lpips_and_the_inlined_jit(net, size):
    """compiled_lpips_distance: CPU compiler options eagerly, a plain inlined jit under a trace."""
    torch, _ = _lpips()
    from metrix.backbones.lpips_nets import convert_torchvision_state_dict

    model = _lpips_model(net)
    backbone = jax.device_put(convert_torchvision_state_dict(net, model.state_dict()))
    calibration = jax.device_put(lpips_core.load_calibration(net))
    gen = torch.Generator().manual_seed(4)
    a = torch.rand(3, 3, *size, generator=gen) * 2 - 1
    b = torch.rand(3, 3, *size, generator=gen) * 2 - 1
    with torch.no_grad():
        expected = model(a, b).numpy().reshape(-1)
    args = (backbone, calibration, jnp.asarray(_nhwc(a)), jnp.asarray(_nhwc(b)))
    eager = lpips_core.compiled_lpips_distance(*args, net=net)
    np.testing.assert_allclose(np.asarray(eager), expected, atol=ATOL, rtol=0)
    tuned = lpips_core._DISTANCE[net].tuned
    options = lpips_core.LPIPS_CPU_COMPILER_OPTIONS[net]
    if jax.default_backend() == "cpu" and options:
        if xla_cpu.options_supported(frozenset(options.items())):
            assert tuned._cache_size() > 0  # eager calls took the tuned program
    # inside a user's jit (JAX rejects compiler options on nested jits: this must not raise)
    traced = jax.jit(lambda *xs: lpips_core.compiled_lpips_distance(*xs, net=net))(*args)
    # other convolution kernels, the same maths: the same distances to float32 rounding
    np.testing.assert_allclose(np.asarray(eager), np.asarray(traced), atol=1e-6, rtol=0)


def test_cpu_jit_options_keep_convolutions_off_ynnpack():
    """What LPIPS_CPU_COMPILER_OPTIONS is for (checked where this jaxlib knows the option)."""
    options = lpips_core.LPIPS_CPU_COMPILER_OPTIONS["vgg"]
    if jax.default_backend() != "cpu" or not xla_cpu.options_supported(
        frozenset(options.items())
    ):
        pytest.skip("the options apply to XLA:CPU builds that know them")

    def conv(x, w):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)

    x, w = jnp.ones((2, 8, 8, 32)), jnp.ones((3, 3, 32, 32))
    compiled = xla_cpu.cpu_jit(conv, options)
    hlo = compiled.tuned.lower(x, w).compile().as_text().lower()
    assert "convolution(" in hlo and "ynn_fusion" not in hlo
    np.testing.assert_array_equal(np.asarray(compiled(x, w)), np.asarray(jax.jit(conv)(x, w)))


def test_lpips_loads_shipped_calibration_without_network():
    """pretrained=True reads weights/v0.1/NET.pth from the lpips package dir (no download)."""
    torch, lpips = _lpips()
    model = _lpips_model("alex")  # built with downloads forbidden
    path = lpips_core.find_lpips_calibration_file("alex")
    assert os.path.dirname(os.path.dirname(os.path.dirname(path))) == os.path.dirname(
        lpips.__file__
    )
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    np.testing.assert_array_equal(
        model.lin0.model[1].weight.detach().numpy(), shipped["lin0.model.1.weight"].numpy()
    )


def test_find_calibration_file_does_not_import_lpips_or_torch():
    pytest.importorskip("lpips")
    code = (
        "import sys; from metrix.perceptual import lpips_math as c; "
        "paths = [c.find_lpips_calibration_file(n) for n in ('alex', 'vgg', 'squeeze')]; "
        "assert all(p and p.endswith(n + '.pth') for p, n in zip(paths, ('alex', 'vgg', 'squeeze'))), paths; "
        "assert c.find_lpips_calibration_file('alex', version='9.9') is None; "
        "assert 'lpips' not in sys.modules and 'torch' not in sys.modules, 'imported'; print('ok')"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


@pytest.mark.parametrize("net", ["alex", "vgg", "squeeze"])
def test_load_calibration_shapes_values_and_conversion(tmp_path, net):
    torch, _ = _lpips()
    calibration = lpips_core.load_calibration(net)
    shipped = torch.load(
        lpips_core.find_lpips_calibration_file(net), map_location="cpu", weights_only=True
    )
    assert list(calibration) == [f"lin{k}" for k in range(len(lpips_core.LPIPS_CHANNELS[net]))]
    for k, channels in enumerate(lpips_core.LPIPS_CHANNELS[net]):
        assert calibration[f"lin{k}"].shape == (channels,)
        np.testing.assert_array_equal(
            calibration[f"lin{k}"], shipped[f"lin{k}.model.1.weight"].numpy().reshape(-1)
        )
    for suffix in (".npz", ".safetensors"):
        if suffix == ".safetensors" and not _has("safetensors"):
            continue
        path = tmp_path / f"{net}{suffix}"
        lpips_core.save_calibration(calibration, path)
        again = lpips_core.load_calibration(net, path)
        for key in calibration:
            np.testing.assert_array_equal(again[key], calibration[key])


def test_calibration_cli(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("lpips")
    from metrix.backbones import lpips_nets

    dst = tmp_path / "vgg.npz"
    assert lpips_nets._main(["calibration", "vgg", str(dst)]) == 0
    loaded = lpips_core.load_calibration("vgg", dst)
    reference = lpips_core.load_calibration("vgg")
    for key in reference:
        np.testing.assert_array_equal(loaded[key], reference[key])


def _has(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def test_missing_calibration_error(tmp_path):
    target = tmp_path / "alex.safetensors"
    with pytest.raises(MissingWeightsError) as info:
        lpips_core.load_calibration("alex", target)
    message = str(info.value)
    assert str(target) in message
    assert "python -m metrix.backbones.lpips_nets calibration alex" in message
    with pytest.raises(MissingWeightsError, match="weights/v0.1/alex.pth"):
        lpips_core.load_calibration("alex", tmp_path / "nothing.pth")


def test_wrong_calibration_shapes_rejected(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, lin0=np.ones(64, np.float32))
    with pytest.raises(ValueError, match="expected"):
        lpips_core.load_calibration("alex", path)


# ----------------------------------------------------------------------------- closed forms


def _numpy_lpips(feats_a, feats_b, weights):
    """Zhang et al.'s formula in numpy float64: sum_l mean_hw sum_c w (u - v)^2."""
    total = 0.0
    for fa, fb, w in zip(feats_a, feats_b, weights):
        fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
        if fa.ndim == 2:
            fa, fb = fa[:, None, None], fb[:, None, None]
        ua = fa / (np.sqrt((fa**2).sum(-1, keepdims=True)) + 1e-10)
        ub = fb / (np.sqrt((fb**2).sum(-1, keepdims=True)) + 1e-10)
        total = total + ((ua - ub) ** 2 @ np.asarray(w, np.float64)).mean(axis=(1, 2))
    return total


def _random_features(seed, channels, n=4, spatial=None):
    """ReLU'd Gaussian features, (n, C) or (n, *spatial, C) per layer (numpy: no op compiles)."""
    rng = np.random.default_rng(seed)
    shape = (lambda c: (n, c)) if spatial is None else (lambda c: (n, *spatial, c))
    return [np.maximum(rng.normal(size=shape(c)), 0).astype(np.float32) for c in channels]


_from_features = jax.jit(lpips_core.lpips_from_features, static_argnames=("spatial", "image_size"))


def test_seed_style_vector_features():
    """The seed example: per-layer (4, C) vectors; ones vs 0.9*ones normalise to the same."""
    channels = lpips_core.LPIPS_CHANNELS["vgg"]
    calibration = {f"lin{k}": jnp.ones(c) for k, c in enumerate(channels)}
    ones = [jnp.ones((4, c)) for c in channels]
    d = _from_features(ones, [0.9 * f for f in ones], calibration)
    assert d.shape == (4,)
    np.testing.assert_allclose(np.asarray(d), 0.0, atol=1e-12)

    fa = _random_features(0, channels)
    fb = _random_features(1, channels)
    weights = [
        np.abs(np.random.default_rng(k).normal(size=c)).astype(np.float32)
        for k, c in enumerate(channels)
    ]
    calibration = {f"lin{k}": w for k, w in enumerate(weights)}
    got = _from_features(fa, fb, calibration)
    np.testing.assert_allclose(np.asarray(got), _numpy_lpips(fa, fb, weights), rtol=1e-5)
    # (N, C) vectors are exactly (N, 1, 1, C) maps; a list of weights works like the dict
    as_maps = _from_features(
        [f[:, None, None] for f in fa], [f[:, None, None] for f in fb], weights
    )
    np.testing.assert_array_equal(np.asarray(as_maps), np.asarray(got))


def test_feature_maps_closed_form_and_spatial_mean():
    channels = (8, 16, 4)
    fa = _random_features(2, channels, n=3, spatial=(6, 5))
    fb = _random_features(3, channels, n=3, spatial=(6, 5))
    weights = [np.linspace(0.0, 1.0, c, dtype=np.float32) for c in channels]
    got = _from_features(fa, fb, weights)
    np.testing.assert_allclose(np.asarray(got), _numpy_lpips(fa, fb, weights), rtol=1e-5)
    # all layers at the output size: the spatial map's mean is the scalar distance
    spatial = _from_features(fa, fb, weights, spatial=True)
    assert spatial.shape == (3, 6, 5)
    np.testing.assert_allclose(np.asarray(spatial.mean(axis=(1, 2))), np.asarray(got), rtol=1e-5)


@pytest.mark.parametrize("n_in,n_out", [(3, 64), (7, 100), (13, 120), (5, 5)])
def test_upsample_matches_torch_bilinear(n_in, n_out):
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).normal(size=(2, n_in, n_in + 1)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[:, None],
        size=(n_out, n_out + 3),
        mode="bilinear",
        align_corners=False,
    )[:, 0].numpy()
    got = lpips_core._upsample(jnp.asarray(maps), (n_out, n_out + 3))
    # float32 rounding of the blend (torch multiplies row and column weights in another order)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=5e-6)


def test_grad_wrt_calibration_is_the_per_layer_mean_squared_difference():
    """d is linear in w: d/dw_{l,c} sum_n d_n = sum_n mean_hw (u - v)^2_{l,c}."""
    channels = (8, 16)
    fa = _random_features(4, channels, n=3, spatial=(4, 3))
    fb = _random_features(5, channels, n=3, spatial=(4, 3))
    calibration = {"lin0": jnp.full(8, 0.3), "lin1": jnp.linspace(0, 1, 16)}
    grads = jax.jit(jax.grad(lambda cal: lpips_core.lpips_from_features(fa, fb, cal).sum()))(
        calibration
    )
    for k, (a, b) in enumerate(zip(fa, fb)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        ua = a / (np.sqrt((a**2).sum(-1, keepdims=True)) + 1e-10)
        ub = b / (np.sqrt((b**2).sum(-1, keepdims=True)) + 1e-10)
        expected = ((ua - ub) ** 2).mean(axis=(1, 2)).sum(axis=0)
        np.testing.assert_allclose(np.asarray(grads[f"lin{k}"]), expected, rtol=1e-5, atol=1e-7)
    # and against central finite differences of the jitted function
    loss = jax.jit(lambda cal: lpips_core.lpips_from_features(fa, fb, cal).sum())
    step = 1e-2
    for k in (0, 1):
        for c in (0, 3):
            up = {**calibration, f"lin{k}": calibration[f"lin{k}"].at[c].add(step)}
            down = {**calibration, f"lin{k}": calibration[f"lin{k}"].at[c].add(-step)}
            fd = (loss(up) - loss(down)) / (2 * step)
            np.testing.assert_allclose(float(grads[f"lin{k}"][c]), float(fd), rtol=1e-3, atol=1e-6)


def test_grad_through_backbone_wrt_calibration_and_images_is_finite():
    from metrix.backbones.lpips_nets import params_shapes

    rng = np.random.default_rng(7)
    params = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.05, s.shape).astype(np.float32), params_shapes("alex")
    )
    images = jax.random.uniform(jax.random.PRNGKey(6), (2, 32, 32, 3), minval=-1, maxval=1)
    calibration = {
        f"lin{k}": jnp.full(c, 0.1) for k, c in enumerate(lpips_core.LPIPS_CHANNELS["alex"])
    }
    other = jnp.flip(images, axis=2)
    d, (g_cal, g_img) = jax.jit(
        jax.value_and_grad(
            lambda cal, x: lpips_core.lpips_distance(params, cal, x, other, net="alex").sum(),
            argnums=(0, 1),
        )
    )(calibration, images)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves((g_cal, g_img)))
    assert float(jnp.abs(g_img).max()) > 0
    # linearity in w: d(w) = <grad_w d, w>
    dot = sum(jnp.vdot(g_cal[k], calibration[k]) for k in calibration)
    np.testing.assert_allclose(float(dot), float(d), rtol=1e-5)


def test_zero_features_give_zero_distance_and_finite_grad():
    zero = [jnp.zeros((2, 3, 3, 4))]
    w = [jnp.ones(4)]
    d, g = jax.value_and_grad(lambda f: lpips_core.lpips_from_features(f, zero, w).sum())(zero)
    assert float(d) == 0.0
    assert bool(jnp.all(jnp.isfinite(g[0])))


def test_project_nonnegative():
    calibration = {"lin0": jnp.array([-1.0, 0.0, 2.0]), "lin1": jnp.array([[-0.5, 0.5]])}
    projected = lpips_core.project_nonnegative(calibration)
    np.testing.assert_array_equal(np.asarray(projected["lin0"]), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(np.asarray(projected["lin1"]), [[0.0, 0.5]])
    # shipped weights are already non-negative: projection is the identity on them
    if lpips_core.find_lpips_calibration_file("alex") and _has("torch"):
        shipped = lpips_core.load_calibration("alex")
        for key, value in lpips_core.project_nonnegative(shipped).items():
            np.testing.assert_array_equal(np.asarray(value), shipped[key])
    # projected gradient descent keeps weights >= 0 while lowering the distance
    fa = _random_features(8, (8,))
    fb = _random_features(9, (8,))
    cal = {"lin0": jnp.full(8, 0.05)}
    loss = jax.jit(lambda c: lpips_core.lpips_from_features(fa, fb, c).sum())
    grad = jax.jit(jax.grad(loss))
    before = loss(cal)
    for _ in range(3):
        cal = lpips_core.project_nonnegative(
            jax.tree_util.tree_map(lambda w, g: w - 1.0 * g, cal, grad(cal))
        )
    assert bool(jnp.all(cal["lin0"] >= 0))
    assert float(loss(cal)) <= float(before)


def test_scale_input_constants():
    x = jnp.zeros((1, 1, 1, 3))
    expected = -np.array([-0.030, -0.088, -0.188]) / np.array([0.458, 0.448, 0.450])
    np.testing.assert_allclose(np.asarray(lpips_core.scale_input(x))[0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(lpips_core.scale_input(jnp.full((1, 1, 1, 3), 0.5), normalize=True)),
        np.asarray(lpips_core.scale_input(x)),
    )


def test_input_validation():
    with pytest.raises(ValueError, match="NHWC"):
        lpips_core.lpips_distance({}, {}, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 9, 3)))
    with pytest.raises(ValueError, match="calibration weights"):
        lpips_core.lpips_from_features([jnp.ones((2, 4))], [jnp.ones((2, 4))], [jnp.ones(5)])
    with pytest.raises(ValueError, match="lacks"):
        lpips_core.lpips_from_features(
            [jnp.ones((2, 4))], [jnp.ones((2, 4))], {"lin1": jnp.ones(4)}
        )
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        lpips_core.find_lpips_calibration_file("resnet")


@pytest.mark.parametrize("window,stride", [(2, 2), (3, 2)])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("size", [(7, 7), (8, 11), (13, 6)])
def test_max_pool_matches_torch(window, stride, ceil_mode, size):
    """The strided-slice max pool of the backbones equals torch's MaxPool2d, overhangs included."""
    torch = pytest.importorskip("torch")
    from metrix.backbones.lpips_nets import _max_pool

    x = np.random.default_rng(sum(size)).normal(size=(2, 3, *size)).astype(np.float32)
    expected = torch.nn.functional.max_pool2d(
        torch.from_numpy(x), window, stride, ceil_mode=ceil_mode
    ).numpy()
    got = jax.jit(_max_pool, static_argnums=(1, 2, 3))(
        jnp.asarray(x.transpose(0, 2, 3, 1)), window, stride, ceil_mode
    )
    np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), expected)
