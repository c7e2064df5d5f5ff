"""sentence-transformers' Normalize module: each embedding scaled to unit L2 norm."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flaubert_np.pooling import normalize


@dataclass(frozen=True)
class Normalize:
    """x / max(||x||, eps), row by row, as torch.nn.functional.normalize."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # [batch, dim] -> [batch, dim]
        return normalize(x).astype(np.float32, copy=False)
