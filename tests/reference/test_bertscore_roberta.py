"""metrix.text.bertscore.BERTScore on a RoBERTa folder against ``bert_score`` on the same folder.

bert-score's English default is roberta-large; no pretrained weights can be fetched here, so
the folder is tests/backbones/test_roberta.py's tiny one (a locally trained byte-level BPE
tokenizer and a random 2-layer RobertaModel, saved by transformers). bert-score is pointed at
it with ``model_type=<folder>``, ``num_layers=`` (its layer table is keyed by hub names) and
``baseline_path=`` (its baseline files likewise). Every expected number is bert-score's.

bert-score's ``sent_encode`` asks RoBERTa tokenizers for a space before each text
(``add_prefix_space=True``); transformers 5 ignores that argument, so bert-score adds the
space here only for a folder whose tokenizer_config.json sets ``add_prefix_space``: the main
folder does, and metrix's default (the space, as bert-score intends) equals bert-score on it.
On the folder without it, bert-score (under transformers 5) equals metrix with
``add_prefix_space=False``.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np
import pytest

from metrix.text.bertscore import BERTScore
from tests.backbones.test_roberta import tiny_roberta_folder, with_prefix_space_setting
from tests.test_bertscore_core import import_bert_score

ATOL = 1e-5
NUM_LAYERS = 1  # an intermediate layer, as bert-score's tuned defaults use
BATCH = 4
CANDS = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "",  # empty candidate: bert-score scores it 0
    "the dog sat in the sun",
    "café naïve — 東京 🙂",
    "Machine learning models require data.",
    "She plays the piano.",
    "The children sing beautifully and the cat sleeps.",
    "the the the",
    "Unknown words: zebra, xylophone ✓",
    "the dog sat in the sun",  # repeated: embedded once
    "A lazy fox.",
    " ".join(["the cat sat on the mat"] * 100),  # past the 512-token limit: truncated
]
REFS = [
    "A cat was sitting on the mat.",
    "The fast brown fox leaped over a lazy dog.",
    "Nothing was said.",
    "the cat sat in the sun",
    "naive café in Tokyo 東京",
    "Large amounts of data are needed by learning models.",
    "She is a wonderful piano player.",
    "The children sing.",
    "the",
    "zebra",
    "A quick brown fox jumps over the lazy dog.",
    "the dog sat in the sun",
    " ".join(["a cat sat on a mat"] * 90),
]
SPLITS = [(0, 3), (3, 10), (10, 13)]  # uneven batches of pairs (the last one short)


@pytest.fixture(scope="module")
def bert_score():
    with pytest.MonkeyPatch.context() as mp:
        module = import_bert_score(mp)
        transformers = __import__("transformers")
        # transformers 5 dropped build_inputs_with_special_tokens, which bert-score calls for
        # empty texts; transformers 4's RoBERTa behaviour is <s> ids </s>.
        if not hasattr(transformers.RobertaTokenizer, "build_inputs_with_special_tokens"):
            mp.setattr(
                transformers.RobertaTokenizer,
                "build_inputs_with_special_tokens",
                lambda self, ids, pair=None: [self.cls_token_id, *ids, self.sep_token_id]
                + ([] if pair is None else [self.sep_token_id, *pair, self.sep_token_id]),
                raising=False,
            )
        yield module


@pytest.fixture(scope="module")
def plain_dir() -> str:
    return str(tiny_roberta_folder())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The folder whose tokenizer adds bert-score's prefix space under transformers 5 too."""
    target = tmp_path_factory.mktemp("roberta") / "spaced"
    return str(with_prefix_space_setting(tiny_roberta_folder(), target))


def _reference(bert_score, folder, cands, refs, **kwargs):
    options = {"num_layers": NUM_LAYERS, "nthreads": 0, "batch_size": BATCH, **kwargs}
    p, r, f = bert_score.score(cands, refs, model_type=folder, **options)
    return p.numpy(), r.numpy(), f.numpy()


@pytest.fixture(scope="module")
def expected(bert_score, model_dir):
    return {idf: _reference(bert_score, model_dir, CANDS, REFS, idf=idf) for idf in (False, True)}


@pytest.fixture(scope="module")
def metric(model_dir):
    return BERTScore(model_dir=model_dir, num_layers=NUM_LAYERS, batch_size=BATCH, capacity=32)


def _assert_scores(actual, expected, rows=slice(None)):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(a), e[rows], atol=ATOL, rtol=0)


def _assert_means(values, expected, keep=None):
    keep = np.ones(len(expected[0]), bool) if keep is None else keep
    for name, e in zip(("precision", "recall", "f1"), expected):
        np.testing.assert_allclose(np.asarray(values[name]), e[keep].mean(), atol=ATOL, rtol=0)


def test_folder_is_read_as_roberta(bert_score, metric, model_dir):
    tokenizer = bert_score.utils.get_tokenizer(model_dir, use_fast=False)
    assert type(tokenizer).__name__ == "RobertaTokenizer"  # sent_encode's RoBERTa branch
    encoder = metric.encoder
    assert encoder.config.model_type == "roberta" and encoder.add_prefix_space
    assert metric.resolved_special_token_ids() == (0, 2) == (
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
    )
    assert encoder.pad_token_id == tokenizer.pad_token_id == 1
    # the token ids bert-score scores with (its sent_encode), long text truncated at 512
    assert encoder.token_ids(CANDS) == [bert_score.utils.sent_encode(tokenizer, t) for t in CANDS]
    assert len(encoder.token_ids(CANDS[-1:])[0]) == 512


@pytest.mark.parametrize("idf", [False, True])
def test_text_scores_equal_bert_score(metric, expected, idf):
    result = metric.score(CANDS, REFS, idf=idf)
    _assert_scores(result[:3], expected[idf])
    _assert_means(result.state.compute(), expected[idf])
    pairs = result.state.pair_scores()
    _assert_scores([pairs[k] for k in ("precision", "recall", "f1")], expected[idf])
    assert result.f1[2] == result.precision[2] == 0.0  # the empty candidate


def test_idf_of_merged_states_and_two_passes_equal_bert_score(bert_score, metric, expected):
    tokenizer = bert_score.utils.get_tokenizer(metric.model_dir, use_fast=False)
    idf_dict = bert_score.utils.get_idf_dict(REFS, tokenizer, nthreads=0)
    parts = [metric.idf_state(REFS[a:b]) for a, b in SPLITS]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    table = np.asarray(merged.compute())
    vocab = metric.encoder.config.vocab_size
    np.testing.assert_allclose(table, [idf_dict[t] for t in range(vocab)], rtol=1e-6, atol=0)
    assert table[0] == table[2] == 0.0  # <s>, </s> are in every reference
    results = [metric.score(CANDS[a:b], REFS[a:b], idf=merged) for a, b in SPLITS]
    state = results[0].state.merge(results[1].state).merge(results[2].state)
    _assert_means(state.compute(), expected[True])
    per_batch = [np.concatenate([getattr(r, k) for r in results]) for k in ("precision", "recall")]
    _assert_scores(per_batch, expected[True][:2])


@pytest.mark.parametrize("idf", [False, True])
def test_unpacked_embeddings_eager_and_jit_equal_bert_score(metric, expected, idf):
    """The embedding path (texts one to a row, ``BertEncoder.encode``) gives what the
    packed text path gives: bert-score's scores, merged over uneven batches, masked. (The
    truncated pair is left out: padding every row to 512 tokens only costs compile time.)"""
    encoder = metric.encoder
    n = len(CANDS) - 1
    c_emb, c_ids, c_mask = encoder.encode(CANDS[:n], batch_size=BATCH)
    r_emb, r_ids, r_mask = encoder.encode(REFS[:n], batch_size=BATCH)
    inputs = {
        "candidate_embeddings": c_emb,
        "candidate_ids": c_ids,
        "candidate_mask": c_mask,
        "reference_embeddings": r_emb,
        "reference_ids": r_ids,
        "reference_mask": r_mask,
    }
    # bert-score's idf is over all the references
    table = {"idf": metric.idf_state(REFS).compute()} if idf else {}
    expected = [e[:n] for e in expected[idf]]
    keep = np.array([i % 4 != 1 for i in range(n)])
    jitted = jax.jit(lambda kw: metric.get_state(**kw))
    for get_state in (lambda kw: metric.get_state(**kw), jitted):
        states = [
            get_state({**{k: v[a:b] for k, v in inputs.items()}, **table, "mask": keep[a:b]})
            for a, b in ((0, 5), (5, n))
        ]
        merged = states[0].merge(states[1])
        _assert_means(merged.compute(), expected, keep=keep)
        pairs = merged.pair_scores()
        _assert_scores([pairs[k] for k in ("precision", "recall", "f1")], expected, keep)


def test_multi_reference_with_baseline_equals_bert_score(bert_score, model_dir, tmp_path):
    cands = CANDS[:8]
    refs = [[REFS[i], REFS[(i + 3) % 8], CANDS[(i + 1) % 8]][: 1 + i % 3] for i in range(8)]
    source = pathlib.Path(bert_score.__file__).parent / "rescale_baseline/en/roberta-large.tsv"
    baseline_path = tmp_path / "roberta-large.tsv"
    baseline_path.write_text(source.read_text())
    raw = _reference(bert_score, model_dir, cands, refs, idf=True)
    rescaled = _reference(
        bert_score,
        model_dir,
        cands,
        refs,
        idf=True,
        lang="en",
        rescale_with_baseline=True,
        baseline_path=str(baseline_path),
    )
    common = {"model_dir": model_dir, "num_layers": NUM_LAYERS, "batch_size": BATCH}
    result = BERTScore(**common).score(cands, refs, idf=True)
    _assert_scores(result[:3], raw)
    rescaling = BERTScore(**common, baseline_path=str(baseline_path))
    result = rescaling.score(cands, refs, idf=True)
    _assert_scores(result[:3], rescaled)
    _assert_means(result.state.compute(), rescaled)
    assert not np.allclose(rescaled[2], raw[2])


def test_without_prefix_space_equals_bert_score_under_transformers_5(bert_score, plain_dir):
    """On a folder that does not ask for the space, bert-score run under transformers 5
    tokenises without it: metrix's ``add_prefix_space=False`` reproduces those scores."""
    expected = _reference(bert_score, plain_dir, CANDS[:-1], REFS[:-1], idf=True)
    common = {"model_dir": plain_dir, "num_layers": NUM_LAYERS, "batch_size": BATCH}
    result = BERTScore(**common, add_prefix_space=False).score(CANDS[:-1], REFS[:-1], idf=True)
    _assert_scores(result[:3], expected)
    spaced = BERTScore(**common).score(CANDS[:-1], REFS[:-1], idf=True)
    assert not np.allclose(spaced.f1, expected[2], atol=1e-3)  # the space changes the scores


def test_cli_on_the_folder_equals_bert_score(bert_score, model_dir, tmp_path, capsys):
    from metrix.cli.bertscore import add_bertscore_parser

    cands, refs = CANDS[:6], REFS[:6]
    expected = _reference(bert_score, model_dir, cands, refs, idf=True, num_layers=2)
    cand_file, ref_file = tmp_path / "c.txt", tmp_path / "r.txt"
    cand_file.write_text("\n".join(cands) + "\n", encoding="utf-8")
    ref_file.write_text("\n".join(refs) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser(prog="metrix")
    add_bertscore_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["bertscore", "--cands", str(cand_file), "--refs", str(ref_file)]
    args = parser.parse_args(
        [*argv, "--model", model_dir, "--num-layers", "2", "--idf", "--per-pair", "--json"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    for name, e in zip(("precision", "recall", "f1"), expected):
        np.testing.assert_allclose(out["per_pair"][name], e, atol=ATOL, rtol=0)
        np.testing.assert_allclose(out[name], e.mean(), atol=ATOL, rtol=0)
    args = parser.parse_args([*argv, "--model", model_dir, "--prefix-space", "no", "--json"])
    assert args.func(args) == 0 and "f1" in json.loads(capsys.readouterr().out)
