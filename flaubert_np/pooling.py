"""Pooling: token embeddings -> one sentence embedding, as sentence-transformers' Pooling module.

Each mode is a small function `[batch, seq, dim], [batch, seq] -> [batch, dim]` mirroring
`sentence_transformers.sentence_transformer.modules.pooling.Pooling._forward_padded`
(sentence-transformers 6.2). Versions before 5 (e.g. 3.4.1) give the same numbers on
right-padded batches, which is what the FlauBERT tokenizer produces; they differ only where
noted below (left padding, rows with no real token).

`attention_mask` holds 1 for real tokens and 0 for padding; None means every token is real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flaubert_np.files import ModelFileError, read_json_object

# sentence-transformers' order; legacy boolean configs are concatenated in this order.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}

# sentence-transformers clamps token counts (and weight sums) from below with this value, so a
# row without any real token pools to zeros instead of dividing by zero.
_MIN_COUNT = 1e-9


def _float_mask(attention_mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # [batch, seq] -> [batch, seq, 1]
    return attention_mask.astype(dtype)[:, :, None]


def _accumulation_dtype(dtype: np.dtype) -> np.dtype:
    # Half-precision sums lose too much; sentence-transformers accumulates them in float32.
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def _first_real_index(attention_mask: np.ndarray) -> np.ndarray:
    # [batch, seq] -> [batch]; 0 for a row without real tokens (argmax of all zeros).
    return np.argmax(attention_mask != 0, axis=1)


def cls_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The first real token (index 0 on right-padded batches; 3.4.1 always takes index 0)."""
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    first = _first_real_index(attention_mask)
    return token_embeddings[np.arange(len(token_embeddings)), first]


def max_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Element-wise max over the real tokens.

    Padding is set to -inf first, as sentence-transformers 6.2 does (3.4.1 used -1e9: both agree
    on every row that holds at least one real token; a row without any gives -inf here).
    """
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    padding = (attention_mask == 0)[:, :, None]
    return np.where(padding, -np.inf, token_embeddings).max(axis=1)


def _masked_sum_and_count(
    token_embeddings: np.ndarray, attention_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    # [batch, seq, dim], [batch, seq] -> [batch, dim], [batch, 1]
    acc = _accumulation_dtype(token_embeddings.dtype)
    mask = _float_mask(attention_mask, token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(axis=1, dtype=acc)
    count = np.maximum(mask.sum(axis=1, dtype=acc), _MIN_COUNT)
    return summed, count


def mean_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean of the real tokens."""
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    summed, count = _masked_sum_and_count(token_embeddings, attention_mask)
    return (summed / count).astype(token_embeddings.dtype)


def mean_sqrt_len_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sum of the real tokens divided by the square root of their count."""
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    summed, count = _masked_sum_and_count(token_embeddings, attention_mask)
    return (summed / np.sqrt(count)).astype(token_embeddings.dtype)


def weighted_mean_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Mean weighted by position (1, 2, 3, ... from the first real token; SGPT).

    3.4.1 counts positions from index 0 even under left padding; the same on right padding.
    """
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    acc = _accumulation_dtype(token_embeddings.dtype)
    seq = token_embeddings.shape[1]
    positions = np.arange(1, seq + 1, dtype=acc)[None, :]  # [1, seq]
    weights = positions - _first_real_index(attention_mask)[:, None].astype(acc)  # [batch, seq]
    weighted_mask = attention_mask.astype(acc)[:, :, None] * weights[:, :, None]  # [b, seq, 1]
    summed = (token_embeddings * weighted_mask).sum(axis=1)  # [batch, dim]
    total = np.maximum(weighted_mask.sum(axis=1), _MIN_COUNT)  # [batch, 1]
    return (summed / total).astype(token_embeddings.dtype)


def last_token_pooling(token_embeddings: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The last real token; zeros for a row without real tokens."""
    # [batch, seq, dim], [batch, seq] -> [batch, dim]
    seq = token_embeddings.shape[1]
    last = seq - 1 - np.argmax(attention_mask[:, ::-1] != 0, axis=1)  # [batch]
    masked = token_embeddings * _float_mask(attention_mask, token_embeddings.dtype)
    return masked[np.arange(len(token_embeddings)), last]


_POOLERS = {
    "cls": cls_pooling,
    "max": max_pooling,
    "mean": mean_pooling,
    "mean_sqrt_len_tokens": mean_sqrt_len_pooling,
    "weightedmean": weighted_mean_pooling,
    "lasttoken": last_token_pooling,
}


def _check_modes(mode: str | Sequence[str]) -> tuple[str, ...]:
    if not isinstance(mode, (str, list, tuple)):
        raise ValueError(f"pooling mode must be a name or a list of names, got {mode!r}")
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    if not modes:
        raise ValueError(f"no pooling mode given; valid modes are {POOLING_MODES}")
    for m in modes:
        if m not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {m!r}; valid modes are {POOLING_MODES}")
    return modes


def pool(
    token_embeddings: np.ndarray,
    attention_mask: np.ndarray | None,
    mode: str | Sequence[str] = "mean",
) -> np.ndarray:
    """Pool token embeddings into sentence embeddings.

    `mode` is one name from POOLING_MODES or a sequence of them: several modes are concatenated
    in the order given, as sentence-transformers does.
    """
    # [batch, seq, dim], [batch, seq] -> [batch, n_modes * dim]
    modes = _check_modes(mode)
    token_embeddings = np.asarray(token_embeddings)
    if token_embeddings.ndim != 3 or not np.issubdtype(token_embeddings.dtype, np.floating):
        raise ValueError(
            "token_embeddings must be a float array [batch, seq, dim], got "
            f"{token_embeddings.dtype} {token_embeddings.shape}"
        )
    if attention_mask is None:
        attention_mask = np.ones(token_embeddings.shape[:2], dtype=np.int64)
    attention_mask = np.asarray(attention_mask)
    if attention_mask.shape != token_embeddings.shape[:2]:
        raise ValueError(
            f"attention_mask has shape {attention_mask.shape}, expected [batch, seq] = "
            f"{token_embeddings.shape[:2]} to match token_embeddings {token_embeddings.shape}"
        )
    return np.concatenate([_POOLERS[m](token_embeddings, attention_mask) for m in modes], axis=-1)


def normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """L2-normalise the last axis as torch.nn.functional.normalize: x / max(||x||, eps)."""
    # [..., dim] -> [..., dim]
    embeddings = np.asarray(embeddings)
    norm = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norm, eps)


@dataclass(frozen=True)
class PoolingConfig:
    """A sentence-transformers Pooling module's `config.json` (e.g. `1_Pooling/config.json`)."""

    embedding_dimension: int
    pooling_modes: tuple[str, ...] = ("mean",)
    # Only matters when a prompt is prepended; flaubert-np's encode() takes no prompt.
    include_prompt: bool = True

    @classmethod
    def from_dict(cls, config: Mapping) -> PoolingConfig:
        """Read both layouts, as sentence-transformers 6.2 does.

        New (>= 5): `{"embedding_dimension": 768, "pooling_mode": "mean" | [...],
        "include_prompt": true}`. Old (<= 4): `word_embedding_dimension` and one boolean per mode
        (`pooling_mode_mean_tokens`, ...), concatenated in POOLING_MODES order, mean when none is
        true. When `pooling_mode` is present the old booleans are ignored (but must be booleans).
        """
        config = dict(config)
        if "embedding_dimension" not in config and "word_embedding_dimension" in config:
            config["embedding_dimension"] = config.pop("word_embedding_dimension")
        config.pop("word_embedding_dimension", None)
        legacy = {key: config.pop(key) for key in list(config) if key in _LEGACY_KEYS}
        for key, value in legacy.items():  # a mode is on or off: no truthy strings
            if not isinstance(value, bool):
                raise ValueError(f"pooling config: {key} must be true or false, got {value!r}")
        if "pooling_mode" in config:
            modes = _check_modes(config.pop("pooling_mode"))
        else:
            modes = tuple(m for key, m in _LEGACY_KEYS.items() if legacy.get(key)) or ("mean",)
        include_prompt = config.pop("include_prompt", True)
        if "embedding_dimension" not in config:
            raise ValueError("pooling config has no 'embedding_dimension'")
        dim = config.pop("embedding_dimension")
        if config:
            raise ValueError(f"unknown key(s) in pooling config: {sorted(config)}")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ValueError(f"pooling config: embedding_dimension must be > 0, got {dim!r}")
        if not isinstance(include_prompt, bool):
            raise ValueError(f"pooling config: include_prompt must be a bool: {include_prompt!r}")
        return cls(embedding_dimension=dim, pooling_modes=modes, include_prompt=include_prompt)

    @classmethod
    def from_file(cls, path: str | Path) -> PoolingConfig:
        """Read a Pooling `config.json`; errors name the file."""
        try:
            config = read_json_object(path)
        except OSError as e:
            raise ModelFileError(f"{path}: cannot read it ({e.strerror or e})") from e
        try:
            return cls.from_dict(config)
        except (ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: {e}") from e

    @property
    def output_dimension(self) -> int:
        return len(self.pooling_modes) * self.embedding_dimension
