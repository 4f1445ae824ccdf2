"""ROUGE, WER and CER over one corpus: metrix against rouge_score and jiwer, same run.

The corpus: ``--pairs`` synthetic sentence pairs (Zipf-distributed words from a 2,000-word
vocabulary, 8-30 words each, two lines for rougeLsum; every reference a noisy copy of its
prediction: words dropped, swapped or replaced). Timed, medians over interleaved rounds
(``benchmarks.common.interleaved_medians``), each call over the whole corpus:

* ``ROUGE``: ``mx.ROUGE(use_stemmer=...)`` (rouge1/2/L/Lsum F) over ``--batches`` batches,
  merged, vs ``rouge_score.RougeScorer.score`` per pair and the means (the peer); with the
  stemmer also a call with metrix's stem cache emptied first (what a one-shot call costs);
* ``WER`` / ``CER`` strings: ``mx.WER`` / ``mx.CER`` over the batches vs ``jiwer.wer`` /
  ``jiwer.cer`` on the whole corpus;
* ``WER ids (jit)``: the jitted id path on pre-tokenized padded ids (tokenization excluded:
  what an eval loop on token ids costs), vs the same jiwer call.

Values are checked before any time is trusted (``DISAGREES:`` lines otherwise). Ratios are
metrix / peer (below 1: metrix is faster). Run ``python -m benchmarks.text_rouge_wer``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import jax
import numpy as np

from benchmarks.common import interleaved_medians, load, row
from metrix.text import rouge as rouge_lib
from metrix.text.error_rates import CER, WER, words
from metrix.text.rouge import ROUGE, ROUGE_KEYS


def make_corpus(pairs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 10))) + rng.choice(["", "s", "ing", "ed"])
             for _ in range(2000)]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()

    def sentence():
        return list(rng.choice(vocab, rng.integers(8, 31), p=weights))

    preds, targets = [], []
    for _ in range(pairs):
        pred = sentence()
        ref = [w for w in pred if rng.random() > 0.15]
        for k in range(len(ref)):
            if rng.random() < 0.1:
                ref[k] = str(rng.choice(vocab, p=weights))
        if len(ref) > 2 and rng.random() < 0.5:
            k = rng.integers(0, len(ref) - 1)
            ref[k], ref[k + 1] = ref[k + 1], ref[k]
        cut_p, cut_r = len(pred) // 2, max(len(ref) // 2, 1)
        preds.append(" ".join(pred[:cut_p]) + ".\n" + " ".join(pred[cut_p:]) + ".")
        targets.append(" ".join(ref[:cut_r]) + ".\n" + " ".join(ref[cut_r:]) + ".")
    return preds, targets


def _batched(metric, preds, targets, batches):
    state = metric.empty()
    for idx in np.array_split(np.arange(len(preds)), batches):
        state = state.merge(metric.get_state([preds[i] for i in idx], [targets[i] for i in idx]))
    return state.compute()


def _padded_ids(preds, targets):
    vocab: dict[str, int] = {}

    def encode(texts):
        seqs = [[vocab.setdefault(w, len(vocab)) for w in words(t)] for t in texts]
        width = max(map(len, seqs))
        ids = np.zeros((len(seqs), width), np.int32)
        mask = np.zeros((len(seqs), width), bool)
        for r, s in enumerate(seqs):
            ids[r, : len(s)], mask[r, : len(s)] = s, True
        return ids, mask

    (pi, pm), (ti, tm) = encode(preds), encode(targets)
    return {"pred_ids": pi, "pred_mask": pm, "target_ids": ti, "target_mask": tm}


def _report(name, times, values, peer, tolerance):
    lines = []
    ours = [k for k in times if k != peer]
    for k in ours:
        if np.max(np.abs(np.asarray(values[k]) - np.asarray(values[peer]))) > tolerance:
            lines.append(f"DISAGREES: {name} {k} {values[k]!r} vs {peer} {values[peer]!r}")
    shown = np.array2string(np.asarray(values[peer], float), precision=6)
    print(f"{name}: {peer:<32} {times[peer] * 1e3:9.1f} ms  (value {shown})")
    for k in ours:
        print(f"{name}: {k:<32} {times[k] * 1e3:9.1f} ms  ratio {times[k] / times[peer]:.3f}")
    for line in lines:
        print(line)
    return [row(f"{name}/{k}", times[k], "s") for k in times]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import jiwer
    from rouge_score import rouge_scorer

    preds, targets = make_corpus(args.pairs)
    print(f"# ROUGE / WER / CER over {args.pairs:,} pairs in {args.batches} batches; "
          f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"repeats={args.repeats} (median); load {load()} (shared machine: noisy)")
    rows = []
    for stem in (False, True):
        scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=stem)
        metric = ROUGE(use_stemmer=stem)

        def peer(scorer=scorer):
            scores = [scorer.score(t, p) for p, t in zip(preds, targets)]
            return np.array([np.mean([s[k].fmeasure for s in scores]) for k in ROUGE_KEYS])

        def ours(metric=metric):
            values = _batched(metric, preds, targets, args.batches)
            return np.array([float(values[k]) for k in ROUGE_KEYS])

        runs = {"rouge_score": peer, "metrix ROUGE": ours}
        values = {k: fn() for k, fn in runs.items()}  # also the warm-up
        name = f"rouge(use_stemmer={stem})"
        times = interleaved_medians(runs, args.repeats)
        if stem:  # the stem cache is warm after the first call; a one-shot call starts cold
            cold = []
            for _ in range(args.repeats):
                rouge_lib._tokenizer.cache_clear()
                start = time.perf_counter()
                values["metrix ROUGE, cold stem cache"] = ours()
                cold.append(time.perf_counter() - start)
            times["metrix ROUGE, cold stem cache"] = statistics.median(cold)
        rows += _report(name, times, values, "rouge_score", 1e-6)

    ids = _padded_ids(preds, targets)
    wer_ids = jax.jit(lambda kw: WER().get_state(**kw).compute())
    for name, metric, peer_fn in (("wer", WER(), jiwer.wer), ("cer", CER(), jiwer.cer)):
        runs = {
            f"jiwer.{name}": lambda f=peer_fn: f(targets, preds),
            f"metrix {name.upper()} strings": (
                lambda m=metric: _batched(m, preds, targets, args.batches)
            ),
        }
        if name == "wer":
            runs["metrix WER ids (jit)"] = lambda: jax.block_until_ready(wer_ids(ids))
        values = {k: fn() for k, fn in runs.items()}
        times = interleaved_medians(runs, args.repeats)
        rows += _report(name, times, values, f"jiwer.{name}", 1e-6)
    return rows


if __name__ == "__main__":
    main()
