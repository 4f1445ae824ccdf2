"""BertEncoder on RoBERTa-family folders against Hugging Face transformers (torch).

No pretrained RoBERTa can be fetched here, so :func:`tiny_roberta_folder` builds one: a
byte-level BPE tokenizer trained with the ``tokenizers`` library on a few sentences, saved
by transformers' ``RobertaTokenizer`` in the Hugging Face layout (tokenizer.json, vocab.json,
merges.txt, tokenizer_config.json), and a 2-layer, 32-wide ``RobertaModel`` with random
weights saved with ``save_pretrained`` (safetensors). transformers then reads the same folder
as metrix: its ``AutoTokenizer`` ids and ``RobertaModel`` hidden states are the expected
values. The folder is built once per test session (tests/reference/test_bertscore_roberta.py
uses it too).
"""

from __future__ import annotations

import atexit
import functools
import json
import pathlib
import shutil
import tempfile

import numpy as np
import pytest

from metrix.backbones.bert import BertConfig, BertEncoder
from metrix.backbones.weights import MissingWeightsError
from tests.backbones.test_bert import import_transformers

NUM_LAYERS = 2
# The tokenizer's training text: words come with and without a leading space, so that the
# space bert-score puts before a text changes how its first word is split.
TRAIN_TEXTS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "the cat and the dog sat in the sun.",
    "Machine learning models require large amounts of data.",
    "She plays the piano beautifully, and the children sing.",
    "café naïve — 東京 🙂",
]
SENTENCES = [
    "The cat sat on the mat.",
    "the dog",
    "",
    "   leading and trailing spaces   ",
    "café naïve — 東京 with words never seen: zebra xylophone 3.14159",
    "Unknown glyphs ✓ ∑ 🙂 and tabs\there",
    "a <pad> inside and a <mask> too",
    "The quick brown fox jumps over the lazy dog and the cat sat on the mat in the sun.",
]


def _save_tokenizer(transformers, tokenizers, folder: pathlib.Path) -> None:
    trained = tokenizers.ByteLevelBPETokenizer(add_prefix_space=False)
    corpus = TRAIN_TEXTS + [" " + t for t in TRAIN_TEXTS]
    trained.train_from_iterator(
        corpus * 2,
        vocab_size=360,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="bpe-"))
    trained.save_model(str(scratch))
    vocab = json.loads((scratch / "vocab.json").read_text(encoding="utf-8"))
    lines = (scratch / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#")]
    tokenizer = transformers.RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=512)
    tokenizer.save_pretrained(str(folder))
    for name in ("vocab.json", "merges.txt"):  # the slow tokenizer's files, as hub folders have
        if not (folder / name).exists():
            shutil.copy(scratch / name, folder / name)
    shutil.rmtree(scratch)


def _save_model(transformers, torch, folder: pathlib.Path, model_type: str, vocab_size: int):
    config_class = {
        "roberta": transformers.RobertaConfig,
        "xlm-roberta": transformers.XLMRobertaConfig,
        "camembert": transformers.CamembertConfig,
    }[model_type]
    config = config_class(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        initializer_range=0.3,  # peaked attention: positions and masks matter
    )
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config).eval()
    with torch.no_grad():
        # A shared direction in every layer's output (as trained models have) keeps cosine
        # similarities positive, where bert-score's padding cannot win a max (see
        # metrix.text.bertscore_math.greedy_match); the token-type row is made non-zero so
        # that leaving it out would show.
        for name, param in model.named_parameters():
            if "LayerNorm.bias" in name:
                param.add_(1.0)
        model.embeddings.token_type_embeddings.weight.normal_(0.0, 0.5)
    model.save_pretrained(str(folder))


@functools.lru_cache(maxsize=None)
def tiny_roberta_folder(model_type: str = "roberta") -> pathlib.Path:
    """A RoBERTa-family folder with a locally trained byte-level BPE tokenizer and random
    weights (built once per process; transformers' own classes write every file)."""
    with pytest.MonkeyPatch.context() as mp:
        transformers = import_transformers(mp)
        import tokenizers
        import torch

        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"tiny-{model_type}-"))
        # bert_score picks its model class by substrings of the path ("t5" in model_type loads
        # a T5 encoder): a random suffix holding "t5" (~1 run in 200) broke its reference.
        while "t5" in folder.name.lower():
            folder.rmdir()
            folder = pathlib.Path(tempfile.mkdtemp(prefix=f"tiny-{model_type}-"))
        atexit.register(shutil.rmtree, folder, True)
        _save_tokenizer(transformers, tokenizers, folder)
        vocab_size = len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
        _save_model(transformers, torch, folder, model_type, vocab_size)
    return folder


def with_prefix_space_setting(folder: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """A copy of ``folder`` whose tokenizer_config.json says ``"add_prefix_space": true``
    (then transformers 5's tokenizer adds the space bert-score asks for)."""
    if not target.exists():
        shutil.copytree(folder, target)
        config_file = target / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["add_prefix_space"] = True
        config_file.write_text(json.dumps(config), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def roberta_dir() -> pathlib.Path:
    return tiny_roberta_folder()


@pytest.fixture(scope="module")
def hf(roberta_dir):
    with pytest.MonkeyPatch.context() as mp:
        transformers = import_transformers(mp)
        model = transformers.AutoModel.from_pretrained(roberta_dir).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(roberta_dir)
    assert type(model).__name__ == "RobertaModel"
    return transformers, model, tokenizer


def _hidden_states(model, ids, mask=None):
    import torch

    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    mask = None if mask is None else torch.as_tensor(np.asarray(mask))
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_hidden_states=True)
    return [h.numpy() for h in out.hidden_states]


def test_config_and_special_tokens(roberta_dir):
    encoder = BertEncoder.from_pretrained_dir(roberta_dir, num_layers=0)
    assert encoder.config.model_type == "roberta" and encoder.config.position_offset == 2
    assert encoder.config.layer_norm_eps == 1e-5 and encoder.config.type_vocab_size == 1
    assert (encoder.cls_token_id, encoder.sep_token_id, encoder.pad_token_id) == (0, 2, 1)
    assert encoder.special_token_ids == (0, 2)
    assert encoder.add_prefix_space  # RobertaTokenizer: bert-score's sent_encode adds one
    assert encoder.model_max_length == 512  # min(tokenizer's 512, 514 positions - 2)


def test_token_ids_match_transformers(roberta_dir, hf, tmp_path):
    """Without a prefix space metrix's ids are transformers' ``encode(text)``; with one (the
    default, as bert-score asks for) they are those of a tokenizer that adds it itself."""
    transformers, _, tokenizer = hf
    texts = [t for t in SENTENCES if t] + ["word " * 700]  # the last one must truncate
    encode = lambda tok, t: tok.encode(t.strip(), max_length=512, truncation=True)
    plain = BertEncoder.from_pretrained_dir(roberta_dir, num_layers=0, add_prefix_space=False)
    assert plain.token_ids(texts) == [encode(tokenizer, t) for t in texts]

    spaced_dir = with_prefix_space_setting(roberta_dir, tmp_path / "spaced")
    spaced_tokenizer = transformers.AutoTokenizer.from_pretrained(spaced_dir)
    spaced = [encode(spaced_tokenizer, t) for t in texts]
    encoder = BertEncoder.from_pretrained_dir(roberta_dir, num_layers=0)
    assert encoder.token_ids(texts) == spaced
    raw = lambda t: tokenizer.encode(" " + t.strip(), max_length=512, truncation=True)
    assert encoder.token_ids(texts) == [raw(t) for t in texts]
    assert spaced != [encode(tokenizer, t) for t in texts]  # the space matters for this vocab
    assert BertEncoder.from_pretrained_dir(spaced_dir, num_layers=0).token_ids(texts) == spaced

    assert len(spaced[-1]) == 512 and spaced[-1][0] == 0 and spaced[-1][-1] == 2
    assert encoder.token_ids(["", "   "]) == [[0, 2], [0, 2]]  # bert-score: <s></s>
    assert encoder.token_ids(["a <pad> b"])[0].count(1) == 1  # a literal pad token


@pytest.mark.parametrize("num_layers", [0, 1, 2])
def test_hidden_states_match_transformers(roberta_dir, hf, num_layers):
    _, model, _ = hf
    encoder = BertEncoder.from_pretrained_dir(roberta_dir, num_layers=num_layers)
    ids, mask = encoder.tokenize(SENTENCES)
    assert (ids == 1).sum() > (mask == 0).sum()  # a pad id inside a text, and padding
    ours = np.asarray(encoder.embed(encoder.params, ids, mask))
    theirs = _hidden_states(model, ids, mask)[num_layers]
    real = mask.astype(bool)
    assert ours.shape == (len(SENTENCES), ids.shape[1], 32)
    np.testing.assert_allclose(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_packed_rows_equal_transformers_and_unpacked(roberta_dir, hf):
    """Texts packed several to a row: each gets the hidden states transformers gives it
    alone, its positions restarting at padding_idx + 1 (and skipping a literal <pad>)."""
    _, model, _ = hf
    encoder = BertEncoder.from_pretrained_dir(roberta_dir, num_layers=NUM_LAYERS)
    texts = SENTENCES + ["short", "two words", "x " * 40]
    tokens = encoder.token_ids(texts)
    packed = encoder.pack(tokens, batch_size=2)
    assert any(len(set(p.segments[0].tolist()) - {0}) > 1 for p in packed)  # rows are shared
    unpacked, _, _ = encoder.encode(texts, batch_size=4)
    for p in packed:
        out = np.asarray(encoder.embed_packed(encoder.params, p.ids, p.segments, p.positions))
        flat = out.reshape(-1, out.shape[-1])
        for text, start in zip(p.texts, p.starts):
            n = len(tokens[text])
            theirs = _hidden_states(model, [tokens[text]])[NUM_LAYERS][0]
            np.testing.assert_allclose(flat[start : start + n], theirs, atol=1e-5, rtol=0)
            np.testing.assert_allclose(flat[start : start + n], unpacked[text, :n], atol=1e-5)


@pytest.mark.parametrize(
    ("model_type", "model_class"),
    [("xlm-roberta", "XLMRobertaModel"), ("camembert", "CamembertModel")],
)
def test_roberta_family_networks_match_transformers(tmp_path, model_type, model_class):
    """xlm-roberta and camembert folders run the same network: their transformers models
    with random weights give the same hidden states as metrix on the same ids."""
    with pytest.MonkeyPatch.context() as mp:
        transformers = import_transformers(mp)
        import torch

        folder = tmp_path / model_type
        shutil.copytree(tiny_roberta_folder(), folder)
        vocab_size = json.loads((folder / "config.json").read_text())["vocab_size"]
        _save_model(transformers, torch, folder, model_type, vocab_size)
        model = transformers.AutoModel.from_pretrained(folder).eval()
    assert type(model).__name__ == model_class
    encoder = BertEncoder.from_pretrained_dir(folder, num_layers=NUM_LAYERS)
    assert encoder.config.model_type == model_type and encoder.config.position_offset == 2
    ids, mask = encoder.tokenize(SENTENCES[:4])
    ours = np.asarray(encoder.embed(encoder.params, ids, mask))
    theirs = _hidden_states(model, ids, mask)[NUM_LAYERS]
    np.testing.assert_allclose(ours[mask == 1], theirs[mask == 1], atol=1e-5, rtol=0)


def test_unknown_model_type_and_missing_tokenizer_are_named(roberta_dir, tmp_path):
    config = json.loads((roberta_dir / "config.json").read_text())
    for name in ("model.safetensors", "tokenizer.json"):
        (tmp_path / name).symlink_to(roberta_dir / name)
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": "deberta-v2"}))
    with pytest.raises(ValueError) as info:
        BertEncoder.from_pretrained_dir(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "config.json") in message and "'deberta-v2'" in message
    assert "bert, camembert, roberta, xlm-roberta" in message
    with pytest.raises(ValueError, match="position embeddings"):
        BertConfig.from_dict({**config, "position_embedding_type": "relative_key"})
    # special tokens the tokenizer does not have (e.g. BERT's names beside a RoBERTa config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"cls_token": "[CLS]"}))
    with pytest.raises(ValueError, match=r"no '\[CLS\]' / '</s>' token, which a 'roberta'"):
        BertEncoder.from_pretrained_dir(tmp_path)
    # RoBERTa's byte-level BPE needs tokenizer.json (vocab.txt is BERT's WordPiece)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(MissingWeightsError, match="lacks: tokenizer.json \\("):
        BertEncoder.from_pretrained_dir(tmp_path)
