"""Multiclass ``top_k`` on Precision / Recall / F-scores / Specificity against torchmetrics.

torchmetrics 1.9 counts a top-k prediction as one predicted class per example: the label when
it is among the k largest scores, else the arg-max; multiclass precision and recall then
macro-average over the classes present in the labels. metrix builds the same confusion matrix
(see ``confusion_counts``), so every average equals torchmetrics' on ``data[mask]``, merged
over uneven batches, eager and jit, float32 and bf16 scores. torchmetrics 1.9 defines no
multilabel ``top_k`` (``multilabel_precision`` has no such argument): metrix refuses it.
"""

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metrix as mx
from metrix.classification.confusion import (
    F1Score,
    FBetaScore,
    Precision,
    Recall,
    Specificity,
    confusion_counts,
)
from tests import helpers

N, C = 157, 5
SPLITS = (0, 40, 41, 113, N)  # uneven batches, one of a single example
AVERAGES = ("micro", "macro", "weighted", "none")
SCORES = {  # metric class, its torchmetrics function, extra config
    "precision": (Precision, "multiclass_precision", {}),
    "recall": (Recall, "multiclass_recall", {}),
    "f1": (F1Score, "multiclass_f1_score", {}),
    "fbeta": (FBetaScore, "multiclass_fbeta_score", {"beta": 2.0}),
    "specificity": (Specificity, "multiclass_specificity", {}),
}


def _tmc():
    # torchvision's compiled ops do not load on this CPU torch; its pure-Python parts do.
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    return pytest.importorskip("torchmetrics.functional.classification")


def make_data(seed=0, dtype=np.float32):
    """Scores without ties (torch and jax may break ties differently); class 4 is never a
    label. bf16 scores are each row's ranks (0, 0.5, 1, ...): exact in bf16, never tied."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 1, 2, 3], size=N).astype(np.int32)
    scores = rng.normal(size=(N, C))
    scores[np.arange(N), labels] += 0.5
    if dtype != np.float32:
        scores = np.argsort(np.argsort(scores, axis=-1), axis=-1) * 0.5 - 1.0
    scores = np.asarray(jnp.asarray(scores, dtype))
    assert all(len(set(row)) == C for row in np.asarray(scores, np.float64))
    mask = rng.uniform(size=N) < 0.7
    return scores, labels, mask


def reference(score, preds, labels, top_k, average):
    torch, tmc = pytest.importorskip("torch"), _tmc()
    _, name, config = SCORES[score]
    return getattr(tmc, name)(
        torch.tensor(np.asarray(preds, np.float64)),
        torch.tensor(labels).long(),
        num_classes=C,
        top_k=top_k,
        average=average,
        **config,
    ).numpy()


def _metric(score, top_k, average="macro"):
    cls, _, config = SCORES[score]
    return cls(
        preds="preds",
        labels="labels",
        mask="mask",
        num_classes=C,
        top_k=top_k,
        average=average,
        **config,
    )


def _values(state, top_k, jit, scores=tuple(SCORES)):
    """``{(score, average): value}`` from one accumulated confusion state: the counts depend
    on ``top_k`` only, so every score and average re-reads them."""
    pairs = [(s, a) for s in scores for a in AVERAGES]
    states = []
    for score, average in pairs:
        metric = _metric(score, top_k, average)
        states.append(metric.State(parent=metric, matrix=state.matrix, invalid=state.invalid))
    if jit:
        return dict(zip(pairs, jax.jit(lambda xs: [s.compute() for s in xs])(states)))
    return dict(zip(pairs, (s.compute() for s in states)))


def _check(values, preds, labels, top_k):
    for (score, average), got in values.items():
        expected = reference(score, preds, labels, top_k, average)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=(score, average))


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("jit, masked", [(False, True), (True, False), (True, True)])
def test_top_k_matches_torchmetrics(top_k, jit, masked):
    preds, labels, mask = make_data()
    mask = mask if masked else None
    state = helpers.accumulate(
        _metric("precision", top_k),
        splits=SPLITS,
        jit=jit,
        jit_merge=jit,
        preds=preds,
        labels=labels,
        mask=mask,
    )
    keep = slice(None) if mask is None else mask
    _check(_values(state, top_k, jit), preds[keep], labels[keep], top_k)


def test_bf16_scores_match_torchmetrics_on_the_rounded_values():
    preds, labels, mask = make_data(seed=1, dtype=jnp.bfloat16)
    state = helpers.accumulate(
        _metric("f1", 2), splits=SPLITS, jit=True, preds=preds, labels=labels, mask=mask
    )
    values = _values(state, 2, jit=False, scores=("precision", "recall", "f1"))
    _check(values, np.asarray(preds, np.float64)[mask], labels[mask], 2)


def test_top_k_1_is_the_default_everywhere():
    """top_k=1 builds today's matrix, shares today's key and gives today's numbers."""
    preds, labels, _ = make_data(seed=2)
    for cls, _, config in SCORES.values():
        for average in AVERAGES:
            base = cls(preds="p", labels="y", num_classes=C, average=average, **config)
            top1 = cls(preds="p", labels="y", num_classes=C, average=average, top_k=1, **config)
            # Equal metrics: one compiled program, one shared state, the same numbers.
            assert base == top1 and base.state_sharing_key() == top1.state_sharing_key()
    np.testing.assert_array_equal(
        confusion_counts(preds, labels, task="multiclass", num_classes=C, top_k=1),
        confusion_counts(preds, labels, task="multiclass", num_classes=C),
    )


def test_sharing_keys_and_collection():
    kw = {"preds": "preds", "labels": "labels", "num_classes": C}
    p1, p2, r2 = mx.Precision(**kw), mx.Precision(**kw, top_k=2), mx.Recall(**kw, top_k=2)
    mcc = mx.MatthewsCorrCoef(**kw)
    assert p1.state_sharing_key() == mcc.state_sharing_key()
    assert p2.state_sharing_key() == r2.state_sharing_key() != p1.state_sharing_key()
    assert mx.Precision(**kw, top_k=3).state_sharing_key() != p2.state_sharing_key()
    collection = mx.Collection(metrics={"p1": p1, "p2": p2, "r2": r2, "mcc": mcc})
    assert collection.num_states == 2
    preds, labels, _ = make_data(seed=3)
    values = collection.get_state(preds=preds, labels=labels).compute()
    for name, metric in (("p1", p1), ("p2", p2), ("r2", r2), ("mcc", mcc)):
        np.testing.assert_allclose(values[name], metric(preds, labels), rtol=1e-7)
    np.testing.assert_allclose(
        values["p2"], reference("precision", preds, labels, 2, "macro"), rtol=1e-6
    )


def test_ties_take_the_lowest_index():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 3.0]], np.float32)
    labels = np.array([1, 2, 2], np.int32)
    # top-1 is the lowest index among equal scores: 0, 1, 0; with k=2 the labels are hits.
    top1 = confusion_counts(scores, labels, task="multiclass", num_classes=3)
    top2 = confusion_counts(scores, labels, task="multiclass", num_classes=3, top_k=2)
    np.testing.assert_array_equal(top1, [[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(top2, [[0, 0, 0], [0, 1, 0], [0, 0, 2]])


def test_top_k_equal_to_num_classes_is_perfect_recall():
    preds, labels, _ = make_data(seed=4)
    value = Recall(preds="p", labels="y", num_classes=C, top_k=C, average="micro")(preds, labels)
    assert float(value) == 1.0


@pytest.mark.parametrize(
    "config, match",
    [
        ({"top_k": 0}, "top_k must be an int >= 1"),
        ({"top_k": 2.0}, "top_k must be an int >= 1"),
        ({"top_k": True}, "top_k must be an int >= 1"),
        ({"top_k": C + 1}, f"top_k={C + 1} must be <= num_classes={C}"),
        ({"top_k": 2, "task": "multilabel"}, "only defined for task='multiclass'"),
        ({"top_k": 2, "task": "binary", "num_classes": None}, "only defined for task='multiclass'"),
    ],
)
def test_bad_top_k_is_refused_at_construction(config, match):
    config = {"preds": "p", "labels": "y", "num_classes": C, **config}
    with pytest.raises(ValueError, match=match) as err:
        F1Score(**config)
    assert str(err.value).startswith("F1Score")


def test_top_k_needs_scores_not_labels():
    preds, labels, _ = make_data()
    metric = Precision(preds="p", labels="y", num_classes=C, top_k=2)
    with pytest.raises(TypeError, match="Precision.*needs scores") as err:
        metric(preds.argmax(-1).astype(np.int32), labels)
    assert "top_k=2" in str(err.value)
