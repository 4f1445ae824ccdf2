"""Adapters that run the same classification eval loop in metrix and in its peer libraries.

Every adapter builds a ``Loop``: ``run()`` accumulates metric states over all batches (one
jitted step per batch, states carried on the device, no host round trip) and returns the final
values as a dict of floats, so that the benchmark can check the libraries agree before it
trusts their timings. Two workloads:

- ``"two"``: {Accuracy, Average(loss)} (the per-step overhead of issue 2);
- ``"ten"``: a 10-metric classification collection: accuracy, top-5 accuracy, macro precision,
  recall and F1, Matthews correlation, Cohen's kappa, the confusion matrix, log loss (mean
  cross-entropy of the logits) and the mean of a per-example loss.

A peer computes what it offers natively; ``Loop.covered`` names those metrics (a peer that
covers fewer metrics does less work per step, which the benchmark prints beside its time).
A peer whose package is missing raises ``PeerMissing``; the benchmark lists it as
"not installed" (``benchmarks/setup_peers.sh`` installs them in a separate venv).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

TEN = ("accuracy", "top5", "precision", "recall", "f1", "mcc", "kappa", "confusion", "log_loss", "loss")
TWO = ("accuracy", "loss")


class PeerMissing(ImportError):
    """The peer library (or the part of it the adapter needs) is not importable."""


@dataclasses.dataclass
class Loop:
    name: str
    run: Callable[[], dict]
    covered: tuple[str, ...]


def _import(module: str):
    import importlib

    from benchmarks.common import torchvision_shim

    torchvision_shim()
    try:
        return importlib.import_module(module)
    except Exception as err:  # ImportError, or a peer that breaks at import against this jax
        raise PeerMissing(f"{module}: {type(err).__name__}: {err}".splitlines()[0][:160]) from err


def _scalars(values: dict) -> dict:
    return {k: float(np.asarray(v)) for k, v in values.items() if np.ndim(v) == 0}


def _cross_entropy(logits, labels):
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], -1)[:, 0]


# --------------------------------------------------------------------------- hand-written jnp


def _hand_values(confusion, top1, top5, nll, loss, n):
    """All ten values from the carried sums (closed forms; what any careful hand loop computes)."""
    cm = confusion.astype(jnp.float32)
    tp = jnp.diag(cm)
    pred, true, total = cm.sum(0), cm.sum(1), cm.sum()
    precision = jnp.where(pred > 0, tp / jnp.maximum(pred, 1), 0.0)
    recall = jnp.where(true > 0, tp / jnp.maximum(true, 1), 0.0)
    f1 = jnp.where(precision + recall > 0, 2 * precision * recall / jnp.maximum(precision + recall, 1e-30), 0.0)
    correct = tp.sum()
    cov_yp = correct * total - jnp.dot(pred, true)
    cov_pp = total**2 - jnp.dot(pred, pred)
    cov_tt = total**2 - jnp.dot(true, true)
    mcc = cov_yp / jnp.sqrt(cov_pp * cov_tt)
    p_o, p_e = correct / total, jnp.dot(pred, true) / total**2
    n = n.astype(jnp.float32)
    return {
        "accuracy": top1 / n, "top5": top5 / n, "precision": precision.mean(), "recall": recall.mean(),
        "f1": f1.mean(), "mcc": mcc, "kappa": (p_o - p_e) / (1 - p_e), "confusion": confusion,
        "log_loss": nll / n, "loss": loss / n,
    }


def hand_ten_carry(num_classes: int):
    """The hand loop's carry: confusion counts, top-1 / top-5 hits, summed NLL and loss, count."""
    return (jnp.zeros((num_classes, num_classes), jnp.int32), jnp.int32(0), jnp.int32(0),
            jnp.float32(0), jnp.float32(0), jnp.int32(0))


def hand_ten_step(carry, logits, labels, loss):
    confusion, top1, top5, nll, loss_sum, n = carry
    pred = jnp.argmax(logits, -1)
    confusion = confusion + jnp.zeros_like(confusion).at[labels, pred].add(1)
    in_top5 = (jax.lax.top_k(logits, 5)[1] == labels[:, None]).any(-1)
    return (confusion, top1 + (pred == labels).sum(dtype=jnp.int32), top5 + in_top5.sum(dtype=jnp.int32),
            nll + _cross_entropy(logits, labels).sum(), loss_sum + loss.sum(), n + labels.size)


def hand_written(workload: str, batches, num_classes: int) -> Loop:
    if workload == "two":
        @jax.jit
        def step(carry, logits, labels, loss):
            correct, n, loss_sum = carry
            hit = (jnp.argmax(logits, -1) == labels).sum(dtype=jnp.int32)
            return correct + hit, n + labels.size, loss_sum + loss.sum()

        def run():
            carry = (jnp.int32(0), jnp.int32(0), jnp.float32(0))
            for batch in batches:
                carry = step(carry, *batch)
            correct, n, loss_sum = jax.block_until_ready(carry)
            return {"accuracy": float(correct) / float(n), "loss": float(loss_sum) / float(n)}

        return Loop("hand-written jnp", run, TWO)

    step = jax.jit(hand_ten_step)
    finish = jax.jit(_hand_values)

    def run():
        carry = hand_ten_carry(num_classes)
        for batch in batches:
            carry = step(carry, *batch)
        return _scalars(jax.block_until_ready(finish(*carry)))

    return Loop("hand-written jnp", run, TEN)


# --------------------------------------------------------------------------- metrix


def metrix_metrics(workload: str, num_classes: int) -> dict:
    import metrix as mx

    logits, labels = "preds.logits", "batch.label"
    metrics = {
        "accuracy": mx.Accuracy(logits=logits, labels=labels),
        "loss": mx.Average(values="preds.loss"),
    }
    if workload == "ten":
        scores = {"preds": logits, "labels": labels, "num_classes": num_classes}
        metrics.update(
            top5=mx.Accuracy(logits=logits, labels=labels, top_k=5),
            precision=mx.Precision(**scores, average="macro"),
            recall=mx.Recall(**scores, average="macro"),
            f1=mx.F1Score(**scores, average="macro"),
            mcc=mx.MatthewsCorrCoef(**scores),
            kappa=mx.CohenKappa(**scores),
            confusion=mx.ConfusionMatrix(**scores),
            log_loss=mx.LogLoss(preds=logits, labels=labels, task="multiclass", num_classes=num_classes,
                                from_logits=True),
        )
    return metrics


def metrix_step(metrics):
    import metrix as mx

    def step(states, logits, labels, loss):
        context = {"preds": {"logits": logits, "loss": loss}, "batch": {"label": labels}}
        return mx.merge(states, mx.get_states(metrics, context))

    return step


def metrix_loop(workload: str, batches, num_classes: int) -> Loop:
    import metrix as mx

    metrics = metrix_metrics(workload, num_classes)
    step = jax.jit(metrix_step(metrics))
    finish = jax.jit(mx.compute)  # one program, like the hand loop's jitted finish

    def run():
        states = mx.empty_states(metrics)
        for batch in batches:
            states = step(states, *batch)
        return _scalars(finish(states))

    return Loop("metrix", run, TEN if workload == "ten" else TWO)


def metrix_collection_step(metrics):
    """The same step with ``mx.Collection``: metrics reading one confusion matrix share it."""
    import metrix as mx

    collection = mx.Collection(metrics=metrics)

    def step(state, logits, labels, loss):
        context = {"preds": {"logits": logits, "loss": loss}, "batch": {"label": labels}}
        return state.merge(collection.get_state_from_context(context))

    return collection, step


def metrix_collection_loop(workload: str, batches, num_classes: int) -> Loop:
    collection, step = metrix_collection_step(metrix_metrics(workload, num_classes))
    step = jax.jit(step)
    finish = jax.jit(lambda state: state.compute())

    def run():
        state = collection.empty()
        for batch in batches:
            state = step(state, *batch)
        return _scalars(finish(state))

    return Loop("metrix Collection", run, TEN if workload == "ten" else TWO)


# --------------------------------------------------------------------------- flax nnx


def nnx_loop(workload: str, batches, num_classes: int) -> Loop:
    """flax nnx has Accuracy, Average and Welford: accuracy, loss and (Average of the
    cross-entropy we compute by hand) log loss; the rest of the ten it does not offer."""
    nnx = _import("flax.nnx")
    ten = workload == "ten"
    parts = {"accuracy": nnx.metrics.Accuracy(), "loss": nnx.metrics.Average("loss")}
    if ten:
        parts["log_loss"] = nnx.metrics.Average("nll")
    metrics = nnx.MultiMetric(**parts)

    @nnx.jit
    def step(metrics, logits, labels, loss):
        extra = {"nll": _cross_entropy(logits, labels)} if ten else {}
        metrics.update(logits=logits, labels=labels, loss=loss, **extra)

    def run():
        metrics.reset()
        for batch in batches:
            step(metrics, *batch)
        return _scalars(jax.block_until_ready(metrics.compute()))

    return Loop("flax nnx MultiMetric", run, tuple(parts))


# --------------------------------------------------------------------------- metrax


def metrax_loop(workload: str, batches, num_classes: int) -> Loop:
    """metrax: Accuracy (on arg-maxed predictions) and Average; its Precision / Recall are
    binary only, so of the ten it covers accuracy, loss and (Average of hand cross-entropy)
    log loss."""
    metrax = _import("metrax")
    ten = workload == "ten"

    def states_of(logits, labels, loss):
        out = {
            "accuracy": metrax.Accuracy.from_model_output(predictions=jnp.argmax(logits, -1), labels=labels),
            "loss": metrax.Average.from_model_output(values=loss),
        }
        if ten:
            out["log_loss"] = metrax.Average.from_model_output(values=_cross_entropy(logits, labels))
        return out

    @jax.jit
    def step(states, logits, labels, loss):
        new = states_of(logits, labels, loss)
        return {k: states[k].merge(new[k]) for k in states}

    @jax.jit
    def first(logits, labels, loss):
        return states_of(logits, labels, loss)

    def run():
        states = first(*batches[0])  # metrax has no jit-friendly empty() for every metric
        for batch in batches[1:]:
            states = step(states, *batch)
        return _scalars({k: v.compute() for k, v in jax.block_until_ready(states).items()})

    return Loop("metrax", run, ("accuracy", "loss") + (("log_loss",) if ten else ()))


# --------------------------------------------------------------------------- CLU


def clu_loop(workload: str, batches, num_classes: int) -> Loop:
    """CLU: a ``Collection`` of Accuracy and Average (and Average of the cross-entropy)."""
    clu_metrics = _import("clu.metrics")
    flax_struct = _import("flax.struct")
    ten = workload == "ten"
    fields = {"accuracy": clu_metrics.Accuracy, "loss": clu_metrics.Average.from_output("loss")}
    if ten:
        fields["log_loss"] = clu_metrics.Average.from_output("nll")
    Collection = flax_struct.dataclass(
        type("BenchCollection", (clu_metrics.Collection,), {"__annotations__": fields})
    )

    @jax.jit
    def step(collection, logits, labels, loss):
        extra = {"nll": _cross_entropy(logits, labels)} if ten else {}
        return collection.merge(Collection.single_from_model_output(logits=logits, labels=labels, loss=loss, **extra))

    def run():
        collection = Collection.empty()
        for batch in batches:
            collection = step(collection, *batch)
        return _scalars(jax.block_until_ready(collection).compute())

    return Loop("CLU Collection", run, tuple(fields))


# --------------------------------------------------------------------------- Kauldron


def kauldron_loop(workload: str, batches, num_classes: int) -> Loop:
    """Kauldron ``kd.metrics``: Accuracy, and averages through its ``AverageState`` (the 1.4
    wheel exports no ``Average`` metric, so a four-line one is declared here the way its own
    Accuracy is); of the ten: accuracy, loss and (Average of hand cross-entropy) log loss.
    Its other classification metrics (RocAuc, Precision1) are not jit-able per step. Its
    ``compute()`` compiles a small ``lax.cond`` afresh on every call (about 0.1 s here); that is
    part of its time, amortised over ``--steps``."""
    kd_metrics = _import("kauldron.metrics")
    flax_struct = _import("flax.struct")
    ten = workload == "ten"

    @dataclasses.dataclass(kw_only=True, frozen=True, eq=True)
    class Average(kd_metrics.Metric):
        values: str = "preds.loss"

        @flax_struct.dataclass
        class State(kd_metrics.AverageState):
            pass

        def get_state(self, values):
            return self.State.from_values(values=values)

    metrics = {
        "accuracy": kd_metrics.Accuracy(logits="preds.logits", labels="batch.label"),
        "loss": getattr(kd_metrics, "Average", Average)(values="preds.loss"),
    }
    if ten:
        metrics["log_loss"] = getattr(kd_metrics, "Average", Average)(values="preds.nll")

    def states_of(logits, labels, loss):
        args = {
            "accuracy": {"logits": logits, "labels": labels[:, None]},  # kd wants labels (..., 1)
            "loss": {"values": loss[:, None]},
            "log_loss": {"values": _cross_entropy(logits, labels)[:, None]},
        }
        return {k: m.get_state(**args[k]) for k, m in metrics.items()}

    @jax.jit
    def step(states, logits, labels, loss):
        new = states_of(logits, labels, loss)
        return {k: states[k].merge(new[k]) for k in states}

    first = jax.jit(states_of)

    def run():
        states = first(*batches[0])
        for batch in batches[1:]:
            states = step(states, *batch)
        return _scalars({k: v.compute() for k, v in jax.block_until_ready(states).items()})

    return Loop("Kauldron kd.metrics", run, tuple(metrics))


# --------------------------------------------------------------------------- torchmetrics


def torchmetrics_loop(workload: str, batches, num_classes: int) -> Loop:
    """torchmetrics ``MetricCollection`` on CPU torch (eager ``update`` per batch; its
    compute groups share one confusion state among precision / recall / F1 / ...)."""
    torch = _import("torch")
    tm = _import("torchmetrics")
    cls = _import("torchmetrics.classification")
    ten = workload == "ten"
    parts = {"accuracy": cls.MulticlassAccuracy(num_classes, average="micro")}
    if ten:
        parts.update(
            top5=cls.MulticlassAccuracy(num_classes, top_k=5, average="micro"),
            precision=cls.MulticlassPrecision(num_classes, average="macro"),
            recall=cls.MulticlassRecall(num_classes, average="macro"),
            f1=cls.MulticlassF1Score(num_classes, average="macro"),
            mcc=cls.MulticlassMatthewsCorrCoef(num_classes),
            kappa=cls.MulticlassCohenKappa(num_classes),
            confusion=cls.MulticlassConfusionMatrix(num_classes),
        )
    scores = tm.MetricCollection(parts, compute_groups=True)
    loss_mean, nll_mean = tm.MeanMetric(), tm.MeanMetric()
    torch_batches = [tuple(torch.from_numpy(np.array(x)) for x in batch) for batch in batches]

    def run():
        for metric in (scores, loss_mean, nll_mean):
            metric.reset()
        with torch.inference_mode():
            for logits, labels, loss in torch_batches:
                labels = labels.long()
                scores.update(logits, labels)
                loss_mean.update(loss)
                if ten:
                    nll_mean.update(torch.nn.functional.cross_entropy(logits, labels, reduction="none"))
            values = dict(scores.compute(), loss=loss_mean.compute())
            if ten:
                values["log_loss"] = nll_mean.compute()
        return {k: float(v) for k, v in values.items() if v.ndim == 0}

    return Loop("torchmetrics", run, tuple(parts) + ("loss",) + (("log_loss",) if ten else ()))


PEERS = {
    "flax nnx": nnx_loop,
    "metrax": metrax_loop,
    "CLU": clu_loop,
    "Kauldron": kauldron_loop,
    "torchmetrics": torchmetrics_loop,
}
