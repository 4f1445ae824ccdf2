"""Errors that used to be cryptic (an AttributeError from deep inside) or, worse, a value:
each now names the function, the offending entry and what to do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import metrix as mx


def test_get_states_names_a_leaf_that_is_not_a_metric():
    with pytest.raises(TypeError, match=r"mx.get_states\(\).*\['b'\] is of type int"):
        mx.get_states({"a": mx.Average(values="x"), "b": 3}, {"x": jnp.ones(3)})


def test_compute_names_a_leaf_that_is_not_a_state():
    value = mx.Average()(values=jnp.ones(2))  # a computed value, not a state
    with pytest.raises(TypeError, match=r"mx.compute\(\).*\['a'\] is of type"):
        mx.compute({"a": value})


def test_merge_stacked_refuses_an_unstacked_state():
    """Average's double-float (hi, lo) leaves have axis-0 length 2: folding them as two
    states gave total = count = 6 for three ones (a plausible, wrong state)."""
    state = mx.Average().get_state(values=jnp.ones(3))
    with pytest.raises(ValueError, match="unstacked"):
        mx.merge_stacked(state)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), state, state)
    assert float(mx.merge_stacked(stacked).compute()) == 1.0
    assert float(mx.merge_stacked(stacked).count[0]) == 6.0  # 3 + 3 rows, exact


def test_merge_stacked_refuses_an_unstacked_confusion_matrix():
    state = mx.ConfusionMatrix(num_classes=3).get_state(
        preds=jnp.array([0, 1, 2]), labels=jnp.array([0, 1, 1])
    )
    with pytest.raises(ValueError, match="stacked"):
        mx.merge_stacked(state)


def _cli(argv, capsys):
    from metrix.cli.main import main

    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_bertscore_cli_refuses_batch_size_zero(tmp_path, capsys):
    (tmp_path / "c.txt").write_text("a cat\n")
    (tmp_path / "r.txt").write_text("a cat\n")
    code, err = _cli(
        ["bertscore", "--cands", str(tmp_path / "c.txt"), "--refs", str(tmp_path / "r.txt"),
         "--model", str(tmp_path), "--batch-size", "0"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "--batch-size must be positive" in err and len(err.splitlines()) == 1


def test_bertscore_cli_names_a_file_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "c.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (tmp_path / "r.txt").write_text("cafe\n")
    code, err = _cli(
        ["bertscore", "--cands", str(tmp_path / "c.txt"), "--refs", str(tmp_path / "r.txt"),
         "--model", str(tmp_path)],
        capsys,
    )
    assert code == 2 and "c.txt is not UTF-8 text" in err


def test_malformed_bert_config_names_the_file(tmp_path):
    from metrix.backbones.bert import BertConfig, _read_json

    (tmp_path / "config.json").write_text('{"vocab_size": 10,')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        _read_json(str(tmp_path / "config.json"))
    with pytest.raises(ValueError, match="missing hidden_size"):
        BertConfig.from_dict({"vocab_size": 10}, "m/config.json")
    with pytest.raises(ValueError, match="must be integers: vocab_size='10'"):
        BertConfig.from_dict(
            {"vocab_size": "10", "hidden_size": 4, "num_hidden_layers": 1,
             "num_attention_heads": 1, "intermediate_size": 8},
            "m/config.json",
        )  # fmt: skip


def test_fid_refuses_float_images_outside_unit_range():
    images = jnp.full((2, 8, 8, 3), 200.0)  # 0..255 floats: would be scaled by 255 again
    with pytest.raises(ValueError, match=r"float images must be in \[0, 1\]"):
        mx.FID(real="x", params="p").get_state(real=images, params={"fc": {}})


def test_lpips_warns_on_unit_range_images_without_normalize():
    from metrix.perceptual.lpips import _check_image_range

    with pytest.warns(UserWarning, match="pass normalize=True"):
        _check_image_range(False, jnp.full((1, 4, 4, 3), 0.5), jnp.full((1, 4, 4, 3), 0.2))
    with pytest.raises(ValueError, match=r"expects images in \[0, 1\]"):
        _check_image_range(True, jnp.full((1, 4, 4, 3), 255.0))
    _check_image_range(False, jnp.full((1, 4, 4, 3), -0.5))  # [-1, 1] images: silent
