"""The FlauBERT encoder (transformers' FlaubertModel) in NumPy, for inference.

    ids -> word + position (+ language) (+ token type) embeddings -> layer_norm_emb
        -> n_layers x [self-attention, FFN], each wrapped in a residual and a layer norm
           (post-norm: norm after the residual sum; pre_norm: norm of the branch input)
        -> last_hidden_state; padded positions are zeroed after the embeddings and every layer.

Eval-mode behaviour matches transformers 5 option by option (see `FlaubertModel.__call__`), and
runs `pre_norm` checkpoints, whose forward pass transformers 5 cannot run (it raises a
TypeError); those are checked against transformers 4.57.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np import fast, hub
from flaubert_np.config import FlaubertConfig
from flaubert_np.layers import attention, ffn, gelu, layer_norm, relu
from flaubert_np.weights import check_weights, load_weights


@dataclass
class FlaubertOutput:
    last_hidden_state: np.ndarray  # [batch, seq, dim] float32
    hidden_states: tuple[np.ndarray, ...] | None = None  # n_layers + 1 x [batch, seq, dim]
    attentions: tuple[np.ndarray, ...] | None = None  # n_layers x [batch, heads, seq, seq]


@dataclass
class Layer:
    """One transformer layer: its weights, laid out for `x @ w` (linear weights [in, out])."""

    q_lin_weight: np.ndarray  # [dim, dim]
    k_lin_weight: np.ndarray  # [dim, dim]
    v_lin_weight: np.ndarray  # [dim, dim]
    qkv_bias: np.ndarray  # [3 * dim]: q_lin, k_lin, v_lin biases side by side
    out_lin_weight: np.ndarray  # [dim, dim]
    out_lin_bias: np.ndarray  # [dim]
    layer_norm1_weight: np.ndarray  # [dim]
    layer_norm1_bias: np.ndarray  # [dim]
    lin1_weight: np.ndarray  # [dim, 4 * dim]
    lin1_bias: np.ndarray  # [4 * dim]
    lin2_weight: np.ndarray  # [4 * dim, dim]
    lin2_bias: np.ndarray  # [dim]
    layer_norm2_weight: np.ndarray  # [dim]
    layer_norm2_bias: np.ndarray  # [dim]

    @classmethod
    def from_weights(cls, w: Mapping[str, np.ndarray], i: int) -> Layer:
        """Layer i from bare transformers names; torch's [out, in] weights seen transposed."""
        att, ff = f"attentions.{i}.", f"ffns.{i}."
        return cls(
            q_lin_weight=_in_out(w[f"{att}q_lin.weight"]),
            k_lin_weight=_in_out(w[f"{att}k_lin.weight"]),
            v_lin_weight=_in_out(w[f"{att}v_lin.weight"]),
            qkv_bias=np.concatenate([w[f"{att}{lin}.bias"] for lin in ("q_lin", "k_lin", "v_lin")]),
            out_lin_weight=_in_out(w[f"{att}out_lin.weight"]),
            out_lin_bias=np.asarray(w[f"{att}out_lin.bias"]),
            layer_norm1_weight=np.asarray(w[f"layer_norm1.{i}.weight"]),
            layer_norm1_bias=np.asarray(w[f"layer_norm1.{i}.bias"]),
            lin1_weight=_in_out(w[f"{ff}lin1.weight"]),
            lin1_bias=np.asarray(w[f"{ff}lin1.bias"]),
            lin2_weight=_in_out(w[f"{ff}lin2.weight"]),
            lin2_bias=np.asarray(w[f"{ff}lin2.bias"]),
            layer_norm2_weight=np.asarray(w[f"layer_norm2.{i}.weight"]),
            layer_norm2_bias=np.asarray(w[f"layer_norm2.{i}.bias"]),
        )

    @property
    def qkv_weight(self) -> np.ndarray:
        """[dim, 3 * dim]: q_lin, k_lin, v_lin side by side, for one projection (made when
        the plain forward asks: a stored copy would double these weights' memory)."""
        return np.concatenate([self.q_lin_weight, self.k_lin_weight, self.v_lin_weight], axis=1)

    def __call__(
        self,
        x: np.ndarray,
        keep: np.ndarray,
        config: FlaubertConfig,
        trace: dict[str, np.ndarray] | None = None,
        name: str = "",
    ) -> tuple[np.ndarray, np.ndarray]:
        """[batch, seq, dim] -> [batch, seq, dim], attention weights [batch, heads, seq, seq].

        post-norm (FlauBERT's default): x = norm1(x + attn(x)); x = norm2(x + ffn(x))
        pre_norm:                       x = x + attn(norm1(x)); x = x + ffn(norm2(x))
        With a `trace` dict, the output of each module is stored under `name` + "attention",
        "layer_norm1", "ffn", "layer_norm2" (what transformers' modules of those names return).
        """
        eps = config.layer_norm_eps
        if config.pre_norm:
            normed1 = self.norm1(x, eps)
            attn, weights = self.attention(normed1, keep, config.n_heads)
            x = x + attn
            normed2 = self.norm2(x, eps)
            ffn_out = self.ffn(normed2, config.gelu_activation)
            x = x + ffn_out
        else:
            attn, weights = self.attention(x, keep, config.n_heads)
            x = normed1 = self.norm1(x + attn, eps)
            ffn_out = self.ffn(x, config.gelu_activation)
            x = normed2 = self.norm2(x + ffn_out, eps)
        if trace is not None:
            trace[name + "attention"], trace[name + "layer_norm1"] = attn, normed1
            trace[name + "ffn"], trace[name + "layer_norm2"] = ffn_out, normed2
        return x, weights

    def attention(
        self, x: np.ndarray, keep: np.ndarray, n_heads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """attentions[i]: [batch, seq, dim] -> [batch, seq, dim], [batch, heads, seq, seq]"""
        return attention(
            x, keep, self.qkv_weight, self.qkv_bias, self.out_lin_weight, self.out_lin_bias, n_heads
        )

    def ffn(self, x: np.ndarray, use_gelu: bool) -> np.ndarray:
        """ffns[i]: [batch, seq, dim] -> [batch, seq, dim]"""
        activation = gelu if use_gelu else relu
        return ffn(
            x, self.lin1_weight, self.lin1_bias, self.lin2_weight, self.lin2_bias, activation
        )

    def norm1(self, x: np.ndarray, eps: float) -> np.ndarray:
        """layer_norm1[i]: [batch, seq, dim] -> [batch, seq, dim]"""
        return layer_norm(x, self.layer_norm1_weight, self.layer_norm1_bias, eps)

    def norm2(self, x: np.ndarray, eps: float) -> np.ndarray:
        """layer_norm2[i]: [batch, seq, dim] -> [batch, seq, dim]"""
        return layer_norm(x, self.layer_norm2_weight, self.layer_norm2_bias, eps)


def _in_out(weight: np.ndarray) -> np.ndarray:
    """torch's Linear weight [out, in] -> [in, out] for `x @ w`: a transposed view, not a copy.

    BLAS reads a transposed matrix in place, as fast for a batch of tokens; a copy would double
    the weights' memory (they stay memory-mapped from the file) and slow the start.
    """
    return np.asarray(weight).T


class FlaubertModel:
    """FlauBERT encoder: token ids in, one hidden vector per token out (float32)."""

    def __init__(self, config: FlaubertConfig, weights: Mapping[str, np.ndarray]):
        """`weights`: float32 arrays by bare transformers name (see weights.expected_shapes)."""
        config.validate()
        check_weights(weights, config)
        self.config = config
        # The tables stay as given (memory-mapped when loaded from safetensors): rows are looked
        # up, never copied whole.
        self.embeddings = weights["embeddings.weight"]  # [n_words, dim]
        self.position_embeddings = weights["position_embeddings.weight"]  # [max_pos, dim]
        self.lang_embeddings = weights.get("lang_embeddings.weight")  # [n_langs, dim] or None
        self.layer_norm_emb_weight = np.asarray(weights["layer_norm_emb.weight"])
        self.layer_norm_emb_bias = np.asarray(weights["layer_norm_emb.bias"])
        self.layers = [Layer.from_weights(weights, i) for i in range(config.n_layers)]
        # True: the last hidden state comes from fast.py's forward; False: always the plain
        # forward below, the reference (hidden states and attention maps always come from it).
        self.fast = True

    @classmethod
    def from_pretrained(
        cls, model_dir: str | Path, *, revision: str | None = None,
        cache_dir: str | Path | None = None, local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> FlaubertModel:
        """Load config.json and the weights (safetensors, sharded or not) from a folder, "demo"
        or a Hugging Face Hub id (see flaubert_np/hub.py)."""
        model_dir = hub.resolve_model_dir(model_dir, revision, cache_dir, local_files_only, token)
        config = FlaubertConfig.from_pretrained(model_dir)
        return cls(config, load_weights(model_dir, config))

    def __call__(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        langs: Any = None,
        token_type_ids: Any = None,
        position_ids: Any = None,
        lengths: Any = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        trace: dict[str, np.ndarray] | None = None,
    ) -> FlaubertOutput:
        """Encode a batch, as transformers' FlaubertModel.forward in eval mode.

        input_ids [batch, seq] (list of lists or integer array). Which positions are padding:
        `attention_mask` [batch, seq] (1 keep, 0 pad) if given; else `lengths` [batch] (the
        first lengths[b] tokens are kept); else lengths = the number of non-`pad_index` ids per
        row (as transformers: a pad id in the middle shortens the row from the end).
        With `causal`, attention follows the causal triangle only, padding included, and the
        padding mask still zeroes the padded outputs. `langs` [batch, seq] adds language
        embeddings (ignored, as in transformers, when the model has none); `token_type_ids`
        [batch, seq] are looked up in the word embedding table, as transformers does;
        `position_ids` [batch, seq] default to 0, 1, ... seq - 1.
        `trace`: a dict to fill with the named intermediate values of this pass ("embeddings",
        then "layer.{i}.attention", "layer.{i}.layer_norm1", "layer.{i}.ffn",
        "layer.{i}.layer_norm2"), each [batch, seq, dim] as transformers' modules output them
        (before the padding mask). None (the default) records nothing and costs nothing.
        """
        c = self.config
        ids = _int_matrix("input_ids", input_ids)
        batch, seq = ids.shape
        _check_range("input_ids", ids, c.n_words, "n_words")

        mask = self._padding_mask(ids, attention_mask, lengths)  # [batch, seq] float32
        if c.causal:  # a query sees itself and the keys before it
            keep = np.tril(np.ones((seq, seq), dtype=bool))[None, None]  # [1, 1, seq, seq]
        else:
            keep = (mask != 0)[:, None, None, :]  # [batch, 1, 1, seq]

        if position_ids is None:
            if seq > c.max_position_embeddings:
                raise ValueError(
                    f"input_ids has {seq} positions; this model has max_position_embeddings="
                    f"{c.max_position_embeddings}"
                )
            positions = np.broadcast_to(np.arange(seq), (batch, seq))
        else:
            positions = _int_matrix("position_ids", position_ids, (batch, seq))
            _check_range(
                "position_ids", positions, c.max_position_embeddings, "max_position_embeddings"
            )

        if langs is not None:
            langs = _int_matrix("langs", langs, (batch, seq))
            if self.lang_embeddings is None:
                langs = None  # ignored, as in transformers
            else:
                _check_range("langs", langs, c.n_langs, "n_langs")
        types = None
        if token_type_ids is not None:
            types = _int_matrix("token_type_ids", token_type_ids, (batch, seq))
            _check_range("token_type_ids", types, c.n_words, "n_words")

        plain = output_hidden_states or output_attentions or c.causal or trace is not None
        if self.fast and not plain:
            return FlaubertOutput(fast.forward(self, ids, mask, positions, langs, types))

        x = self.embeddings[ids] + self.position_embeddings[positions]  # [batch, seq, dim]
        if langs is not None:
            x = x + self.lang_embeddings[langs]
        if types is not None:
            x = x + self.embeddings[types]
        x = layer_norm(x, self.layer_norm_emb_weight, self.layer_norm_emb_bias, c.layer_norm_eps)
        if trace is not None:
            trace["embeddings"] = x
        x = x * mask[..., None]

        hidden_states, attentions = [x], []
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, keep, c, trace, f"layer.{i}.")
            x = x * mask[..., None]
            hidden_states.append(x)
            if output_attentions:  # [batch, heads, seq, seq] each: kept only when asked for
                attentions.append(weights)
        return FlaubertOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _padding_mask(self, ids: np.ndarray, attention_mask: Any, lengths: Any) -> np.ndarray:
        """[batch, seq] float32, 1 for real tokens and 0 for padding (transformers' get_masks)."""
        batch, seq = ids.shape
        if lengths is None:
            lengths = (ids != self.config.pad_index).sum(axis=1)
        else:
            lengths = _int_array("lengths", lengths, (batch,))
            if lengths.min() < 0 or lengths.max() > seq:
                raise ValueError(
                    f"lengths must lie in [0, {seq}] (the sequence length), "
                    f"found {lengths.tolist()}"
                )
        if attention_mask is None:
            return (np.arange(seq) < lengths[:, None]).astype(np.float32)
        mask = np.asarray(attention_mask)
        if mask.shape != (batch, seq):
            raise ValueError(
                f"attention_mask has shape {mask.shape}, expected {(batch, seq)} like input_ids"
            )
        if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        return mask.astype(np.float32)


def _int_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`value` as an integer array of the given shape, or a ValueError naming `name`."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nested lists
        raise ValueError(f"{name} rows have different lengths; pad them to one length") from None
    if array.dtype.kind not in "iu":
        if array.size == 0 and array.dtype.kind == "f":  # np.asarray([[]]) is float
            array = array.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integers, found dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    return array.astype(np.int64, copy=False)


def _int_matrix(name: str, value: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A [batch, seq] integer array (of `shape` if given) with batch, seq >= 1."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} rows have different lengths; pad them to one length") from None
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D [batch, seq], found shape {array.shape}")
    if shape is None and 0 in array.shape:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    return _int_array(name, array, shape or array.shape)


def _check_range(name: str, values: np.ndarray, size: int, size_name: str) -> None:
    """Raise a ValueError naming the first value outside [0, size)."""
    bad = (values < 0) | (values >= size)
    if bad.any():
        first = values[bad][0]
        raise ValueError(f"{name} holds {first}, outside [0, {size}) ({size_name}={size})")
