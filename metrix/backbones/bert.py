"""A BERT / RoBERTa encoder in Flax linen, loaded from a local Hugging Face model folder
(for BERTScore).

The network is the original post-LayerNorm BERT:

    h_0 = LayerNorm(word[ids] + position[p_0..p_{L-1}] + token_type[0])
    a_l = LayerNorm(h_{l-1} + Dense(MultiHeadAttention(h_{l-1}, mask)))
    h_l = LayerNorm(a_l + Dense(act(Dense(a_l))))

with softmax(q k^T / sqrt(d_head)) attention over the unmasked keys and, for ``hidden_act``
"gelu", the exact erf GELU. Like bert-score, the encoder keeps only the first ``num_layers``
layers and returns ``h_{num_layers}`` (``hidden_states[num_layers]`` in Hugging Face terms;
``num_layers=0`` gives the embedding output).

Model families (``model_type`` in ``config.json``, see :data:`MODEL_TYPES`): ``bert`` takes
positions p_k = k. ``roberta``, ``xlm-roberta`` and ``camembert`` are the same network with
positions counted from ``padding_idx + 1`` over the non-padding tokens (transformers'
``create_position_ids_from_input_ids``: p_k = padding_idx + number of non-pad tokens up to k,
padding_idx at pad tokens), so a text may hold ``max_position_embeddings - padding_idx - 1``
tokens; their token-type table has one row (``type_vocab_size`` 1), added everywhere, as
transformers adds row 0.

A model folder holds ``config.json``, weights in ``model.safetensors`` (read with numpy, no
torch) or ``pytorch_model.bin`` (needs torch, read safely with ``weights_only=True``), and the
tokenizer as ``tokenizer.json`` (read with the ``tokenizers`` library; RoBERTa's byte-level
BPE included) or, for BERT, ``vocab.txt``. Nothing is ever downloaded. Texts are encoded as
bert-score's ``sent_encode`` encodes them: stripped, special tokens added ([CLS]/[SEP], or
``<s>``/``</s>``), truncated at the tokenizer's ``model_max_length``, and, for byte-level BPE
tokenizers (RoBERTa, GPT-2), with a space put before the text (``add_prefix_space=True``).

    enc = BertEncoder.from_pretrained_dir("path/to/model", num_layers=6)
    ids, mask = enc.tokenize(["a sentence", "another one"])
    emb = enc.embed(enc.params, ids, mask)      # (B, L, D), jitted; params are an input

Several short texts can share one row ("packing", :func:`pack_texts`): each token then
attends only to the tokens of its own text and takes its position within that text, so a
packed row computes exactly what the texts would compute in rows of their own, without the
padding (``embed_packed``).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metrix.backbones.weights import MissingWeightsError, read_torch_state_dict
from metrix.backbones.xla_cpu import EIGEN_KERNELS, cpu_jit

_HIGHEST = jax.lax.Precision.HIGHEST

# Hugging Face activation names -> JAX functions ("gelu" is the exact erf form).
def _gelu_erf(x: jax.Array) -> jax.Array:
    """Exact GELU as torch computes it, ``x / 2 * (1 + erf(x / sqrt(2)))``.

    ``jax.nn.gelu(approximate=False)`` uses ``erfc``, whose XLA:CPU expansion is several
    times slower than ``erf`` (figures: benchmarks/RESULTS.md). Both are within 1.1e-6 of the
    float64 GELU on N(0, 9) inputs.
    """
    return x * 0.5 * (1.0 + jax.lax.erf(x * np.float32(math.sqrt(0.5)).astype(x.dtype)))


_ACTIVATIONS = {
    "gelu": _gelu_erf,
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")

# model_type -> whether positions count from padding_idx + 1 over the non-pad tokens. The
# RoBERTa family's networks are transformers' RobertaModel under other names (XLMRobertaModel
# and CamembertModel are generated copies of it); only the tokenizers differ.
MODEL_TYPES = {"bert": False, "roberta": True, "xlm-roberta": True, "camembert": True}
# The special tokens a tokenizer_config.json may leave out, per family.
_DEFAULT_SPECIALS = {
    False: {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]"},
    True: {"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>"},
}
# Tokenizers that bert-score's sent_encode calls with add_prefix_space=True (it checks
# isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer))).
_PREFIX_SPACE_TOKENIZERS = {
    "RobertaTokenizer",
    "RobertaTokenizerFast",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT / RoBERTa ``config.json`` that the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    model_type: str = "bert"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "config.json") -> BertConfig:
        """Read ``raw`` (a parsed ``config.json``; ``source`` names the file in errors)."""
        model_type = raw.get("model_type", "bert")  # old BERT configs have no model_type
        if model_type not in MODEL_TYPES:
            raise ValueError(
                f"{source}: model_type {model_type!r} is not supported; BertEncoder runs "
                f"{', '.join(sorted(MODEL_TYPES))}"
            )
        position_type = raw.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"{source}: only absolute position embeddings are supported, "
                f"got {position_type!r}"
            )
        if raw.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ValueError(
                f"{source}: unsupported hidden_act {raw['hidden_act']!r}; "
                f"known: {sorted(_ACTIVATIONS)}"
            )
        fields = dataclasses.fields(cls)
        names = {f.name for f in fields}
        required = [f.name for f in fields if f.default is dataclasses.MISSING]
        missing = [name for name in required if raw.get(name) is None]
        if missing:
            raise ValueError(f"{source}: missing {', '.join(missing)} (a BERT/RoBERTa config.json "
                             "names them all)")
        wrong = [f"{f.name}={raw[f.name]!r}" for f in fields if f.type in ("int", int)
                 and f.name in raw and raw[f.name] is not None
                 and (not isinstance(raw[f.name], int) or isinstance(raw[f.name], bool))]
        if wrong:
            raise ValueError(f"{source}: these fields must be integers: {', '.join(wrong)}")
        return cls(**{k: v for k, v in raw.items() if k in names and v is not None})

    @property
    def positions_skip_padding(self) -> bool:
        """RoBERTa family: positions count non-pad tokens from ``pad_token_id + 1``."""
        return MODEL_TYPES[self.model_type]

    @property
    def position_offset(self) -> int:
        """Added to 0-based positions: ``pad_token_id + 1`` for RoBERTa, 0 for BERT."""
        return self.pad_token_id + 1 if self.positions_skip_padding else 0

    @property
    def max_text_length(self) -> int:
        """The most tokens a text can have: the position table minus the offset."""
        return self.max_position_embeddings - self.position_offset


def text_positions(config: BertConfig, input_ids: jax.Array) -> jax.Array:
    """0-based positions of right-padded rows (:class:`BertEmbeddings` adds the offset):
    0..L-1 for BERT; for RoBERTa the count of non-pad tokens before each token, -1 at pad
    tokens (so that with the offset they take ``padding_idx``, as in transformers)."""
    if not config.positions_skip_padding:
        return jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
    real = input_ids != config.pad_token_id
    return jnp.where(real, jnp.cumsum(real, axis=-1) - 1, -1)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
    # use_fast_variance=False: E[(x-mean)^2], as torch does, not E[x^2]-mean^2.
    return nn.LayerNorm(epsilon=config.layer_norm_eps, use_fast_variance=False, name=name)


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, precision=_HIGHEST, name=name)


class BertEmbeddings(nn.Module):
    """LayerNorm(word + absolute position + token type embeddings); ``position_ids`` count
    from 0 within each text, the family's offset (RoBERTa: ``padding_idx + 1``) is added."""

    config: BertConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        token_type_ids: jax.Array,
        position_ids: jax.Array | None = None,
    ) -> jax.Array:
        c = self.config
        if position_ids is None:
            position_ids = text_positions(c, input_ids)
        positions = position_ids + c.position_offset
        x = nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(input_ids)
        x = x + nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embeddings")(
            positions
        )
        x = x + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(
            token_type_ids
        )
        return _layer_norm(c, "LayerNorm")(x)


class BertSelfAttention(nn.Module):
    """Multi-head softmax(q k^T / sqrt(d)) v over the keys where ``attention_mask`` is true:
    a (B, L) mask of keys, or a (B, L, L) mask of (query, key) pairs (packed rows)."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
        c = self.config
        heads = c.num_attention_heads
        head_dim = c.hidden_size // heads
        split = lambda t: t.reshape(*t.shape[:-1], heads, head_dim)
        q = split(_dense(c.hidden_size, "query")(x))
        k = split(_dense(c.hidden_size, "key")(x))
        v = split(_dense(c.hidden_size, "value")(x))
        # The 1/sqrt(d) scale goes on q, (B, L, D), rather than on the (B, H, L, L) scores.
        scores = jnp.einsum("bqhd,bkhd->bhqk", q / math.sqrt(head_dim), k, precision=_HIGHEST)
        # Masked keys get the most negative float, as Hugging Face does (exp underflows to 0).
        if attention_mask.ndim == 2:
            keep = attention_mask[:, None, None, :].astype(bool)
        else:
            keep = attention_mask[:, None, :, :].astype(bool)
        scores = jnp.where(keep, scores, jnp.finfo(scores.dtype).min)
        # softmax(s) v = (exp(s - max s) v) / sum exp(s - max s): dividing the (B, L, H, d)
        # context instead of the (B, H, L, L) probabilities saves a pass over the scores.
        weights = jnp.exp(scores - scores.max(axis=-1, keepdims=True))
        context = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=_HIGHEST)
        context = context / weights.sum(axis=-1).transpose(0, 2, 1)[..., None]
        return context.reshape(*x.shape[:-1], c.hidden_size)


class BertLayer(nn.Module):
    """One post-LN transformer block: attention + residual + LN, feed-forward + residual + LN."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, attention_mask: jax.Array) -> jax.Array:
        c = self.config
        attended = BertSelfAttention(c, name="attention")(x, attention_mask)
        x = _layer_norm(c, "attention_LayerNorm")(
            x + _dense(c.hidden_size, "attention_output")(attended)
        )
        hidden = _ACTIVATIONS[c.hidden_act](_dense(c.intermediate_size, "intermediate")(x))
        return _layer_norm(c, "output_LayerNorm")(x + _dense(c.hidden_size, "output")(hidden))


class BertModule(nn.Module):
    """Embeddings then the first ``num_layers`` layers; returns the last one's hidden states."""

    config: BertConfig
    num_layers: int

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
        position_ids: jax.Array | None = None,
    ) -> jax.Array:
        """``attention_mask`` is (B, L) over keys or (B, L, L) over (query, key) pairs;
        ``position_ids`` (0-based within each text) default to :func:`text_positions`."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = BertEmbeddings(self.config, name="embeddings")(input_ids, token_type_ids, position_ids)
        for i in range(self.num_layers):
            x = BertLayer(self.config, name=f"layer_{i}")(x, attention_mask)
        return x


# ----------------------------------------------------------------------------- weights


def _find_prefix(state: Mapping[str, np.ndarray], folder: str) -> str:
    """The prefix before ``embeddings.word_embeddings.weight`` ("" or "bert.", ...)."""
    anchor = "embeddings.word_embeddings.weight"
    for key in state:
        if key.endswith(anchor):
            return key[: -len(anchor)]
    raise ValueError(f"{folder}: no '{anchor}' in the weights; is this a BERT checkpoint?")


def convert_hf_state_dict(
    state: Mapping[str, np.ndarray], config: BertConfig, num_layers: int, *, source: str = "weights"
) -> dict[str, Any]:
    """Map a Hugging Face BERT state dict (``bert.``-prefixed or bare) onto :class:`BertModule`.

    torch ``Linear`` weights are (out, in) and become Flax (in, out) kernels; old checkpoints'
    ``LayerNorm.gamma/beta`` are read like ``LayerNorm.weight/bias``. Layers past
    ``num_layers`` and the pooler are dropped.
    """
    prefix = _find_prefix(state, source)

    def get(name: str) -> np.ndarray:
        for candidate in (name, name.replace(".weight", ".gamma"), name.replace(".bias", ".beta")):
            if prefix + candidate in state:
                return np.asarray(state[prefix + candidate], dtype=np.float32)
        raise KeyError(f"{source}: missing weight {prefix + name!r}")

    def dense(name: str) -> dict[str, np.ndarray]:
        return {"kernel": get(name + ".weight").T.copy(), "bias": get(name + ".bias")}

    def norm(name: str) -> dict[str, np.ndarray]:
        return {"scale": get(name + ".weight"), "bias": get(name + ".bias")}

    params: dict[str, Any] = {
        "embeddings": {
            "word_embeddings": {"embedding": get("embeddings.word_embeddings.weight")},
            "position_embeddings": {"embedding": get("embeddings.position_embeddings.weight")},
            "token_type_embeddings": {"embedding": get("embeddings.token_type_embeddings.weight")},
            "LayerNorm": norm("embeddings.LayerNorm"),
        }
    }
    for i in range(num_layers):
        hf = f"encoder.layer.{i}."
        params[f"layer_{i}"] = {
            "attention": {n: dense(hf + "attention.self." + n) for n in ("query", "key", "value")},
            "attention_output": dense(hf + "attention.output.dense"),
            "attention_LayerNorm": norm(hf + "attention.output.LayerNorm"),
            "intermediate": dense(hf + "intermediate.dense"),
            "output": dense(hf + "output.dense"),
            "output_LayerNorm": norm(hf + "output.LayerNorm"),
        }
    return params


def _check_folder(path: str) -> None:
    missing = []
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        missing.append("config.json")
    if not any(os.path.isfile(os.path.join(path, f)) for f in _WEIGHT_FILES):
        missing.append(" or ".join(_WEIGHT_FILES))
    # Only BERT's WordPiece can be rebuilt from vocab.txt; the RoBERTa family needs
    # tokenizer.json (any fast tokenizer's save_pretrained writes it).
    model_type = _read_json(config_file).get("model_type", "bert")
    tokenizer_files = _TOKENIZER_FILES if not MODEL_TYPES.get(model_type) else _TOKENIZER_FILES[:1]
    if not any(os.path.isfile(os.path.join(path, f)) for f in tokenizer_files):
        missing.append(" or ".join(tokenizer_files))
    if missing:
        present = sorted(os.listdir(path)) if os.path.isdir(path) else "folder does not exist"
        raise MissingWeightsError(
            f"BERT model folder {path!r} lacks: {'; '.join(missing)} (it has: {present}). "
            "Point to a local Hugging Face model folder (e.g. one saved with "
            "save_pretrained); metrix never downloads models."
        )


def bert_score_adds_prefix_space(config: BertConfig, tokenizer_config: Mapping[str, Any]) -> bool:
    """Whether bert-score's ``sent_encode`` puts a space before each text for this folder:
    it does for the tokenizers transformers loads as ``RobertaTokenizer`` / ``GPT2Tokenizer``
    (``tokenizer_class`` of tokenizer_config.json, else the one of ``model_type``; XLM-R and
    CamemBERT have sentencepiece tokenizers of their own, which it calls without)."""
    tokenizer_class = tokenizer_config.get("tokenizer_class")
    if tokenizer_class is None:
        return config.model_type == "roberta"
    return tokenizer_class in _PREFIX_SPACE_TOKENIZERS


def _read_weights(path: str) -> dict[str, np.ndarray]:
    safetensors_file = os.path.join(path, "model.safetensors")
    if os.path.isfile(safetensors_file):
        from safetensors.numpy import load_file  # optional dependency

        return load_file(safetensors_file)
    return read_torch_state_dict(os.path.join(path, "pytorch_model.bin"))


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-download or fix the file") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _load_tokenizer(path: str, tokenizer_config: Mapping[str, Any]):
    import tokenizers  # optional dependency

    tokenizer_file = os.path.join(path, "tokenizer.json")
    if os.path.isfile(tokenizer_file):
        tokenizer = tokenizers.Tokenizer.from_file(tokenizer_file)
    else:  # only a WordPiece vocabulary: rebuild the BERT pipeline from tokenizer_config.json
        lowercase = tokenizer_config.get("do_lower_case", True)
        tokenizer = tokenizers.BertWordPieceTokenizer(
            os.path.join(path, "vocab.txt"),
            lowercase=lowercase,
            strip_accents=tokenizer_config.get("strip_accents"),
            handle_chinese_chars=tokenizer_config.get("tokenize_chinese_chars", True),
        )._tokenizer
    # tokenizer.json files often carry padding/truncation settings; ours are set per call.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def bucket_length(length: int, max_length: int, minimum: int = 16) -> int:
    """Pad lengths to powers of two (at least ``minimum``, at most ``max_length``) so that
    ``embed`` compiles once per bucket instead of once per batch."""
    return min(max_length, max(minimum, 1 << max(0, length - 1).bit_length()))


def row_width(length: int, max_length: int, minimum: int = 48) -> int:
    """Width of the packed rows that a text of ``length`` tokens opens: at most 12.5% (and 7
    tokens) above it, a multiple of 8 up to 64, of 16 up to 128, of 32 up to 256, ... (at
    least ``minimum``, at most ``max_length``), so only a few widths are ever compiled.

    The minimum of 48 lets typical sentences pack two or more to a row: narrower rows
    spend less on attention (its cost per token grows with the width) but pack worse and
    need more compiled shapes; on 5-40 word sentences 48 measured fastest of 16 to 64.
    """
    step = max(8, 1 << max(0, (length - 1).bit_length() - 3))
    return min(max(length, max_length), max(minimum, -(-length // step) * step))


class PackedRows(NamedTuple):
    """One encoder call's worth of packed texts (see :func:`pack_texts`)."""

    ids: np.ndarray  # (rows, width) int32 token ids, pad id at padding
    segments: np.ndarray  # (rows, width) int32: 1, 2, ... per text of a row, 0 at padding
    positions: np.ndarray  # (rows, width) int32: 0-based position of each token in its text
    texts: np.ndarray  # (T,) indices of the texts held
    starts: np.ndarray  # (T,) flat index (row * width + offset) of each text's first token


def pack_texts(
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    max_length: int,
    *,
    skip_id: int | None = None,
) -> list[PackedRows]:
    """Pack tokenised texts several to a row, in encoder calls of at most ``batch_size`` rows.

    The longest text left sets a call's row width (:func:`row_width`); each row is then
    filled with the longest texts that still fit, so rows come out nearly full and short
    texts fill the gaps next to long ones. Rows wider than 64 tokens come
    ``batch_size * 64 // width`` to a call (the same tokens, less attention memory). Only
    the last call can have fewer rows; it is cut to a multiple of an eighth of the calls'
    rows, so a handful of shapes are ever compiled.

    Positions count 0, 1, ... within each text; with ``skip_id`` (RoBERTa's padding id, see
    :func:`text_positions`) they count only the other tokens, and ``skip_id`` tokens get -1.
    """
    by_length: dict[int, list[int]] = {}
    for i in reversed(range(len(token_ids))):  # popped from the end: ascending text order
        by_length.setdefault(len(token_ids[i]), []).append(i)
    if 0 in by_length or any(n > max_length for n in by_length):
        raise ValueError(f"pack_texts: texts must have 1 to {max_length} tokens")
    present = sorted(by_length)
    packed = []
    while present:
        width = row_width(present[-1], max_length)
        rows = batch_size if width <= 64 else max(1, batch_size * 64 // width)
        texts, row_of, offset_of = [], [], []
        for row in range(rows):
            free = width
            while present and present[0] <= free:
                k = bisect.bisect_right(present, free) - 1
                length = present[k]
                texts.append(by_length[length].pop())
                row_of.append(row)
                offset_of.append(width - free)
                free -= length
                if not by_length[length]:
                    del present[k]
            if not present:
                break
        step = max(1, rows // 8)
        used = -(-(row_of[-1] + 1) // step) * step
        ids = np.full((used, width), pad_id, np.int32)
        segments = np.zeros((used, width), np.int32)
        positions = np.zeros((used, width), np.int32)
        for k, (text, row, offset) in enumerate(zip(texts, row_of, offset_of)):
            seq = token_ids[text]
            ids[row, offset : offset + len(seq)] = seq
            segments[row, offset : offset + len(seq)] = k + 1
            positions[row, offset : offset + len(seq)] = _positions(seq, skip_id)
        starts = np.asarray(row_of, np.int64) * width + np.asarray(offset_of, np.int64)
        packed.append(PackedRows(ids, segments, positions, np.asarray(texts, np.int64), starts))
    return packed


def _positions(seq: Sequence[int], skip_id: int | None) -> np.ndarray:
    if skip_id is None:
        return np.arange(len(seq))
    real = np.asarray(seq) != skip_id
    return np.where(real, np.cumsum(real) - 1, -1)


def packed_attention_mask(segment_ids: jax.Array) -> jax.Array:
    """(B, L, L) mask of packed rows: a query attends to the keys of its own segment
    (``segment_ids`` > 0 numbers the texts of a row, 0 marks padding)."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return same & (segment_ids[:, None, :] > 0)


def _special_token_ids(
    path: str, config: BertConfig, tokenizer: Any, tokenizer_config: Mapping[str, Any]
) -> tuple[int, int, int | None]:
    """The ids of the cls, sep and pad tokens that tokenizer_config.json names (else the
    family's [CLS] [SEP] [PAD] or <s> </s> <pad>); cls and sep must exist: bert-score weighs
    them 0 and reads a text of just them as empty, so without them its scores cannot be
    reproduced (e.g. a BERT tokenizer beside a RoBERTa config)."""
    defaults = _DEFAULT_SPECIALS[config.positions_skip_padding]
    names = {}
    for key, default in defaults.items():
        token = tokenizer_config.get(key) or default
        names[key] = token.get("content", default) if isinstance(token, Mapping) else token
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(names[k]) for k in defaults)
    if cls_id is None or sep_id is None:
        raise ValueError(
            f"{path!r}: the tokenizer has no {names['cls_token']!r} / {names['sep_token']!r} "
            f"token, which a {config.model_type!r} model needs (set cls_token / sep_token in "
            "tokenizer_config.json to the tokens its tokenizer adds)"
        )
    return cls_id, sep_id, pad_id


@dataclasses.dataclass(frozen=True, eq=False)
class BertEncoder:
    """A BERT or RoBERTa-family network, its weights (``params``, a pytree input of
    :meth:`embed`) and tokenizer.

    ``add_prefix_space``: whether :meth:`token_ids` puts a space before each (stripped,
    non-empty) text, as bert-score's ``sent_encode`` asks RoBERTa / GPT-2 tokenizers to (so
    the first word is tokenised like the others, e.g. ``Ġthe``).
    """

    config: BertConfig
    num_layers: int
    params: Any
    tokenizer: Any  # a tokenizers.Tokenizer
    model_max_length: int
    cls_token_id: int | None
    sep_token_id: int | None
    pad_token_id: int
    add_prefix_space: bool = False

    @classmethod
    def from_pretrained_dir(
        cls,
        path: str | os.PathLike,
        num_layers: int | None = None,
        add_prefix_space: bool | None = None,
    ) -> BertEncoder:
        """Load a local Hugging Face BERT / RoBERTa folder, keeping its first ``num_layers``
        layers (all of them by default). ``add_prefix_space=None`` follows bert-score
        (:func:`bert_score_adds_prefix_space`: true for RoBERTa's byte-level BPE)."""
        path = os.fspath(path)
        _check_folder(path)
        config_file = os.path.join(path, "config.json")
        config = BertConfig.from_dict(_read_json(config_file), source=config_file)
        num_layers = config.num_hidden_layers if num_layers is None else int(num_layers)
        if not 0 <= num_layers <= config.num_hidden_layers:
            raise ValueError(
                f"num_layers must be in [0, {config.num_hidden_layers}] for {path!r}, "
                f"got {num_layers}"
            )
        params = convert_hf_state_dict(_read_weights(path), config, num_layers, source=path)
        tokenizer_config = _read_json(os.path.join(path, "tokenizer_config.json"))
        tokenizer = _load_tokenizer(path, tokenizer_config)
        # bert-score truncates at tokenizer.model_max_length; a folder without one falls back to
        # the positions the model has (transformers would use a huge sentinel instead).
        max_length = min(
            int(tokenizer_config.get("model_max_length", config.max_text_length)),
            config.max_text_length,
        )
        cls_id, sep_id, pad_id = _special_token_ids(path, config, tokenizer, tokenizer_config)
        if add_prefix_space is None:
            add_prefix_space = bert_score_adds_prefix_space(config, tokenizer_config)
        return cls(
            config=config,
            num_layers=num_layers,
            params=jax.tree_util.tree_map(jnp.asarray, params),
            tokenizer=tokenizer,
            model_max_length=max_length,
            cls_token_id=cls_id,
            sep_token_id=sep_id,
            pad_token_id=config.pad_token_id if pad_id is None else pad_id,
            add_prefix_space=bool(add_prefix_space),
        )

    @property
    def module(self) -> BertModule:
        return BertModule(self.config, self.num_layers)

    @property
    def special_token_ids(self) -> tuple[int, ...]:
        """[CLS] and [SEP] (RoBERTa: ``<s>``, ``</s>``): bert-score gives them idf weight 0."""
        return tuple(i for i in (self.cls_token_id, self.sep_token_id) if i is not None)

    def token_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids per text as bert-score's ``sent_encode``: strip, put a space before a
        non-empty text if ``add_prefix_space``, add [CLS]/[SEP] (``<s>``/``</s>``), truncate."""
        max_length = self.model_max_length if max_length is None else max_length
        stripped = [t.strip() for t in texts]
        if self.add_prefix_space:  # an empty text stays empty: bert-score encodes it as <s></s>
            stripped = [" " + t if t else t for t in stripped]
        self.tokenizer.enable_truncation(max_length)
        try:
            encodings = self.tokenizer.encode_batch(stripped, add_special_tokens=True)
        finally:
            self.tokenizer.no_truncation()
        return [e.ids for e in encodings]

    def tokenize(
        self, texts: Sequence[str], max_length: int | None = None, pad_to: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, int32 (B, L), right-padded with the pad id.

        L is ``pad_to`` if given, else :func:`bucket_length` of the longest text.
        """
        max_length = self.model_max_length if max_length is None else max_length
        ids = self.token_ids(texts, max_length)
        longest = max((len(i) for i in ids), default=1)
        length = bucket_length(longest, max_length) if pad_to is None else pad_to
        if longest > length:
            raise ValueError(
                f"pad_to={length} is shorter than the longest tokenised text ({longest})"
            )
        input_ids = np.full((len(ids), length), self.pad_token_id, dtype=np.int32)
        mask = np.zeros((len(ids), length), dtype=np.int32)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return input_ids, mask

    def pack(self, token_ids: Sequence[Sequence[int]], batch_size: int) -> list[PackedRows]:
        """:func:`pack_texts` with this model's padding id and position rule."""
        skip = self.config.pad_token_id if self.config.positions_skip_padding else None
        return pack_texts(
            token_ids, self.pad_token_id, batch_size, self.model_max_length, skip_id=skip
        )

    @property
    def embed(self):
        """Jitted ``embed(params, input_ids, attention_mask) -> (B, L, D)`` float32."""
        return _jitted_apply(self.config, self.num_layers)

    @property
    def embed_packed(self):
        """Jitted ``embed_packed(params, input_ids, segment_ids, position_ids) -> (B, L, D)``
        for rows holding several texts each (see :func:`pack_texts`): ``segment_ids`` (B, L)
        number the texts of a row from 1 (0: padding), ``position_ids`` count from 0 within
        each text (:meth:`pack` makes all three). Every text's hidden states equal those of
        the text in a row of its own."""
        return _jitted_apply_packed(self.config, self.num_layers)

    def encode(
        self, texts: Sequence[str], batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embed many texts in length-sorted batches (little padding, few compiled shapes).

        Returns numpy ``(embeddings (N, L, D), input_ids (N, L), attention_mask (N, L))`` with L
        the bucket of the longest text; rows beyond a text's length are zero.
        """
        ids, mask = self.tokenize(texts)
        lengths = mask.sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((*ids.shape, self.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            width = bucket_length(int(lengths[rows].max()), ids.shape[1])
            # Pad the last batch with all-padding rows so every batch has the same shape.
            padded = (
                np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
                if len(texts) > batch_size
                else rows
            )
            batch_mask = mask[padded, :width]
            batch_mask[len(rows) :] = 0
            batch = np.asarray(self.embed(self.params, ids[padded, :width], batch_mask))
            out[rows, :width] = batch[: len(rows)] * mask[rows, :width, None]
        return out, ids, mask


# On CPU the encoder compiles with metrix.backbones.xla_cpu.EIGEN_KERNELS (YNNPACK off): XLA's own
# emitters ran it faster than YNNPACK in every variant tried (figures: benchmarks/RESULTS.md).
# Outputs agree to ~5e-6. cpu_jit drops the options under a caller's trace, where JAX would
# reject them.


_APPLY_CACHE: dict[tuple[BertConfig, int], Any] = {}


def _jitted_apply(config: BertConfig, num_layers: int):
    """One jitted forward per architecture, shared by every encoder with that architecture."""
    key = (config, num_layers)
    if key not in _APPLY_CACHE:
        module = BertModule(config, num_layers)

        def embed(params, input_ids, attention_mask):
            return module.apply({"params": params}, input_ids, attention_mask)

        _APPLY_CACHE[key] = cpu_jit(embed, EIGEN_KERNELS)
    return _APPLY_CACHE[key]


_PACKED_APPLY_CACHE: dict[tuple[BertConfig, int], Any] = {}


def _jitted_apply_packed(config: BertConfig, num_layers: int):
    """One jitted packed forward per architecture (see :attr:`BertEncoder.embed_packed`)."""
    key = (config, num_layers)
    if key not in _PACKED_APPLY_CACHE:
        module = BertModule(config, num_layers)

        def embed_packed(params, input_ids, segment_ids, position_ids):
            mask = packed_attention_mask(segment_ids)
            return module.apply({"params": params}, input_ids, mask, position_ids=position_ids)

        _PACKED_APPLY_CACHE[key] = cpu_jit(embed_packed, EIGEN_KERNELS)
    return _PACKED_APPLY_CACHE[key]
