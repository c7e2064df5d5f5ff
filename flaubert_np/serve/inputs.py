"""Texts -> model inputs as `SentenceEncoder.encode` makes them, each text's own arrays (the
batcher joins texts of several requests), with the bounds that keep a request's work small.

This runs in a worker thread, never on the event loop: the tokenizer (Moses, then BPE) is pure
Python, and a 2 MB request keeps it busy for seconds (BPE is O(n log n) in a word's length, so
even a 2 MB word without a space is tokenized in a few seconds: docs/serving.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flaubert_np.sentence import SentenceEncoder
from flaubert_np.serve.schemas import ApiError


@dataclass
class Tokenized:
    features: list[dict[str, np.ndarray]]  # one per text: tokenize's arrays, [1, n_tokens]
    tokens: int  # real tokens of all the texts, as embedded (after truncation)


def _model_text(encoder: SentenceEncoder, text: str) -> str:
    """The text as `SentenceEncoder.tokenize` hands it to the tokenizer."""
    text = text.strip()
    return text.lower() if encoder.do_lower_case else text


def count_tokens(encoder: SentenceEncoder, text: str) -> int:
    """A text's tokens, <s> and </s> included, without truncation."""
    return len(encoder.tokenizer.encode(_model_text(encoder, text)))


def tokenize(
    encoder: SentenceEncoder, texts: list[str], field: str, prompt: str, truncate: bool
) -> Tokenized:
    """Each text's model inputs, the prompt prepended. Without `truncate`, a text longer than
    max_seq_length is refused (413, with its length), as TEI does."""
    batch = encoder.tokenize([prompt + text for text in texts])  # one call: far less overhead
    real = batch["attention_mask"] != 0  # [n, seq]
    lengths = real.sum(axis=1)
    limit = encoder.max_seq_length
    for i, n in enumerate(lengths):
        if not truncate and limit and n >= limit:  # at the limit: maybe truncated, count it all
            full = count_tokens(encoder, prompt + texts[i])
            if full > limit:
                raise ApiError(
                    413,
                    f"'{_where(field, i, texts)}' has {full} tokens; this model takes at most "
                    f'{limit} (max_seq_length): shorten it, or send "truncate": true',
                    param=field,
                )
    # each text's row without its padding: [1, n_i]
    features = [{name: values[i : i + 1, real[i]] for name, values in batch.items()}
                for i in range(len(texts))]  # fmt: skip
    return Tokenized(features, int(lengths.sum()))


def _where(field: str, i: int, texts: list[str]) -> str:
    return f"{field}[{i}]" if len(texts) > 1 else field


def token_lists(
    encoder: SentenceEncoder, texts: list[str], add_special_tokens: bool
) -> list[list[dict]]:
    """TEI's /tokenize: each text's tokens (id, text, special), as the model sees the text, not
    truncated."""
    special = set(encoder.tokenizer.all_special_ids)
    out = []
    for text in texts:
        ids = encoder.tokenizer.encode(
            _model_text(encoder, text), add_special_tokens=add_special_tokens
        )
        pieces = encoder.tokenizer.convert_ids_to_tokens(ids)
        out.append(
            [
                {"id": int(token_id), "text": piece, "special": token_id in special}
                for token_id, piece in zip(ids, pieces, strict=True)
            ]
        )
    return out
