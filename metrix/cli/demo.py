"""``metrix demo``: train a small Flax MLP on sklearn's digits, evaluate it on 8 devices.

1. Data: the 8x8 digits that ship with scikit-learn (1797 images, 10 classes), split 80/20.
2. Model: an MLP ``64 -> 128 -> 32 (the embedding) -> 10``, trained with optax adam for a few
   hundred minibatch steps (one ``lax.scan``, a few seconds on a CPU).
3. Evaluation: :func:`metrix.runtime.evaluate.evaluate` with the metrics of ``configs/demo.yaml`` over
   train and test rows in one pass, each batch split over a mesh of the (simulated) CPU
   devices. The split and the padding of the last batch are masks in the context
   (``mask.test``, ``mask.train``) that the metrics' ``mask`` keys read; FID compares the
   train and the test embedding distributions through ``real_mask`` / ``generated_mask``.
4. Output: a table of the values, PNG plots and ``report.json`` in ``--out``.

Everything is seeded: two runs print the same numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

EMBEDDING_DIM = 32
NUM_CLASSES = 10


def default_config_path() -> Path:
    """``configs/demo.yaml`` of the source tree this package lives in."""
    return Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def load_digits_split(seed: int = 0):
    """(x_train, y_train, x_test, y_test): digits scaled to [0, 1], stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


def make_model():
    import flax.linen as nn

    class MLP(nn.Module):
        """Digits classifier whose 32-d penultimate layer is the embedding the losses and FID see."""

        @nn.compact
        def __call__(self, x):
            h = nn.relu(nn.Dense(128)(x))
            embedding = nn.Dense(EMBEDDING_DIM, name="embedding")(h)
            logits = nn.Dense(NUM_CLASSES)(nn.relu(embedding))
            return logits, embedding

    return MLP()


def train(
    x_train,
    y_train,
    *,
    steps: int = 300,
    batch_size: int = 128,
    learning_rate: float = 3e-3,
    seed: int = 0,
):
    """Adam on softmax cross-entropy; all steps in one jitted ``lax.scan``. Returns params."""
    import jax
    import jax.numpy as jnp
    import optax

    model = make_model()
    key = jax.random.key(seed)
    params = model.init(key, jnp.zeros((1, x_train.shape[1])))["params"]
    optimizer = optax.adam(learning_rate)
    n = x_train.shape[0]
    rng = np.random.default_rng(seed)
    # Epoch-wise permutations drawn on the host: deterministic and cheap.
    order = np.concatenate([rng.permutation(n) for _ in range(steps * batch_size // n + 1)])
    index = order[: steps * batch_size].reshape(steps, batch_size)
    xs, ys = jnp.asarray(x_train)[index], jnp.asarray(y_train)[index]

    def loss_fn(p, x, y):
        logits, _ = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def run(params, xs, ys):
        def step(carry, batch):
            p, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(p, *batch)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), (xs, ys))
        return params, losses

    params, losses = run(params, xs, ys)
    return params, np.asarray(losses)


def eval_batches(x_train, y_train, x_test, y_test, batch_size: int):
    """Train and test rows in padded batches: ``x``, ``label``, ``is_test`` and ``mask`` (padding)."""
    from metrix.runtime.evaluate import pad_batch

    x = np.concatenate([x_train, x_test])
    y = np.concatenate([y_train, y_test])
    is_test = np.concatenate([np.zeros(len(x_train), bool), np.ones(len(x_test), bool)])
    return [
        pad_batch(
            {
                "x": x[i : i + batch_size],
                "label": y[i : i + batch_size],
                "is_test": is_test[i : i + batch_size],
            },
            batch_size,
        )
        for i in range(0, len(x), batch_size)
    ]


def make_step_fn():
    """``(params, batch) -> context`` with the paths configs/demo.yaml reads."""
    import jax
    import jax.numpy as jnp

    model = make_model()

    def step_fn(params, batch):
        logits, embedding = model.apply({"params": params}, batch["x"])
        probs = jax.nn.softmax(logits, axis=-1)
        return {
            "preds": {
                "logits": logits,
                "probs": probs,
                "confidence": jnp.max(probs, axis=-1),
                "embedding": embedding,
            },
            "batch": {"label": batch["label"]},
            "mask": {
                "test": batch["mask"] & batch["is_test"],
                "train": batch["mask"] & ~batch["is_test"],
            },
        }

    return step_fn


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def print_table(values: Any, metrics: Any, say=print) -> None:
    """Every computed value, one line per scalar / array element / matrix row."""
    from metrix.runtime.report import table_lines

    rows = table_lines(values, metrics)
    width = max([len(name) for name, _ in rows] + [6])
    say(f"{'metric':<{width}}  value")
    say(f"{'-' * width}  {'-' * 40}")
    for name, text in rows:
        say(f"{name:<{width}}  {text}")


def run_demo(
    out: str | Path = "metrix-demo",
    *,
    steps: int = 300,
    batch_size: int = 128,
    config: str | Path | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> dict:
    """Train, evaluate, print the table and write plots + ``report.json`` into ``out``; returns the report."""
    import jax

    from metrix.runtime.config import load_config
    from metrix.runtime.evaluate import evaluate
    from metrix.runtime.plotting import plot
    from metrix.runtime.report import json_value

    say = (lambda *a: None) if quiet else print
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    t0 = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits_split(seed)
    params, losses = train(x_train, y_train, steps=steps, seed=seed)
    timings["train_s"] = time.perf_counter() - t0
    say(
        f"trained an MLP (embedding dim {EMBEDDING_DIM}) on {len(x_train)} digits: {steps} adam steps, "
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f} ({timings['train_s']:.1f} s)"
    )

    config = Path(config) if config is not None else default_config_path()
    metrics = load_config(config)
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    if batch_size % len(devices):
        batch_size = len(devices) * -(-batch_size // len(devices))
    batches = eval_batches(x_train, y_train, x_test, y_test, batch_size)

    t0 = time.perf_counter()
    values = evaluate(metrics, make_step_fn(), batches, mesh=mesh, params=params, progress=False)
    values = jax.device_get(values)
    timings["evaluate_s"] = time.perf_counter() - t0
    say(
        f"evaluated {len(x_train) + len(x_test)} rows ({len(x_test)} test) in {len(batches)} batches of "
        f"{batch_size}, each split over {len(devices)} {devices[0].platform.upper()} devices "
        f"({timings['evaluate_s']:.1f} s); metrics from {config.name}\n"
    )

    print_table(values, metrics, say)

    t0 = time.perf_counter()
    paths = plot(values, out, metrics=metrics)
    timings["plot_s"] = time.perf_counter() - t0
    report = {
        "config": str(config),
        "devices": [str(d) for d in devices],
        "train": {
            "steps": steps,
            "first_loss": float(losses[0]),
            "last_loss": float(losses[-1]),
            "num_train": len(x_train),
            "num_test": len(x_test),
        },
        "values": json_value(values),  # NaN as null, curves as their points
        "plots": [str(p) for p in paths] if paths else [],
        "timings_s": timings,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    say(f"\nwrote {len(report['plots'])} plots and report.json to {out}/")
    return report
