"""Train a Flax NNX MLP on sklearn's digits with metrix losses, metrics and summaries.

Everything is configured by keys into one context per step::

    context = {"batch": {"image", "label", "onehot", "mask"}, "preds": {"logits"}, "step": step}

* the losses are metrics: ``mx.total_loss`` gives the scalar to differentiate *and* the loss
  states, which are merged, with the train metrics, over each logging window inside the
  jitted step (``mx.window_step``) and logged with ``mx.log_and_reset``;
* the auxiliary loss has a weight schedule (read from the ``step`` key);
* evaluation pads the last batch and masks the padding, so the merged result is exact;
* summaries (an image grid, a histogram of logits, a confusion-matrix image) come out of the
  same ``mx.compute`` as arrays ready for an image / histogram writer.

Run: ``python examples/train_digits.py`` (about 15 s on a laptop CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

try:
    import metrix as mx
except ModuleNotFoundError:  # run from a source checkout without installing metrix
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import metrix as mx

NUM_CLASSES = 10


class MLP(nnx.Module):
    """64 pixels -> hidden ReLU layer -> 10 logits."""

    def __init__(self, num_inputs: int, num_hidden: int, num_outputs: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(num_inputs, num_hidden, rngs=rngs)
        self.out = nnx.Linear(num_hidden, num_outputs, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x / 16.0)))  # digits pixels are 0..16


# -- configuration: everything is a key into the context ---------------------------------

# The auxiliary one-vs-rest loss ramps in over the first 200 steps.
AUX_WEIGHT = optax.linear_schedule(init_value=0.0, end_value=0.5, transition_steps=200)

LOSSES = {
    "xent": mx.SoftmaxCrossEntropy(
        logits="preds.logits", labels="batch.label", mask="batch.mask", label_smoothing=0.05
    ),
    "one_vs_rest": mx.SigmoidBinaryCrossEntropy(
        logits="preds.logits", labels="batch.onehot", mask="batch.mask", weight=AUX_WEIGHT
    ),
}

TRAIN_METRICS = {
    "accuracy": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
    "logits": mx.ShowHistogram(values="preds.logits", mask="batch.mask", low=-15.0, high=15.0, num_bins=30),
}

EVAL_METRICS = {
    "accuracy": mx.Accuracy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
    "xent": mx.SoftmaxCrossEntropy(logits="preds.logits", labels="batch.label", mask="batch.mask"),
    "confusion": mx.ShowConfusionMatrix(
        labels="batch.label", preds="preds.logits", mask="batch.mask", num_classes=NUM_CLASSES
    ),
    "images": mx.ShowImages(
        images="batch.image", mask="batch.mask", num_images=8, rearrange="b (h w) -> b h w",
        rearrange_kwargs=(("h", 8),), in_vrange=(0.0, 16.0), cmap="viridis", image_shape=(8, 8, 1),
    ),
}


def make_context(model, batch, step=0):
    return {"batch": batch, "preds": {"logits": model(batch["image"])}, "step": step}


def batch_of(x, y, mask=None):
    mask = np.ones(len(y), bool) if mask is None else mask
    return {
        "image": x,
        "label": y,
        "onehot": np.eye(NUM_CLASSES, dtype=np.float32)[y],
        "mask": mask,
    }


# -- the jitted steps (functional nnx: the graph definition is static, the state a pytree) --


def make_steps(graphdef, tx):
    @jax.jit
    def train_step(params, opt_state, window, batch, step):
        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            context = make_context(model, batch, step)
            total, loss_states = mx.total_loss(LOSSES, context)
            return total, {"loss": loss_states, **mx.get_states(TRAIN_METRICS, context)}

        (_, states), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, mx.window_step(window, states)  # accumulate the window

    @jax.jit
    def eval_step(params, states, batch):
        context = make_context(nnx.merge(graphdef, params), batch)
        return mx.merge(states, mx.get_states(EVAL_METRICS, context))

    return train_step, eval_step


def evaluate(eval_step, params, x, y, batch_size):
    """Exact metrics over the whole set: the last batch is padded and its padding masked."""
    states = mx.empty_states(EVAL_METRICS)
    for start in range(0, len(y), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        pad = batch_size - len(yb)
        mask = np.arange(batch_size) < len(yb)
        xb = np.pad(xb, ((0, pad), (0, 0)))
        yb = np.pad(yb, (0, pad))
        states = eval_step(params, states, batch_of(xb, yb, mask))
    return mx.compute(states)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=args.seed, stratify=y)

    model = MLP(64, 128, NUM_CLASSES, rngs=nnx.Rngs(args.seed))
    graphdef, params = nnx.split(model)
    tx = optax.adam(args.learning_rate)
    opt_state = tx.init(params)
    train_step, eval_step = make_steps(graphdef, tx)

    rng = np.random.default_rng(args.seed)
    window = None
    history = {"train": [], "eval": []}
    for step in range(1, args.steps + 1):
        idx = rng.choice(len(y_train), size=args.batch_size, replace=False)
        batch = batch_of(x_train[idx], y_train[idx])
        if window is None:  # the first window starts from empty states of the right shapes
            window = mx.empty_states({"loss": LOSSES, **TRAIN_METRICS})
        params, opt_state, window = train_step(params, opt_state, window, batch, jnp.int32(step))
        if step % args.log_every == 0:
            values, window = mx.log_and_reset(window)  # mean over the window, not one step
            loss = {k: float(v) for k, v in values["loss"].items()}
            hist = values["logits"]
            history["train"].append({"step": step, "loss": loss, "accuracy": float(values["accuracy"])})
            print(
                f"step {step:4d}  train  " + "  ".join(f"{k}={v:.4f}" for k, v in loss.items())
                + f"  accuracy={float(values['accuracy']):.4f}"
                + f"  logits-histogram={int(hist['counts'].sum())} values in {len(hist['counts'])} bins"
            )
        if step % args.eval_every == 0 or step == args.steps:
            values = evaluate(eval_step, params, x_test, y_test, batch_size=128)
            history["eval"].append({"step": step, "accuracy": float(values["accuracy"]), "xent": float(values["xent"])})
            print(
                f"step {step:4d}  test   accuracy={float(values['accuracy']):.4f}  xent={float(values['xent']):.4f}"
                f"  confusion-image={tuple(values['confusion'].shape)}  images={tuple(values['images'].shape)}"
            )

    elapsed = time.perf_counter() - started
    print(f"done in {elapsed:.1f} s")
    return {
        "history": history,
        "test_accuracy": history["eval"][-1]["accuracy"],
        "summaries": {"confusion": values["confusion"], "images": values["images"]},
        "seconds": elapsed,
    }


if __name__ == "__main__":
    main()
