"""Padding and truncation, as transformers' tokenizers decide and do them
(tokenization_utils_base.py): a call's padding / truncation / max_length arguments -> strategies,
the cutting of a sequence or a pair that is too long, the padding of id rows into arrays.

Where transformers' arithmetic has quirks (which sequence of a pair loses the odd token, an empty
pair dropped by a slice) they are reproduced, not fixed: the promise is identical ids.
"""

from __future__ import annotations

import numpy as np

# model_max_length above this counts as "no limit" (transformers' LARGE_INTEGER)
LARGE_INTEGER = int(1e20)

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")


def padding_truncation_strategies(
    padding: bool | str,
    truncation: bool | str | None,
    max_length: int | None,
    model_max_length: int,
    pad_token_id: int | None,
) -> tuple[str, str, int | None]:
    """A call's arguments -> (padding strategy, truncation strategy, max_length), by the rules of
    transformers' _get_padding_truncation_strategies."""
    if max_length is not None and (
        not isinstance(max_length, (int, np.integer)) or isinstance(max_length, bool)
    ):
        raise TypeError(f"max_length must be an int or None, got {type(max_length).__name__}")
    if max_length is not None and max_length < 0:
        raise ValueError(f"max_length must be >= 0, got {max_length}")
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # transformers: max_length alone turns truncation on
    if padding is True:
        padding = "longest"
    elif padding is False:
        padding = "do_not_pad"
    elif padding not in PADDING_STRATEGIES:
        raise ValueError(
            f"padding must be True, False or one of {PADDING_STRATEGIES}, got {padding!r}"
        )
    if truncation is True:
        truncation = "longest_first"
    elif truncation is None or truncation is False:
        truncation = "do_not_truncate"
    elif truncation not in TRUNCATION_STRATEGIES:
        raise ValueError(
            f"truncation must be True, False, None or one of {TRUNCATION_STRATEGIES}, "
            f"got {truncation!r}"
        )
    if max_length is None:
        # No max_length: use model_max_length, unless that is "no limit".
        if padding == "max_length":
            if model_max_length > LARGE_INTEGER:
                padding = "do_not_pad"
            else:
                max_length = model_max_length
        if truncation != "do_not_truncate":
            if model_max_length > LARGE_INTEGER:
                truncation = "do_not_truncate"
            else:
                max_length = model_max_length
    if padding != "do_not_pad" and pad_token_id is None:
        raise ValueError("padding needs a pad token, and this tokenizer has none")
    return padding, truncation, None if max_length is None else int(max_length)


def truncate_sequences(
    ids: list[int],
    pair_ids: list[int] | None,
    n_remove: int,
    strategy: str,
    truncation_side: str,
) -> tuple[list[int], list[int] | None]:
    """Remove n_remove tokens, as transformers 5's truncate_sequences (slices and all)."""
    right = truncation_side == "right"
    if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
        ids = ids[:-n_remove] if right else ids[n_remove:]
    elif strategy == "longest_first" and pair_ids is not None:
        # The longer sequence loses tokens until both have the same length, then both lose
        # half of what remains (the second sequence the odd one).
        first_remove = min(abs(len(pair_ids) - len(ids)), n_remove)
        second_remove = n_remove - first_remove
        if len(ids) > len(pair_ids):
            ids_cut = first_remove + second_remove // 2
            pair_cut = second_remove - second_remove // 2
        else:
            ids_cut = second_remove // 2
            pair_cut = first_remove + second_remove - second_remove // 2
        if right:
            ids = ids[:-ids_cut] if ids_cut > 0 else ids
            pair_ids = pair_ids[:-pair_cut] if pair_ids and pair_cut > 0 else pair_ids
        else:
            ids = ids[ids_cut:]
            pair_ids = pair_ids[pair_cut:] if pair_ids else None  # sic: [] becomes no pair
    elif strategy == "only_second" and pair_ids:
        pair_ids = pair_ids[:-n_remove] if right else pair_ids[n_remove:]
    return ids, pair_ids


def pad(
    rows: list[list[int]],
    token_types: list[list[int]],
    padding: str,
    max_length: int | None,
    pad_token_id: int | None,
    padding_side: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Id rows and their token types -> int64 (input_ids, token_type_ids, attention_mask)
    [batch, seq], padded with the pad id on padding_side."""
    # Lengths after padding: to the longest, or up to max_length (padding never cuts).
    lengths = [len(row) for row in rows]
    if padding == "longest":
        lengths = [max(lengths)] * len(rows)
    elif padding == "max_length" and max_length is not None:
        lengths = [max(n, max_length) for n in lengths]
    width = max(lengths)
    if min(lengths) != width:
        raise ValueError(
            f"the sequences have different lengths ({min(lengths)} to {width} tokens) and "
            "make no array: pass padding=True (and truncation=True with padding='max_length')"
        )
    fill = 0 if pad_token_id is None else pad_token_id
    input_ids = np.full((len(rows), width), fill, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, (row, types) in enumerate(zip(rows, token_types, strict=True)):
        start = 0 if padding_side == "right" else width - len(row)
        span = slice(start, start + len(row))
        input_ids[i, span] = row
        attention_mask[i, span] = 1
        token_type_ids[i, span] = types
    return input_ids, token_type_ids, attention_mask
