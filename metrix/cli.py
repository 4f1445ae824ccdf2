"""The ``metrix`` command line (``metrix demo``, ...)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    import metrix as mx

    metrics = {
        "accuracy": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
        "loss": mx.Average(values="preds.loss", mask="batch.mask"),
        "loss_std": mx.Std(values="preds.loss", mask="batch.mask"),
    }

    @jax.jit
    def step(states, batch, key):
        logits = jax.random.normal(key, (batch["label"].shape[0], 10)) + 3 * jax.nn.one_hot(batch["label"], 10)
        loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][:, None], -1)[:, 0]
        context = {"preds": {"logits": logits, "loss": loss}, "batch": batch}
        return mx.merge(states, mx.get_states(metrics, context))

    states = mx.empty_states(metrics)
    key = jax.random.key(0)
    for i in range(args.steps):
        key, k1, k2 = jax.random.split(key, 3)
        labels = jax.random.randint(k1, (256,), 0, 10)
        mask = jnp.arange(256) < (256 if i < args.steps - 1 else 100)  # a padded last batch
        states = step(states, {"label": labels, "mask": mask}, k2)
    values = mx.compute(states)
    print(f"metrix demo: {args.steps} jitted steps, batch 256 (last one padded to 100 real rows)")
    for name, value in values.items():
        print(f"  {name:10s} {float(value):.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metrix", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small evaluation loop and print its metrics")
    demo.add_argument("--steps", type=int, default=20)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
