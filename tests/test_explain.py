"""flaubert_np/explain.py and `flaubert-np explain`: the token-pair attribution of a cosine, and its
self-contained HTML page, opened in a real browser (headless Chromium).

The maths is checked on the demo model (NumPy only) with every pooling mode, and on sentence-
transformers models saved by conftest's `sentence_model` (oracle). The browser tests need the
`chromium` binary (Debian's package; .ci/run installs it): its absence is a failure, not a skip.
"""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import read_sts_sentences

from flaubert_np.cli import main
from flaubert_np.explain import render_html, similarity_attribution, trace_sentence, write_html
from flaubert_np.pooling import POOLING_MODES, PoolingConfig, pool
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.similarity import cos_sim
from flaubert_np.svg import token_labels

TOL = 1e-5
A, B = "Un avion décolle de l'aéroport sous la pluie.", "Un avion est en train de décoller."


def sts_pairs(n: int) -> list[tuple[str, str]]:
    sentences = read_sts_sentences("dev")
    return list(zip(sentences[0 : n * 2 : 2], sentences[1 : n * 2 : 2], strict=True))


def encoded_cosine(encoder, a: str, b: str) -> float:
    u, v = encoder.encode([a, b])
    return float(cos_sim(u[None], v[None])[0, 0])


@pytest.fixture(scope="module")
def demo():
    return SentenceEncoder.from_pretrained("demo")


def with_pooling(encoder, modes) -> SentenceEncoder:
    """The demo's FlauBERT and tokenizer behind another pooling (the public constructor)."""
    dim = encoder.model.config.emb_dim
    return SentenceEncoder(encoder.model, encoder.tokenizer, PoolingConfig(dim, tuple(modes)))


# ------------------------------------------------------------------------------------------------
# The attribution (NumPy only: the demo model behind every pooling mode)


@pytest.mark.parametrize(
    "modes", [(m,) for m in POOLING_MODES] + [("mean", "max"), ("cls", "mean_sqrt_len_tokens")]
)
def test_attribution_sums_to_the_cosine_for_every_pooling_mode(demo, modes):
    encoder = with_pooling(demo, modes)
    for a, b in sts_pairs(8):
        result = similarity_attribution(encoder, a, b)
        n, m = (
            len(encoder.tokenize([a])["input_ids"][0]),
            len(encoder.tokenize([b])["input_ids"][0]),
        )
        assert result.matrix.shape == (n, m) == (len(result.tokens_a), len(result.tokens_b))
        expected = encoded_cosine(encoder, a, b)
        assert abs(result.matrix.sum() - expected) <= TOL, (modes, a, b)
        assert abs(result.cosine - expected) <= TOL


def test_mean_pooling_pairs_are_token_dot_products(demo):
    """cos = Σ_ij h_i·g_j / (n m ‖h̄‖ ‖ḡ‖), from the encoder's own token embeddings."""
    h, g = demo.encode([A, B], output_value="token_embeddings")
    h, g = h.astype(np.float64), g.astype(np.float64)
    expected = (h @ g.T) / (len(h) * len(g) * np.linalg.norm(h.mean(0)) * np.linalg.norm(g.mean(0)))
    result = similarity_attribution(demo, A, B)
    np.testing.assert_allclose(result.matrix, expected, rtol=0, atol=1e-6)
    ids = demo.tokenize([A])["input_ids"][0].tolist()
    assert result.tokens_a == demo.tokenizer.convert_ids_to_tokens(ids)
    assert result.tokens_a[0] == "<s>" and result.tokens_a[-1] == "</s>"


def test_cls_has_one_pair_and_max_at_most_one_pair_per_dimension(demo):
    cls = similarity_attribution(with_pooling(demo, ["cls"]), A, B).matrix
    assert np.count_nonzero(cls) == 1 and cls[0, 0] != 0
    maxed = similarity_attribution(with_pooling(demo, ["max"]), A, B).matrix
    assert 1 < np.count_nonzero(maxed) <= demo.model.config.emb_dim


def test_per_layer_cosines_are_the_cosines_of_each_pooled_hidden_state(demo):
    result = similarity_attribution(demo, A, B)
    pooled = []
    for text in (A, B):
        features = demo.tokenize([text])
        out = demo.model(
            features["input_ids"],
            attention_mask=features["attention_mask"],
            output_hidden_states=True,
        )
        pooled.append(
            np.stack([pool(h, features["attention_mask"], "mean")[0] for h in out.hidden_states])
        )
    expected = [cos_sim(u[None], v[None])[0, 0] for u, v in zip(*pooled, strict=True)]
    assert len(result.layer_cosines) == demo.model.config.n_layers + 1
    np.testing.assert_allclose(result.layer_cosines, expected, rtol=0, atol=TOL)
    np.testing.assert_allclose(result.layer_matrices.sum(axis=(1, 2)), result.layer_cosines)
    assert result.layer_cosines[-1] == pytest.approx(result.cosine, abs=1e-12)


def test_token_shares_add_up_to_one_per_layer(demo):
    result = similarity_attribution(demo, A, B)
    for shares, tokens in (
        (result.layer_shares_a, result.tokens_a),
        (result.layer_shares_b, result.tokens_b),
    ):
        assert shares.shape == (demo.model.config.n_layers + 1, len(tokens))
        np.testing.assert_allclose(shares.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    # mean pooling: a token's share is h_i · Σ h / ‖Σ h‖², from the encoder's token embeddings
    h = demo.encode(A, output_value="token_embeddings").astype(np.float64)
    total = h.sum(axis=0)
    np.testing.assert_allclose(result.layer_shares_a[-1], h @ total / (total @ total), atol=1e-6)
    trace = trace_sentence(demo, A)
    layers, heads = demo.model.config.n_layers, demo.model.config.n_heads
    assert trace.attentions.shape == (layers, heads, len(trace.tokens), len(trace.tokens))


def test_prompts_are_refused(demo):
    encoder = with_pooling(demo, ["mean"])
    encoder.prompts, encoder.default_prompt_name = {"query": "requête : "}, "query"
    with pytest.raises(ValueError, match="prompt 'query'"):
        similarity_attribution(encoder, A, B)


# ------------------------------------------------------------------------------------------------
# sentence-transformers models, as saved by SentenceTransformer.save (oracle)


@pytest.mark.oracle
@pytest.mark.parametrize(
    "kwargs",
    [
        {"pooling": "mean"},
        {"pooling": "mean", "normalize": True},
        {"pooling": "cls"},
        {"pooling": "max"},
        {"pooling": "mean", "dense": "Identity", "normalize": True},
    ],
    ids=["mean", "mean+Normalize", "cls", "max", "mean+Dense(Identity)+Normalize"],
)
def test_attribution_sums_to_sentence_transformers_cosine(sentence_model, kwargs):
    from sentence_transformers import SentenceTransformer

    path = sentence_model(**kwargs)
    encoder = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    for a, b in sts_pairs(10):
        result = similarity_attribution(encoder, a, b)
        assert abs(result.matrix.sum() - encoded_cosine(encoder, a, b)) <= TOL
        u, v = reference.encode([a, b])
        st_cosine = float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))
        assert abs(result.matrix.sum() - st_cosine) <= TOL, (kwargs, a, b)


@pytest.mark.oracle
def test_a_dense_non_linearity_is_refused(sentence_model, tmp_path, capsys):
    path = sentence_model("mean", dense="Tanh")
    encoder = SentenceEncoder.from_pretrained(path)
    with pytest.raises(ValueError, match=r"Dense module applies Tanh, a non-linearity"):
        similarity_attribution(encoder, A, B)
    out = tmp_path / "page.html"
    capsys.readouterr()  # building the model printed progress bars
    assert main(["explain", A, B, "--model", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Tanh" in err and not out.exists()


# ------------------------------------------------------------------------------------------------
# The page and the command


def test_the_page_is_self_contained(demo):
    page = render_html(demo, A, B, model_name="demo")
    assert page.startswith("<!DOCTYPE html>") and "{{" not in page
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"<link\b|<script[^>]*\bsrc\b|<iframe|@import|url\(\s*['\"]?https?:", page)
    assert not re.search(r"\bfetch\s*\(|XMLHttpRequest|WebSocket|EventSource|import\s*\(", page)
    # the data holds both sentences, their tokens and a matrix per layer
    data = json.loads(
        re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    )
    assert data["a"]["text"] == A and data["b"]["text"] == B
    assert data["a"]["tokens"] == token_labels(trace_sentence(demo, A).tokens)
    assert len(data["pair"]["matrices"]) == demo.model.config.n_layers + 1


def test_text_cannot_break_out_of_the_page(demo):
    hostile = "</script><script>alert(1)</script> <b>x</b> {{css}}"
    page = render_html(demo, hostile, B)
    assert "<script>alert(1)" not in page and "<b>x</b>" not in page
    assert page.count("{{css}}") == 2  # in the title and the data, as text
    assert page.count("<style>") == 1


def sentence_of(encoder, words: list[str], n_tokens: int) -> str:
    """Words taken in turn (skipping those that overshoot) until the text has n_tokens tokens."""
    kept: list[str] = []
    for word in words * n_tokens:
        size = len(encoder.tokenize([" ".join([*kept, word])])["input_ids"][0])
        if size <= n_tokens:
            kept.append(word)
        if size == n_tokens:
            return " ".join(kept)
    raise AssertionError(f"no {n_tokens}-token sentence from {words}")


@pytest.mark.oracle
def test_page_size_for_two_20_token_sentences_on_base_dimensions(demo, flaubert_checkpoint):
    """Base's 12 layers x 12 heads (the attention maps are most of the page; the width of the
    vectors does not change its size); two sentences of 20 tokens each."""
    from flaubert_np.model import FlaubertModel

    folder = flaubert_checkpoint(
        vocab_size=demo.tokenizer.vocab_size,
        n_layers=12,
        n_heads=12,
        emb_dim=48,
        max_position_embeddings=64,
    )
    encoder = SentenceEncoder(
        FlaubertModel.from_pretrained(folder), demo.tokenizer, PoolingConfig(48)
    )
    a, b = (sentence_of(encoder, text.split(), 20) for text in sts_pairs(1)[0])
    page = render_html(encoder, a, b)
    assert len(page.encode()) <= 5_000_000


def test_write_html_keeps_an_existing_file(demo, tmp_path):
    out = tmp_path / "page.html"
    out.write_text("mine")
    with pytest.raises(FileExistsError):
        write_html(demo, A, path=out)
    assert out.read_text() == "mine"
    write_html(demo, A, path=out, overwrite=True)
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_command_writes_the_page_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["explain", A, B, "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert A in page and B in page
    out.write_text("mine")
    assert main(["explain", A, "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["explain", A, "-o", str(out), "--overwrite"]) == 0
    assert '"b":null' in out.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["explain", A, B, "-o", "-"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------------------------------
# A real browser: headless Chromium loads the page from file://, runs its script, dumps the DOM


def chromium(url: str, tmp_path) -> tuple[str, list[str]]:
    """The rendered DOM of `url` and every console message the page logged."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "the browser tests need Chromium (Debian: apt-get install chromium)"
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    # console.log/error and uncaught exceptions all appear as ":CONSOLE" lines
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def rendered_tokens(dom: str, name: str) -> list[str]:
    block = re.search(rf'<div class="tokens" data-sentence="{name}">(.*?)</div>', dom, re.S)
    assert block, f"no tokens of sentence {name} in the rendered page"
    return [
        _unescape(t)
        for t in re.findall(r'<span class="token[^"]*"[^>]*>(.*?)</span>', block.group(1))
    ]


def _unescape(s: str) -> str:
    import html

    return html.unescape(s)


def drawn_lines(dom: str) -> tuple[dict, np.ndarray]:
    """The head view's <svg> attributes and its line opacities as a [query, key] matrix."""
    svg = re.search(r'<svg [^>]*id="head-svg"[^>]*>', dom)
    assert svg, "no head view in the rendered page"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', svg.group(0)))
    lines = re.findall(r'<line class="att"[^>]*>', dom)
    cells = [
        (
            int(re.search(r'data-q="(\d+)"', x).group(1)),
            int(re.search(r'data-k="(\d+)"', x).group(1)),
            float(re.search(r'stroke-opacity="([\d.]+)"', x).group(1)),
        )
        for x in lines
    ]
    n = int(np.sqrt(len(cells)))
    drawn = np.full((n, n), np.nan)
    for q, k, w in cells:
        drawn[q, k] = w
    return attrs, drawn


@pytest.mark.oracle
def test_browser_renders_the_pair_page_and_its_controls_redraw(demo, tmp_path):
    page = tmp_path / "pair.html"
    write_html(demo, A, B, page, model_name="demo")
    dom, console = chromium(page.as_uri() + "#selftest", tmp_path)
    assert console == []
    trace_a, trace_b = trace_sentence(demo, A), trace_sentence(demo, B)
    assert rendered_tokens(dom, "A") == token_labels(trace_a.tokens)
    assert rendered_tokens(dom, "B") == token_labels(trace_b.tokens)
    assert dom.count('class="cell"') >= len(trace_a.tokens) * len(trace_b.tokens)  # the heatmap

    # the page's self-test changed layer, then head, then clicked a model-view thumbnail
    report = json.loads(
        _unescape(re.search(r'<pre id="selftest" hidden="">(.*?)</pre>', dom, re.S).group(1))
    )
    layers, heads = demo.model.config.n_layers, demo.model.config.n_heads
    steps = dict(report["steps"])
    assert [(s["layer"], s["head"]) for s in steps.values()] == [
        ("0", "0"),
        (str(layers - 1), "0"),
        (str(layers - 1), str(heads - 1)),
        ("0", "1"),
    ]
    opacities = [s["opacities"] for s in steps.values()]
    assert len(set(opacities)) == 4  # each change redrew something different
    assert report["thumbnails"] == layers * heads and report["view"] == "head"

    # what is drawn at the end is layer 0, head 1 of sentence A, line by line
    attrs, drawn = drawn_lines(dom)
    assert (attrs["data-sentence"], attrs["data-layer"], attrs["data-head"]) == ("A", "0", "1")
    np.testing.assert_allclose(drawn, trace_a.attentions[0, 1], rtol=0, atol=6e-4)


@pytest.mark.oracle
def test_browser_renders_a_single_sentence_page(demo, tmp_path):
    page = tmp_path / "one.html"
    write_html(demo, A, path=page)
    dom, console = chromium(page.as_uri(), tmp_path)
    assert console == []
    trace = trace_sentence(demo, A)
    assert rendered_tokens(dom, "A") == token_labels(trace.tokens)
    assert re.search(r'<section id="pair-section" hidden', dom)
    attrs, drawn = drawn_lines(dom)
    assert (attrs["data-layer"], attrs["data-head"]) == ("0", "0")
    np.testing.assert_allclose(drawn, trace.attentions[0, 0], rtol=0, atol=6e-4)
