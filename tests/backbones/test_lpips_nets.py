"""LPIPS backbones against torchvision's ``alexnet``/``vgg16``/``squeezenet1_1`` ``.features``.

Random torchvision weights go through the real converter (from a state dict, from lpips'
slice naming and from a ``.pth`` file); every tap is compared with the torch ReLU output at
the indices lpips' ``pretrained_networks.py`` slices at.
"""

from __future__ import annotations

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from metrix.backbones import lpips_nets
from metrix.backbones.weights import MissingWeightsError

# Relative tolerance on max|metrix - torch| / max|torch| per tap (float32 on both sides);
# measured ~1e-6.
RTOL = 1e-5

# torchvision ``features`` indices whose outputs lpips reads (ends of its slices, minus one).
TAP_INDICES = {
    "alex": (1, 4, 7, 9, 11),
    "vgg": (3, 8, 15, 22, 29),
    "squeeze": (1, 4, 7, 9, 10, 11, 12),
}
CHANNELS = {
    "alex": (64, 192, 384, 256, 256),
    "vgg": (64, 128, 256, 512, 512),
    "squeeze": (64, 128, 256, 384, 384, 512, 512),
}


def _torchvision():
    """torchvision's compiled ops don't load on this CPU torch; its pure-Python models do once
    these two registration modules are stubbed."""
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchvision")


_MODELS: dict[str, object] = {}


def _torch_model(net: str):
    if net not in _MODELS:
        tv = _torchvision()
        ctor = {
            "alex": tv.models.alexnet,
            "vgg": tv.models.vgg16,
            "squeeze": tv.models.squeezenet1_1,
        }[net]
        torch.manual_seed(0)
        _MODELS[net] = ctor().eval()
    return _MODELS[net]


def _torch_taps(model, x_nchw):
    taps = []
    with torch.no_grad():
        h = x_nchw
        for index, layer in enumerate(model.features):
            h = layer(h)
            if index in TAP_INDICES[_net_of(model)]:
                taps.append(h.numpy().transpose(0, 2, 3, 1))
    return taps


def _net_of(model) -> str:
    return {"AlexNet": "alex", "VGG": "vgg", "SqueezeNet": "squeeze"}[type(model).__name__]


def _assert_taps_close(ours, theirs):
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, (k, a.shape, b.shape)
        err = np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))
        assert err < RTOL, (k, err)


# 66x70 makes SqueezeNet's first ceil-mode pool produce one more row and column than a
# floor-mode pool would (31 -> 16 vs 15); 100x120 hits it in the second pool.
@pytest.mark.parametrize(
    "net,size",
    [
        ("alex", (64, 64)),
        ("alex", (100, 120)),
        ("vgg", (48, 56)),
        ("squeeze", (66, 70)),
        ("squeeze", (100, 120)),
    ],
)
def test_taps_match_torchvision(net, size):
    model = _torch_model(net)
    params = lpips_nets.convert_torchvision_state_dict(net, model.state_dict())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    apply = jax.jit(lpips_nets.lpips_backbone(net).apply)  # one compile instead of one per op
    ours = apply({"params": params}, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    assert tuple(t.shape[-1] for t in ours) == CHANNELS[net]
    _assert_taps_close(ours, _torch_taps(model, x))


def test_squeezenet_ceil_mode_changes_shape():
    # guard that the 66x70 case above really exercises ceil_mode
    params = lpips_nets.params_shapes("squeeze")
    image = jax.ShapeDtypeStruct((1, 66, 70, 3), jnp.float32)
    taps = jax.eval_shape(
        lambda p, x: lpips_nets.lpips_backbone("squeeze").apply({"params": p}, x), params, image
    )
    assert taps[0].shape[1:3] == (32, 34)
    assert taps[1].shape[1:3] == (16, 17)  # floor mode would give (15, 16)


@pytest.mark.parametrize("net", ["alex", "squeeze"])
def test_converter_accepts_lpips_slice_names(net):
    """lpips keeps torchvision's indices inside ``slice{k}``: ``net.slice1.0.weight``."""
    model = _torch_model(net)
    tv_state = model.state_dict()
    reference = lpips_nets.convert_torchvision_state_dict(net, tv_state)
    bounds = sorted(TAP_INDICES[net])
    for prefix in ("net.", ""):
        renamed = {}
        for key, value in tv_state.items():
            if not key.startswith("features."):
                continue
            index = int(key.split(".")[1])
            slice_no = next(k for k, end in enumerate(bounds, start=1) if index <= end)
            renamed[f"{prefix}slice{slice_no}." + key[len("features.") :]] = value
        renamed["lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)  # ignored
        renamed["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)  # ignored
        converted = lpips_nets.convert_torchvision_state_dict(net, renamed)
        for path, leaf in _flat(reference).items():
            np.testing.assert_array_equal(_flat(converted)[path], leaf)


def _flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def test_converter_rejects_incomplete_state_dict():
    state = dict(_torch_model("alex").state_dict())
    del state["features.8.weight"]
    with pytest.raises(ValueError, match="missing.*features_8/kernel"):
        lpips_nets.convert_torchvision_state_dict("alex", state)
    state = dict(_torch_model("alex").state_dict())
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    with pytest.raises(ValueError, match="wrong shapes"):
        lpips_nets.convert_torchvision_state_dict("alex", state)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_cli_convert_and_load_roundtrip(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    model = _torch_model("alex")
    src = tmp_path / lpips_nets.TORCHVISION_FILES["alex"]
    torch.save(model.state_dict(), src)
    dst = tmp_path / f"alex{suffix}"
    assert lpips_nets._main(["convert", "alex", str(src), str(dst)]) == 0
    loaded = lpips_nets.load_backbone_params("alex", dst)
    from_pth = lpips_nets.load_backbone_params("alex", src)  # .pth converts on the fly
    expected = _flat(lpips_nets.convert_torchvision_state_dict("alex", model.state_dict()))
    for tree in (loaded, from_pth):
        got = _flat(tree)
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])


@pytest.mark.parametrize("net,source", sorted(lpips_nets.TORCHVISION_FILES.items()))
def test_missing_weights_error_names_file_and_command(tmp_path, net, source):
    target = tmp_path / f"{net}.safetensors"
    with pytest.raises(MissingWeightsError) as info:
        lpips_nets.load_backbone_params(net, target)
    message = str(info.value)
    assert source in message
    assert str(target) in message
    assert f"python -m metrix.backbones.lpips_nets convert {net} {source} {target}" in message
    with pytest.raises(MissingWeightsError, match=source):
        lpips_nets.load_backbone_params(net, tmp_path / source)


def test_unknown_net():
    with pytest.raises(ValueError, match="unknown LPIPS backbone"):
        lpips_nets.lpips_backbone("resnet")
