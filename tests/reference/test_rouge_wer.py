"""ROUGE against rouge_score, WER / CER against jiwer 4, over several merged, uneven batches.

String paths eager (they tokenize on the host); the jit-safe paths (ROUGE counts, WER/CER on
padded token ids) eager and under jit, equal to the string paths.
"""

import functools
import sys

import jax
import jiwer
import numpy as np
import pytest
import rapidfuzz
from rouge_score import rouge_scorer

from metrix.text import rouge as rouge_lib
from metrix.text.error_rates import CER, WER, edit_distance, words
from metrix.text.rouge import ROUGE, ROUGE_KEYS, rouge_counts

PREDS = [
    "The cat sat on the mat.",
    "",  # empty prediction
    "a quick brown fox jumps over the lazy dog",
    "Running runners ran; they were running quickly!",
    "Ünïcödé café naïve — résumé, 東京 tokyo",
    "first sentence here.\nsecond sentence there.\nthird one",
    "the the the the",
    "  leading and   trailing\tspaces  ",
    "punctuation!!! everywhere??? yes...",
    "dogs are running fast\nfast dogs are good",
    "completely unrelated words",
    "he said: 'hello, world' -- twice",
    "x",
]
TARGETS = [
    "The cat is on the mat",
    "something was said",
    ["the quick brown fox jumped over a lazy dog", "a fast fox", "quick brown dogs"],
    "The runner runs quickly; they ran",
    "unicode cafe naive resume 東京 Tokyo",
    "second sentence here\nfirst sentence there",
    "the cat",
    "leading and trailing spaces",
    "punctuation everywhere? yes.",
    ["fast dogs run\ngood dogs are fast", "dogs run"],
    "nothing in common at all here",
    "he said hello world twice",
    ["y", "x z", "x"],
]
CUTS = [(0, 2), (2, 7), (7, 8), (8, 13)]  # uneven batches


def _batches(preds, targets):
    return [(preds[a:b], targets[a:b]) for a, b in CUTS]


def _merged(metric, batches, **kw):
    state = metric.empty()
    for p, t in batches:
        state = state.merge(metric.get_state(preds=p, targets=t, **kw))
    return state


# -- ROUGE ------------------------------------------------------------------------------------


def _rouge_reference(preds, targets, keys, use_stemmer):
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=use_stemmer)
    per_key = {}
    for pred, target in zip(preds, targets):
        multi = isinstance(target, list)
        scores = scorer.score_multi(target, pred) if multi else scorer.score(target, pred)
        for key, s in scores.items():
            per_key.setdefault(key, []).append(s.fmeasure)
            per_key.setdefault(f"{key}_precision", []).append(s.precision)
            per_key.setdefault(f"{key}_recall", []).append(s.recall)
    return {k: float(np.mean(v)) for k, v in per_key.items()}


def _assert_rouge(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(float(got[key]), value, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score_over_merged_batches(use_stemmer):
    metric = ROUGE(use_stemmer=use_stemmer)
    got = _merged(metric, _batches(PREDS, TARGETS)).compute()
    _assert_rouge(got, _rouge_reference(PREDS, TARGETS, ROUGE_KEYS, use_stemmer))


def test_rouge_key_subset_and_higher_orders():
    keys = ("rougeLsum", "rouge3")
    got = _merged(ROUGE(rouge_keys=keys), _batches(PREDS, TARGETS)).compute()
    _assert_rouge(got, _rouge_reference(PREDS, TARGETS, keys, False))


def test_rouge_summary_level_lcs_on_random_multiline_texts():
    """Many short lines over a tiny vocabulary: ties in the LCS read-out and repeated tokens
    exercise rougeLsum's union-LCS and its clipping."""
    rng = np.random.default_rng(0)

    def line():
        return " ".join(rng.choice(list("abcd"), rng.integers(0, 6)))

    def text():
        return "\n".join(line() for _ in range(rng.integers(1, 4)))

    preds = [text() for _ in range(60)]
    targets = [text() if k % 3 else [text(), text()] for k in range(60)]
    keys = ("rougeL", "rougeLsum")
    got = ROUGE(rouge_keys=keys)(preds, targets)
    _assert_rouge(got, _rouge_reference(preds, targets, keys, False))


@pytest.mark.parametrize("jit", [False, True])
def test_rouge_counts_path_equals_string_path(jit):
    metric = ROUGE(use_stemmer=True)
    strings = _merged(metric, _batches(PREDS, TARGETS)).compute()
    get_state = jax.jit(metric.get_state) if jit else metric.get_state
    state = metric.empty()
    for p, t in _batches(PREDS, TARGETS):
        counts = rouge_counts(p, t, metric.rouge_keys, use_stemmer=True)
        state = jax.jit(lambda a, b: a.merge(b))(state, get_state(counts=counts))
    for key in strings:
        np.testing.assert_allclose(float(state.compute()[key]), float(strings[key]), atol=1e-7)


def test_rouge_mask_leaves_pairs_out():
    keep = np.array([k % 3 != 1 for k in range(len(PREDS))])
    got = ROUGE()(PREDS, TARGETS, mask=keep)
    kept = [k for k in range(len(PREDS)) if keep[k]]
    kept_preds, kept_targets = [PREDS[k] for k in kept], [TARGETS[k] for k in kept]
    expected = _rouge_reference(kept_preds, kept_targets, ROUGE_KEYS, False)
    _assert_rouge(got, expected)


def test_rouge_empty_is_nan_and_invalid_counts_are_refused():
    assert np.isnan(float(ROUGE().empty().compute()["rouge1"]))
    bad = np.array([[[3, 2, 5]]], np.int32)  # 3 hits out of 2 predicted n-grams
    with pytest.raises(ValueError, match="ROUGE: counts: 1 example"):
        ROUGE(rouge_keys=("rouge1",)).get_state(counts=bad)
    jitted = jax.jit(ROUGE(rouge_keys=("rouge1",)).get_state)(counts=bad)
    assert np.isnan(float(jax.jit(lambda s: s.compute())(jitted)["rouge1"]))
    with pytest.raises(ValueError, match="ROUGE: 1 example"):  # the state remembers, eagerly
        jitted.compute()


def test_rouge_bad_configuration_and_inputs():
    with pytest.raises(ValueError, match="rouge_keys"):
        ROUGE(rouge_keys=("rouge1", "rougeX"))
    with pytest.raises(ValueError, match="rouge_keys"):
        ROUGE(rouge_keys=("rouge1", "rouge1"))
    assert ROUGE(rouge_keys=["rouge2"]).rouge_keys == ("rouge2",)
    with pytest.raises(ValueError, match="ROUGE: counts has 2 keys"):
        ROUGE().get_state(counts=np.zeros((1, 2, 3), np.int32))
    with pytest.raises(TypeError, match="ROUGE: .*single str"):
        ROUGE()("a cat", "a dog")
    with pytest.raises(ValueError, match="ROUGE: got 2 preds but 1 targets"):
        ROUGE()(["a", "b"], ["a"])


def test_rouge_without_rouge_score_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)
    monkeypatch.setattr(rouge_lib, "_tokenizer", functools.cache(rouge_lib._tokenizer.__wrapped__))
    with pytest.raises(ImportError, match=r"pip install metrix\[nlg\]"):
        ROUGE()(["a"], ["a"])


# -- WER / CER --------------------------------------------------------------------------------

WER_PREDS = [
    "hello world",
    "",  # empty prediction
    "the cat sat on the mat",
    "  extra   spaces\there  ",
    "ünïcödé wörds ok",
    "a b c d e f",
    "one two three",
    "same",
    "punctuation, counts! as words.",
    "x y z",
]
WER_TARGETS = [
    "hello there world",
    "something was said",
    "the cat is on a mat",
    "extra spaces here",
    "ünïcödé words ok",
    "f e d c b a",
    "",  # empty reference: its insertions count, its length is 0
    "same",
    "punctuation counts as words",
    "x  y",
]
WER_CUTS = [(0, 3), (3, 4), (4, 10)]
JIWER_MEASURES = [(WER, jiwer.process_words), (CER, jiwer.process_characters)]


def _wer_batches(preds, targets):
    return [(preds[a:b], targets[a:b]) for a, b in WER_CUTS]


@pytest.mark.parametrize("metric_cls, measure", JIWER_MEASURES)
def test_error_rates_equal_jiwer_exactly(metric_cls, measure):
    state = _merged(metric_cls(), _wer_batches(WER_PREDS, WER_TARGETS))
    out = measure(WER_TARGETS, WER_PREDS)
    assert state.errors == out.substitutions + out.deletions + out.insertions
    assert state.reference_tokens == out.hits + out.substitutions + out.deletions
    reference = jiwer.wer if metric_cls is WER else jiwer.cer
    assert state.errors / state.reference_tokens == reference(WER_TARGETS, WER_PREDS)
    np.testing.assert_allclose(float(state.compute()), reference(WER_TARGETS, WER_PREDS), rtol=1e-7)


def test_error_rates_of_no_reference_token_are_nan():
    state = WER().get_state(["a b", ""], ["", ""])
    assert np.isnan(float(state.compute()))
    assert state.errors == jiwer.wer(["", ""], ["a b", ""]) == 2  # jiwer: insertion count
    assert np.isnan(float(CER().empty().compute()))


@pytest.mark.parametrize("metric_cls, measure", JIWER_MEASURES)
def test_several_references_use_the_lowest_error_rate(metric_cls, measure):
    preds = ["the cat sat", "a b", "hello", "q"]
    targets = [["the cat sat down", "the cat"], ["", "a b c"], ["hello"], ["", "q r"]]
    edits = lengths = 0
    for pred, refs in zip(preds, targets):
        best = None
        for ref in refs:  # per-pair counts from jiwer, then the closest reference by rate
            out = measure(ref, pred)
            e = out.substitutions + out.deletions + out.insertions
            n = out.hits + out.substitutions + out.deletions
            rate = e / n if n else (0.0 if e == 0 else np.inf)
            if best is None or rate < best[0]:
                best = (rate, e, n)
        edits, lengths = edits + best[1], lengths + best[2]
    state = metric_cls().get_state(preds, targets)
    assert (state.errors, state.reference_tokens) == (edits, lengths)


def _ids(token_lists, vocab, width, rng):
    """Token lists as padded ids with masked-out junk both inside and after the tokens."""
    ids = rng.integers(0, 1000, size=(len(token_lists), width)).astype(np.int32)
    mask = np.zeros((len(token_lists), width), bool)
    for row, tokens in enumerate(token_lists):
        slots = np.sort(rng.choice(width, size=len(tokens), replace=False))
        ids[row, slots] = [vocab.setdefault(t, len(vocab) + 1000) for t in tokens]
        mask[row, slots] = True
    return ids, mask


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("metric_cls", [WER, CER])
def test_id_path_equals_string_path(metric_cls, jit):
    tokenize = metric_cls.tokenize
    rng = np.random.default_rng(0)
    vocab: dict[str, int] = {}
    metric = metric_cls()
    get_state = jax.jit(metric.get_state) if jit else metric.get_state
    state = metric.empty()
    for preds, targets in _wer_batches(WER_PREDS, WER_TARGETS):
        p = [tokenize(s) for s in preds]
        t = [tokenize(s) for s in targets]
        width = max(map(len, p + t)) + 3
        pred_ids, pred_mask = _ids(p, vocab, width, rng)
        target_ids, target_mask = _ids(t, vocab, width - 1, rng)
        batch = get_state(
            pred_ids=pred_ids, pred_mask=pred_mask, target_ids=target_ids, target_mask=target_mask
        )
        state = jax.jit(lambda a, b: a.merge(b))(state, batch)
    strings = _merged(metric, _wer_batches(WER_PREDS, WER_TARGETS))
    assert (state.errors, state.reference_tokens) == (strings.errors, strings.reference_tokens)
    assert float(state.compute()) == float(strings.compute())


def test_edit_distance_equals_levenshtein_on_random_ids():
    rng = np.random.default_rng(1)
    pred = rng.integers(0, 4, size=(64, 9))
    target = rng.integers(0, 4, size=(64, 11))
    pred_mask = rng.random(pred.shape) < 0.7
    target_mask = rng.random(target.shape) < 0.7
    got = jax.jit(edit_distance)(pred, target, pred_mask, target_mask)
    expected = [
        rapidfuzz.distance.Levenshtein.distance(list(p[pm]), list(t[tm]))
        for p, t, pm, tm in zip(pred, target, pred_mask, target_mask)
    ]
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_error_rate_mask_and_bad_inputs():
    keep = np.array([k % 2 == 0 for k in range(len(WER_PREDS))])
    state = WER().get_state(WER_PREDS, WER_TARGETS, mask=keep)
    kept = [k for k in range(len(WER_PREDS)) if keep[k]]
    out = jiwer.process_words([WER_TARGETS[k] for k in kept], [WER_PREDS[k] for k in kept])
    assert state.errors == out.substitutions + out.deletions + out.insertions
    with pytest.raises(TypeError, match="WER: .*single str"):
        WER()("a b", "a c")
    with pytest.raises(ValueError, match="CER: got 1 preds but 2 targets"):
        CER()(["a"], ["a", "b"])
    with pytest.raises(TypeError, match=r"WER: targets\[0\] must be a string"):
        WER()(["a"], [[]])
    with pytest.raises(TypeError, match="WER: pass either"):
        WER()(["a"], ["a"], pred_ids=np.zeros((1, 1), np.int32))
    with pytest.raises(TypeError, match="WER: the string path runs on the host"):
        jax.jit(lambda m: WER().get_state(["a"], ["a"], mask=m))(np.ones(1, bool))
    assert words("a\tb  c") == ["a\tb", "c"]  # jiwer 4: a single tab does not split words
