"""The FlauBERT encoder (transformers' FlaubertModel) in NumPy, for inference.

    ids -> word + position (+ language) (+ token type) embeddings -> layer_norm_emb
        -> n_layers x [self-attention, FFN], each wrapped in a residual and a layer norm
           (post-norm: norm after the residual sum; pre_norm: norm of the branch input)
        -> last_hidden_state; padded positions are zeroed after the embeddings and every layer.

`forward` is the reference: the whole pass over params.py's weights and layers.py's functions.
fast.py computes the same last hidden state faster, and `FlaubertModel` runs it unless asked for
what only the reference gives (hidden states, attention maps, a trace). Eval-mode behaviour
matches transformers 5 option by option, and runs `pre_norm` checkpoints, whose forward pass
transformers 5 cannot run (it raises a TypeError); those are checked against transformers 4.57.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np import fast, hub
from flaubert_np.config import FlaubertConfig
from flaubert_np.inputs import ModelInputs, check_inputs
from flaubert_np.layers import attention, ffn, gelu, layer_norm, relu
from flaubert_np.params import FlaubertParams, Layer
from flaubert_np.weights import check_weights, load_weights

Trace = dict[str, np.ndarray]


@dataclass
class FlaubertOutput:
    last_hidden_state: np.ndarray  # [batch, seq, dim] float32
    hidden_states: tuple[np.ndarray, ...] | None = None  # n_layers + 1 x [batch, seq, dim]
    attentions: tuple[np.ndarray, ...] | None = None  # n_layers x [batch, heads, seq, seq]


def forward(
    params: FlaubertParams,
    config: FlaubertConfig,
    inputs: ModelInputs,
    output_attentions: bool = False,
    trace: Trace | None = None,
) -> FlaubertOutput:
    """The reference forward pass, with every hidden state (and attention map if asked).

    `trace`: a dict to fill with what transformers' modules output: "embeddings", then
    "layer.{i}.attention", "layer.{i}.layer_norm1", "layer.{i}.ffn", "layer.{i}.layer_norm2",
    each [batch, seq, dim], before the padding mask.
    """
    mask = inputs.mask[..., None]  # [batch, seq, 1]
    keep = attention_keep(inputs.mask, config.causal)
    x = embed(params, inputs, config.layer_norm_eps)  # [batch, seq, dim]
    if trace is not None:
        trace["embeddings"] = x
    hidden_states, attentions = [x * mask], []
    for i, layer in enumerate(params.layers):
        x, weights = transformer_layer(hidden_states[-1], keep, layer, config, trace, f"layer.{i}.")
        hidden_states.append(x * mask)
        if output_attentions:  # [batch, heads, seq, seq] each: kept only when asked for
            attentions.append(weights)
    return FlaubertOutput(hidden_states[-1], tuple(hidden_states), tuple(attentions) or None)


def embed(params: FlaubertParams, inputs: ModelInputs, eps: float) -> np.ndarray:
    """Word + position (+ language) (+ token type, from the word table), then layer_norm_emb.

    -> [batch, seq, dim]
    """
    x = params.embeddings[inputs.ids] + params.position_embeddings[inputs.positions]
    if inputs.langs is not None and params.lang_embeddings is not None:
        x = x + params.lang_embeddings[inputs.langs]
    if inputs.token_type_ids is not None:
        x = x + params.embeddings[inputs.token_type_ids]
    return layer_norm(x, params.layer_norm_emb, eps)


def attention_keep(mask: np.ndarray, causal: bool) -> np.ndarray:
    """Where a query may attend a key: the real keys [batch, 1, 1, seq], or with `causal` the
    causal triangle [1, 1, seq, seq] (padding included: as transformers, which then zeroes the
    padded outputs)."""
    seq = mask.shape[1]
    if causal:  # a query sees itself and the keys before it
        return np.tril(np.ones((seq, seq), dtype=bool))[None, None]
    return (mask != 0)[:, None, None, :]


def transformer_layer(
    x: np.ndarray,
    keep: np.ndarray,
    layer: Layer,
    config: FlaubertConfig,
    trace: Trace | None = None,
    name: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """[batch, seq, dim] -> [batch, seq, dim], attention weights [batch, heads, seq, seq].

    post-norm (FlauBERT's default): x = norm1(x + attn(x)); x = norm2(x + ffn(x))
    pre_norm:                       x = x + attn(norm1(x)); x = x + ffn(norm2(x))
    """
    eps, activation = config.layer_norm_eps, gelu if config.gelu_activation else relu
    if config.pre_norm:
        normed1 = layer_norm(x, layer.layer_norm1, eps)
        attn, weights = attention(normed1, keep, layer.attention, config.n_heads)
        x = x + attn
        normed2 = layer_norm(x, layer.layer_norm2, eps)
        ffn_out = ffn(normed2, layer.ffn, activation)
        x = x + ffn_out
    else:
        attn, weights = attention(x, keep, layer.attention, config.n_heads)
        x = normed1 = layer_norm(x + attn, layer.layer_norm1, eps)
        ffn_out = ffn(x, layer.ffn, activation)
        x = normed2 = layer_norm(x + ffn_out, layer.layer_norm2, eps)
    if trace is not None:
        trace[name + "attention"], trace[name + "layer_norm1"] = attn, normed1
        trace[name + "ffn"], trace[name + "layer_norm2"] = ffn_out, normed2
    return x, weights


class FlaubertModel:
    """FlauBERT encoder: token ids in, one hidden vector per token out (float32)."""

    def __init__(self, config: FlaubertConfig, weights: Mapping[str, np.ndarray]):
        """`weights`: float32 arrays by bare transformers name (see weights.expected_shapes)."""
        config.validate()
        check_weights(weights, config)
        self.config = config
        self.params = FlaubertParams.from_weights(weights, config.n_layers)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
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
        trace: Trace | None = None,
        reference: bool = False,
    ) -> FlaubertOutput:
        """Encode a batch, as transformers' FlaubertModel.forward in eval mode (the arguments:
        see inputs.check_inputs; `trace`: see `forward`).

        The last hidden state comes from fast.forward, unless hidden states, attention maps or
        a trace are asked for, `reference` is True, or fast.py cannot run the batch (a causal
        model with padding before a real token): then from the reference `forward`.
        """
        inputs = check_inputs(
            self.config, input_ids, attention_mask, langs, token_type_ids, position_ids, lengths,
            has_lang_embeddings=self.params.lang_embeddings is not None,
        )  # fmt: skip
        details = output_hidden_states or output_attentions or trace is not None
        if not (reference or details) and fast.supports(self.config, inputs):
            return FlaubertOutput(fast.forward(self.params, self.config, inputs))
        out = forward(self.params, self.config, inputs, output_attentions, trace)
        return FlaubertOutput(
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states if output_hidden_states else None,
            attentions=out.attentions,
        )
