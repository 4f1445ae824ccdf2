"""Parity of metrix's FID InceptionV3 with pytorch-fid's network, on shared random weights.

The reference is pytorch-fid's ``fid_inception_v3()`` built without its download: torchvision's
``inception_v3(num_classes=1008, aux_logits=False)`` with ``Mixed_5b..Mixed_7c`` swapped for
pytorch-fid's ``FIDInceptionA/C/E_1/E_2``. Its random weights go through a real ``.pth`` file
and metrix's converter. The input pipeline is pytorch-fid's ``InceptionV3.forward``
(``F.interpolate(bilinear, align_corners=False)`` to 299, then ``2x - 1``), replicated here
because that wrapper always loads pretrained weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from metrix.backbones import inception  # noqa: E402
from metrix.backbones.weights import MissingWeightsError  # noqa: E402

# Relative tolerance on max|metrix - torch| / max|torch| per tap (float32 on both sides).
RTOL = 1e-4
BATCH = 2


def _import_pytorch_fid_inception():
    """pytorch_fid.inception imports torchvision, whose compiled ops don't load on this CPU
    torch; its pure-Python models work once these two registration modules are stubbed."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    pytest.importorskip("torchvision")
    return pytest.importorskip("pytorch_fid.inception")


def _build_torch_fid_inception(seed: int = 0):
    """pytorch-fid's FID Inception with random weights and non-trivial BatchNorm statistics."""
    fid = _import_pytorch_fid_inception()
    import torchvision

    torch.manual_seed(seed)
    # init_weights=False (as pytorch-fid does) keeps PyTorch's default random init, which
    # is 10x faster than torchvision's truncated-normal init and just as random.
    net = torchvision.models.inception_v3(
        num_classes=1008, aux_logits=False, weights=None, init_weights=False
    )
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)

    # Random BatchNorm parameters and running statistics close to the true activation
    # statistics: draw the affine parameters, calibrate the running statistics on one batch
    # (momentum 1 => running = batch statistics), then perturb them. Activations stay O(1)
    # through all 94 layers, so relative errors mean something, and a wrong mapping of
    # mean/var/scale/bias would show.
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    net.train()
    with torch.no_grad():
        for bn in bns:
            bn.momentum = 1.0
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        net(torch.rand(1, 3, 299, 299) * 2 - 1)
        for bn in bns:
            c = bn.num_features
            bn.running_mean += 0.05 * torch.randn(c) * bn.running_var.sqrt()
            bn.running_var *= torch.empty(c).uniform_(0.9, 1.1)
    return net.eval()


def _torch_taps(net, images_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """pytorch-fid's ``InceptionV3.forward`` (resize, normalise, four blocks) plus ``fc``."""
    import torch.nn.functional as F

    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)
    out = {}
    with torch.no_grad():
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        out["input"] = x
        x = 2 * x - 1
        x = net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(x)))
        x = out["64_map"] = F.max_pool2d(x, kernel_size=3, stride=2)
        x = net.Conv2d_4a_3x3(net.Conv2d_3b_1x1(x))
        x = out["192_map"] = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
            x = getattr(net, f"Mixed_{name}")(x)
        out["768_map"] = x
        x = net.Mixed_7c(net.Mixed_7b(net.Mixed_7a(x)))
        out["2048"] = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        out["logits"] = net.fc(out["2048"])
    result = {}
    for key, value in out.items():
        if value.ndim == 4:
            value = value.permute(0, 2, 3, 1)  # NCHW -> NHWC like metrix
        result[key] = value.numpy()
    for name in ("64", "192", "768"):  # pytorch-fid's fid_score pools maps to 1x1
        result[name] = result[name + "_map"].mean(axis=(1, 2))
    return result


def _rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module")
def inception_reference(tmp_path_factory):
    """(torch net, path of its .pth state dict, metrix params converted from that file)."""
    net = _build_torch_fid_inception()
    pth = str(tmp_path_factory.mktemp("inception") / inception.TORCH_WEIGHTS_FILE)
    torch.save(net.state_dict(), pth)
    params = inception.convert_torch_state_dict(torch.load(pth, weights_only=True))
    return net, pth, params


# Every tap at once (one compilation per shape); "pool3" is an alias of "2048".
ALL_TAPS = ("64", "192", "768", "2048", "logits", "logits_unbiased", "64_map", "192_map", "768_map",
            "pool3")


@pytest.mark.parametrize("height,width", [(299, 299), (128, 160)])
def test_features_match_pytorch_fid(inception_reference, height, width):
    net, _, params = inception_reference
    rng = np.random.default_rng(height)
    images = rng.uniform(0, 1, (BATCH, height, width, 3)).astype(np.float32)
    expected = _torch_taps(net, images)
    ours = inception.inception_features(params, images, taps=ALL_TAPS)

    compared = ("64_map", "192_map", "768_map", "64", "192", "768", "2048", "logits")
    errors = {tap: _rel_err(ours[tap], expected[tap]) for tap in compared}
    print(f"\n{height}x{width} max relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < RTOL, errors
    # The torch resize, compared directly (exact weights; only summation order differs).
    resized = inception.preprocess(images, normalize_input=False)
    assert _rel_err(resized, expected["input"]) < 1e-6
    # logits without the fc bias, from torch's fc weight alone.
    unbiased = expected["2048"] @ net.fc.weight.detach().numpy().T
    assert _rel_err(ours["logits_unbiased"], unbiased) < RTOL
    np.testing.assert_array_equal(ours["pool3"], ours["2048"])
    for tap in ALL_TAPS:
        assert np.all(np.isfinite(np.asarray(ours[tap])))


@pytest.mark.parametrize("height,width", [(128, 160), (400, 320), (299, 500), (7, 300), (299, 299)])
def test_resize_matches_torch_interpolate(height, width):
    """pytorch-fid's resize, ``F.interpolate(bilinear, align_corners=False)``, up and down."""
    import torch.nn.functional as F

    images = np.random.default_rng(width).uniform(0, 1, (2, height, width, 3)).astype(np.float32)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = F.interpolate(nchw, size=(299, 299), mode="bilinear", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).numpy()
    ours = np.asarray(inception.preprocess(images, normalize_input=False))
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    normalized = np.asarray(inception.preprocess(images))
    np.testing.assert_allclose(normalized, 2 * expected - 1, rtol=0, atol=2e-6)


def test_uint8_and_float_inputs_agree(inception_reference):
    _, _, params = inception_reference
    pixels = np.random.default_rng(1).integers(0, 256, (BATCH, 128, 160, 3), dtype=np.uint8)
    from_uint8 = inception.inception_features(params, pixels, taps=ALL_TAPS)
    floats = pixels.astype(np.float32) / 255.0
    from_float = inception.inception_features(params, floats, taps=ALL_TAPS)
    # uint8 / 255 inside XLA may differ from numpy's division by one float32 ulp.
    for tap in ALL_TAPS:
        assert _rel_err(from_uint8[tap], from_float[tap]) < 1e-5, tap


def test_module_apply_with_outputs(inception_reference):
    _, _, params = inception_reference
    images = np.random.default_rng(2).uniform(0, 1, (1, 80, 90, 3)).astype(np.float32)
    # Only the stem runs for these taps, so plain (un-jitted) apply stays cheap.
    out = inception.InceptionV3(outputs=("64", "64_map")).apply({"params": params}, images)
    assert set(out) == {"64", "64_map"}
    assert out["64_map"].shape == (1, 73, 73, 64)
    np.testing.assert_allclose(out["64"], np.mean(out["64_map"], axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown InceptionV3 tap"):
        inception.inception_features(params, images, taps=("pool4",))
    with pytest.raises(ValueError, match="NCHW"):
        inception.preprocess(images.transpose(0, 3, 1, 2))
    with pytest.raises(TypeError, match="uint8 or float"):
        inception.preprocess(images.astype(np.int32))


def test_params_structure_matches_module_init(inception_reference):
    _, _, params = inception_reference
    images = jax.ShapeDtypeStruct((1, 299, 299, 3), np.float32)
    abstract = jax.eval_shape(inception.InceptionV3().init, jax.random.PRNGKey(0), images)["params"]
    assert jax.tree_util.tree_structure(abstract) == jax.tree_util.tree_structure(params)
    shapes = jax.tree_util.tree_map(lambda a, b: a.shape == np.shape(b), abstract, params)
    assert all(jax.tree_util.tree_leaves(shapes))


def test_converter_rejects_other_state_dicts(inception_reference):
    net, _, _ = inception_reference
    state = dict(net.state_dict())
    del state["Mixed_7c.branch_pool.bn.running_var"]
    state["extra.conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="Mixed_7c/branch_pool/bn/var") as info:
        inception.convert_torch_state_dict(state)
    assert "extra" in str(info.value)


def test_cli_converts_and_load_params_round_trips(inception_reference, tmp_path):
    _, pth, params = inception_reference
    out = tmp_path / "inception_fid.safetensors"
    cmd = [sys.executable, "-m", "metrix.backbones.inception", "convert", pth, str(out)]
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=120)
    loaded = inception.load_params(out)
    flat_loaded = jax.tree_util.tree_leaves_with_path(loaded)
    flat_params = dict(jax.tree_util.tree_leaves_with_path(params))
    assert len(flat_loaded) == len(flat_params)
    for path, value in flat_loaded:
        np.testing.assert_array_equal(value, flat_params[path])
    # npz through the Python API as well
    npz = inception.convert_file(pth, tmp_path / "inception_fid.npz")
    assert inception.load_params(npz)["fc"]["kernel"].shape == (2048, 1008)


def test_missing_weights_error_names_file_and_command(tmp_path):
    missing = tmp_path / "nowhere" / "inception_fid.safetensors"
    with pytest.raises(MissingWeightsError) as info:
        inception.load_params(missing)
    message = str(info.value)
    assert inception.TORCH_WEIGHTS_FILE in message
    command = "python -m metrix.backbones.inception convert"
    assert f"{command} pt_inception-2015-12-05-6726825d.pth {missing}" in message
