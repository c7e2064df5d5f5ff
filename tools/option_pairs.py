"""FlauBERT options crossed pairwise: the encoder parity cases of tests/test_option_pairs.py
(against transformers 5) and of tools/goldens_prenorm_tf4.py (pre_norm, against transformers 4.57).

Testing every combination of the options below would take 2 * 3 * 2 * 2 * 2 * 3 * 4 * 2 * 2 =
2,304 models; a bug that needs two options together (causal with langs, relu with 12 dims, ...)
shows up in a set that holds every *pair* of option values at least once, which `all_pairs`
builds greedily in about a dozen cases. NumPy only: the tests and the golden tool (which runs
under another transformers) import it alike.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

# Option -> its values. Model options first, then how the input batch is given.
FACTORS: dict[str, list[Any]] = {
    "causal": [False, True],
    "langs": ["none", "lang_emb", "no_lang_emb"],  # n_langs 1; n_langs 3 with / without table
    "sinusoidal": [False, True],
    "activation": ["gelu", "relu"],
    "layer_norm_eps": [1e-12, 1e-6],
    "dims": ["16x4", "12x3", "8x1"],  # emb_dim x n_heads
    # How padding is told to the model; "mask_over_lengths": an attention mask and lengths that
    # say every token is real, where transformers (and flaubert-np) follow the mask.
    "padding": ["attention_mask", "lengths", "pad_ids", "mask_over_lengths"],
    "token_type_ids": [False, True],
    "position_ids": [False, True],
}

VOCAB_SIZE = 24
MAX_POSITIONS = 12
SEQ = MAX_POSITIONS  # the mixed batch's length: its full row reaches the last position
# The mixed batch's rows: full, padded, all padding, length 1, and a row of 8 tokens with the pad
# id at position 3 (without a mask or lengths, transformers then counts 7 tokens and drops the
# last one; with them, the pad id is an ordinary token).
ROW_LENGTHS = [SEQ, 6, 0, 1, 8]
PAD_INSIDE = (4, 3)  # (row, position) of that pad id


def all_pairs(factors: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Cases (option -> value) holding every pair of values of two options at least once.

    Greedy and deterministic: each new case starts from the first pair not yet covered, then
    gives each other option, in order, the value covering most uncovered pairs with the options
    already set (the first such value on ties).
    """
    names = list(factors)

    def pair(a: str, i: int, b: str, j: int) -> tuple:  # ((option, value index), ...) in order
        return ((a, i), (b, j)) if names.index(a) < names.index(b) else ((b, j), (a, i))

    uncovered = {
        pair(a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in range(len(factors[a]))
        for j in range(len(factors[b]))
    }
    cases = []
    while uncovered:
        (a, i), (b, j) = min(
            uncovered, key=lambda p: (names.index(p[0][0]), p[0][1], names.index(p[1][0]), p[1][1])
        )
        chosen = {a: i, b: j}
        for name in names:
            if name not in chosen:
                gains = [
                    sum(pair(name, k, other, v) in uncovered for other, v in chosen.items())
                    for k in range(len(factors[name]))
                ]
                chosen[name] = gains.index(max(gains))
        uncovered -= {pair(x, chosen[x], y, chosen[y]) for x, y in itertools.combinations(names, 2)}
        cases.append({name: factors[name][chosen[name]] for name in names})
    return cases


def case_name(case: dict[str, Any]) -> str:
    """A readable id: "causal-lang_emb-sinusoidal-relu-eps1e-06-12x3-lengths-types-positions"."""
    parts = [
        "causal" if case["causal"] else "bidirectional",
        case["langs"] if case["langs"] != "none" else "no_langs",
        "sinusoidal" if case["sinusoidal"] else "learned_positions",
        case["activation"],
        f"eps{case['layer_norm_eps']:g}",
        case["dims"],
        case["padding"],
    ]
    parts += [name for name in ("token_type_ids", "position_ids") if case[name]]
    return "-".join(parts)


def cases() -> dict[str, dict[str, Any]]:
    """The pairwise set over FACTORS, by case_name."""
    return {case_name(case): case for case in all_pairs(FACTORS)}


def model_config(case: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """FlaubertConfig keywords (transformers' spelling) of a case's model: 2 layers, tiny."""
    dim, heads = (int(n) for n in case["dims"].split("x"))
    config = {
        "vocab_size": VOCAB_SIZE,
        "max_position_embeddings": MAX_POSITIONS,
        "n_layers": 2,
        "emb_dim": dim,
        "n_heads": heads,
        "causal": case["causal"],
        "sinusoidal_embeddings": case["sinusoidal"],
        "gelu_activation": case["activation"] == "gelu",
        "layer_norm_eps": case["layer_norm_eps"],
    }
    if case["langs"] != "none":
        config.update(n_langs=3, use_lang_emb=case["langs"] == "lang_emb")
    return {**config, **extra}


def batches(case: dict[str, Any], pad: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """A case's two input batches (keyword arguments of FlaubertModel, int64 arrays):
    "mixed", the rows of ROW_LENGTHS, and "no_real_token", two rows of padding only.

    Padded positions hold the pad id, except with an attention mask or lengths, where they hold
    random ids: the model must ignore them whatever they are.
    """
    rng = np.random.default_rng(seed)

    def tokens(*shape: int) -> np.ndarray:  # random ids, never the pad id
        ids = rng.integers(0, VOCAB_SIZE - 1, size=shape)
        return ids + (ids >= pad)

    def batch(lengths: list[int], seq: int) -> dict[str, np.ndarray]:
        real = np.arange(seq) < np.array(lengths)[:, None]
        ids = tokens(len(lengths), seq)
        if case["padding"] == "pad_ids":
            ids[~real] = pad
        inputs = {"input_ids": ids}
        if case["padding"] in ("attention_mask", "mask_over_lengths"):
            inputs["attention_mask"] = real.astype(np.int64)
        if case["padding"] == "lengths":
            inputs["lengths"] = np.array(lengths, dtype=np.int64)
        elif case["padding"] == "mask_over_lengths":
            inputs["lengths"] = np.full(len(lengths), seq, dtype=np.int64)
        if case["langs"] != "none":
            inputs["langs"] = rng.integers(0, 3, size=ids.shape)
        if case["token_type_ids"]:
            inputs["token_type_ids"] = rng.integers(0, VOCAB_SIZE, size=ids.shape)
        if case["position_ids"]:
            inputs["position_ids"] = np.stack(
                [rng.permutation(MAX_POSITIONS)[:seq] for _ in lengths]
            )
        return inputs

    mixed = batch(ROW_LENGTHS, SEQ)
    mixed["input_ids"][PAD_INSIDE] = pad
    return {"mixed": mixed, "no_real_token": batch([0, 0], 4)}
