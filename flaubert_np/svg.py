"""Attention maps as SVG heatmaps, written by hand: no plotting library, just strings.

An attention map of one head is a [seq, seq] matrix: row i holds the softmax weights with which
token i (the query) mixes the value vectors of every token j (the keys); each row sums to 1.
`attention_svg` draws one such matrix, `attention_grid_svg` draws every head of a layer side by
side with one shared colour scale.

The SVG is plain XML: one `<rect class="cell">` per (query, key) pair, with a `<title>` that a
browser shows as a tooltip, the tokens as `<text>` labels, and a colour bar.
"""

import math
import re
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

# Viridis (matplotlib's default colour map) sampled at 9 points: perceptually uniform, readable
# in greyscale and by colour-blind readers. Low weights are dark purple, high weights yellow.
_VIRIDIS = np.array(
    [
        [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
        [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
    ],
    dtype=np.float64,
)  # fmt: skip

_FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
# Glyph widths of DejaVu Sans in em, by class (enough to size the label margins): the default
# is a lower-case letter's; "@" or "m" is half as wide again, "i" or "." half as narrow.
_CHAR_WIDTHS = {
    **dict.fromkeys("il.,;:'|!jI", 0.30),
    **dict.fromkeys('frt()[] -"/', 0.42),
    **dict.fromkeys("<>=+~#", 0.84),
    **dict.fromkeys("@mwMW%…", 1.0),
}
_DEFAULT_WIDTH, _UPPER_WIDTH = 0.62, 0.74
_MAX_LABEL = 24  # longer tokens are shortened with "…" (the full token stays in the tooltip)
_AXES = "rows: query tokens; columns: the key tokens they attend to; each row sums to 1"
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def colour(value: float) -> str:
    """A weight in [0, 1] -> its viridis colour as "#rrggbb" (values outside are clipped)."""
    t = min(max(float(value), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    r, g, b = _VIRIDIS[i] + (t - i) * (_VIRIDIS[i + 1] - _VIRIDIS[i])
    return f"#{round(r):02x}{round(g):02x}{round(b):02x}"


def token_labels(tokens: Sequence[str]) -> list[str]:
    """BPE tokens -> readable labels, in fastBPE's notation (the one FlauBERT was trained with).

    A word's last piece loses its end-of-word mark ("chat</w>" -> "chat"), a piece inside a word
    gets "@@" ("rédac" -> "rédac@@"), and special tokens ("<s>", "</s>") stay as they are.
    """
    labels = []
    for token in tokens:
        if token.endswith("</w>") and len(token) > 4:
            labels.append(token[:-4])
        elif token.startswith("<") and token.endswith(">"):
            labels.append(token)
        else:
            labels.append(token + "@@")
    return labels


def _text(s: str) -> str:
    # XML 1.0 cannot hold control characters at all, even escaped: show them as \xNN instead.
    return escape(_INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", s))


def _attr(s: str) -> str:
    return quoteattr(_INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", s))


def _label(token: str) -> str:
    return token if len(token) <= _MAX_LABEL else token[: _MAX_LABEL - 1] + "…"


def _text_width(s: str, font: float) -> float:
    return font * sum(
        _CHAR_WIDTHS.get(c, _UPPER_WIDTH if c.isupper() else _DEFAULT_WIDTH) for c in s
    )


def _check(tokens: Sequence[str], weights: np.ndarray, ndim: int, what: str) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    n = len(tokens)
    if weights.ndim != ndim or weights.shape[-2:] != (n, n):
        expected = ["heads", n, n] if ndim == 3 else [n, n]
        raise ValueError(
            f"{what} must have shape {expected} for {n} tokens, got {list(weights.shape)}"
        )
    if n == 0:
        raise ValueError("no tokens to draw")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return weights


def _scale_max(weights: np.ndarray, vmax: float | None) -> float:
    if vmax is None:
        vmax = float(weights.max())
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    return vmax


def _panel(
    tokens: Sequence[str], weights: np.ndarray, vmax: float, cell: float, font: float, title: str
) -> tuple[str, float, float, float, float]:
    """One heatmap with its labels, drawn from (0, 0).

    # weights: [seq, seq], rows = queries (left labels), columns = keys (top labels)
    Returns (svg elements, width, height, x and y of the grid's top-right corner).
    """
    labels = [_label(t) for t in tokens]
    widths = [_text_width(s, font) for s in labels]
    lean = [w / math.sqrt(2) for w in widths]  # column labels are drawn at -45 degrees
    title_h = 1.6 * font if title else 0.0
    x0 = max(widths) + 0.6 * font
    y0 = title_h + max(lean) + 1.2 * font
    n = len(tokens)
    parts = []
    if title:
        parts.append(f'<text class="title" x="{x0:.1f}" y="{1.1 * font:.1f}">{_text(title)}</text>')
    for i, (token, label) in enumerate(zip(tokens, labels, strict=True)):
        y = y0 + (i + 0.5) * cell
        x = x0 + (i + 0.5) * cell
        parts.append(
            f'<text class="row" x="{x0 - 0.4 * font:.1f}" y="{y:.1f}">'
            f"<title>{_text(token)}</title>{_text(label)}</text>"
        )
        parts.append(
            f'<text class="col" transform="translate({x:.1f},{y0 - 0.4 * font:.1f}) rotate(-45)">'
            f"<title>{_text(token)}</title>{_text(label)}</text>"
        )
    for i in range(n):
        for j in range(n):
            w = weights[i, j]
            tip = f"{tokens[i]} → {tokens[j]}: {w:.4f}"
            parts.append(
                f'<rect class="cell" x="{x0 + j * cell:.1f}" y="{y0 + i * cell:.1f}" '
                f'width="{cell:.1f}" height="{cell:.1f}" fill="{colour(w / vmax)}" '
                f'data-query="{i}" data-key="{j}"><title>{_text(tip)}</title></rect>'
            )
    right = x0 + n * cell
    parts.append(
        f'<rect class="frame" x="{x0:.1f}" y="{y0:.1f}" width="{n * cell:.1f}" '
        f'height="{n * cell:.1f}"/>'
    )
    overhang = max(x0 + (j + 0.5) * cell + lean[j] for j in range(n))
    width = max(right, overhang) + 0.6 * font
    height = y0 + n * cell + 0.6 * font
    return "\n".join(parts), width, height, right, y0


def _legend(vmax: float, height: float, font: float) -> tuple[str, float]:
    """A vertical colour bar from 0 (bottom) to vmax (top), drawn from (0, 0): (svg, width)."""
    bar_w = font
    stops = "".join(
        f'<stop offset="{k / 10:.1f}" stop-color="{colour(1 - k / 10)}"/>' for k in range(11)
    )
    parts = [
        f'<defs><linearGradient id="scale" x1="0" y1="0" x2="0" y2="1">{stops}</linearGradient>'
        "</defs>",
        f'<rect class="bar" x="0" y="0" width="{bar_w:.1f}" height="{height:.1f}" '
        'fill="url(#scale)"/>',
    ]
    for k in range(5):
        y = height * (1 - k / 4)
        parts.append(
            f'<line x1="{bar_w:.1f}" y1="{y:.1f}" x2="{bar_w + 4:.1f}" y2="{y:.1f}" stroke="#333"/>'
        )
        parts.append(
            f'<text class="tick" x="{bar_w + 6:.1f}" y="{y:.1f}">{vmax * k / 4:.2f}</text>'
        )
    caption_x = bar_w + 6 + _text_width("0.00", font) + 1.2 * font
    parts.append(
        f'<text class="caption" transform="translate({caption_x:.1f},{height / 2:.1f}) '
        'rotate(-90)">attention weight</text>'
    )
    return "\n".join(parts), caption_x + 0.5 * font


def _document(body: str, width: float, height: float, font: float) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family={_attr(_FONT)} '
        f'font-size="{font:g}">\n'
        "<style>"
        ".row{text-anchor:end;dominant-baseline:central}"
        ".col{text-anchor:start;dominant-baseline:central}"
        ".tick{dominant-baseline:central}"
        ".title{font-weight:bold}"
        ".caption{text-anchor:middle}"
        ".note{fill:#555}"
        ".frame{fill:none;stroke:#333;stroke-width:0.5}"
        ".bar{stroke:#333;stroke-width:0.5}"
        "</style>\n"
        f'<rect width="100%" height="100%" fill="white"/>\n{body}\n</svg>\n'
    )


def attention_svg(
    tokens: Sequence[str],
    weights: np.ndarray,
    title: str = "",
    vmax: float | None = None,
    cell: float = 24.0,
    font: float = 12.0,
) -> str:
    """Heatmap of one head's attention weights as a standalone SVG document.

    # tokens: seq labels; weights: [seq, seq], rows = queries, columns = keys -> SVG text
    The colour scale runs from 0 to `vmax` (default: the largest weight).
    """
    weights = _check(tokens, weights, 2, "attention weights")
    vmax = _scale_max(weights, vmax)
    panel, width, height, right, top = _panel(tokens, weights, vmax, cell, font, title)
    legend, legend_w = _legend(vmax, len(tokens) * cell, font)
    legend_x = right + font
    body = (
        f'{panel}\n<g transform="translate({legend_x:.1f},{top:.1f})">{legend}</g>\n'
        f'<text class="note" x="{font:.1f}" y="{height + font:.1f}">{_AXES}</text>'
    )
    return _document(body, max(width, legend_x + legend_w), height + 2 * font, font)


def attention_grid_svg(
    tokens: Sequence[str],
    weights: np.ndarray,
    title: str = "",
    columns: int = 4,
    vmax: float | None = None,
    cell: float = 16.0,
    font: float = 10.0,
) -> str:
    """Every head of one layer as a grid of heatmaps sharing one colour scale.

    # tokens: seq labels; weights: [heads, seq, seq] -> SVG text
    """
    weights = _check(tokens, weights, 3, "attention weights")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    vmax = _scale_max(weights, vmax)
    panels = [
        _panel(tokens, weights[h], vmax, cell, font, f"head {h}") for h in range(len(weights))
    ]
    panel_w = max(p[1] for p in panels)
    panel_h = max(p[2] for p in panels) + font  # a gap between rows of panels
    top = 2.0 * font if title else 0.0
    parts = []
    if title:
        parts.append(
            f'<text class="title" x="{font:.1f}" y="{1.4 * font:.1f}">{_text(title)}</text>'
        )
    for h, (svg, *_) in enumerate(panels):
        x, y = (h % columns) * panel_w, top + (h // columns) * panel_h
        parts.append(f'<g class="head" transform="translate({x:.1f},{y:.1f})">{svg}</g>')
    n_cols = min(columns, len(panels))
    n_rows = -(-len(panels) // columns)
    bar_h = min(panel_h * n_rows - 2 * font, 300.0)
    legend, legend_w = _legend(vmax, bar_h, font)
    parts.append(f'<g transform="translate({n_cols * panel_w:.1f},{top + font:.1f})">{legend}</g>')
    height = top + n_rows * panel_h
    parts.append(f'<text class="note" x="{font:.1f}" y="{height + font:.1f}">{_AXES}</text>')
    return _document("\n".join(parts), n_cols * panel_w + legend_w, height + 2 * font, font)
