"""Embed Dask bags and dataframes on a cluster, with the picklable EmbeddingFunction.

`EmbeddingFunction` (flaubert_np/embedding_function.py, imported here too) is what the scheduler
ships to its workers: it pickles as its model location and options, and each worker process loads
the model on its first partition.

Dask is an optional extra (`pip install "flaubert-np[dask]"`): it is imported inside the helpers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flaubert_np.embedding_function import EmbeddingFunction, as_sentences

# EmbeddingFunction and as_sentences lived here first: importing them from here still works.
__all__ = ["EmbeddingFunction", "as_sentences", "embed_bag", "embed_dataframe"]


def embed_bag(bag: Any, fn: EmbeddingFunction) -> Any:
    """A dask.bag of sentences -> dask.array [n, dim] float32, one block per partition, in order.

    The client loads the model once to learn `dim`; each worker loads it on its first partition.
    """
    return _concatenate_partitions(bag.to_delayed(), fn)


def embed_dataframe(ddf: Any, column: str, fn: EmbeddingFunction) -> Any:
    """One text column of a dask.dataframe -> dask.array [n, dim] float32, in row order."""
    if column not in ddf.columns:
        raise KeyError(f"embed_dataframe: no column {column!r} (columns: {list(ddf.columns)})")
    return _concatenate_partitions(ddf[column].to_delayed(), fn)


def _concatenate_partitions(partitions: list, fn: EmbeddingFunction) -> Any:
    import dask
    import dask.array as da

    dim = fn.dimension
    blocks = [
        da.from_delayed(dask.delayed(fn)(part), shape=(np.nan, dim), dtype=np.float32)
        for part in partitions
    ]
    return da.concatenate(blocks, axis=0, allow_unknown_chunksizes=True)
