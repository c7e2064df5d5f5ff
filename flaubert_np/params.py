"""FlauBERT's weights, grouped as transformers' modules group them.

`FlaubertParams.from_weights` takes the flat dict that `weights.load_weights` returns (bare
transformers names: "attentions.0.q_lin.weight", ...) and groups it: embeddings, then one `Layer`
per transformer layer. Both forwards read it: the reference (model.py) and the fast one (fast.py).

Linear weights are seen [in, out], ready for `x @ weight`: torch stores them [out, in], and a
transposed view costs nothing (BLAS reads it in place), while a copy would double the weights'
memory (they stay memory-mapped from the file) and slow the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Linear:
    """torch.nn.Linear."""

    weight: np.ndarray  # [in, out]
    bias: np.ndarray  # [out]


@dataclass(frozen=True, eq=False)
class LayerNorm:
    """torch.nn.LayerNorm."""

    weight: np.ndarray  # [dim]
    bias: np.ndarray  # [dim]


@dataclass(frozen=True, eq=False)
class Attention:
    """transformers' MultiHeadAttention."""

    q_lin: Linear  # [dim, dim]
    k_lin: Linear  # [dim, dim]
    v_lin: Linear  # [dim, dim]
    out_lin: Linear  # [dim, dim]


@dataclass(frozen=True, eq=False)
class FFN:
    """transformers' TransformerFFN."""

    lin1: Linear  # [dim, 4 * dim]
    lin2: Linear  # [4 * dim, dim]


@dataclass(frozen=True, eq=False)
class Layer:
    """One transformer layer: transformers' attentions[i], layer_norm1[i], ffns[i],
    layer_norm2[i]."""

    attention: Attention
    layer_norm1: LayerNorm
    ffn: FFN
    layer_norm2: LayerNorm


@dataclass(frozen=True, eq=False)
class FlaubertParams:
    """Every weight of the encoder."""

    embeddings: np.ndarray  # [n_words, dim]
    position_embeddings: np.ndarray  # [max_position_embeddings, dim]
    lang_embeddings: np.ndarray | None  # [n_langs, dim]; None without language embeddings
    layer_norm_emb: LayerNorm
    layers: tuple[Layer, ...]

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], n_layers: int) -> FlaubertParams:
        """From bare transformers names (already checked by weights.check_weights). The tables
        stay as given (memory-mapped when loaded from safetensors): rows are looked up, never
        copied whole."""
        return cls(
            embeddings=weights["embeddings.weight"],
            position_embeddings=weights["position_embeddings.weight"],
            lang_embeddings=weights.get("lang_embeddings.weight"),
            layer_norm_emb=_layer_norm(weights, "layer_norm_emb"),
            layers=tuple(_layer(weights, i) for i in range(n_layers)),
        )


def _linear(weights: Mapping[str, np.ndarray], name: str) -> Linear:
    return Linear(np.asarray(weights[f"{name}.weight"]).T, np.asarray(weights[f"{name}.bias"]))


def _layer_norm(weights: Mapping[str, np.ndarray], name: str) -> LayerNorm:
    return LayerNorm(np.asarray(weights[f"{name}.weight"]), np.asarray(weights[f"{name}.bias"]))


def _layer(weights: Mapping[str, np.ndarray], i: int) -> Layer:
    att, ffn = f"attentions.{i}", f"ffns.{i}"
    return Layer(
        attention=Attention(
            *(_linear(weights, f"{att}.{n}") for n in ("q_lin", "k_lin", "v_lin", "out_lin"))
        ),
        layer_norm1=_layer_norm(weights, f"layer_norm1.{i}"),
        ffn=FFN(_linear(weights, f"{ffn}.lin1"), _linear(weights, f"{ffn}.lin2")),
        layer_norm2=_layer_norm(weights, f"layer_norm2.{i}"),
    )
