"""Why are two sentences similar? An exact token-pair decomposition of their cosine.

Every pooling mode sentence-transformers offers is linear in the token vectors once the choices it
makes are fixed (which token is first or last, which token holds each maximum): the sentence
vector is a sum of one *contribution* vector per token,

    u = Σ_i c_i        mean: c_i = h_i / n        mean_sqrt_len_tokens: c_i = h_i / √n
                       cls: c_0 = h_0, others 0   lasttoken: c_n = h_n, others 0
                       weightedmean: c_i = w_i h_i / Σ w   (w_i = 1, 2, ... n)
                       max: c_i[d] = h_i[d] where token i holds the maximum of dimension d, else 0

and concatenated modes concatenate their contributions. Normalize scales them all by 1 / ‖u‖ and
a Dense head without activation maps them affinely (c_i -> W c_i + b / n), so the final embedding
is still Σ_i c_i. The cosine of two sentences then splits into token pairs:

    cos(u, v) = Σ_i Σ_j (c_i · d_j) / (‖u‖ ‖v‖)

`similarity_attribution` returns that [n, m] matrix; it sums to the cosine. A Dense head with a
non-linearity (Tanh) breaks the sum, and is refused. `write_html` draws it, with the attention
maps and how similarity forms layer by layer, as one self-contained HTML page (explain.html,
explain.css and explain.js, inlined).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np.svg import token_labels

# The page's numbers keep this many significant digits: enough to read, small enough to ship
# every attention map of a base model (see docs/explain.md for the size).
DIGITS = 4


@dataclass(frozen=True)
class Attribution:
    """The cosine of sentences A and B, split into token pairs (and the same at every layer)."""

    tokens_a: list[str]  # pieces, special tokens included: one per row of `matrix`
    tokens_b: list[str]  # one per column
    matrix: np.ndarray  # [len(tokens_a), len(tokens_b)] float64, sums to `cosine`
    cosine: float  # of the two sentence embeddings, as encoder.encode gives them
    layer_matrices: np.ndarray  # [n_layers + 1, n, m]: the same, pooled at each hidden state
    layer_cosines: np.ndarray  # [n_layers + 1]: each layer_matrices[k].sum()
    layer_shares_a: np.ndarray  # [n_layers + 1, n]: each token's share of A's vector (sum 1)
    layer_shares_b: np.ndarray  # [n_layers + 1, m]


@dataclass(frozen=True)
class SentenceTrace:
    """One sentence through the model: what the page shows of it."""

    text: str
    tokens: list[str]  # pieces, special tokens included
    hidden_states: np.ndarray  # [n_layers + 1, seq, dim] float32 (embeddings, then each layer)
    attentions: np.ndarray  # [n_layers, heads, seq, seq] float32
    contributions: np.ndarray  # [n_layers + 1, seq, out_dim] float64: Σ over seq = embedding


# ---------------------------------------------------------------------------------------------
# Token contributions: sentence embedding = their sum


def _pool_contributions(h: np.ndarray, mode: str) -> np.ndarray:
    """One pooling mode as per-token contributions that add up to its output.

    # h: [seq, dim] (real tokens only) -> [seq, dim]
    """
    n = len(h)
    c = np.zeros_like(h)
    if mode == "mean":
        c = h / n
    elif mode == "mean_sqrt_len_tokens":
        c = h / np.sqrt(n)
    elif mode == "weightedmean":
        w = np.arange(1, n + 1, dtype=h.dtype)  # positions from the first real token (SGPT)
        c = h * (w / w.sum())[:, None]
    elif mode == "cls":
        c[0] = h[0]
    elif mode == "lasttoken":
        c[-1] = h[-1]
    elif mode == "max":
        # each dimension goes to the token holding its maximum (the first one, on ties)
        winner = h.argmax(axis=0)  # [dim]
        dims = np.arange(h.shape[1])
        c[winner, dims] = h[winner, dims]
    else:
        raise ValueError(f"explain: pooling mode {mode!r} is not supported")
    return c


def _head_name(head: Any) -> str:
    """ "Normalize" or "Dense(<activation>)": the modules that may follow pooling."""
    if getattr(head, "weight", None) is not None:
        return f"Dense({head.activation})"
    name = getattr(head, "__name__", type(head).__name__).strip("_")
    return "Normalize" if name.lower() == "normalize" else name


def _check_head(head: Any) -> None:
    """Refuse a module that breaks the exact split (see the module docstring)."""
    name = _head_name(head)
    if name == "Dense(Identity)" or name == "Normalize":
        return
    if name.startswith("Dense("):
        raise ValueError(
            f"explain: the model's Dense module applies {head.activation}, a non-linearity: the "
            "cosine does not decompose exactly into token pairs (a Dense without activation does)"
        )
    raise ValueError(f"explain: unknown module {name!r} after pooling")


def _apply_head(c: np.ndarray, head: Any) -> np.ndarray:
    """A Normalize or linear Dense module applied to contributions, keeping their sum exact.

    # c: [seq, in] -> [seq, out]
    """
    _check_head(head)
    if _head_name(head) == "Normalize":  # u / max(‖u‖, eps): a scaling
        return c / max(float(np.linalg.norm(c.sum(axis=0))), 1e-12)
    out = c @ np.asarray(head.weight, dtype=np.float64).T
    if head.bias is not None:  # the bias is shared out equally: the sum still gets it once
        out = out + np.asarray(head.bias, dtype=np.float64) / len(c)
    if head.use_residual:
        out = out + (c if head.residual is None else c @ np.asarray(head.residual).T)
    return out


def token_contributions(encoder: Any, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-token vectors whose sum is the sentence embedding the encoder makes of `hidden`.

    # hidden: [seq, dim], mask: [seq] -> [seq, out_dim] float64 (zero rows at padding)
    """
    real = np.flatnonzero(mask)
    h = hidden[real].astype(np.float64)
    parts = [_pool_contributions(h, m) for m in encoder.pooling.pooling_modes]
    c = np.concatenate(parts, axis=1)
    for head in encoder.heads:
        c = _apply_head(c, head)
    out = np.zeros((len(hidden), c.shape[1]))
    out[real] = c
    return out


def pair_matrix(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """Token-pair terms of cos(Σ ca, Σ cb); they sum to it.

    # ca: [n, dim], cb: [m, dim] -> [n, m]
    """
    norms = np.linalg.norm(ca.sum(axis=0)) * np.linalg.norm(cb.sum(axis=0))
    return (ca @ cb.T) / max(float(norms), 1e-12)


def token_shares(c: np.ndarray) -> np.ndarray:
    """Each token's share of its sentence vector u: (c_i · u) / ‖u‖²; the shares sum to 1.

    # c: [..., seq, dim] -> [..., seq]
    """
    u = c.sum(axis=-2, keepdims=True)  # [..., 1, dim]
    return (c * u).sum(axis=-1) / np.maximum((u * u).sum(axis=-1), 1e-24)


# ---------------------------------------------------------------------------------------------
# Sentences through the model


def _check_encoder(encoder: Any) -> None:
    prompt = encoder.prompts.get(encoder.default_prompt_name) if encoder.default_prompt_name else ""
    if prompt:
        raise ValueError(
            f"explain: the model prepends the prompt {encoder.default_prompt_name!r} to every "
            "sentence; explain does not support prompts"
        )
    for head in encoder.heads:  # fail before any forward pass
        _check_head(head)


def trace_sentence(encoder: Any, text: str) -> SentenceTrace:
    """Tokens, hidden states, attention maps and token contributions of one sentence, from
    FlaubertModel's plain forward (output_hidden_states, output_attentions)."""
    _check_encoder(encoder)
    if not isinstance(text, str):
        raise TypeError(f"explain: sentences must be str, got {type(text).__name__}")
    features = encoder.tokenize([text])
    output = encoder.model(
        features["input_ids"],
        attention_mask=features["attention_mask"],
        token_type_ids=features.get("token_type_ids"),
        output_hidden_states=True,
        output_attentions=True,
    )
    mask = features["attention_mask"][0]
    hidden = np.stack([h[0] for h in output.hidden_states])  # [n_layers + 1, seq, dim]
    attentions = np.stack([a[0] for a in output.attentions])  # [n_layers, heads, seq, seq]
    contributions = np.stack([token_contributions(encoder, h, mask) for h in hidden])
    tokens = encoder.tokenizer.convert_ids_to_tokens(features["input_ids"][0].tolist())
    return SentenceTrace(text, tokens, hidden, attentions, contributions)


def _attribution(a: SentenceTrace, b: SentenceTrace) -> Attribution:
    layers = np.stack(
        [pair_matrix(ca, cb) for ca, cb in zip(a.contributions, b.contributions, strict=True)]
    )
    return Attribution(
        tokens_a=a.tokens,
        tokens_b=b.tokens,
        matrix=layers[-1],
        cosine=float(layers[-1].sum()),
        layer_matrices=layers,
        layer_cosines=layers.sum(axis=(1, 2)),
        layer_shares_a=token_shares(a.contributions),
        layer_shares_b=token_shares(b.contributions),
    )


def similarity_attribution(encoder: Any, a: str, b: str) -> Attribution:
    """The cosine of `encoder.encode(a)` and `encoder.encode(b)`, split into token pairs:
    `.matrix[i, j]` is the part due to token i of A and token j of B."""
    return _attribution(trace_sentence(encoder, a), trace_sentence(encoder, b))


# ---------------------------------------------------------------------------------------------
# The page


def _numbers(x: Any) -> str:
    """Nested arrays as JSON, each number with DIGITS significant digits."""
    if np.ndim(x) == 0:
        return f"{float(x):.{DIGITS}g}"
    return "[" + ",".join(_numbers(v) for v in x) + "]"


def _sentence_json(s: SentenceTrace) -> str:
    fields = {
        "text": json.dumps(s.text, ensure_ascii=False),
        "tokens": json.dumps(token_labels(s.tokens), ensure_ascii=False),
        "pieces": json.dumps(s.tokens, ensure_ascii=False),
        "attentions": _numbers(s.attentions),  # [layer][head][query][key]
        "shares": _numbers(token_shares(s.contributions)),  # [layer + 1][token]
    }
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


def page_data(encoder: Any, a: str, b: str | None = None, model_name: str = "") -> str:
    """Everything the page shows, as JSON text."""
    ta = trace_sentence(encoder, a)
    tb = trace_sentence(encoder, b) if b is not None else None
    config = encoder.model.config
    heads = [_head_name(h) for h in encoder.heads]
    fields = {
        "model": json.dumps(model_name, ensure_ascii=False),
        "pipeline": json.dumps(["+".join(encoder.pooling.pooling_modes), *heads]),
        "n_layers": str(config.n_layers),
        "n_heads": str(config.n_heads),
        "a": _sentence_json(ta),
        "b": _sentence_json(tb) if tb is not None else "null",
    }
    if tb is not None:
        pair = _attribution(ta, tb)
        fields["pair"] = (
            f'{{"cosine":{pair.cosine!r},"layer_cosines":{_numbers(pair.layer_cosines)},'
            f'"matrices":{_numbers(pair.layer_matrices)}}}'
        )
    else:
        fields["pair"] = "null"
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"


def _asset(name: str) -> str:
    return resources.files("flaubert_np").joinpath(name).read_text(encoding="utf-8")


def render_html(encoder: Any, a: str, b: str | None = None, model_name: str = "") -> str:
    """The page as one HTML document: CSS, script and data inline, nothing fetched."""
    data = page_data(encoder, a, b, model_name)
    title = f"Why similar? {a}" + (f" / {b}" if b is not None else "")
    # "<" only occurs inside JSON strings, where \u003c is the same character: the text of a
    # sentence can neither end the <script> element nor open a tag
    inline = {
        "{{title}}": html.escape(title),
        "{{css}}": _asset("explain.css"),
        "{{js}}": _asset("explain.js"),
        "{{data}}": data.replace("<", "\\u003c"),
    }
    template = _asset("explain.html")
    # one pass over the template: what is inserted is never searched for placeholders
    return re.sub(r"\{\{\w+\}\}", lambda m: inline[m.group(0)], template)


def write_html(
    encoder: Any,
    a: str,
    b: str | None = None,
    path: str | Path = "explain.html",
    model_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Write the page for sentence `a` (and the pair a, b) to `path`; an existing file is kept
    unless `overwrite`."""
    path = Path(path)
    page = render_html(encoder, a, b, model_name)
    with open(path, "w" if overwrite else "x", encoding="utf-8") as f:
        f.write(page)
    return path
