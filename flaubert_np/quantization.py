"""Embedding quantization for vector databases, as sentence_transformers.util.quantize_embeddings.

    float32 -> int8 / uint8: each dimension's [min, max] range cut into 256 buckets (4x smaller);
    float32 -> binary / ubinary: one bit per dimension, set when the value is > 0, packed 8 to a
    byte (32x smaller; "binary" stores each byte minus 128 as int8, "ubinary" as uint8).

The int8 / uint8 ranges come from `ranges` [2, dim] (min row, max row) if given, else from
`calibration_embeddings`, else from the embeddings themselves. Ranges computed from the very
embeddings being quantized change with every batch, so a collection quantized in parts should
share one set of ranges (compute them once from a representative sample).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantization_ranges(
    embeddings: np.ndarray, precision: str, calibration_embeddings: np.ndarray | None = None
) -> np.ndarray:
    """Each dimension's [min, max], from the calibration embeddings or else the embeddings."""
    # [n, dim] -> [2, dim]
    if calibration_embeddings is None:
        if embeddings.ndim == 1 or embeddings.shape[0] == 1:
            raise ValueError(
                f"cannot compute {precision} quantization ranges from a single embedding: pass "
                "ranges or calibration_embeddings from a representative set of embeddings"
            )
        if embeddings.shape[0] < 100:
            warnings.warn(
                f"{precision} quantization ranges computed from only {len(embeddings)} "
                "embeddings; ranges or calibration_embeddings from more embeddings are more stable",
                stacklevel=3,
            )
        calibration_embeddings = embeddings
    calibration = np.asarray(calibration_embeddings)
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0)))


def quantize_embeddings(
    embeddings: Any,
    precision: str,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> Any:
    """Float embeddings [n, dim] -> the given precision: float32 [n, dim], int8 / uint8 [n, dim],
    binary (int8) / ubinary (uint8) [n, ceil(dim / 8)].

    A list of [n_tokens, dim] matrices (token embeddings) gives a list, quantized with one shared
    set of ranges.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if isinstance(embeddings, list):
        if not embeddings:
            return []
        if all(np.ndim(m) == 2 for m in embeddings):
            matrices = [np.asarray(m) for m in embeddings]
            if precision.endswith("int8") and ranges is None:
                sample = np.concatenate(matrices) if calibration_embeddings is None \
                    else np.asarray(calibration_embeddings)  # fmt: skip
                if len(sample):
                    ranges = quantization_ranges(sample, precision, calibration_embeddings)
            return [quantize_embeddings(m, precision, ranges, calibration_embeddings)
                    for m in matrices]  # fmt: skip
    embeddings = np.asarray(embeddings)
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise ValueError(f"embeddings to quantize must be floating point, got {embeddings.dtype}")
    # [n, dim] -> [n, dim] or [n, ceil(dim / 8)]
    if embeddings.ndim == 2 and embeddings.shape[0] == 0:
        dim = embeddings.shape[1]
        width = (dim + 7) // 8 if precision.endswith("binary") else dim
        dtype = {"int8": np.int8, "binary": np.int8, "float32": np.float32}.get(precision, np.uint8)
        return np.zeros((0, width), dtype=dtype)
    if precision == "float32":
        return embeddings.astype(np.float32)
    if precision.endswith("int8"):
        if ranges is None:
            ranges = quantization_ranges(embeddings, precision, calibration_embeddings)
        ranges = np.asarray(ranges).astype(np.float32, copy=False)
        starts = ranges[0]
        steps = (ranges[1] - starts) / 255
        steps = np.where(steps == 0, 1, steps)  # a constant dimension: every value in bucket 0
        buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    bits = np.packbits(embeddings > 0, axis=-1)
    return bits if precision == "ubinary" else (bits.astype(np.int16) - 128).astype(np.int8)
