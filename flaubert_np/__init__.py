"""flaubert-np: FlauBERT sentence embeddings in pure NumPy.

The public names are imported lazily, so `import flaubert_np` stays cheap (cold start is a
feature): nothing below is loaded until it is first used.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "FlaubertConfig": "flaubert_np.config",
    "FlaubertModel": "flaubert_np.model",
    "FlaubertTokenizer": "flaubert_np.tokenizer",
    "SentenceEncoder": "flaubert_np.sentence",
    "cos_sim": "flaubert_np.similarity",
    "semantic_search": "flaubert_np.similarity",
    "dot_score": "flaubert_np.similarity",
    "paraphrase_mining": "flaubert_np.retrieval",
    "community_detection": "flaubert_np.retrieval",
    "quantize_embeddings": "flaubert_np.quantization",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'flaubert_np' has no attribute {name!r}")
    return getattr(import_module(_LAZY[name]), name)
