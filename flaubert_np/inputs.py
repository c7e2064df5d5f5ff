"""The encoder's inputs, checked and made explicit, as transformers' FlaubertModel.forward takes
them: both forwards (model.py's reference, fast.py) start from a `ModelInputs`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flaubert_np.config import FlaubertConfig


@dataclass(frozen=True, eq=False)
class ModelInputs:
    ids: np.ndarray  # [batch, seq] int64, in [0, n_words)
    mask: np.ndarray  # [batch, seq] float32: 1 for a real token, 0 for padding
    positions: np.ndarray  # [batch, seq] int64, in [0, max_position_embeddings)
    langs: np.ndarray | None  # [batch, seq] int64, in [0, n_langs); None: no language embedding
    token_type_ids: np.ndarray | None  # [batch, seq] int64, in [0, n_words); or None


def check_inputs(
    config: FlaubertConfig,
    input_ids: Any,
    attention_mask: Any = None,
    langs: Any = None,
    token_type_ids: Any = None,
    position_ids: Any = None,
    lengths: Any = None,
    has_lang_embeddings: bool = True,
) -> ModelInputs:
    """transformers' arguments -> ModelInputs, or a ValueError naming the bad argument.

    input_ids [batch, seq] (list of lists or integer array). Which positions are padding:
    `attention_mask` [batch, seq] (1 keep, 0 pad) if given; else `lengths` [batch] (the first
    lengths[b] tokens are kept); else lengths = the number of non-`pad_index` ids per row (as
    transformers: a pad id in the middle shortens the row from the end). `langs` are ignored,
    as in transformers, when the model has no language embeddings; `position_ids` default to
    0, 1, ... seq - 1.
    """
    ids = _int_matrix("input_ids", input_ids)
    batch, seq = ids.shape
    _check_range("input_ids", ids, config.n_words, "n_words")
    mask = _padding_mask(config, ids, attention_mask, lengths)

    if position_ids is None:
        if seq > config.max_position_embeddings:
            raise ValueError(
                f"input_ids has {seq} positions; this model has max_position_embeddings="
                f"{config.max_position_embeddings}"
            )
        positions = np.broadcast_to(np.arange(seq), (batch, seq))
    else:
        positions = _int_matrix("position_ids", position_ids, (batch, seq))
        _check_range(
            "position_ids", positions, config.max_position_embeddings, "max_position_embeddings"
        )

    lang_ids = None
    if langs is not None:
        lang_ids = _int_matrix("langs", langs, (batch, seq))
        if has_lang_embeddings:
            _check_range("langs", lang_ids, config.n_langs, "n_langs")
        else:
            lang_ids = None  # ignored, as in transformers
    types = None
    if token_type_ids is not None:
        types = _int_matrix("token_type_ids", token_type_ids, (batch, seq))
        _check_range("token_type_ids", types, config.n_words, "n_words")
    return ModelInputs(ids, mask, positions, lang_ids, types)


def _padding_mask(
    config: FlaubertConfig, ids: np.ndarray, attention_mask: Any, lengths: Any
) -> np.ndarray:
    """[batch, seq] float32, 1 for real tokens and 0 for padding (transformers' get_masks)."""
    batch, seq = ids.shape
    if lengths is None:
        lengths = (ids != config.pad_index).sum(axis=1)
    else:
        lengths = _int_array("lengths", lengths, (batch,))
        if lengths.min() < 0 or lengths.max() > seq:
            raise ValueError(
                f"lengths must lie in [0, {seq}] (the sequence length), found {lengths.tolist()}"
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
