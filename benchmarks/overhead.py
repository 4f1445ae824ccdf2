"""Per-step cost of accumulating {Accuracy, Average} in a jitted eval loop.

2,000 batches (B=256, 10 classes) already on the device; each step is one jitted call that
merges the batch's states into the carried ones (no host round trip). Compared in one run:

- ``hand-written jnp``: the floor (sums and counts in a tuple, written by hand);
- ``metrix``: ``mx.merge(states, mx.get_states(metrics, context))``;
- ``flax nnx MultiMetric``: ``metrics.update(...)`` inside ``nnx.jit``.

Also the fused variant (all batches in one ``lax.scan``) for the hand loop and metrix.
Also the hand loop with metrix's exact (double-float) counts, to separate the price of
exactness from that of the abstractions. Loops run interleaved (each once per round, order
rotated); prints per-step medians after a warm-up, and ratios to the hand-written loop.
Run: ``python -m benchmarks.overhead [--steps 2000 --repeats 7]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import metrix as mx
from benchmarks import common

B, C = 256, 10


def make_batches(steps: int):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(steps, B, C)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, C, size=(steps, B)).astype(np.int32))
    loss = jnp.asarray(rng.random(size=(steps, B)).astype(np.float32))
    return [(logits[i], labels[i], loss[i]) for i in range(steps)], (logits, labels, loss)


def hand_written(batches):
    @jax.jit
    def step(carry, logits, labels, loss):
        correct, n, loss_sum, loss_n = carry
        hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        return correct + hit.sum(), n + hit.size, loss_sum + loss.sum(), loss_n + loss.size

    def run():
        carry = (jnp.float32(0), jnp.int32(0), jnp.float32(0), jnp.int32(0))
        for logits, labels, loss in batches:
            carry = step(carry, logits, labels, loss)
        return jax.block_until_ready(carry)

    return run


def hand_written_exact(batches):
    """The hand loop with metrix's arithmetic: double-float (TwoSum) sums and counts, exact
    past 2^24 elements. The difference to ``hand-written jnp`` is the price of exactness;
    the difference to ``metrix`` is the price of metrix's abstractions."""
    from metrix.core import numerics

    @jax.jit
    def step(carry, logits, labels, loss):
        correct, n, loss_sum, loss_n = carry
        hit = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        add = lambda acc, x: numerics.df_add(acc, numerics.df_from(x))  # noqa: E731
        return (add(correct, hit.sum()), add(n, jnp.float32(hit.size)),
                add(loss_sum, loss.sum()), add(loss_n, jnp.float32(loss.size)))

    def run():
        carry = tuple(jnp.zeros(2, jnp.float32) for _ in range(4))
        for logits, labels, loss in batches:
            carry = step(carry, logits, labels, loss)
        return jax.block_until_ready(carry)

    return run


def hand_written_fused(stacked):
    @jax.jit
    def run_all(logits, labels, loss):
        def body(carry, batch):
            correct, n, loss_sum, loss_n = carry
            lg, lb, ls = batch
            hit = (jnp.argmax(lg, -1) == lb).astype(jnp.float32)
            return (correct + hit.sum(), n + hit.size, loss_sum + ls.sum(), loss_n + ls.size), None

        init = (jnp.float32(0), jnp.int32(0), jnp.float32(0), jnp.int32(0))
        return jax.lax.scan(body, init, (logits, labels, loss))[0]

    return lambda: jax.block_until_ready(run_all(*stacked))


METRICS = {
    "accuracy": mx.Accuracy(logits="preds.logits", labels="batch.label"),
    "loss": mx.Average(values="preds.loss"),
}


def metrix_loop(batches):
    @jax.jit
    def step(states, logits, labels, loss):
        context = {"preds": {"logits": logits, "loss": loss}, "batch": {"label": labels}}
        return mx.merge(states, mx.get_states(METRICS, context))

    def run():
        states = mx.empty_states(METRICS)
        for logits, labels, loss in batches:
            states = step(states, logits, labels, loss)
        return jax.block_until_ready(states)

    return run


def metrix_fused(stacked):
    @jax.jit
    def run_all(logits, labels, loss):
        def body(states, batch):
            lg, lb, ls = batch
            context = {"preds": {"logits": lg, "loss": ls}, "batch": {"label": lb}}
            return mx.merge(states, mx.get_states(METRICS, context)), None

        return jax.lax.scan(body, mx.empty_states(METRICS), (logits, labels, loss))[0]

    return lambda: jax.block_until_ready(run_all(*stacked))


def nnx_loop(batches):
    from flax import nnx

    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average())

    @nnx.jit
    def step(metrics, logits, labels, loss):
        metrics.update(logits=logits, labels=labels, values=loss)

    def run():
        metrics.reset()
        for logits, labels, loss in batches:
            step(metrics, logits, labels, loss)
        return jax.block_until_ready(metrics.compute())

    return run


def check_agreement(batches):
    """All loops must compute the same values before their timings mean anything."""
    hand = hand_written(batches)()
    states = metrix_loop(batches)()
    values = mx.compute(states)
    np.testing.assert_allclose(values["accuracy"], hand[0] / hand[1], rtol=1e-6)
    np.testing.assert_allclose(values["loss"], hand[2] / hand[3], rtol=1e-5)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    batches, stacked = make_batches(args.steps)
    check_agreement(batches[:50])
    candidates = {
        "hand-written jnp": hand_written(batches),
        "metrix": metrix_loop(batches),
        "hand-written jnp, exact counts": hand_written_exact(batches),
        "flax nnx MultiMetric": nnx_loop(batches),
        "hand-written jnp, fused scan": hand_written_fused(stacked),
        "metrix, fused scan": metrix_fused(stacked),
    }
    for run in candidates.values():  # warm-up (compiles)
        run()
    # Interleaved rounds (every loop once per round, order rotated): per-step times of
    # ~40 us drift by 20% between back-to-back runs on a shared machine.
    seconds = common.interleaved_medians(candidates, args.repeats)
    rows = [{"name": name, "seconds_per_step": s / args.steps} for name, s in seconds.items()]
    floor = {"": rows[0]["seconds_per_step"], "fused": rows[4]["seconds_per_step"]}
    print(f"overhead: {{Accuracy, Average}}, {args.steps} steps, B={B}, {C} classes; "
          f"median of {args.repeats}; {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}")
    for row in rows:
        base = floor["fused"] if "fused" in row["name"] else floor[""]
        row["ratio"] = row["seconds_per_step"] / base
        print(f"  {row['name']:32s} {row['seconds_per_step'] * 1e6:9.1f} us/step   x{row['ratio']:.3f}")
    return rows


if __name__ == "__main__":
    main()
