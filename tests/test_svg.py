"""The attention heatmaps: valid XML, one cell per token pair, the labels, the colour scale."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from flaubert_np.svg import attention_grid_svg, attention_svg, colour, token_labels

SVG = "{http://www.w3.org/2000/svg}"
# Accents, XML metacharacters, French quotes, a very long token, a control character.
TOKENS = ["<s>", "l'", "élève</w>", "a", "«", 'dit "oui"', "R&D", "x" * 40, "ça\x01", "</s>"]


def softmax_rows(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    scores = np.random.default_rng(seed).standard_normal(shape) * 2
    w = np.exp(scores)
    return w / w.sum(-1, keepdims=True)


def cells(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "cell"]


def labels(root: ET.Element, cls: str) -> list[str]:
    """The visible text of the <text class=cls> elements (without their <title> tooltips)."""
    texts = [t for t in root.iter(f"{SVG}text") if t.get("class") == cls]
    return [t.find(f"{SVG}title").tail if len(t) else t.text for t in texts]


def label_tips(root: ET.Element, cls: str) -> list[str]:
    return [t.find(f"{SVG}title").text for t in root.iter(f"{SVG}text") if t.get("class") == cls]


def test_one_head_is_valid_svg_with_a_cell_per_token_pair():
    weights = softmax_rows((len(TOKENS), len(TOKENS)))
    root = ET.fromstring(attention_svg(TOKENS, weights, title="layer 0 & head 1").encode())
    assert root.tag == f"{SVG}svg"
    n = len(TOKENS)
    found = cells(root)
    assert len(found) == n * n
    assert {(int(c.get("data-query")), int(c.get("data-key"))) for c in found} == {
        (i, j) for i in range(n) for j in range(n)
    }
    # Each cell's colour is the colour of its weight on the 0..max scale.
    vmax = weights.max()
    for c in found:
        i, j = int(c.get("data-query")), int(c.get("data-key"))
        assert c.get("fill") == colour(weights[i, j] / vmax)
        assert c.find(f"{SVG}title").text.endswith(f"{weights[i, j]:.4f}")
    assert "layer 0 & head 1" in labels(root, "title")


def test_labels_are_escaped_readable_and_complete_in_tooltips():
    weights = softmax_rows((len(TOKENS), len(TOKENS)))
    text = attention_svg(TOKENS, weights)
    root = ET.fromstring(text.encode())
    shown = [t.replace("\\x01", "\x01") for t in labels(root, "row")]
    tips = [t.replace("\\x01", "\x01") for t in label_tips(root, "row")]
    assert tips == TOKENS
    assert label_tips(root, "col") == label_tips(root, "row")
    # Short tokens are shown whole (accents and metacharacters intact); the long one is shortened.
    for token, label in zip(TOKENS, shown, strict=True):
        if len(token) <= 24:
            assert label == token
        else:
            assert label.endswith("…") and token.startswith(label[:-1]) and len(label) == 24
    assert "élève" in text  # UTF-8, not character references
    assert "R&amp;D" in text and "&lt;s&gt;" in text


def test_colour_scale_and_legend():
    assert colour(0.0) == "#440154" and colour(1.0) == "#fde725"  # viridis end points
    assert colour(-1.0) == colour(0.0) and colour(2.0) == colour(1.0)
    weights = softmax_rows((3, 3))
    root = ET.fromstring(attention_svg(["a", "b", "c"], weights, vmax=1.0).encode())
    ticks = labels(root, "tick")
    assert ticks == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    stops = list(root.iter(f"{SVG}stop"))
    assert stops[0].get("stop-color") == colour(1.0) and stops[-1].get("stop-color") == colour(0.0)


def test_grid_draws_every_head_with_a_shared_scale():
    n, heads = 5, 6
    tokens = ["<s>", "été", "très", "chaud", "</s>"]
    weights = softmax_rows((heads, n, n), seed=1)
    root = ET.fromstring(attention_grid_svg(tokens, weights, title="layer 2", columns=4).encode())
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "head"]
    assert len(groups) == heads
    for h, g in enumerate(groups):
        assert len(cells(g)) == n * n
        assert f"head {h}" in labels(g, "title")
        for c in cells(g):
            i, j = int(c.get("data-query")), int(c.get("data-key"))
            assert c.get("fill") == colour(weights[h, i, j] / weights.max())
    assert labels(root, "tick")[-1] == f"{weights.max():.2f}"


@pytest.mark.parametrize(
    ("tokens", "weights", "message"),
    [
        (["a", "b"], np.ones((3, 3)), r"shape \[2, 2\] for 2 tokens, got \[3, 3\]"),
        (["a", "b"], np.ones((1, 2, 2)), r"shape \[2, 2\]"),
        (["a", "b"], np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN or infinite"),
        (["a", "b"], np.zeros((2, 2)), "vmax must be > 0"),
        ([], np.zeros((0, 0)), "no tokens"),
    ],
)
def test_bad_input_is_a_clear_error(tokens, weights, message):
    with pytest.raises(ValueError, match=message):
        attention_svg(tokens, weights)


def test_grid_bad_input():
    with pytest.raises(ValueError, match=r"shape \['heads', 2, 2\]"):
        attention_grid_svg(["a", "b"], np.ones((2, 2)))
    with pytest.raises(ValueError, match="columns must be >= 1"):
        attention_grid_svg(["a", "b"], np.ones((1, 2, 2)), columns=0)


def test_token_labels_use_fastbpe_notation():
    tokens = ["<s>", "l'</w>", "rédac", "tion</w>", "</w>", "<</w>", "<", "</s>"]
    assert token_labels(tokens) == ["<s>", "l'", "rédac@@", "tion", "</w>", "<", "<@@", "</s>"]


# The `flaubert-np attention` command ------------------------------------------------------------

SENTENCE = "L'élève a répondu « oui » à la maîtresse."


def reference_attentions(model_dir, text: str):
    """transformers' attention weights and tokens for one sentence: ([layers][heads, seq, seq],
    tokens)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.FlaubertModel.from_pretrained(str(model_dir)).eval()
    inputs = tok([text], return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    tokens = tok.convert_ids_to_tokens(inputs["input_ids"][0].tolist())
    return [a[0].numpy() for a in out.attentions], tokens


@pytest.mark.oracle
def test_attention_command_draws_one_head(tmp_path, sentence_model, capsys):
    from flaubert_np.cli import main

    model = sentence_model(max_seq_length=None)
    out = tmp_path / "attention.svg"
    code = main(["attention", SENTENCE, "-m", str(model), "--layer", "1", "--head", "2",
                 "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    attentions, tokens = reference_attentions(model, SENTENCE)
    root = ET.parse(out).getroot()
    n = len(tokens)
    assert len(cells(root)) == n * n
    assert labels(root, "row") == token_labels(tokens)
    assert "élève" in labels(root, "row")
    for c in cells(root):  # the tooltips carry the weights, to 4 decimals
        i, j = int(c.get("data-query")), int(c.get("data-key"))
        shown = float(c.find(f"{SVG}title").text.rsplit(": ", 1)[1])
        assert abs(shown - attentions[1][2, i, j]) <= 5.1e-5
    assert "layer 1, head 2" in labels(root, "title")[0]


@pytest.mark.oracle
def test_attention_command_draws_every_head_of_the_last_layer(sentence_model, capsys):
    from flaubert_np.cli import main

    model = sentence_model(max_seq_length=None)
    assert main(["attention", SENTENCE, "-m", str(model), "--layer", "-1", "-o", "-"]) == 0
    root = ET.fromstring(capsys.readouterr().out.encode())
    attentions, tokens = reference_attentions(model, SENTENCE)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "head"]
    assert len(groups) == attentions[-1].shape[0]
    assert all(len(cells(g)) == len(tokens) ** 2 for g in groups)
    assert "layer 1, all heads" in labels(root, "title")[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [  # the demo model: 4 layers of 4 heads
        (["--layer", "4"], "--layer 4 out of range: the model has 4 layers"),
        (["--layer", "-5"], "--layer -5 out of range"),
        (["--head", "4"], "--head 4 out of range: layers have 4 heads"),
        (["--columns", "0"], "argument --columns: must be at least 1"),
    ],
)
def test_attention_command_rejects_bad_arguments(tmp_path, capsys, args, message):
    from flaubert_np.cli import main

    out = tmp_path / "a.svg"
    try:
        code = main(["attention", "Bonjour.", "-m", "demo", "-o", str(out), *args])
    except SystemExit as e:  # argparse's own checks (--columns) exit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1  # a usage error, as argparse's
    assert not out.exists()
