"""Per-step cost of metric accumulation in a jitted eval loop, metrix beside its peers.

Three measurements, all on the same batches (B=256, 10 classes, already on the device):

1. ``{Accuracy, Average}`` per step: metrix vs hand-written jnp, flax nnx, metrax, CLU,
   Kauldron and torchmetrics (see ``benchmarks/peers.py`` for each adapter);
2. a 10-metric classification collection per step (accuracy, top-5, macro precision / recall /
   F1, MCC, Cohen's kappa, confusion matrix, log loss, mean loss), same peers; a peer that lacks
   some of the ten computes only what it offers, and the table says how many it covered;
3. first-call compile time of the 10-metric step (trace + lower + XLA compile, caches cleared),
   metrix vs the hand-written step.

Timing: one warm-up run per loop (compiles), then ``--repeats`` rounds in which every loop runs
once, in an order rotated each round (interleaved, so a burst of load on a shared machine hits
all of them alike); medians of the rounds, and the ratio of every loop to hand-written jnp and
of metrix to every peer. Peers that are not importable are listed as "not installed".
Run: ``python -m benchmarks.collection [--steps 300 --repeats 5]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, peers

B, C = 256, 10


def make_batches(steps: int, batch: int = B, num_classes: int = C):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(steps, batch, num_classes)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, num_classes, size=(steps, batch)).astype(np.int32))
    loss = jnp.asarray(rng.random(size=(steps, batch)).astype(np.float32))
    return [(logits[i], labels[i], loss[i]) for i in range(steps)]


def build_loops(workload: str, batches, peer_names) -> tuple[list[peers.Loop], dict[str, str]]:
    loops = [peers.hand_written(workload, batches, C), peers.metrix_loop(workload, batches, C)]
    if workload == "ten":  # the recommended form for many metrics: shared states
        loops.append(peers.metrix_collection_loop(workload, batches, C))
    missing = {}
    for name in peer_names:
        try:
            loops.append(peers.PEERS[name](workload, batches, C))
        except peers.PeerMissing as err:
            missing[name] = f"not installed ({err})"
        except Exception as err:  # noqa: BLE001 - installed but its adapter fails here: reported, not dropped
            missing[name] = f"failed: {type(err).__name__}: {err}".splitlines()[0][:200]
    return loops, missing


def check_agreement(loops: list[peers.Loop], values: dict[str, dict]) -> list[str]:
    """Every loop's values must match the hand-written ones before its time means anything."""
    reference = values[loops[0].name]
    problems = []
    for loop in loops[1:]:
        for key in loop.covered:
            if key not in reference or key not in values[loop.name]:
                continue
            got, want = values[loop.name][key], reference[key]
            if not np.isclose(got, want, rtol=1e-4, atol=1e-5):
                problems.append(f"{loop.name}: {key} = {got:.6g}, hand-written {want:.6g}")
    return problems


def bench_workload(workload: str, steps: int, repeats: int, peer_names) -> list[dict]:
    batches = make_batches(steps)
    loops, missing = build_loops(workload, batches, peer_names)
    values = {}
    for loop in loops:  # warm-up: compiles, and the values for the agreement check
        values[loop.name] = loop.run()
    problems = check_agreement(loops, values)
    seconds = common.interleaved_medians({loop.name: loop.run for loop in loops}, repeats)
    floor = seconds["hand-written jnp"]
    ours_name = "metrix Collection" if "metrix Collection" in seconds else "metrix"
    ours = seconds[ours_name]
    rows = []
    for loop in loops:
        per_step = seconds[loop.name] / steps
        rows.append(common.row(
            f"{workload}/{loop.name}", per_step, unit="s/step",
            ratio_to_hand=seconds[loop.name] / floor,
            metrix_speedup=seconds[loop.name] / ours,
            covered=f"{len(loop.covered)}/{10 if workload == 'ten' else 2}",
        ))
    for name, why in missing.items():
        rows.append(common.row(f"{workload}/{name}", None, unit="s/step", note=why))
    title = "{Accuracy, Average}" if workload == "two" else "10-metric classification collection"
    print(f"{title}: {steps} steps, B={B}, {C} classes, median of {repeats} interleaved rounds")
    print(f"  {'library':24s} {'us/step':>10s} {'x hand':>8s} {'peer/metrix':>12s} {'metrics':>8s}")
    for r in rows:
        name = r["name"].split("/", 1)[1]
        if r["value"] is None:
            print(f"  {name:24s} {r['note']}")
            continue
        print(f"  {name:24s} {r['value'] * 1e6:10.1f} {r['ratio_to_hand']:8.3f} "
              f"{r['metrix_speedup']:12.2f} {r['covered']:>8s}")
    for problem in problems:
        print(f"  DISAGREES: {problem}")
    target = 1.05
    verdict = "met" if ours / floor <= target else "MISSED"
    faster = [
        r["name"].split("/", 1)[1] for r in rows
        if r["value"] is not None and r["metrix_speedup"] < 1 and not r["name"].split("/", 1)[1].startswith(("metrix", "hand"))
    ]
    print(f"  (peer/metrix compares with {ours_name})")
    print(f"  target {ours_name} <= {target}x hand-written: {verdict} (x{ours / floor:.3f}); "
          + (f"peers faster than metrix: {', '.join(faster)}" if faster else "ahead of every peer measured"))
    return rows


def compile_seconds(step_fn, args) -> float:
    """Trace + lower + XLA compile of a fresh ``jax.jit``, with jax's caches cleared first."""
    jax.clear_caches()
    start = time.perf_counter()
    jax.jit(step_fn).lower(*args).compile()
    return time.perf_counter() - start


def bench_compile(repeats: int) -> list[dict]:
    import metrix as mx

    batch = make_batches(1)[0]
    metrics = peers.metrix_metrics("ten", C)
    candidates = {
        "hand-written jnp": lambda: compile_seconds(peers.hand_ten_step, (peers.hand_ten_carry(C), *batch)),
        "metrix": lambda: compile_seconds(peers.metrix_step(metrics), (mx.empty_states(metrics), *batch)),
        "metrix Collection": lambda: compile_seconds(
            peers.metrix_collection_step(metrics)[1], (mx.Collection(metrics=metrics).empty(), *batch)
        ),
    }
    seconds = {name: float(np.median([fn() for _ in range(repeats)])) for name, fn in candidates.items()}
    floor = seconds["hand-written jnp"]
    print(f"first-call compile of the 10-metric step (trace + lower + compile, caches cleared), "
          f"median of {repeats}")
    rows = []
    for name, s in seconds.items():
        rows.append(common.row(f"compile/{name}", s, unit="s", ratio_to_hand=s / floor))
        print(f"  {name:24s} {s * 1e3:10.1f} ms   x{s / floor:.2f}")
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.collection", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers", nargs="*", default=list(peers.PEERS), choices=list(peers.PEERS),
                        help="peers to compare (default: all; missing ones are listed as not installed)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["two", "ten", "compile"])
    args = parser.parse_args(argv)
    print(common.machine_line())
    rows = []
    if "compile" not in args.skip:  # first, before the loops warm any cache
        rows += bench_compile(max(1, min(args.repeats, 3)))
    for workload in ("two", "ten"):
        if workload not in args.skip:
            rows += bench_workload(workload, args.steps, args.repeats, args.peers)
    return rows


if __name__ == "__main__":
    main()
