"""metrax's class API mapped onto metrix: renames only (no maths here).

metrax: ``Cls.from_model_output(predictions=..., labels=..., sample_weights=..., **config)``
returns a state with ``.merge``/``.compute``/``.reduce``; ``Cls.empty()``.
metrix: ``Metric(**config).get_state(preds=..., targets/labels=..., weights=...)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import metrix as mx
from metrix.core import numerics
from metrix.segmentation import SoftDice


@jax.tree_util.register_pytree_node_class
class Wrapped:
    """A metrix state (or a dict of states, for metrax's several ``ks``) as metrax's state."""

    def __init__(self, states, stack=None):
        self.states = states
        self.stack = stack  # names whose values are stacked (metrax's ks / rouge triple)

    def tree_flatten(self):
        return (self.states,), self.stack

    @classmethod
    def tree_unflatten(cls, stack, children):
        return cls(children[0], stack)

    def merge(self, other):
        return Wrapped(jax.tree.map(lambda a, b: a.merge(b), self.states, other.states,
                                    is_leaf=lambda s: isinstance(s, mx.State)), self.stack)

    def reduce(self):
        return Wrapped(jax.tree.map(mx.merge_stacked, self.states,
                                    is_leaf=lambda s: isinstance(s, mx.State)), self.stack)

    def compute(self):
        if isinstance(self.states, dict):
            values = {k: s.compute() for k, s in self.states.items()}
            return jnp.stack([jnp.asarray(values[k]) for k in self.stack])
        value = self.states.compute()
        if self.stack is not None:
            return jnp.stack([jnp.asarray(value[k]) for k in self.stack])
        return value

    def __getattr__(self, name):  # metrax's state fields, where metrix has the same name
        states = self.__dict__["states"]
        value = getattr(states, name)
        return numerics.df_value(value) if hasattr(value, "shape") and value.shape == (2,) else value


def _drop_none(**kw):
    return {k: v for k, v in kw.items() if v is not None}


class _Peer:
    metric = None  # a callable config -> metrix metric

    @classmethod
    def empty(cls):
        return Wrapped(cls.metric().empty())


class Average(_Peer):
    metric = mx.Average

    @classmethod
    def from_model_output(cls, values, sample_weights=None):
        return Wrapped(mx.Average().get_state(**_drop_none(values=values, weights=sample_weights)))


def _regression(metric_cls):
    class Peer(_Peer):
        metric = metric_cls

        @classmethod
        def from_model_output(cls, predictions, labels, sample_weights=None):
            inputs = _drop_none(preds=predictions, targets=labels, weights=sample_weights)
            return Wrapped(metric_cls().get_state(**inputs))

    Peer.__name__ = metric_cls.__name__
    return Peer


MSE = _regression(mx.MSE)
RMSE = _regression(mx.RMSE)
MAE = _regression(mx.MAE)
RSQUARED = _regression(mx.R2Score)


class Accuracy(_Peer):
    metric = mx.Accuracy

    @classmethod
    def from_model_output(cls, predictions, labels, sample_weights=None):
        inputs = _drop_none(preds=predictions, labels=labels, weights=sample_weights)
        return Wrapped(mx.Accuracy().get_state(**inputs))


def _confusion(metric_cls):
    class Peer(_Peer):
        metric = staticmethod(lambda: metric_cls(task="binary"))

        @classmethod
        def from_model_output(cls, predictions, labels, threshold=0.5, **kw):
            m = metric_cls(task="binary", threshold=threshold)
            return Wrapped(m.get_state(preds=predictions, labels=labels))

    return Peer


Precision = _confusion(mx.Precision)
Recall = _confusion(mx.Recall)


class FBetaScore(_Peer):
    metric = staticmethod(lambda: mx.FBetaScore(task="binary"))

    @classmethod
    def from_model_output(cls, predictions, labels, beta=1.0, threshold=0.5):
        # metrax sums over axis 0 only: a (n, L) input is L labels, one score each.
        if jnp.ndim(labels) == 2:
            m = mx.FBetaScore(task="multilabel", num_classes=labels.shape[-1], average="none",
                              beta=beta, threshold=threshold)
        else:
            m = mx.FBetaScore(task="binary", beta=beta, threshold=threshold)
        return Wrapped(m.get_state(preds=predictions, labels=labels))


def _area(metric_cls):
    class Peer(_Peer):
        metric = staticmethod(lambda: metric_cls(task="binary"))

        @classmethod
        def from_model_output(cls, predictions, labels, sample_weights=None):
            inputs = _drop_none(preds=predictions, labels=labels, weights=sample_weights)
            return Wrapped(metric_cls(task="binary").get_state(**inputs))

    return Peer


AUCROC = _area(mx.RocAuc)
AUCPR = _area(mx.AveragePrecision)


class Dice(_Peer):
    metric = SoftDice

    @classmethod
    def from_model_output(cls, predictions, labels):
        return Wrapped(SoftDice().get_state(preds=predictions, targets=labels))


class IoU(_Peer):
    @classmethod
    def from_model_output(cls, predictions, targets, num_classes, target_class_ids, from_logits=False):
        m = mx.MeanIoU(num_classes=num_classes, class_ids=target_class_ids)
        key = "logits" if from_logits else "preds"
        return Wrapped(m.get_state(targets=targets, **{key: predictions}))


class SSIM(_Peer):
    @classmethod
    def from_model_output(cls, predictions, targets, max_val, filter_size=11, filter_sigma=1.5,
                          k1=0.01, k2=0.03):
        m = mx.SSIM(data_range=max_val, window_size=filter_size, sigma=filter_sigma, k1=k1, k2=k2)
        return Wrapped(m.get_state(preds=predictions, targets=targets))


class PSNR(_Peer):
    @classmethod
    def from_model_output(cls, predictions, targets, max_val):
        return Wrapped(mx.PSNR(data_range=max_val).get_state(preds=predictions, targets=targets))


class SNR(_Peer):
    @classmethod
    def from_model_output(cls, predictions, targets, zero_mean=False):
        return Wrapped(mx.SNR(zero_mean=zero_mean).get_state(preds=predictions, targets=targets))


class BLEU(_Peer):
    metric = mx.BLEU

    @classmethod
    def from_model_output(cls, predictions, references, max_order=4):
        m = mx.BLEU(max_ngram_order=max_order)
        return Wrapped(m.get_state(preds=predictions, targets=references))


class RougeL(_Peer):
    @classmethod
    def from_model_output(cls, predictions, references):
        m = mx.ROUGE(rouge_keys=("rougeL",))
        state = m.get_state(preds=predictions, targets=references)
        return Wrapped(state, stack=("rougeL_precision", "rougeL_recall", "rougeL"))


class RougeN(_Peer):
    @classmethod
    def from_model_output(cls, predictions, references, order=2):
        key = f"rouge{order}"
        state = mx.ROUGE(rouge_keys=(key,)).get_state(preds=predictions, targets=references)
        return Wrapped(state, stack=(f"{key}_precision", f"{key}_recall", key))


class WER(_Peer):
    metric = mx.WER

    @classmethod
    def from_model_output(cls, predictions, references):
        return Wrapped(mx.WER().get_state(preds=predictions, targets=references))


class Perplexity(_Peer):
    metric = mx.Perplexity

    @classmethod
    def from_model_output(cls, predictions, labels, sample_weights=None, from_logits=False):
        key = "logits" if from_logits else "probs"  # metrix: logits or log_probs only
        inputs = _drop_none(labels=labels, weights=sample_weights, **{key: predictions})
        return Wrapped(mx.Perplexity().get_state(**inputs))


def _ranking(metric_cls, **config):
    class Peer(_Peer):
        @classmethod
        def from_model_output(cls, predictions, labels, ks):
            names = [int(k) for k in ks]
            states = {
                k: metric_cls(k=k, **config).get_state(scores=predictions, relevance=labels)
                for k in names
            }
            return Wrapped(states, stack=names)

    return Peer


AveragePrecisionAtK = _ranking(mx.MAP)
PrecisionAtK = _ranking(mx.PrecisionAtK, adaptive_k=True)  # / min(k, list length)
RecallAtK = _ranking(mx.RecallAtK)
# metrax's gain is 2^rel - 1 and its argsort is stable (ties in item order).
DCGAtK = _ranking(mx.DCG, gain="exponential", ignore_ties=True)
NDCGAtK = _ranking(mx.NDCG, gain="exponential", ignore_ties=True)
MRR = _ranking(mx.MRR)
