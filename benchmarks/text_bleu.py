"""BLEU and chrF over one corpus: metrix against sacreBLEU, same run.

The corpus: ``--pairs`` synthetic sentence pairs (Zipf-distributed words from a 2,000-word
vocabulary, 8-30 words each, a comma and a final period; every reference a noisy copy of
its prediction: words dropped, swapped or replaced; every third example has a second
reference). Timed, medians over interleaved rounds (``benchmarks.common.interleaved_medians``),
each call over the whole corpus:

* ``bleu``: ``BLEU()`` (13a tokenizer, exp smoothing) over ``--batches`` batches, merged, its
  tokenizer's line cache emptied first, vs ``sacrebleu.corpus_bleu`` on the whole corpus;
  and the jitted id path on pre-tokenized padded ids (tokenization excluded: what an eval
  loop on token ids costs);
* ``chrf``: ``CHRF()`` and ``CHRF(word_order=2)`` (chrF++) over the batches vs
  ``sacrebleu.corpus_chrf``; and the jitted id path on code points.

Values are checked before any time is trusted (``DISAGREES:`` lines otherwise). Ratios are
metrix / peer (below 1: metrix is faster). Run ``python -m benchmarks.text_bleu``.
"""

from __future__ import annotations

import argparse
import platform

import jax
import numpy as np

from benchmarks.common import interleaved_medians, load, row
from metrix.text import bleu as bleu_lib
from metrix.text.bleu import BLEU, bleu_token_ids
from metrix.text.chrf import CHRF, chrf_token_ids


def make_corpus(pairs: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = [
        "".join(rng.choice(letters, rng.integers(2, 10))) + rng.choice(["", "s", "ing", "ed"])
        for _ in range(2000)
    ]
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()

    def noisy(words):
        out = [w for w in words if rng.random() > 0.15]
        for k in range(len(out)):
            if rng.random() < 0.1:
                out[k] = str(rng.choice(vocab, p=weights))
        if len(out) > 2 and rng.random() < 0.5:
            k = rng.integers(0, len(out) - 1)
            out[k], out[k + 1] = out[k + 1], out[k]
        return out

    def text(words):
        cut = max(len(words) // 2, 1)
        return (" ".join(words[:cut]) + ", " + " ".join(words[cut:])).capitalize() + "."

    preds, targets = [], []
    for k in range(pairs):
        pred = list(rng.choice(vocab, rng.integers(8, 31), p=weights))
        refs = [text(noisy(pred)) for _ in range(2 if k % 3 == 0 else 1)]
        preds.append(text(pred))
        targets.append(refs if len(refs) > 1 else refs[0])
    return preds, targets


def reference_streams(targets):
    """sacreBLEU's layout: one stream per reference position, ``None`` where an example has
    fewer references."""
    refs = [[t] if isinstance(t, str) else list(t) for t in targets]
    count = max(map(len, refs))
    return [[r[k] if k < len(r) else None for r in refs] for k in range(count)]


def _batched(metric, preds, targets, batches):
    state = metric.empty()
    for idx in np.array_split(np.arange(len(preds)), batches):
        state = state.merge(metric.get_state([preds[i] for i in idx], [targets[i] for i in idx]))
    return float(state.compute())


def _cold(fn, *args):
    """``fn(*args)`` with a new sacreBLEU tokenizer: its line cache empty, as for a corpus not
    seen before (``sacrebleu.corpus_bleu`` builds a new tokenizer on every call)."""
    bleu_lib._tokenizer.cache_clear()
    return fn(*args)


def _report(name, times, values, peer, tolerance):
    ours = [k for k in times if k != peer]
    print(f"{name}: {peer:<28} {times[peer] * 1e3:9.1f} ms  (value {values[peer]:.6f})")
    for k in ours:
        print(f"{name}: {k:<28} {times[k] * 1e3:9.1f} ms  ratio {times[k] / times[peer]:.3f}")
    for k in ours:
        if abs(values[k] - values[peer]) > tolerance * max(abs(values[peer]), 1.0):
            print(f"DISAGREES: {name} {k} {values[k]!r} vs {peer} {values[peer]!r}")
    return [row(f"{name}/{k}", times[k], "s") for k in times]


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import sacrebleu

    preds, targets = make_corpus(args.pairs)
    streams = reference_streams(targets)
    print(
        f"# BLEU / chrF over {args.pairs:,} pairs in {args.batches} batches; "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"repeats={args.repeats} (median); load {load()} (shared machine: noisy)"
    )
    rows = []

    bleu = BLEU()
    bleu_ids = bleu_token_ids(preds, targets)
    bleu_jit = jax.jit(lambda kw: bleu.get_state(**kw).compute())
    runs = {
        "sacrebleu.corpus_bleu": lambda: sacrebleu.corpus_bleu(preds, streams).score,
        "metrix BLEU strings": lambda: _cold(_batched, bleu, preds, targets, args.batches),
        "metrix BLEU ids (jit)": lambda: float(bleu_jit(bleu_ids)),
    }
    values = {k: fn() for k, fn in runs.items()}  # also the warm-up (and the compile)
    rows += _report(
        "bleu", interleaved_medians(runs, args.repeats), values, "sacrebleu.corpus_bleu", 1e-6
    )

    for word_order in (0, 2):
        chrf = CHRF(word_order=word_order)
        ids = chrf_token_ids(preds, targets, word_order=word_order)
        chrf_jit = jax.jit(lambda kw, m=chrf: m.get_state(**kw).compute())
        runs = {
            "sacrebleu.corpus_chrf": (
                lambda w=word_order: sacrebleu.corpus_chrf(preds, streams, word_order=w).score
            ),
            "metrix CHRF strings": lambda m=chrf: _batched(m, preds, targets, args.batches),
            "metrix CHRF ids (jit)": lambda f=chrf_jit, i=ids: float(f(i)),
        }
        values = {k: fn() for k, fn in runs.items()}
        name = "chrf" if word_order == 0 else "chrf++"
        rows += _report(
            name, interleaved_medians(runs, args.repeats), values, "sacrebleu.corpus_chrf", 1e-6
        )
    return rows


if __name__ == "__main__":
    main()
