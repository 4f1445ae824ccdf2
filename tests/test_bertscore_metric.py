"""BERTScore / BERTScoreIdf: closed forms on hand-made embeddings, states, errors, the CLI.

Reference values from bert-score are in tests/reference/test_bertscore.py; here every
expected number is worked out by hand from the formulas

    P = sum_i w_i max_j cos(x_i, y_j) / sum_i w_i,   R = (the same over y),   F = 2PR/(P+R),
    idf(t) = log((M + 1) / (df(t) + 1)),   rescaled = (x - b) / (1 - b).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.core import numerics
from metrix.text.bertscore import BERTScore, BERTScoreBufferState, BERTScoreIdf, BERTScoreSums

# One pair: candidate tokens e0, e1; reference tokens e1, e2, e2 (unit vectors, any scale).
# P = (0 + 1) / 2, R = (1 + 0 + 0) / 3, F = 2 (1/2)(1/3) / (1/2 + 1/3) = 0.4.
CAND = np.array([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]], np.float32)
REF = np.array([[[0.0, 0.5, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 4.0]]], np.float32)
P, R, F = 0.5, 1.0 / 3.0, 0.4


def _values(state_or_dict):
    d = state_or_dict.compute() if hasattr(state_or_dict, "compute") else state_or_dict
    return np.array([float(d[k]) for k in ("precision", "recall", "f1")])


def test_closed_form_scores_and_weights():
    metric = BERTScore()
    np.testing.assert_allclose(_values(metric(CAND, REF)), [P, R, F], rtol=1e-6)
    # weights: only e1 on the candidate side (P = 1), only e1 on the reference side (R = 1)
    state = metric.get_state(
        CAND,
        REF,
        candidate_weights=np.array([[0.0, 1.0]]),
        reference_weights=np.array([[2.0, 0.0, 0.0]]),
    )
    np.testing.assert_allclose(_values(state), [1.0, 1.0, 1.0], rtol=1e-6)
    # ids + idf table give the same weights as looking them up by hand
    table = jnp.array([0.0, 1.0, 3.0, 0.5])
    ids_c, ids_r = np.array([[2, 3]]), np.array([[1, 2, 3]])
    state = metric.get_state(CAND, REF, candidate_ids=ids_c, reference_ids=ids_r, idf=table)
    p = (3.0 * 0 + 0.5 * 1) / 3.5
    r = (1.0 * 1 + 3.0 * 0 + 0.5 * 0) / 4.5
    np.testing.assert_allclose(_values(state), [p, r, 2 * p * r / (p + r)], rtol=1e-6)
    # ids without idf: weight 1, special tokens 0 (here id 3: the candidate's e1, the last ref)
    special = BERTScore(special_token_ids=(3,), num_special_tokens=0)
    state = special.get_state(CAND, REF, candidate_ids=ids_c, reference_ids=ids_r)
    p, r = 0.0, 0.5
    np.testing.assert_allclose(_values(state), [p, r, 0.0], atol=1e-6)


def test_padding_and_masked_pairs_change_nothing():
    metric = BERTScore()
    padded_c = np.concatenate([CAND, np.full((1, 2, 3), np.nan, np.float32)], axis=1)
    padded_r = np.concatenate([REF, -np.ones((1, 1, 3), np.float32)], axis=1)
    state = metric.get_state(
        padded_c,
        padded_r,
        candidate_mask=np.array([[1, 1, 0, 0]]),
        reference_mask=np.array([[1, 1, 1, 0]]),
    )
    np.testing.assert_allclose(_values(state), [P, R, F], rtol=1e-6)
    # a second, masked-out pair full of NaN changes nothing
    both_c = np.concatenate([CAND, np.full_like(CAND, np.nan)])
    both_r = np.concatenate([REF, np.full_like(REF, np.nan)])
    state = metric.get_state(both_c, both_r, mask=np.array([True, False]))
    np.testing.assert_allclose(_values(state), [P, R, F], rtol=1e-6)


def test_empty_text_scores_zero():
    # [CLS] [SEP] only: an empty text, scored 0 like bert-score (2 special tokens, weight 0).
    metric = BERTScore(special_token_ids=(101, 102))
    assert metric.resolved_num_special_tokens() == 2
    cand = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], np.float32)
    ref = np.array([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]], np.float32)
    inputs = {
        "candidate_ids": np.array([[101, 102, 0]]),
        "reference_ids": np.array([[101, 7, 102]]),
    }
    state = metric.get_state(cand, ref, candidate_mask=np.array([[1, 1, 0]]), **inputs)
    np.testing.assert_array_equal(_values(state), [0.0, 0.0, 0.0])
    # the same pair the other way round: an empty reference
    state = metric.get_state(
        ref,
        cand,
        reference_mask=np.array([[1, 1, 0]]),
        candidate_ids=inputs["reference_ids"],
        reference_ids=inputs["candidate_ids"],
    )
    np.testing.assert_array_equal(_values(state), [0.0, 0.0, 0.0])


def test_multi_reference_max_per_score():
    metric = BERTScore(capacity=4)
    # reference 0 is REF; reference 1 is the candidate itself (P = R = F = 1); reference 2 absent
    refs = np.zeros((1, 3, 3, 3), np.float32)
    refs[0, 0] = REF[0]
    refs[0, 1, :2] = CAND[0]
    ref_mask = np.array([[[1, 1, 1], [1, 1, 0], [0, 0, 0]]])
    state = metric.get_state(CAND, refs, reference_mask=ref_mask)
    np.testing.assert_allclose(_values(state), [1.0, 1.0, 1.0], rtol=1e-6)
    # max of P, R and F taken separately: a reference better in R only
    refs2 = np.zeros((1, 2, 3, 3), np.float32)
    refs2[0, 0] = REF[0]
    refs2[0, 1, 0] = [0.0, 1.0, 0.0]  # one token e1: P = 1/2, R = 1
    mask2 = np.array([[[1, 1, 1], [1, 0, 0]]])
    p2, r2 = 0.5, 1.0
    f2 = 2 * p2 * r2 / (p2 + r2)
    state = metric.get_state(CAND, refs2, reference_mask=mask2)
    np.testing.assert_allclose(_values(state), [max(P, p2), max(R, r2), max(F, f2)], rtol=1e-6)
    # a candidate without any reference is left out, like a masked pair
    both = np.concatenate([CAND, CAND])
    refs3 = np.concatenate([refs2, refs2])
    mask3 = np.concatenate([mask2, np.zeros_like(mask2)])
    state = metric.get_state(both, refs3, reference_mask=mask3)
    np.testing.assert_allclose(_values(state), [max(P, p2), max(R, r2), max(F, f2)], rtol=1e-6)
    assert int(state.pairs.count) == 1


def test_baseline_rescaling_and_per_pair_buffer(tmp_path):
    b = (0.25, 0.1, 0.2)
    metric = BERTScore(baseline=b, capacity=3)
    batch_c = np.concatenate([CAND, CAND[:, ::-1]])
    batch_r = np.concatenate([REF, REF])
    state = metric.get_state(batch_c, batch_r)
    assert isinstance(state, BERTScoreBufferState)
    expected = [(x - bb) / (1 - bb) for x, bb in zip((P, R, F), b)]
    np.testing.assert_allclose(_values(state), expected, rtol=1e-6)
    per_pair = state.compute()["per_pair"]
    np.testing.assert_allclose(
        np.asarray(per_pair["f1"]), [expected[2], expected[2], np.nan], rtol=1e-6
    )
    np.testing.assert_allclose(state.pair_scores()["precision"], [expected[0]] * 2, rtol=1e-6)
    # the same baseline read from a bert-score file (row num_layers)
    path = tmp_path / "baseline.tsv"
    path.write_text("LAYER,P,R,F\n0,0.9,0.9,0.9\n1,0.25,0.1,0.2\n")
    from_file = BERTScore(baseline_path=str(path), num_layers=1)
    np.testing.assert_allclose(_values(from_file(CAND, REF)), expected, rtol=1e-6)
    # overflow is refused: eagerly an error, under jit NaN
    full = state.merge(state)
    with pytest.raises(mx.CapacityOverflowError, match="capacity"):
        full.compute()
    assert np.isnan(np.asarray(jax.jit(lambda s: s.compute()["per_pair"]["f1"])(full))).all()


def test_state_algebra_and_jit():
    metric = BERTScore(capacity=8)
    rng = np.random.default_rng(0)
    cand = rng.uniform(0.1, 1, (5, 4, 3)).astype(np.float32)
    ref = rng.uniform(0.1, 1, (5, 6, 3)).astype(np.float32)
    whole = metric.get_state(cand, ref)
    parts = [metric.get_state(cand[a:b], ref[a:b]) for a, b in ((0, 1), (1, 4), (4, 5))]
    merged = metric.empty().merge(parts[0]).merge(parts[1].merge(parts[2]))
    jitted = jax.jit(lambda c, r: metric.get_state(c, r))(cand, ref)
    for s in (merged, jitted):
        for a, e in zip(jax.tree.leaves(s.compute()), jax.tree.leaves(whole.compute())):
            np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=1e-6, equal_nan=True)
    assert type(BERTScore().empty()) is BERTScoreSums
    assert hash(metric) == hash(BERTScore(capacity=8))  # hashable config: a jit static


def test_idf_closed_form_and_merge():
    idf_metric = BERTScoreIdf(vocab_size=8, special_token_ids=(1, 2))
    ids = np.array([[1, 5, 5, 2, 0], [1, 6, 2, 0, 0], [1, 7, 2, 0, 0]], np.int32)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    # the third reference is masked out: M = 2, df(5) = df(6) = 1, df(7) = 0
    keep = np.array([True, True, False])
    state = idf_metric.get_state(ids[:1], mask[:1]).merge(
        idf_metric.get_state(ids[1:], mask[1:], mask=keep[1:])
    )
    expected = np.full(8, math.log(3.0))
    expected[[5, 6]] = math.log(3.0 / 2.0)
    expected[[1, 2]] = 0.0
    np.testing.assert_allclose(np.asarray(state.compute()), expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(idf_metric.empty().merge(state).compute()), expected, rtol=1e-6
    )
    # (B, K, L) references: an all-padding reference is not a document
    multi = np.stack([ids[:2], ids[1:]])  # (2, 2, 5)
    multi_mask = np.stack([mask[:2], np.stack([mask[1], np.zeros(5, int)])])
    state = idf_metric.get_state(multi, multi_mask)
    assert float(numerics.df_value(state.num_docs)) == 3.0
    expected = np.full(8, math.log(4.0))
    expected[5], expected[6] = math.log(4.0 / 2.0), math.log(4.0 / 3.0)
    expected[[1, 2]] = 0.0
    np.testing.assert_allclose(np.asarray(state.compute()), expected, rtol=1e-6)


def test_bad_input_has_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="baseline must be"):
        BERTScore(baseline=(0.1, 0.2))
    with pytest.raises(ValueError, match="not both"):
        BERTScore(baseline=(0.1, 0.2, 0.3), baseline_path="x.tsv")
    with pytest.raises(ValueError, match="capacity"):
        BERTScore(capacity=0)
    with pytest.raises(ValueError, match="needs model_dir"):
        BERTScore().score(["a"], ["b"])
    with pytest.raises(TypeError, match="needs candidate_ids"):
        BERTScore().get_state(CAND, REF, idf=jnp.ones(4))
    with pytest.raises(mx.InputTypeError, match="reference_embeddings"):
        BERTScore().get_state(CAND, REF[0])
    with pytest.raises(mx.ContextKeyError, match="candidate_embeddings"):
        BERTScore().get_state_from_context({"x": CAND})


# ----------------------------------------------------------------------------- text and CLI


@pytest.fixture(scope="module")
def model_dir() -> str:
    from tests.test_bertscore_core import minilm_dir

    return str(minilm_dir())


CLI_CANDS = ["The cat sat on the mat.", "", "café naïve — 東京"]
CLI_REFS = ["A cat was sitting on the mat.", "Nothing was said.", "naive café in Tokyo 東京"]


def test_text_call_and_cli(model_dir, tmp_path, capsys):
    from metrix.cli.bertscore import add_bertscore_parser

    metric = BERTScore(model_dir=model_dir, num_layers=2)
    result = metric.score(CLI_CANDS, CLI_REFS, idf=True)
    means = metric(CLI_CANDS, CLI_REFS, idf=True)  # __call__ on strings: the means
    np.testing.assert_allclose(
        _values(means), [result.precision.mean(), result.recall.mean(), result.f1.mean()], rtol=1e-6
    )
    assert result.f1[1] == 0.0  # the empty candidate

    cands, refs = tmp_path / "c.txt", tmp_path / "r.txt"
    cands.write_text("\n".join(CLI_CANDS) + "\n", encoding="utf-8")
    refs.write_text("\n".join(CLI_REFS) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser(prog="metrix")
    add_bertscore_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["bertscore", "--cands", str(cands), "--refs", str(refs), "--model", model_dir]
    args = parser.parse_args([*argv, "--num-layers", "2", "--idf", "--per-pair", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["per_pair"]["f1"], result.f1, rtol=1e-6)
    np.testing.assert_allclose(
        [out["precision"], out["recall"], out["f1"]], _values(means), rtol=1e-6
    )
    args = parser.parse_args([*argv, "--num-layers", "2", "--idf", "--per-pair"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert f"F={result.f1.mean():.6f}" in text and text.count("P=") == 4

    refs.write_text("only one line\n", encoding="utf-8")
    args = parser.parse_args(argv)
    assert args.func(args) == 2
    assert "3 lines" in capsys.readouterr().err


def test_cli_in_a_fresh_process(model_dir, tmp_path):
    cands, refs = tmp_path / "c.txt", tmp_path / "r.txt"
    cands.write_text("A dog runs.\n", encoding="utf-8")
    refs.write_text("A dog is running.\n", encoding="utf-8")
    code = (
        "import sys, argparse; from metrix.cli.bertscore import add_bertscore_parser; "
        "p = argparse.ArgumentParser(); add_bertscore_parser(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"
    )
    argv = ["bertscore", "--cands", str(cands), "--refs", str(refs), "--model", model_dir]
    cache = tmp_path / "jax-cache"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, "--num-layers", "1", "--json",
         "--compilation-cache", str(cache)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(__import__("pathlib").Path(__file__).parents[1]),
    )
    assert done.returncode == 0, done.stderr
    assert any(cache.iterdir()), "--compilation-cache wrote no compiled program"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    expected = BERTScore(model_dir=model_dir, num_layers=1).score(
        ["A dog runs."], ["A dog is running."]
    )
    np.testing.assert_allclose(out["f1"], expected.f1[0], rtol=1e-5)
