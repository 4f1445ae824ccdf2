"""BLEU and chrF / chrF++ against sacrebleu 2.x, over several merged, uneven batches.

String paths eager (they tokenize and count on the host); the id paths eager and under jit,
on the same tokens, equal to sacrebleu; merges with ``.merge`` and jitted merges.
Tolerance 1e-6 relative (metrix computes the score in float32 from exact counts).
"""

import functools
import sys

import jax
import numpy as np
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU as SacreBLEU
from sacrebleu.metrics import CHRF as SacreCHRF

from metrix.text import bleu as bleu_lib
from metrix.text.bleu import BLEU, bleu_score, bleu_token_ids
from metrix.text.chrf import CHRF, chrf_token_ids

PREDS = [
    "The cat sat on the mat.",
    "",  # empty hypothesis
    "a quick brown fox jumps over the lazy dog",
    "Ünïcödé café naïve — résumé, 東京 Tokyo!",
    "the the the the the the the the the the the the",  # longer than its references
    "He said: 'hello, world' -- twice (really).",
    "Completely unrelated words",
    "x",
    "THE CAT IS ON THE MAT",  # matches only when lowercased
    "&quot;quoted&quot; text &amp; more",
    "multi\nline\thypothesis ",
    "dogs are running fast, fast dogs are good",
    "the quick brown fox",
]
TARGETS = [
    "The cat is on the mat.",
    "something was said",
    ["the quick brown fox jumped over a lazy dog", "a fast fox", "quick brown dogs"],
    ["unicode cafe naive resume 東京 tokyo", "Ünïcödé café naïve, résumé — 東京 Tokyo!"],
    "the cat",
    ["he said hello world twice", 'He said: "hello, world" twice.'],
    "nothing in common at all here",
    ["y", "x z", "x"],
    "the cat is on the mat",
    '"quoted" text & more',
    "multi line hypothesis",
    ["fast dogs run, good dogs are fast", "dogs run"],
    ["", "the quick brown fox"],  # an empty reference among others
]
CUTS = [(0, 2), (2, 7), (7, 8), (8, 13)]  # uneven batches
RTOL = 1e-6


def _streams(targets):
    """sacrebleu's layout: one stream per reference position, None where an example has fewer."""
    refs = [[t] if isinstance(t, str) else list(t) for t in targets]
    return [[r[k] if k < len(r) else None for r in refs] for k in range(max(map(len, refs)))]


def _merged(metric, preds, targets, cuts=CUTS):
    state = metric.empty()
    for a, b in cuts:
        state = state.merge(metric.get_state(preds[a:b], targets[a:b]))
    return state


def _close(got, expected):
    np.testing.assert_allclose(float(got), expected, rtol=RTOL, atol=1e-9)


BLEU_OPTIONS = [
    {},
    {"smooth_method": "none"},
    {"smooth_method": "floor"},
    {"smooth_method": "floor", "smooth_value": 0.5},
    {"smooth_method": "add-k"},
    {"smooth_method": "add-k", "smooth_value": 2},
    {"effective_order": True},
    {"lowercase": True},
    {"max_ngram_order": 2},
    {"max_ngram_order": 6, "effective_order": True, "smooth_method": "none"},
    {"tokenize": "none"},
    {"tokenize": "intl"},
    {"tokenize": "char"},
]


@pytest.mark.parametrize("options", BLEU_OPTIONS, ids=lambda o: str(o) or "default")
def test_bleu_equals_sacrebleu_over_merged_batches(options):
    expected = SacreBLEU(**options).corpus_score(PREDS, _streams(TARGETS)).score
    _close(_merged(BLEU(**options), PREDS, TARGETS).compute(), expected)


def test_corpus_bleu_defaults():
    expected = sacrebleu.corpus_bleu(PREDS, _streams(TARGETS)).score
    assert expected > 0
    _close(BLEU()(PREDS, TARGETS), expected)


CHRF_OPTIONS = [
    {},
    {"word_order": 2},
    {"lowercase": True},
    {"lowercase": True, "word_order": 2},
    {"whitespace": True},
    {"eps_smoothing": True},
    {"eps_smoothing": True, "word_order": 2},
    {"beta": 1, "char_order": 4},
    {"char_order": 0, "word_order": 2},
]


@pytest.mark.parametrize("options", CHRF_OPTIONS, ids=lambda o: str(o) or "default")
def test_chrf_equals_sacrebleu_over_merged_batches(options):
    expected = SacreCHRF(**options).corpus_score(PREDS, _streams(TARGETS)).score
    _close(_merged(CHRF(**options), PREDS, TARGETS).compute(), expected)


def test_corpus_chrf_defaults():
    expected = sacrebleu.corpus_chrf(PREDS, _streams(TARGETS)).score
    _close(CHRF()(PREDS, TARGETS), expected)


def _random_corpus(seed, n=150):
    """Short texts over a tiny vocabulary: orders with no n-gram, zero matches, repeated
    n-grams to clip, references that tie, 1-3 references per example."""
    rng = np.random.default_rng(seed)

    def text():
        return " ".join(rng.choice(["a", "b", "c", "ab", "b."], rng.integers(0, 7)))

    preds = [text() for _ in range(n)]
    targets = [[text() for _ in range(rng.integers(1, 4))] for _ in range(n)]
    cuts = [(0, 17), (17, 90), (90, 91), (91, n)]
    return preds, targets, cuts


@pytest.mark.parametrize("seed", [0, 1])
def test_random_short_corpora_equal_sacrebleu(seed):
    preds, targets, cuts = _random_corpus(seed)
    streams = _streams(targets)
    for options in (
        {},
        {"smooth_method": "none", "effective_order": True},
        {"smooth_method": "floor"},
    ):
        expected = SacreBLEU(**options).corpus_score(preds, streams).score
        _close(_merged(BLEU(**options), preds, targets, cuts).compute(), expected)
    for options in ({}, {"word_order": 2}, {"eps_smoothing": True, "char_order": 3}):
        expected = SacreCHRF(**options).corpus_score(preds, streams).score
        _close(_merged(CHRF(**options), preds, targets, cuts).compute(), expected)


def _random_statistics(rng, order, count=25):
    rows = []
    for _ in range(count):
        sys_len = int(rng.choice([0, 1, 2, 3, 5, 40, 1000]))
        totals = [max(sys_len - n, 0) if rng.random() < 0.9 else 0 for n in range(order)]
        matches = [int(rng.integers(0, t + 1)) if rng.random() < 0.7 else 0 for t in totals]
        rows.append((matches, totals, sys_len, int(rng.integers(0, 2 * sys_len + 3))))
    return rows


@pytest.mark.parametrize(
    "method, value", [("exp", None), ("none", None), ("floor", 0.2), ("add-k", 1)]
)
def test_bleu_score_equals_sacrebleu_compute_bleu_on_random_statistics(method, value):
    """The score from summed statistics against sacrebleu's own ``BLEU.compute_bleu``: zero
    matches at some orders, orders with no n-gram (even inconsistent ones), short and empty
    systems, with and without effective order."""
    rng = np.random.default_rng(0)
    for order in (1, 4):
        rows = _random_statistics(rng, order, count=40)
        matches, totals, sys_len, ref_len = (np.array(x, np.int32) for x in zip(*rows))
        for effective in (False, True):
            score = functools.partial(
                bleu_score, smooth_method=method, smooth_value=value, effective_order=effective
            )
            got = jax.jit(jax.vmap(score))(matches, totals, sys_len, ref_len)
            for row, value_got in zip(rows, np.asarray(got)):
                m, t, c, r = row
                expected = SacreBLEU.compute_bleu(
                    list(m),
                    list(t),
                    c,
                    r,
                    smooth_method=method,
                    smooth_value=value,
                    effective_order=effective,
                    max_ngram_order=order,
                ).score
                np.testing.assert_allclose(
                    value_got, expected, rtol=RTOL, atol=1e-9, err_msg=str(row)
                )


# -- the id paths ------------------------------------------------------------------------------


def _id_batches(inputs, cuts=CUTS):
    """Uneven batches of the corpus' id inputs, each padded with masked-out rows to the
    largest batch's size (one compiled shape per test)."""
    size = max(b - a for a, b in cuts)
    batches = []
    for a, b in cuts:
        batch = {}
        for key, value in inputs.items():
            rows = value[a:b]
            batch[key] = np.concatenate(
                [rows, np.zeros((size - len(rows), *rows.shape[1:]), rows.dtype)]
            )
        batch["mask"] = np.arange(size) < b - a
        batches.append(batch)
    return batches


def _with_junk(inputs, rng):
    """The same tokens with masked-out junk interleaved (masks are boolean indexing) and an
    absent reference slot in front of every example's references."""
    out = {}
    for ids_key, mask_key in (
        ("pred_ids", "pred_mask"),
        ("target_ids", "target_mask"),
        ("pred_word_ids", "pred_word_mask"),
        ("target_word_ids", "target_word_mask"),
    ):
        if ids_key not in inputs:
            continue
        ids, mask = inputs[ids_key], inputs[mask_key]
        junk = rng.integers(0, 50, size=ids.shape).astype(np.int32)
        # interleave: every real slot followed by a junk slot
        both_ids = np.stack([ids, junk], axis=-1).reshape(*ids.shape[:-1], -1)
        both_mask = np.stack([mask, np.zeros_like(mask)], axis=-1).reshape(*mask.shape[:-1], -1)
        if ids_key.startswith("target"):  # one absent reference in front, junk tokens
            both_ids = np.concatenate([both_ids[:, :1] + 7, both_ids], axis=1)
            both_mask = np.concatenate([np.ones_like(both_mask[:, :1]), both_mask], axis=1)
        out[ids_key], out[mask_key] = both_ids, both_mask
    present = inputs["reference_mask"]
    out["reference_mask"] = np.concatenate([np.zeros_like(present[:, :1]), present], axis=1)
    return out


def _id_state(metric, batches, jit):
    get_state = (
        jax.jit(lambda kw: metric.get_state(**kw)) if jit else (lambda kw: metric.get_state(**kw))
    )
    merge = jax.jit(lambda a, b: a.merge(b)) if jit else (lambda a, b: a.merge(b))
    state = metric.empty()
    for inputs in batches:
        state = merge(state, get_state(inputs))
    return state


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "options", [{}, {"lowercase": True, "smooth_method": "floor", "effective_order": True}], ids=str
)
def test_bleu_id_path_equals_sacrebleu(options, jit):
    rng = np.random.default_rng(0)
    encode = functools.partial(bleu_token_ids, lowercase=options.get("lowercase", False))
    batches = _id_batches(_with_junk(encode(PREDS, TARGETS), rng))
    metric = BLEU(**options)
    state = _id_state(metric, batches, jit)
    strings = _merged(metric, PREDS, TARGETS)
    for name in ("matches", "totals", "pred_length", "ref_length"):
        np.testing.assert_array_equal(
            np.asarray(getattr(state, name)), np.asarray(getattr(strings, name))
        )
    _close(state.compute(), SacreBLEU(**options).corpus_score(PREDS, _streams(TARGETS)).score)


def test_bleu_token_ids_are_sacrebleus_tokens():
    tokenizer = SacreBLEU().tokenizer
    inputs = bleu_token_ids(PREDS[:4], TARGETS[:4])
    inverse = {}
    for text, ids, mask in zip(PREDS[:4], inputs["pred_ids"], inputs["pred_mask"]):
        tokens = tokenizer(text.rstrip()).split()
        assert len(tokens) == mask.sum()
        for token, i in zip(tokens, ids[mask]):
            assert inverse.setdefault(int(i), token) == token


@pytest.mark.parametrize(
    "options, jit",
    [
        ({}, False),
        ({}, True),
        ({"word_order": 2, "lowercase": True}, False),
        ({"word_order": 2, "lowercase": True}, True),
        ({"whitespace": True, "beta": 3}, False),
    ],
    ids=str,
)
def test_chrf_id_path_equals_sacrebleu(options, jit):
    rng = np.random.default_rng(1)
    encode = functools.partial(
        chrf_token_ids,
        word_order=options.get("word_order", 0),
        lowercase=options.get("lowercase", False),
        whitespace=options.get("whitespace", False),
    )
    preds, targets, cuts = _random_corpus(2, n=40)
    preds, targets = PREDS + preds, TARGETS + targets
    cuts = [(0, 5), (5, 30), (30, len(preds))]
    batches = _id_batches(_with_junk(encode(preds, targets), rng), cuts)
    metric = CHRF(**options)
    state = _id_state(metric, batches, jit)
    strings = _merged(metric, preds, targets, cuts)
    np.testing.assert_array_equal(np.asarray(state.statistics), np.asarray(strings.statistics))
    _close(state.compute(), SacreCHRF(**options).corpus_score(preds, _streams(targets)).score)


# -- masks, empty corpora, refusals, options ---------------------------------------------------


@pytest.mark.parametrize(
    "metric, reference", [(BLEU(), SacreBLEU()), (CHRF(word_order=2), SacreCHRF(word_order=2))]
)
def test_mask_leaves_examples_out(metric, reference):
    keep = np.array([k % 3 != 1 for k in range(len(PREDS))])
    kept = [k for k in range(len(PREDS)) if keep[k]]
    expected = reference.corpus_score(
        [PREDS[k] for k in kept], _streams([TARGETS[k] for k in kept])
    )
    _close(metric(PREDS, TARGETS, mask=keep), expected.score)
    ids = (
        bleu_token_ids
        if isinstance(metric, BLEU)
        else functools.partial(chrf_token_ids, word_order=2)
    )(PREDS, TARGETS)
    _close(jax.jit(lambda kw: metric.get_state(**kw, mask=keep).compute())(ids), expected.score)


def test_empty_corpus_and_empty_hypotheses_score_zero():
    assert float(BLEU().empty().compute()) == 0.0
    assert float(CHRF().empty().compute()) == 0.0
    assert float(BLEU()([], [])) == 0.0
    preds, targets = ["", ""], ["a cat", ["", "the dog"]]
    assert (
        sacrebleu.corpus_bleu(preds, _streams(targets)).score
        == 0.0
        == float(BLEU()(preds, targets))
    )
    assert (
        sacrebleu.corpus_chrf(preds, _streams(targets)).score
        == 0.0
        == float(CHRF()(preds, targets))
    )


@pytest.mark.parametrize("metric", [BLEU(), CHRF()], ids=["BLEU", "CHRF"])
def test_an_example_without_reference_is_refused(metric):
    inputs = {
        "pred_ids": np.array([[1, 2, 3, 4], [1, 2, 3, 4]], np.int32),
        "target_ids": np.array([[[1, 2, 3, 4], [1, 2, 3, 4]]] * 2, np.int32),
        "reference_mask": np.array([[True, False], [False, False]]),
    }
    name = type(metric).__name__
    everything = np.array([True, True])  # the same inputs in every call: one compiled program
    with pytest.raises(ValueError, match=f"{name}: reference_mask: 1 example"):
        metric.get_state(**inputs, mask=everything)
    jitted = jax.jit(lambda kw: metric.get_state(**kw))({**inputs, "mask": everything})
    assert np.isnan(float(jax.jit(lambda s: s.compute())(jitted)))
    with pytest.raises(ValueError, match=f"{name}: 1 example"):
        jitted.compute()
    assert float(metric.get_state(**inputs, mask=np.array([True, False])).compute()) == 100.0


def test_bad_options_list_the_choices():
    with pytest.raises(ValueError, match=r"BLEU: smooth_method must be one of \('exp', 'floor'"):
        BLEU(smooth_method="expo")
    with pytest.raises(ValueError, match=r"BLEU: tokenize must be one of .*'13a'.*'intl'"):
        BLEU(tokenize="14a")
    with pytest.raises(ValueError, match="BLEU: max_ngram_order"):
        BLEU(max_ngram_order=0)
    with pytest.raises(ValueError, match="BLEU: smooth_value"):
        BLEU(smooth_method="floor", smooth_value=-1.0)
    with pytest.raises(ValueError, match="CHRF: char_order"):
        CHRF(char_order=-1)
    with pytest.raises(ValueError, match="CHRF: char_order \\+ word_order"):
        CHRF(char_order=0)
    with pytest.raises(ValueError, match="CHRF: beta"):
        CHRF(beta=0)


def test_bad_inputs_name_the_metric_and_argument():
    with pytest.raises(TypeError, match="BLEU: .*single str"):
        BLEU()("a cat", "a dog")
    with pytest.raises(ValueError, match="CHRF: got 2 preds but 1 targets"):
        CHRF()(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="CHRF: word_order=2: the id path needs pred_word_ids"):
        CHRF(word_order=2).get_state(**chrf_token_ids(["a"], ["a"]))
    ids = chrf_token_ids(["a b"], [["a", "b"]], word_order=2)
    for key in ("target_word_ids", "target_word_mask"):
        ids[key] = ids[key][:, :1]  # one reference's words for two references' characters
    with pytest.raises(TypeError, match="CHRF.get_state: argument 'target_word_ids'"):
        CHRF(word_order=2).get_state(**ids)
    with pytest.raises(TypeError, match="BLEU: pass either"):
        BLEU().get_state(preds=["a"], targets=["a"], pred_ids=np.zeros((1, 2), np.int32))
    with pytest.raises(TypeError, match="BLEU: .*cannot be traced"):
        jax.jit(lambda m: BLEU().get_state(["a"], ["a"], mask=m))(np.ones(1, bool))


def test_without_sacrebleu_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    monkeypatch.setattr(bleu_lib, "_tokenizer", functools.cache(bleu_lib._tokenizer.__wrapped__))
    with pytest.raises(ImportError, match=r"BLEU needs sacrebleu .*pip install metrix\[nlg\]"):
        BLEU()(["a"], ["a"])
    assert float(BLEU()(**bleu_ids_by_hand())) == 100.0  # the id path needs no sacrebleu


def bleu_ids_by_hand():
    ids = np.arange(4, dtype=np.int32)[None]
    return {"pred_ids": ids, "target_ids": ids[:, None]}


def test_counts_stay_exact_past_2_to_the_24():
    metric = BLEU()
    state = metric.get_state(["a b c d e"], ["a b c d e"])
    big = state
    for _ in range(26):  # 2^26 copies of the same example, by doubling
        big = jax.jit(lambda s: s.merge(s))(big)
    assert big.pred_length.shape == (2,)
    from metrix.core import numerics

    assert numerics.df_to_python(big.pred_length) == 5 * 2**26
    assert numerics.df_to_python(big.totals[3]) == 2 * 2**26
    _close(big.compute(), 100.0)
