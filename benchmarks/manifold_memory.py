"""PrecisionRecall / DensityCoverage memory: the chunked k-NN computation against the
unchunked formula it replaced (full ``N x N`` and ``N x M`` distance matrices).

For each ``N`` (real = generated = ``N`` rows of ``--dim`` features):

* peak working memory of both, from XLA's compiled memory analysis (temp bytes: the buffers
  the program allocates besides its inputs and outputs). It needs no run, so the unchunked
  program is only compiled at the sizes where running it would not fit;
* wall time (interleaved medians) of both where ``N <= --run-max``, and that their values
  agree exactly (``DISAGREES:`` otherwise).

Both functions are measured, each against the unchunked formula it replaced (transcribed
below, all rows valid).

The closed form of the chunked peak, ``4 d (N + M) + 16 chunk_size max(N, M)`` bytes, is
printed beside the measured figure. Run: ``python -m benchmarks.manifold_memory`` (defaults:
N = 5000, 20000, 50000 at d = 2048, timed up to 5000); ``--quick`` sizes:
``--sizes 300 1000 --dim 64 --run-max 1000 --repeats 1``.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import interleaved_medians, machine_line, row
from metrix.generative.manifold import DEFAULT_CHUNK_SIZE, density_coverage, precision_recall

_HIGHEST = jax.lax.Precision.HIGHEST


# --- the unchunked formula (what manifold.py computed before it went to row blocks) -------


def _full_distances(a, b, centre):
    a, b = a - centre, b - centre
    sq = (
        jnp.sum(a * a, axis=1)[:, None]
        + jnp.sum(b * b, axis=1)[None, :]
        - 2 * jnp.matmul(a, b.T, precision=_HIGHEST)
    )
    return jnp.sqrt(jnp.maximum(sq, 0))


def _full_radii(x, k, centre):
    d = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0, _full_distances(x, x, centre))
    return -jax.lax.top_k(-d, k + 1)[0][:, k]


def _full_terms(real, gen, k):
    centre = jnp.mean(real, axis=0)
    d = _full_distances(real, gen, centre)
    return centre, _full_radii(real, k, centre), d


@functools.partial(jax.jit, static_argnames=("k",))
def unchunked_precision_recall(real, gen, k: int = 3):
    """The previous formula (every row valid): full ``N x N``, ``M x M`` and ``N x M``."""
    centre, r_real, d = _full_terms(real, gen, k)
    r_gen = _full_radii(gen, k, centre)
    return {
        "precision": jnp.mean(jnp.any(d < r_real[:, None], axis=0)),
        "recall": jnp.mean(jnp.any(d < r_gen[None, :], axis=1)),
    }


@functools.partial(jax.jit, static_argnames=("k",))
def unchunked_density_coverage(real, gen, k: int = 5):
    """The previous formula (every row valid): full ``N x N`` and ``N x M``."""
    _, r_real, d = _full_terms(real, gen, k)
    return {
        "density": jnp.mean(jnp.sum(d < r_real[:, None], axis=0, dtype=jnp.float32)) / k,
        "coverage": jnp.mean(jnp.min(d, axis=1) < r_real),
    }


CASES = {
    "precision_recall": (precision_recall, unchunked_precision_recall),
    "density_coverage": (density_coverage, unchunked_density_coverage),
}


def temp_bytes(fn, n: int, d: int, **static) -> int | None:
    """Compiled peak temp memory of ``fn`` on two ``(n, d)`` float32 inputs (no run)."""
    spec = jax.ShapeDtypeStruct((n, d), jnp.float32)
    analysis = jax.jit(functools.partial(fn, **static)).lower(spec, spec).compile()
    analysis = analysis.memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def formula_bytes(n: int, m: int, d: int, chunk_size: int) -> int:
    return 4 * d * (n + m) + 16 * min(chunk_size, n) * max(n, m)


def _gb(x):
    if x is None:
        return "n/a"
    return f"{x / 2**30:7.2f} GiB" if x >= 2**30 else f"{x / 2**20:7.1f} MiB"


def _one(case, ours, old, n, data, args):
    """Peak memory (compiled) and, given ``data``, time and agreement of one function."""
    chunk_size = args.chunk_size
    mine = temp_bytes(ours, n, args.dim, k=args.k, chunk_size=chunk_size)
    full = temp_bytes(old, n, args.dim, k=args.k)
    bound = formula_bytes(n, n, args.dim, chunk_size)
    ratio = "" if mine is None or full is None else f"  unchunked/chunked x{full / mine:.1f}"
    print(
        f"{case:16s} N={n:6d}  peak temp: chunked {_gb(mine)} (formula {_gb(bound)}), "
        f"unchunked {_gb(full)}{ratio}"
    )
    rows = [
        row(f"{case}/N={n}/chunked peak", mine, "bytes", formula=bound),
        row(f"{case}/N={n}/unchunked peak", full, "bytes"),
    ]
    if data is None:
        print(f"{'':16s} {'':8s}  not run (N > --run-max={args.run_max}): compiled only")
        return rows
    real, gen = data
    runs = {
        "chunked": lambda: jax.block_until_ready(
            ours(real, gen, k=args.k, chunk_size=chunk_size)
        ),
        "unchunked": lambda: jax.block_until_ready(old(real, gen, k=args.k)),
    }
    values = {name: run() for name, run in runs.items()}  # warm-up: compiles
    for key, b in values["unchunked"].items():
        a = values["chunked"][key]
        if float(a) != float(b):
            print(f"DISAGREES: {case} {key} chunked {float(a)!r} vs unchunked {float(b)!r}")
    times = interleaved_medians(runs, args.repeats)
    print(
        f"{'':16s} {'':8s}  time: chunked {times['chunked']:.3f} s, unchunked "
        f"{times['unchunked']:.3f} s  chunked/unchunked "
        f"x{times['chunked'] / times['unchunked']:.2f}"
    )
    return rows + [
        row(f"{case}/N={n}/chunked time", times["chunked"], "s"),
        row(f"{case}/N={n}/unchunked time", times["unchunked"], "s"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--run-max", type=int, default=5000, help="largest N that is run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(machine_line())
    print(f"d={args.dim}, k={args.k}, chunk_size={args.chunk_size}; real = generated = N rows")
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        data = None
        if n <= args.run_max:
            data = (
                jnp.asarray(rng.normal(size=(n, args.dim)), jnp.float32),
                jnp.asarray(rng.normal(size=(n, args.dim)) * 1.1 + 0.1, jnp.float32),
            )
        for case, (ours, old) in CASES.items():
            rows += _one(case, ours, old, n, data, args)
    return rows


if __name__ == "__main__":
    main()
