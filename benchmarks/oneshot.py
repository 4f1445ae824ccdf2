"""One-shot calls ``metric(**inputs)`` against a hand-jitted jnp function of the same maths.

For each metric and batch size B, timed in one run, interleaved (each callable once per round,
order rotated; each sample a ~5 ms batch of back-to-back calls, ``common.interleaved_batch_medians``,
since single calls of tens of microseconds time mostly the thread scheduler), after a warm-up
call that compiles:

* ``metrix``: ``mx.Metric(...)(**inputs)`` on numpy inputs, eagerly (what a notebook does);
* ``hand-jit``: a ``jax.jit``-ed jnp function of the same maths written here, same inputs;
* ``torchmetrics``: its functional call on torch tensors (when importable);
* ``sklearn``: its function on numpy arrays (where it has one).

Every callable's output is blocked on (``jax.block_until_ready`` / ``float``) so that
asynchronous dispatch hides nothing. Rows: Accuracy, F1Score macro (10 classes), MSE,
PearsonCorrCoef, R2Score, exact binary RocAuc, multiclass RocAuc (one-vs-rest macro, 10
classes), AveragePrecision, SSIM (B // 256 images of 32x32x3, at least one). Then the eager
``update``/``compute`` loop of the stateful layers (Accuracy over ``--steps`` batches of 256):
``mx.Stateful``, ``metrix.nnx.Accuracy``, flax ``nnx.metrics.Accuracy`` and a calibrax 0.1.1
``FrozenBackboneMetric`` accumulating calibrax's functional ``accuracy`` (calibrax ships only
abstract stateful bases; this is the loop its docs describe).

Targets (issue 20): every row at most ``max(1.5 x hand-jit, hand-jit + 15 us)``, and faster
than torchmetrics functional. Ratios printed: metrix / hand-jit, metrix / torchmetrics.
Run: ``python -m benchmarks.oneshot [--sizes 256 100000 --repeats 30 --steps 100]``.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np

import metrix as mx
from benchmarks import common

C = 10


# -- hand-jitted references (the same maths, written once here) ------------------------------


@jax.jit
def _accuracy(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels)


@jax.jit
def _f1_macro(logits, labels):
    pred = jax.nn.one_hot(jnp.argmax(logits, -1), C)
    true = jax.nn.one_hot(labels, C)
    tp = jnp.sum(pred * true, 0)
    denom = jnp.sum(pred, 0) + jnp.sum(true, 0)
    return jnp.mean(jnp.where(denom > 0, 2 * tp / jnp.maximum(denom, 1), 0.0))


@jax.jit
def _mse(p, t):
    return jnp.mean((p - t) ** 2)


@jax.jit
def _pearson(p, t):
    dp, dt = p - p.mean(), t - t.mean()
    return jnp.sum(dp * dt) / jnp.sqrt(jnp.sum(dp * dp) * jnp.sum(dt * dt))


@jax.jit
def _r2(p, t):
    return 1 - jnp.sum((t - p) ** 2) / jnp.sum((t - t.mean()) ** 2)


def _binary_auc(scores, labels):
    """Mann-Whitney: mean rank of the positives, ties at their average rank."""
    s = jnp.sort(scores)
    rank = (jnp.searchsorted(s, scores, "left") + jnp.searchsorted(s, scores, "right") + 1) / 2
    pos = labels.astype(jnp.float32)
    n_pos = pos.sum()
    n_neg = scores.shape[0] - n_pos
    return (jnp.sum(rank * pos) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


_auc = jax.jit(_binary_auc)


@jax.jit
def _auc_ovr(probs, labels):
    onehot = (labels[:, None] == jnp.arange(C)).astype(jnp.int32)
    return jnp.mean(jax.vmap(_binary_auc, in_axes=1)(probs, onehot))


@jax.jit
def _ap(scores, labels):
    """Mean over positives of the precision at their score (ties as one threshold)."""
    order = jnp.argsort(scores)
    s, y = scores[order], labels[order].astype(jnp.float32)
    before = jnp.concatenate([jnp.zeros(1), jnp.cumsum(y)])
    first = jnp.searchsorted(s, s, "left")
    tp = y.sum() - before[first]
    precision = tp / (s.shape[0] - first)
    return jnp.sum(precision * y) / y.sum()


def _gauss(size=11, sigma=1.5):
    x = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    g = jnp.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@jax.jit
def _ssim(p, t):
    n, h, w, c = p.shape
    maps = jnp.moveaxis(jnp.stack([p, t, p * p, t * t, p * t]), -1, 1).reshape(-1, h, w, 1)
    g = _gauss()
    dims = ("NHWC", "HWIO", "NHWC")
    hi = jax.lax.Precision.HIGHEST
    maps = jax.lax.conv_general_dilated(maps, g.reshape(11, 1, 1, 1), (1, 1), "VALID",
                                        dimension_numbers=dims, precision=hi)
    maps = jax.lax.conv_general_dilated(maps, g.reshape(1, 11, 1, 1), (1, 1), "VALID",
                                        dimension_numbers=dims, precision=hi)
    mp, mt, pp, tt, pt = maps.reshape(5, n * c, *maps.shape[1:3])
    vp, vt, cov = jnp.maximum(pp - mp**2, 0), jnp.maximum(tt - mt**2, 0), pt - mp * mt
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = (2 * mp * mt + c1) / (mp**2 + mt**2 + c1) * (2 * cov + c2) / (vp + vt + c2)
    return jnp.mean(ssim_map)


# -- the cases ---------------------------------------------------------------------------------


def _data(b: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, C)).astype(np.float32)
    labels = rng.integers(0, C, size=b).astype(np.int32)
    preds = rng.normal(size=b).astype(np.float32)
    targets = (preds + rng.normal(size=b)).astype(np.float32)
    y01 = (rng.random(b) < 0.4).astype(np.int32)
    scores = np.round(rng.beta(2, 5, size=b) + 0.3 * y01, 3).astype(np.float32)  # ties
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    n_img = max(1, b // 256)
    img_p = rng.random((n_img, 32, 32, 3)).astype(np.float32)
    img_t = np.clip(img_p + 0.1 * rng.normal(size=img_p.shape), 0, 1).astype(np.float32)
    return {"logits": logits, "labels": labels, "preds": preds, "targets": targets,
            "y01": y01, "scores": scores, "probs": probs, "img_p": img_p, "img_t": img_t}


def _cases(d):
    """name -> (metrix call, hand-jit call, torchmetrics call or None, sklearn call or None)."""
    from sklearn import metrics as skm

    tm = _torchmetrics()
    t = {k: tm[0].from_numpy(v) for k, v in d.items()} if tm else None
    if tm:
        torch, tmf = tm
        t["logits_chw"] = torch.from_numpy(np.ascontiguousarray(d["img_p"].transpose(0, 3, 1, 2)))
        t["target_chw"] = torch.from_numpy(np.ascontiguousarray(d["img_t"].transpose(0, 3, 1, 2)))
    acc, f1 = mx.Accuracy(), mx.F1Score(num_classes=C, average="macro")
    mse, pearson, r2 = mx.MSE(), mx.PearsonCorrCoef(), mx.R2Score()
    auc, ap = mx.RocAuc(), mx.AveragePrecision()
    auc_mc = mx.RocAuc(task="multiclass", num_classes=C)
    ssim = mx.SSIM()
    cases = {
        "Accuracy": (
            lambda: acc(logits=d["logits"], labels=d["labels"]),
            lambda: _accuracy(d["logits"], d["labels"]),
            tm and (lambda: tmf.multiclass_accuracy(t["logits"], t["labels"], num_classes=C,
                                                    average="micro")),
            lambda: skm.accuracy_score(d["labels"], d["logits"].argmax(-1)),
        ),
        "F1Score macro (10 classes)": (
            lambda: f1(preds=d["logits"], labels=d["labels"]),
            lambda: _f1_macro(d["logits"], d["labels"]),
            tm and (lambda: tmf.multiclass_f1_score(t["logits"], t["labels"], num_classes=C,
                                                    average="macro")),
            lambda: skm.f1_score(d["labels"], d["logits"].argmax(-1), average="macro"),
        ),
        "MSE": (
            lambda: mse(preds=d["preds"], targets=d["targets"]),
            lambda: _mse(d["preds"], d["targets"]),
            tm and (lambda: tmf.mean_squared_error(t["preds"], t["targets"])),
            lambda: skm.mean_squared_error(d["targets"], d["preds"]),
        ),
        "PearsonCorrCoef": (
            lambda: pearson(preds=d["preds"], targets=d["targets"]),
            lambda: _pearson(d["preds"], d["targets"]),
            tm and (lambda: tmf.pearson_corrcoef(t["preds"], t["targets"])),
            None,
        ),
        "R2Score": (
            lambda: r2(preds=d["preds"], targets=d["targets"]),
            lambda: _r2(d["preds"], d["targets"]),
            tm and (lambda: tmf.r2_score(t["preds"], t["targets"])),
            lambda: skm.r2_score(d["targets"], d["preds"]),
        ),
        "RocAuc binary (exact)": (
            lambda: auc(preds=d["scores"], labels=d["y01"]),
            lambda: _auc(d["scores"], d["y01"]),
            tm and (lambda: tmf.binary_auroc(t["scores"], t["y01"])),
            lambda: skm.roc_auc_score(d["y01"], d["scores"]),
        ),
        "RocAuc multiclass (ovr macro)": (
            lambda: auc_mc(preds=d["probs"], labels=d["labels"]),
            lambda: _auc_ovr(d["probs"], d["labels"]),
            tm and (lambda: tmf.multiclass_auroc(t["probs"], t["labels"], num_classes=C,
                                                 average="macro")),
            lambda: skm.roc_auc_score(d["labels"], d["probs"], multi_class="ovr"),
        ),
        "AveragePrecision binary (exact)": (
            lambda: ap(preds=d["scores"], labels=d["y01"]),
            lambda: _ap(d["scores"], d["y01"]),
            tm and (lambda: tmf.binary_average_precision(t["scores"], t["y01"])),
            lambda: skm.average_precision_score(d["y01"], d["scores"]),
        ),
        "SSIM": (
            lambda: ssim(preds=d["img_p"], targets=d["img_t"]),
            lambda: _ssim(d["img_p"], d["img_t"]),
            tm and (lambda: tmf.structural_similarity_index_measure(
                t["logits_chw"], t["target_chw"], data_range=1.0)),
            None,
        ),
    }
    return cases


def _torchmetrics():
    try:
        common.torchvision_shim()
        import torch
        import torchmetrics.functional as tmf
        import torchmetrics.functional.classification as tmc
    except Exception:  # noqa: BLE001 - an optional peer
        return None
    # One torch thread: no OpenMP workers left spinning into the next callable's time (a
    # pause before each call, common.settle, would instead cost every jax call a cold start).
    torch.set_num_threads(1)
    for name in dir(tmc):  # one namespace for the calls below
        if not name.startswith("_") and not hasattr(tmf, name):
            setattr(tmf, name, getattr(tmc, name))
    return torch, tmf


def _blocked(fn):
    def run():
        out = fn()
        return float(out) if not isinstance(out, jax.Array) else jax.block_until_ready(out)

    return run


def _target_ok(mine, hand):
    return mine <= max(1.5 * hand, hand + 15e-6)


def oneshot_rows(sizes, repeats):
    rows = []
    print(f"{'metric':<34}{'B':>8}{'metrix':>11}{'hand-jit':>11}{'torchm.':>11}{'sklearn':>11}"
          f"{'/hand':>8}{'/torchm':>9}  target")
    for b in sizes:
        d = _data(b)
        for name, (mine, hand, tm, sk) in _cases(d).items():
            runs = {"metrix": _blocked(mine), "hand": _blocked(hand)}
            if tm:
                runs["torchmetrics"] = _blocked(tm)
            if sk:
                runs["sklearn"] = _blocked(sk)
            values, failed = {}, {}
            for k, fn in list(runs.items()):  # warm-up (compiles); a failing call is reported
                try:
                    values[k] = float(np.asarray(fn()))
                except Exception as err:  # noqa: BLE001 - printed, the row goes on
                    failed[k] = f"{type(err).__name__}: {str(err)[:90]}"
                    del runs[k]
            if "metrix" in failed or "hand" in failed:
                print(f"{name:<34}{b:>8}  FAILS: {failed}")
                rows.append(common.row(f"{name}/B={b}", None, "s", note=str(failed)))
                continue
            t = common.interleaved_batch_medians(runs, repeats)
            if not math.isclose(values["metrix"], values["hand"], rel_tol=2e-3, abs_tol=2e-4):
                print(f"DISAGREES: {name} B={b} metrix {values['metrix']} hand {values['hand']}")
            ratio_tm = t["metrix"] / t["torchmetrics"] if "torchmetrics" in t else None
            ok = _target_ok(t["metrix"], t["hand"]) and (ratio_tm is None or ratio_tm < 1)
            cells = "".join(f"{t[k] * 1e6:9.0f}us" if k in t else f"{'—':>11}"
                            for k in ("metrix", "hand", "torchmetrics", "sklearn"))
            vs_tm = "" if ratio_tm is None else f"{ratio_tm:.2f}"
            print(f"{name:<34}{b:>8}{cells}{t['metrix'] / t['hand']:>8.2f}{vs_tm:>9}  "
                  f"{'met' if ok else 'MISSED'}")
            rows.append(common.row(
                f"{name}/B={b}", t["metrix"], "s", hand_jit=t["hand"],
                torchmetrics=t.get("torchmetrics"), sklearn=t.get("sklearn"),
                ratio_to_hand=t["metrix"] / t["hand"], ratio_to_torchmetrics=ratio_tm))
    return rows


# -- why rows miss: the measurements behind the explanations --------------------------------


def profile_rows(repeats):
    """What the missed rows come down to, measured in the same run (see the module docstring):

    * ``sum`` jitted over 512 vs 1024 float32: XLA:CPU runs a program touching >= ~1024
      elements on its worker thread, a hand-off of tens of microseconds on a small VM, paid by
      the hand-jitted function and metrix alike; torch runs inline.
    * ``sum`` of 10^5 float32, jitted vs torch: one reduction pass of XLA:CPU against torch's.
    * MSE at B=256, one-shot vs its cached compiled program called directly: metrix's per-call
      Python (signature, cache lookup, flag read).
    * R2Score's state step (3 means, co-moments) vs the hand-jitted R2 (3 sums) at 10^5.
    """
    from metrix.core import metric as metric_lib
    from metrix.regression import CoMomentState

    tm = _torchmetrics()
    rng = np.random.default_rng(2)
    small = {n: rng.normal(size=n).astype(np.float32) for n in (512, 1024, 100_000)}
    jsum = jax.jit(jnp.sum)
    runs = {f"jit sum {n}": (lambda x=x: jsum(x).block_until_ready()) for n, x in small.items()}
    if tm:
        torch = tm[0]
        for n in (1024, 100_000):
            tx = torch.from_numpy(small[n])
            runs[f"torch sum {n}"] = lambda tx=tx: float(tx.sum())
    d = _data(256)
    mse = mx.MSE()
    inputs = {"preds": d["preds"], "targets": d["targets"]}
    mse(**inputs)
    mse(**inputs)
    key, leaves, _ = metric_lib._signature(mse, (), inputs)
    program = metric_lib._one_shot_cache[key][1]
    runs["MSE B=256 one-shot"] = lambda: mse(**inputs).block_until_ready()
    if program is not None:
        runs["MSE B=256 its program alone"] = lambda: jax.block_until_ready(program(*leaves))
    big = _data(100_000)
    p, t = big["preds"], big["targets"]
    moments = jax.jit(lambda p, t: CoMomentState.from_rows(p, t))
    runs["R2 state step 1e5 (co-moments)"] = lambda: jax.block_until_ready(moments(p, t))
    runs["R2 hand-jit 1e5 (3 sums)"] = lambda: _r2(p, t).block_until_ready()
    for fn in runs.values():
        fn()
    t_ = common.interleaved_batch_medians(runs, repeats)
    print("\n# behind the missed rows (medians, us; see profile_rows' docstring)")
    rows = []
    for name, seconds in t_.items():
        print(f"{name:<40}{seconds * 1e6:9.1f}us")
        rows.append(common.row(f"profile/{name}", seconds, "s"))
    print(WHY)
    return rows


WHY = """# why rows miss (read with the figures above)
- Rows of >= ~1024 input elements start with XLA:CPU's hand-off to its worker thread
  (jit sum 1024 vs 512); hand-jit pays it too, torch does not: where hand-jit is itself near
  or above torchmetrics (Accuracy B=256, MSE B=100000), metrix cannot be faster than torch.
- MSE B=256 runs inline (512 elements): metrix's per-call Python (one-shot vs its program
  alone) and the value flag are ~10-15 us over a 15-20 us hand-jit; +15 us is the edge.
- MSE B=100000: the exact sum (float32 chunks of 4096 added as double-floats) costs one
  more small tree over hand-jit's plain sum; XLA's reduction pass itself is slower than torch's.
- R2 / Pearson B=100000: the mergeable co-moment state (3 means, the co-moment matrix) takes
  8 reduction passes over the rows where a hand-written R2 takes 3 (R2 state step vs hand-jit);
  XLA:CPU runs each reduction as its own pass, and cannot drop the unused co-moments once
  they are stacked into the state's matrix."""


# -- the eager stateful loops ----------------------------------------------------------------


def _calibrax_accuracy():
    try:
        from calibrax.metrics.functional.classification import accuracy
        from calibrax.metrics.stateful import FrozenBackboneMetric
    except Exception:  # noqa: BLE001 - an optional peer
        return None

    class CalibraxAccuracy(FrozenBackboneMetric):
        """calibrax's documented pattern: Python-list statistics, floats at compute."""

        def __init__(self):
            super().__init__("accuracy")
            self.reset()

        def reset(self):
            self._correct, self._count = [], []

        def _extract_features(self, logits, labels):
            return logits, labels

        def _accumulate(self, features):
            logits, labels = features
            self._correct.append(accuracy(logits, labels) * labels.shape[0])
            self._count.append(labels.shape[0])

        def _compute_from_accumulated(self):
            return {"accuracy": float(sum(self._correct)) / sum(self._count)}

    return CalibraxAccuracy


def stateful_rows(steps, repeats):
    from flax import nnx

    import metrix.nnx as mnnx

    rng = np.random.default_rng(1)
    batches = [(jnp.asarray(rng.normal(size=(256, C)).astype(np.float32)),
                jnp.asarray(rng.integers(0, C, size=256).astype(np.int32))) for _ in range(steps)]

    def loop(make, update, compute):
        def run():
            m = make()
            for logits, labels in batches:
                update(m, logits, labels)
            return jax.block_until_ready(compute(m))

        return run

    runs = {
        "mx.Stateful(Accuracy)": loop(
            lambda: mx.Stateful(mx.Accuracy()),
            lambda m, lg, y: m.update(logits=lg, labels=y), lambda m: m.compute()),
        "metrix.nnx.Accuracy": loop(
            mnnx.Accuracy, lambda m, lg, y: m.update(logits=lg, labels=y), lambda m: m.compute()),
        "flax nnx.metrics.Accuracy": loop(
            nnx.metrics.Accuracy, lambda m, lg, y: m.update(logits=lg, labels=y),
            lambda m: m.compute()),
    }
    calibrax = _calibrax_accuracy()
    if calibrax is not None:
        runs["calibrax 0.1.1 FrozenBackboneMetric"] = loop(
            calibrax, lambda m, lg, y: m.update(logits=lg, labels=y),
            lambda m: m.compute()["accuracy"])
    values = {k: float(np.asarray(fn())) for k, fn in runs.items()}
    t = common.interleaved_medians(runs, repeats)
    ref = values["flax nnx.metrics.Accuracy"]
    print(f"\n# eager update loop: {steps} updates of B=256 + compute (per update)")
    rows = []
    for name, seconds in t.items():
        if not math.isclose(values[name], ref, rel_tol=1e-5):
            print(f"DISAGREES: {name} {values[name]} vs flax nnx {ref}")
        vs = {k: seconds / v for k, v in t.items() if not k.startswith(("mx.", "metrix"))}
        print(f"{name:<40}{seconds / steps * 1e6:9.0f}us/update  "
              + "  ".join(f"x{r:.2f} vs {k}" for k, r in vs.items() if k != name))
        rows.append(common.row(f"stateful/{name}", seconds / steps, "s"))
    if calibrax is None:
        print("calibrax: not installed")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 100_000])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.steps = [256], 3, 5
    print(f"# one-shot metric(**inputs) vs hand-jit; {common.machine_line()}; "
          f"repeats={args.repeats} (median)")
    rows = oneshot_rows(args.sizes, args.repeats)
    rows += stateful_rows(args.steps, max(5, args.repeats // 2))
    rows += profile_rows(max(5, args.repeats // 2))
    return rows


if __name__ == "__main__":
    main()
