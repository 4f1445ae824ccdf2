"""Configs: no silent last-wins, no hang, no RecursionError, no typo that waits for compute().

Each case asserts the exact outcome: the error type and the words of its message that name
the file, the line or entry, and what to do (close matches for typos).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import typing

import pytest

import metrix as mx
from metrix.core import annotations as annotation_lib
from metrix.core import keys as keys_lib
from metrix.runtime.config import ConfigError, load_config, metric_registry


def _write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(tmp_path, text):
    return load_config(_write(tmp_path, text))


ACC = "{metric: Accuracy, logits: a, labels: b}"

# ---------------------------------------------------------------------------- duplicates

DUPLICATES = {
    "top-level name": (
        f"acc: {ACC}\nf1: {{metric: F1Score, preds: a, labels: b, num_classes: 3}}\nacc: {ACC}\n",
        (r"c\.yaml:3: duplicate metric name 'acc' \(first at line 1\); YAML would keep only the "
        r"last one: remove or rename one of them"),
    ),
    "option, block style": (
        "acc:\n  metric: Accuracy\n  logits: a\n  labels: b\n  logits: c\n",
        r"c\.yaml:5: duplicate option 'logits' in entry acc \(first at line 3\)",
    ),
    "option, flow style": (
        "acc: {metric: Accuracy, logits: a, labels: b, top_k: 1, top_k: 5}\n",
        r"c\.yaml:1: duplicate option 'top_k' in entry acc \(first at line 1\)",
    ),
    "name in a group": (
        f"g:\n  acc: {ACC}\n  acc: {ACC}\n",
        r"c\.yaml:3: duplicate metric name 'acc' in group g \(first at line 2\)",
    ),
    "option in a nested entry": (
        ("g:\n  h:\n    cm: {metric: ConfusionMatrix, preds: a, labels: b, num_classes: 3,\n"
        "         num_classes: 4}\n"),
        r"c\.yaml:4: duplicate option 'num_classes' in entry g\.h\.cm \(first at line 3\)",
    ),
}


@pytest.mark.parametrize("case", DUPLICATES)
def test_duplicate_keys_are_refused_with_both_lines(tmp_path, case):
    text, message = DUPLICATES[case]
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_what_is_not_a_duplicate_still_loads(tmp_path):
    # the same name in two groups; a merge key overridden on purpose; an alias reused
    config = _load(
        tmp_path,
        f"train: {{acc: {ACC}}}\ntest: {{acc: {ACC}}}\n"
        f"base: &base {ACC}\n"
        "top2:\n  <<: *base\n  top_k: 2\n"
        "again: *base\n",
    )
    assert config["train"]["acc"] == config["test"]["acc"] == config["again"]
    assert config["top2"].top_k == 2 and config["top2"].logits == "a"


# ---------------------------------------------------------------------------- aliases

# The classic "billion laughs" inside an option of a valid entry: 9 levels of 9 aliases over
# a list of 9 strings, 9^10 (3.5 billion) strings once expanded. Before, describing the
# wrongly typed option (its repr) hung.
BOMB = (
    "acc:\n  metric: Accuracy\n  logits: a\n  labels: b\n  top_k:\n"
    '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
)


def _within(seconds, fn):
    """``fn()``'s outcome (value or exception), or a failure if it does not finish in time."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)  # a hung load cannot block the exit
    start = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return out, time.monotonic() - start


def test_alias_bomb_is_refused_quickly(tmp_path):
    assert 600 <= len(BOMB.encode()) <= 800  # the "700-byte" bomb
    path = _write(tmp_path, BOMB)
    out, seconds = _within(30, lambda: load_config(path))
    err = out.get("error")
    assert isinstance(err, ConfigError), out
    assert "c.yaml:" in str(err)
    assert "expands to more than 100,000 values through YAML aliases (an alias bomb?)" in str(err)
    assert seconds < 5


@pytest.mark.parametrize(
    "text, message",
    [
        (
            f"g: &g\n  acc: {ACC}\n  again: *g\n",
            (r"c\.yaml:1: g\.again: recursive alias: &g \(anchored at line 1\) holds an alias to "
            r"itself; a config must be a finite tree"),
        ),
        (
            f"top:\n  h: &h\n    acc: {ACC}\n    inner:\n      loop: *h\n",
            r"c\.yaml:2: top\.h\.inner\.loop: recursive alias: &h \(anchored at line 2\)",
        ),
        ("a: &a [*a]\n", r"c\.yaml:1: a\[0\]: recursive alias: &a \(anchored at line 1\)"),
    ],
    ids=["group", "nested group", "list"],
)
def test_recursive_aliases_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_deep_nesting_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml:1: .*nested deeper than 64 levels"):
        _load(tmp_path, "a: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML: nested deeper than Python"):
        _load(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")


def test_a_recursive_python_dict_is_refused():
    entry = {"metric": "Accuracy", "logits": "a", "labels": "b"}
    group = {"acc": entry}
    group["self"] = group
    with pytest.raises(ConfigError, match=r"<dict>: g: the config nests too deeply or holds it"):
        load_config({"g": group})


# ---------------------------------------------------------------------------- enum typos

TYPOS = {
    "ConfusionMatrix.normalize rows": (
        "cm: {metric: ConfusionMatrix, preds: a, labels: b, num_classes: 3, normalize: rows}",
        (r"c\.yaml: cm\.normalize: ConfusionMatrix\.normalize must be one of None, 'true', "
        r"'pred', 'all'; got 'rows'\.$"),
    ),
    "ConfusionMatrix.normalize preds": (
        "cm: {metric: ConfusionMatrix, preds: a, labels: b, num_classes: 3, normalize: preds}",
        r"got 'preds'\. Did you mean 'pred'\?",
    ),
    "ShowConfusionMatrix.normalize": (
        "cm: {metric: ShowConfusionMatrix, preds: a, labels: b, num_classes: 3, normalize: ture}",
        r"cm\.normalize: ShowConfusionMatrix\.normalize must be one of .*Did you mean 'true'",
    ),
    "CohenKappa.weights": (
        "k: {metric: CohenKappa, preds: a, labels: b, num_classes: 3, weights: quad}",
        (r"c\.yaml: k\.weights: CohenKappa\.weights must be one of None, 'linear', 'quadratic'; "
        r"got 'quad'\. Did you mean 'quadratic'\?"),
    ),
    "FID.tap": (
        "f: {metric: FID, real: a, generated: b, tap: '2084'}",
        (r"c\.yaml: f\.tap: FID\.tap must be one of '64', .*'2048'.*; got '2084'\. "
        r"Did you mean '2048'\?"),
    ),
    "PrecisionRecall.tap": (
        "pr: {metric: PrecisionRecall, real: a, generated: b, tap: pool}",
        r"pr\.tap: PrecisionRecall\.tap must be one of .*Did you mean 'pool3'",
    ),
    "SSIM.padding": (
        "s: {metric: SSIM, preds: a, targets: b, padding: relfect}",
        (r"c\.yaml: s: SSIM: ValueError: SSIM: padding must be 'valid' or 'reflect', got "
        r"'relfect'\. Did you mean 'reflect'\?"),
    ),
    "MultiScaleSSIM.padding": (
        "s: {metric: MultiScaleSSIM, preds: a, targets: b, padding: vaild}",
        (r"MultiScaleSSIM: padding must be 'valid' or 'reflect', got 'vaild'\. Did you mean "
        r"'valid'\?"),
    ),
    "F1Score.task": (
        "f1: {metric: F1Score, preds: a, labels: b, num_classes: 3, task: multiclas}",
        (r"c\.yaml: f1: F1Score: ValueError: F1Score: task must be one of .*got 'multiclas'\. "
        r"Did you mean 'multiclass'"),
    ),
    "BLEU.smooth_method (Literal)": (
        "b: {metric: BLEU, preds: a, targets: b, smooth_method: flor}",
        (r"c\.yaml: b\.smooth_method: BLEU\.smooth_method must be Literal\['exp', 'floor', "
        r"'add-k', 'none'\], got 'flor' \(str\)\. Did you mean 'floor'\?"),
    ),
}


@pytest.mark.parametrize("case", TYPOS)
def test_enum_typos_fail_at_load_with_close_matches(tmp_path, case):
    text, message = TYPOS[case]
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_the_right_enum_values_load(tmp_path):
    config = _load(
        tmp_path,
        "cm: {metric: ConfusionMatrix, preds: a, labels: b, num_classes: 3, normalize: 'true'}\n"
        "none: {metric: ConfusionMatrix, preds: a, labels: b, num_classes: 3, normalize: null}\n"
        "k: {metric: CohenKappa, preds: a, labels: b, num_classes: 3, weights: quadratic}\n"
        "f: {metric: FID, real: a, generated: b, tap: pool3}\n"
        "s: {metric: SSIM, preds: a, targets: b, padding: reflect}\n",
    )
    assert config["cm"].normalize == "true" and config["none"].normalize is None
    assert config["k"].weights == "quadratic" and config["f"].tap == "pool3"
    assert config["s"].padding == "reflect"


def test_ssim_padding_is_checked_at_construction_not_compute():
    for cls in (mx.SSIM, mx.MultiScaleSSIM):
        with pytest.raises(ValueError, match=rf"^{cls.__name__}: padding must be 'valid' or"):
            cls(preds="a", targets="b", padding="same")


# Free-form strings (paths, patterns): not enum-like, nothing to check against.
FREE_FORM = {
    ("BERTScore", "model_dir"),
    ("BERTScore", "baseline_path"),
    ("ShowImages", "rearrange"),
}


def _string_options():
    out = []
    for name, cls in metric_registry().items():
        hints = annotation_lib.field_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints.get(f.name)
            if not f.init or hint is None or keys_lib.is_key_annotation(hint):
                continue
            args = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
            literal = typing.get_origin(hint) is typing.Literal
            if (str in args or literal) and (name, f.name) not in FREE_FORM:
                out.append((name, f.name))
    return out


@pytest.mark.parametrize("name, option", _string_options())
def test_every_enum_like_string_option_refuses_a_typo_at_load(name, option):
    cls = metric_registry()[name]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    entry = {"metric": name, **{f: "x.y" for f, s in fields.items() if s.default is mx.REQUIRED}}
    if "num_classes" in fields:
        entry["num_classes"] = 3
    load_config({"m": entry})  # the entry is valid without the typo
    with pytest.raises(ConfigError, match=rf"<dict>: m(\.{option})?: .*zzz_typo"):
        load_config({"m": {**entry, option: "zzz_typo"}})
