"""EmbeddingFunction: a picklable callable, sentences -> embeddings, that loads its model lazily.

It pickles as its model location and options only (a few hundred bytes, never the weights); each
process loads the model on the first call and keeps it for every later call, whatever number of
copies of the function it receives. The same callable serves `flaubert-np encode` (in this
process, or in `--workers N` processes), Dask (flaubert_np/distributed.py) and Ray Data
(`Dataset.map_batches`, see the README).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# One loaded SentenceEncoder per process and model, shared by every copy of an EmbeddingFunction
# (a scheduler unpickles a fresh copy per task; reloading the model each time would dominate).
_ENCODERS: dict[tuple, Any] = {}
_ENCODERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class EmbeddingFunction:
    """Sentences -> embeddings [n, dim] float32, loading the model lazily in each process.

    A Hub token is deliberately not a field (it would travel inside every pickled task): set
    HF_TOKEN on the workers instead.
    """

    model: str
    batch_size: int = 32
    normalize_embeddings: bool = False
    revision: str | None = None
    cache_dir: str | None = None
    local_files_only: bool = False
    token_type_ids: str = "auto"
    prompt: str | None = None  # encode()'s prompt / prompt_name
    prompt_name: str | None = None
    max_seq_length: int | None = None  # None: the model's

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"EmbeddingFunction: model must be a name or path, not {self.model!r}")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(f"EmbeddingFunction: batch_size must be >= 1, got {self.batch_size!r}")

    @property
    def encoder(self) -> Any:
        """The SentenceEncoder of this process, loaded on first use."""
        key = (
            self.model,
            self.revision,
            self.cache_dir,
            self.local_files_only,
            self.token_type_ids,
        )
        with _ENCODERS_LOCK:
            if key not in _ENCODERS:
                from flaubert_np.sentence import SentenceEncoder

                _ENCODERS[key] = SentenceEncoder.from_pretrained(
                    self.model,
                    revision=self.revision,
                    cache_dir=self.cache_dir,
                    local_files_only=self.local_files_only,
                    token_type_ids=self.token_type_ids,
                )
            encoder = _ENCODERS[key]
        if self.max_seq_length is None:
            return encoder
        variant = copy.copy(encoder)  # shares the weights, has its own max_seq_length
        variant.max_seq_length = self.max_seq_length
        return variant

    @property
    def dimension(self) -> int:
        """Size of one embedding (loads the model in this process)."""
        return int(self.encoder.embedding_dimension)

    def options(self) -> dict[str, Any]:
        """Everything that defines the embeddings, as plain JSON values."""
        return asdict(self)

    def __call__(self, texts: Iterable[str]) -> np.ndarray:
        """[n] sentences -> [n, dim] float32, row i for item i (blank strings included)."""
        sentences = as_sentences(texts)
        if not sentences:
            return np.zeros((0, self.dimension), dtype=np.float32)
        embeddings = self.encoder.encode(
            sentences,
            batch_size=self.batch_size,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_embeddings,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
        )
        return np.asarray(embeddings, dtype=np.float32)


def as_sentences(texts: Iterable[str]) -> list[str]:
    """A list, tuple, 1-D NumPy array, pandas Series or iterable of str -> list[str].

    Anything that is not a string (None, NaN, a number) is an error naming its position: a
    missing text must be handled by the caller, not silently turned into some embedding.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("EmbeddingFunction: pass a sequence of sentences, not a single string")
    if hasattr(texts, "columns"):
        raise TypeError("EmbeddingFunction: pass one column (a Series), not a whole DataFrame")
    # NumPy arrays and pandas Series hold numpy.str_ items; tolist() gives plain Python str.
    sentences = texts.tolist() if hasattr(texts, "tolist") else list(texts)
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise ValueError(f"EmbeddingFunction: item {i} is not a string ({type(s).__name__})")
    return sentences
