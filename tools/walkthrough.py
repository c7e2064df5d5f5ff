"""Write docs/walkthrough.md: one French sentence through the demo model, step by step.

    python tools/walkthrough.py           # rewrites docs/walkthrough.md and its attention SVG
    python tools/walkthrough.py --check   # exit 1 (and say so) if they are out of date

Every figure in the document is computed here. The script runs the reference forward pass
(flaubert_np/model.py's `forward`) with every stage recorded, redoes the inside of layer 0 step
by step with the same building blocks (flaubert_np/layers.py), then checks that the steps land
on the recorded stages and that the result equals FlaubertModel's (fast) output and
SentenceEncoder.encode's embedding: the walkthrough cannot tell a different story than the
code without this script failing.
tests/test_walkthrough.py regenerates the document in memory and compares it with the file.
NumPy only: no torch, no network.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "walkthrough.md"
SVG = ROOT / "docs" / "walkthrough-attention.svg"
MODEL = "demo"
SENTENCE = "L'avion décolle de l'aéroport sous la pluie."
OTHERS = ["Un avion décolle.", "Une femme coupe des oignons."]

LAYERS = "../flaubert_np/layers.py"
TOKENIZER = "../flaubert_np/tokenizer.py"
MOSES = "../flaubert_np/moses.py"
BPE = "../flaubert_np/bpe.py"
MODEL_PY = "../flaubert_np/model.py"


def link(name: str, path: str) -> str:
    """A link to the file that defines `name` (files, not line numbers: lines move)."""
    return f"[`{name}`]({path})"


def vec(a: np.ndarray, n: int = 4) -> str:
    """The first n values of a vector, rounded to 4 decimals: `[0.1234, -0.5678, …]`."""
    values = ", ".join(f"{float(v):.4f}" for v in np.ravel(a)[:n])
    return f"`[{values}{', …' if np.size(a) > n else ''}]`"


def shape(a: np.ndarray) -> str:
    return "`[" + ", ".join(str(d) for d in np.shape(a)) + "]`"


def render(model: str = MODEL, sentence: str = SENTENCE) -> tuple[str, str]:
    """The walkthrough's markdown and its attention SVG, computed from scratch."""
    from flaubert_np.inputs import check_inputs
    from flaubert_np.layers import (
        gelu,
        layer_norm,
        linear,
        masked_softmax,
        merge_heads,
        relu,
        split_heads,
    )
    from flaubert_np.model import attention_keep, embed, forward
    from flaubert_np.moses import moses_words
    from flaubert_np.sentence import SentenceEncoder
    from flaubert_np.similarity import cos_sim
    from flaubert_np.svg import attention_grid_svg, token_labels

    encoder = SentenceEncoder.from_pretrained(model)
    tok, cfg, params = encoder.tokenizer, encoder.model.config, encoder.model.params

    # -- text -> ids --------------------------------------------------------------------------
    words = moses_words(sentence, tok.do_lowercase)
    pieces = tok.tokenize(sentence)
    features = encoder.tokenize([sentence])
    ids, mask = features["input_ids"], features["attention_mask"]  # [1, seq]
    tokens = tok.convert_ids_to_tokens(ids[0].tolist())
    seq = ids.shape[1]
    dim, heads, head_dim = cfg.emb_dim, cfg.n_heads, cfg.emb_dim // cfg.n_heads
    inputs = check_inputs(cfg, ids, mask, token_type_ids=features.get("token_type_ids"))

    # -- the reference forward pass: every stage by name --------------------------------------
    trace: dict[str, np.ndarray] = {}
    out = forward(params, cfg, inputs, output_attentions=True, trace=trace)
    hidden_states, attentions = out.hidden_states or (), out.attentions or ()
    per_layer = list(zip(hidden_states[1:], attentions, strict=True))
    last = out.last_hidden_state

    # -- embeddings, step by step: embed's sum, then its layer norm -----------------------------
    word_emb = params.embeddings[ids]  # [1, seq, dim]
    pos_emb = params.position_embeddings[inputs.positions]  # [1, seq, dim]
    emb_sum = word_emb + pos_emb
    if inputs.token_type_ids is not None:  # models saved with transformers 4 (see sentence.py)
        emb_sum = emb_sum + params.embeddings[inputs.token_type_ids]
    assert np.array_equal(layer_norm(emb_sum, params.layer_norm_emb, cfg.layer_norm_eps),
                          embed(params, inputs, cfg.layer_norm_eps))  # fmt: skip
    embeddings = hidden_states[0]

    # -- layer 0, step by step: the inside of layers.attention and layers.ffn -------------------
    layer = params.layers[0]
    x = embeddings
    q, k, v = (
        linear(x, lin)
        for lin in (layer.attention.q_lin, layer.attention.k_lin, layer.attention.v_lin)
    )  # [1, seq, dim] fmt: skip
    qh, kh, vh = (split_heads(t, heads) for t in (q, k, v))  # [1, heads, seq, head_dim]
    scores = (qh / np.float32(math.sqrt(head_dim))) @ kh.transpose(0, 1, 3, 2)
    weights = masked_softmax(scores, attention_keep(inputs.mask, cfg.causal))  # [1, heads, s, s]
    context = merge_heads(weights @ vh)  # [1, seq, dim]
    hidden = linear(trace["layer.0.layer_norm1"], layer.ffn.lin1)  # [1, seq, 4 * dim]
    act = (gelu if cfg.gelu_activation else relu)(hidden)
    steps = dict(q=q, k=k, v=v, qh=qh, scores=scores, weights=weights, context=context,
                 attn=trace["layer.0.attention"], x1=trace["layer.0.layer_norm1"], hidden=hidden,
                 act=act, ffn=trace["layer.0.ffn"], x2=hidden_states[1])  # fmt: skip

    # -- the checks: these steps are the reference's, which is the model's ---------------------
    np.testing.assert_allclose(weights, attentions[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(linear(context, layer.attention.out_lin), steps["attn"],
                               rtol=0, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(linear(act, layer.ffn.lin2), steps["ffn"], rtol=0, atol=1e-5)
    model_inputs = dict(attention_mask=mask, token_type_ids=features.get("token_type_ids"))
    fast_out = encoder.model(ids, **model_inputs)
    np.testing.assert_allclose(last, fast_out.last_hidden_state, rtol=0, atol=1e-5)
    modes = encoder.pooling.pooling_modes
    if tuple(modes) != ("mean",):
        raise SystemExit(f"the walkthrough explains mean pooling; {model} pools with {modes}")
    summed = (last * mask[..., None]).sum(axis=1)  # [1, dim]
    count = mask.sum(axis=1, keepdims=True).astype(np.float32)  # [1, 1]
    pooled = summed / count
    sentence_embedding = pooled
    for head in encoder.heads:
        sentence_embedding = head(sentence_embedding)
    encoded = encoder.encode([sentence])
    np.testing.assert_allclose(sentence_embedding, encoded, rtol=0, atol=1e-5)
    all_embeddings = encoder.encode([sentence, *OTHERS])
    sims = cos_sim(all_embeddings[:1], all_embeddings[1:])[0]

    elided = list(dict.fromkeys(m for m in words if m.endswith("'")))  # once each, in order
    split, current = [], []  # the words cut into several pieces: (word, its pieces)
    for piece in pieces:
        current.append(piece)
        if piece.endswith("</w>"):
            if len(current) > 1:
                split.append(("".join(current)[: -len("</w>")], current))
            current = []

    # -- the document -------------------------------------------------------------------------
    labels = token_labels(tokens)
    w0 = steps["weights"][0]  # [heads, seq, seq]
    # The token we follow: the first whole word of four letters or more (else the first token).
    focus = next((i for i in range(1, seq - 1) if labels[i].isalpha() and len(labels[i]) >= 4), 1)
    top = np.argsort(-w0[0, focus], kind="stable")[:3]
    word = f"`{tokens[focus]}`"
    lines: list[str] = []
    add = lines.append
    add("# From a French sentence to its embedding, step by step\n")
    add(
        "This page follows one sentence through flaubert-np's FlauBERT encoder and mean pooling, "
        "with the shape of every array and real numbers from the small demo model shipped with "
        f"the package (`{model}`). Every figure below is produced by "
        "[`tools/walkthrough.py`](../tools/walkthrough.py), which runs the reference forward pass "
        "and redoes its steps with the functions linked at each one, and checks that they land on "
        "exactly what "
        "`FlaubertModel` and `SentenceEncoder.encode` return; a test fails when this page "
        "is out of date. Vectors show their first 4 values, rounded to 4 decimals.\n"
    )
    add(f"The sentence: **{sentence}**\n")
    add(
        f"The model: {cfg.n_layers} layers, `emb_dim` = {dim}, {heads} attention heads of "
        f"{head_dim} dimensions, a feed-forward width of {4 * dim}, a vocabulary of "
        f"{cfg.n_words} BPE tokens, {cfg.max_position_embeddings} positions, "
        f"{'GELU' if cfg.gelu_activation else 'ReLU'} activation, "
        f"{'pre' if cfg.pre_norm else 'post'}-norm layers.\n"
    )
    add("## 1. Text to tokens\n")
    add(
        f"{link('moses_words', MOSES)} cleans the text as FlauBERT's tokenizer does (Unicode "
        "punctuation to ASCII, control characters dropped, Moses punctuation normalisation"
        f"{', lower-casing' if tok.do_lowercase else ''}) and splits it into words with the "
        "Moses tokenizer for French"
        + (
            f" (an elided word keeps its apostrophe: {', '.join(f'`{e}`' for e in elided)})"
            if elided
            else ""
        )
        + ":\n"
    )
    add("```text\n" + "  ".join(words) + "\n```\n")
    add(
        f"{link('bpe', BPE)} then cuts each word into pieces of the vocabulary, merging "
        "characters in the order learnt from the training text. A word's last piece ends in "
        "`</w>`; a word the vocabulary lacks comes out in several pieces"
        + (
            " (here "
            + ", ".join(f"`{word}` → " + " ".join(f"`{p}`" for p in ps) for word, ps in split)
            + ")"
            if split
            else ""
        )
        + f" ({link('FlaubertTokenizer.tokenize', TOKENIZER)}):\n"
    )
    add("```text\n" + "  ".join(pieces) + "\n```\n")
    add("## 2. Tokens to ids\n")
    add(
        f"{link('FlaubertTokenizer.__call__', TOKENIZER)} frames the pieces with `<s>` and "
        "`</s>` and looks each one up in `vocab.json`. `input_ids` and `attention_mask` "
        f"(1 for a real token, 0 for padding) both have shape {shape(ids)}: [batch, seq]. "
        "With one sentence there is no padding; in a batch, shorter sentences are padded "
        f"with `<pad>` (id {cfg.pad_index}) up to the longest.\n"
    )
    add("| position | token | id |\n|---:|---|---:|")
    for t, (token, i) in enumerate(zip(tokens, ids[0].tolist(), strict=True)):
        add(f"| {t} | `{token}` | {i} |")
    add("")
    add("## 3. Embeddings\n")
    add(
        f"Each id selects a row of the word embedding table `embeddings.weight` "
        f"{shape(params.embeddings)}, and each position a row of "
        f"`position_embeddings.weight` {shape(params.position_embeddings)}; the two are "
        f"added ({link('embed', MODEL_PY)}). Shape {shape(word_emb)}: "
        "[batch, seq, dim].\n"
    )
    add(f"- word embedding of {word}: {vec(word_emb[0, focus])}")
    add(f"- position embedding {focus}: {vec(pos_emb[0, focus])}")
    add(f"- their sum: {vec(emb_sum[0, focus])}\n")
    if "token_type_ids" in features:
        add(
            "This model was saved with transformers 4, whose tokenizer also returned all-zero "
            "`token_type_ids`: FlaubertModel looks them up in the same word table, so the "
            f"embedding of token 0 (`{tok.convert_ids_to_tokens([0])[0]}`) is added as well.\n"
        )
    add(
        f"{link('layer_norm', LAYERS)} (`layer_norm_emb`) then rescales each token's vector to "
        "mean 0 and variance 1 over its "
        f"{dim} values, before a learnt scale and shift; padded positions are set to 0. "
        f"{word} becomes {vec(embeddings[0, focus])}. This is `hidden_states[0]`, "
        "the input of the first layer, shape "
        f"{shape(embeddings)}.\n"
    )
    add("## 4. Layer 0, in detail\n")
    add(
        f"Each of the {cfg.n_layers} layers is self-attention then a feed-forward network, "
        "each followed by a residual sum and a layer norm "
        f"({link('transformer_layer', MODEL_PY)}, which the reference pass, "
        f"{link('forward', MODEL_PY)}, calls for every layer).\n"
    )
    add("### 4.1 Self-attention\n")
    add(
        f"1. Three {link('linear', LAYERS)} maps (`q_lin`, `k_lin`, `v_lin`) give every token "
        f"a query, a key and a value, each {shape(steps['q'])}. Query of {word}: "
        f"{vec(steps['q'][0, focus])}."
    )
    add(
        f"2. {link('split_heads', LAYERS)} cuts them into {heads} heads of {head_dim} values: "
        f"{shape(steps['qh'])} = [batch, heads, seq, head_dim]. Each head attends on its own."
    )
    add(
        f"3. Scores: every query against every key, `q · k / √{head_dim}`, shape "
        f"{shape(steps['scores'])} = [batch, heads, seq (queries), seq (keys)]. Head 0, query "
        f"{word}: {vec(steps['scores'][0, 0, focus], seq)}."
    )
    add(
        f"4. {link('masked_softmax', LAYERS)} turns each row of scores into weights that sum "
        "to 1 (padding keys, if any, get 0). The same row: "
        f"{vec(w0[0, focus], seq)} (sum {w0[0, focus].sum():.4f}); {word} "
        "looks most at " + ", ".join(f"`{tokens[j]}` ({w0[0, focus, j]:.4f})" for j in top) + "."
    )
    add(
        f"5. Each query's output is the weighted sum of the values, and "
        f"{link('merge_heads', LAYERS)} puts the heads side by side again: "
        f"{shape(steps['context'])}."
    )
    add(
        f"6. `out_lin`, one more {link('linear', LAYERS)} map, mixes the heads: the attention "
        f"output {shape(steps['attn'])}; {word}: {vec(steps['attn'][0, focus])}. "
        f"(Steps 1 to 6 are {link('attention', LAYERS)}; the parity report calls this stage "
        "`layer.0.attention`.)\n"
    )
    add(
        "The attention weights of layer 0, every head (rows: queries; columns: the keys they "
        "look at); `flaubert-np attention` draws such maps for any sentence:\n"
    )
    add(f"![Attention weights of layer 0]({SVG.name})\n")
    add("### 4.2 Residual and first layer norm\n")
    add(
        f"The attention output is added to the layer's input and normalised by "
        f"{link('layer_norm', LAYERS)} (`layer_norm1`): {shape(steps['x1'])}; {word}: "
        f"{vec(steps['x1'][0, focus])}.\n"
    )
    add("### 4.3 Feed-forward network\n")
    add(
        f"{link('ffn', LAYERS)}: `lin1` widens every token to {4 * dim} values "
        f"{shape(steps['hidden'])}, {link('gelu' if cfg.gelu_activation else 'relu', LAYERS)} "
        f"bends them ({vec(steps['hidden'][0, focus], 3)} becomes "
        f"{vec(steps['act'][0, focus], 3)}), "
        f"`lin2` brings them back to {dim}: {shape(steps['ffn'])}; {word}: "
        f"{vec(steps['ffn'][0, focus])}. Each token goes through it on its own: only attention "
        "mixes tokens.\n"
    )
    add("### 4.4 Residual and second layer norm\n")
    add(
        f"Added to the FFN's input and normalised (`layer_norm2`), padding zeroed: the output of "
        f"layer 0, `hidden_states[1]`, {shape(steps['x2'])}; {word}: "
        f"{vec(steps['x2'][0, focus])}.\n"
    )
    add("## 5. The other layers\n")
    add(
        "The same computation with each layer's own weights. The vector of "
        f"{word} after each layer, and the token it attends to most in head 0:\n"
    )
    add(f"| layer | {word} after the layer | {word} attends most to (head 0) |")
    add("|---:|---|---|")
    for i, (h, wts) in enumerate(per_layer):
        j = int(np.argmax(wts[0, 0, focus]))
        add(f"| {i} | {vec(h[0, focus])} | `{tokens[j]}` ({wts[0, 0, focus, j]:.4f}) |")
    add("")
    add(
        f"The last layer's output is `last_hidden_state`, {shape(last)}: one {dim}-dimensional "
        "vector per token. The script checks it equals `FlaubertModel`'s within 1e-5.\n"
    )
    add("## 6. Pooling: one vector for the sentence\n")
    add(
        f"Mean pooling ({link('mean_pooling', '../flaubert_np/pooling.py')}) averages the "
        "vectors of the real tokens, `<s>` and `</s>` included, padding excluded: the sum over "
        f"tokens of `last_hidden_state × attention_mask` {shape(summed)}, divided by the number "
        f"of real tokens ({int(count[0, 0])}):\n"
    )
    add(f"```text\nsentence embedding {shape(pooled)[1:-1]} = {vec(pooled[0], 6)[1:-1]}\n```\n")
    add(
        f"This is what {link('SentenceEncoder.encode', '../flaubert_np/sentence.py')} returns "
        "for the sentence (checked by the script)"
        + (
            "."
            if not encoder.heads
            else f", after the model's {len(encoder.heads)} Dense/Normalize module(s)."
        )
        + "\n"
    )
    add("## 7. Comparing sentences\n")
    add(
        f"Sentence embeddings are compared by cosine similarity "
        f"({link('cos_sim', '../flaubert_np/similarity.py')}). With our sentence:\n"
    )
    add("| sentence | cosine |\n|---|---:|")
    for other, s in zip(OTHERS, sims, strict=True):
        add(f"| {other} | {s:.4f} |")
    add("")
    add("## 8. Looking inside without redoing the pass\n")
    add(
        f"{link('FlaubertModel.__call__', MODEL_PY)} hands out what this page computed by hand: "
        "`output_hidden_states=True` returns the input of every layer and the last output "
        f"({cfg.n_layers + 1} arrays {shape(last)}), `output_attentions=True` the attention "
        f"weights ({cfg.n_layers} arrays {shape(w0[None])}), and a `trace` dict receives every "
        "stage by name:\n"
    )
    add(
        "```python\n"
        "from flaubert_np import SentenceEncoder\n\n"
        f'encoder = SentenceEncoder.from_pretrained("{model}")\n'
        f"features = encoder.tokenize([{sentence!r}])\n"
        "trace = {}\n"
        'encoder.model(features["input_ids"], features["attention_mask"], trace=trace)\n'
        'print(", ".join(trace))\n'
        "```\n"
    )
    add("```text\n" + ", ".join(trace) + "\n```\n")
    add(
        "Each is `[batch, seq, dim]`; the script checks the values of this page against them. "
        "Without a `trace` (the default) nothing is recorded and nothing is slower. "
        "[`tools/parity.py`](../tools/parity.py) puts the same stages side by side with "
        "transformers' (`python tools/parity.py demo`), and `flaubert-np attention` draws the "
        "attention weights of any sentence.\n"
    )
    svg = attention_grid_svg(labels, w0, title=f"{model}: layer 0, all heads", columns=2)
    return "\n".join(lines), svg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args(argv)
    text, svg = render()
    if args.check:
        stale = [
            str(p.relative_to(ROOT))
            for p, new in ((DOC, text), (SVG, svg))
            if not p.is_file() or p.read_text(encoding="utf-8") != new
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python tools/walkthrough.py")
            return 1
        return 0
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    SVG.write_text(svg, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} and {SVG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
