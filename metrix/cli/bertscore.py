"""``metrix bertscore``: BERTScore of two text files (one sentence per line), offline.

    metrix bertscore --cands c.txt --refs r.txt --model path/to/bert [--num-layers 4]
                     [--idf] [--baseline LAYER_P_R_F.tsv] [--per-pair] [--json]
                     [--prefix-space auto|yes|no] [--compilation-cache DIR]

Line i of ``--cands`` is scored against line i of ``--refs`` (lines keep their spaces; an
empty line is an empty text). Prints the means of P, R and F over the pairs, and each
pair's with ``--per-pair``. ``--idf`` weighs tokens by idf over all the references, as
``bert-score --idf``. ``--compilation-cache DIR`` keeps the compiled encoder and matching
programs in JAX's persistent cache, so later runs skip most of the first call's compile.

``--model`` is a local BERT or RoBERTa-family (roberta, xlm-roberta, camembert) folder, e.g.
roberta-large saved with ``save_pretrained`` (bert-score's English default; its layer is 17,
its baseline file bert-score's ``rescale_baseline/en/roberta-large.tsv``). ``--prefix-space``:
whether each text gets a leading space before tokenising; ``auto`` does what bert-score's
``sent_encode`` asks for (yes for RoBERTa's byte-level BPE), ``no`` matches bert-score run
under transformers 5, which ignores that request.
"""

from __future__ import annotations

import argparse
import json
import sys


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(
            f"metrix bertscore: {path} is not UTF-8 text (byte {err.start}: {err.reason}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None


_PREFIX_SPACE = {"auto": None, "yes": True, "no": False}


def run_bertscore(args: argparse.Namespace) -> int:
    from metrix.text.bertscore import BERTScore

    if args.compilation_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if args.batch_size < 1:
        raise ValueError(f"metrix bertscore: --batch-size must be positive, got {args.batch_size}")
    cands, refs = _read_lines(args.cands), _read_lines(args.refs)
    if len(cands) != len(refs):
        print(
            f"metrix bertscore: {args.cands} has {len(cands)} lines but {args.refs} has "
            f"{len(refs)}; line i of each file is a pair",
            file=sys.stderr,
        )
        return 2
    if not cands:
        print("metrix bertscore: no pairs to score", file=sys.stderr)
        return 2
    metric = BERTScore(
        model_dir=args.model,
        num_layers=args.num_layers,
        batch_size=args.batch_size,
        baseline_path=args.baseline,
        add_prefix_space=_PREFIX_SPACE[getattr(args, "prefix_space", "auto")],
    )
    result = metric.score(cands, refs, idf=args.idf)
    means = {k: float(v) for k, v in result.state.compute().items()}
    if args.json:
        out = {"precision": means["precision"], "recall": means["recall"], "f1": means["f1"]}
        if args.per_pair:
            out["per_pair"] = {
                "precision": result.precision.tolist(),
                "recall": result.recall.tolist(),
                "f1": result.f1.tolist(),
            }
        print(json.dumps(out))
        return 0
    if args.per_pair:
        for i, (p, r, f) in enumerate(zip(result.precision, result.recall, result.f1)):
            print(f"{i}\tP={p:.6f}\tR={r:.6f}\tF={f:.6f}")
    print(
        f"P={means['precision']:.6f} R={means['recall']:.6f} F={means['f1']:.6f} "
        f"(mean over {len(cands)} pairs)"
    )
    return 0


def add_bertscore_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``bertscore`` on an ``argparse`` subparsers object (``args.func(args)`` runs it)."""
    parser = subparsers.add_parser(
        "bertscore",
        help="BERTScore P/R/F of candidate vs reference text files, local BERT or RoBERTa folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cands", required=True, help="candidate sentences, one per line")
    parser.add_argument("--refs", required=True, help="reference sentences, one per line")
    parser.add_argument(
        "--model", required=True, help="local Hugging Face BERT or RoBERTa model folder"
    )
    parser.add_argument(
        "--num-layers", type=int, default=None, help="layers to keep (default: all)"
    )
    parser.add_argument("--idf", action="store_true", help="idf weights over the references")
    parser.add_argument(
        "--baseline", default=None, help="bert-score baseline file (LAYER,P,R,F) to rescale with"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per batch (default 64)")
    parser.add_argument(
        "--prefix-space",
        choices=sorted(_PREFIX_SPACE),
        default="auto",
        help="space before each text (auto: as bert-score, yes for RoBERTa)",
    )
    parser.add_argument("--per-pair", action="store_true", help="also print every pair's scores")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--compilation-cache",
        default=None,
        metavar="DIR",
        help="JAX persistent compilation cache folder: later runs skip most compiling",
    )
    parser.set_defaults(func=run_bertscore)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m metrix.cli.bertscore ...``)."""
    parser = argparse.ArgumentParser(prog="metrix")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bertscore_parser(sub)
    args = parser.parse_args(["bertscore", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
