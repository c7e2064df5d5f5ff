"""Layer-by-layer parity report: flaubert-np against transformers (and sentence-transformers).

Both implementations run on the same French sentences; the report prints one row per stage of
the forward pass, in order, so that when the final numbers differ it says *where* they start to:

    input_ids                  the two tokenizers' ids (identical or not)
    embeddings                 token + position embeddings, layer_norm_emb
    layer.{i}.attention        multi-head self-attention output (after out_lin)
    layer.{i}.layer_norm1      residual + layer_norm1
    layer.{i}.ffn              feed-forward output (after lin2)
    layer.{i}.layer_norm2      residual + layer_norm2 = hidden state i + 1
    last_hidden_state          the encoder's output, from flaubert-np's default (fast) forward
    pooled                     sentence embedding (sentence-transformers models only)

flaubert-np's stages come from its `trace` option, which runs the plain reference forward
(model.py + layers.py); the last_hidden_state row checks the fast forward (fast.py) that
`FlaubertModel` and `SentenceEncoder` run by default. A fast path that diverges while every
stage agrees names last_hidden_state.

Each row compares the values at the real tokens (padding excluded): max abs diff, max rel diff
(max abs diff / max |reference|) and min cos (the lowest cosine similarity between a token's two
vectors). A stage passes when its max abs diff <= --tolerance. The exit code is 0 when every
stage passes, 1 otherwise (the report names the first diverging stage), 2 when there is nothing
to compare (a missing or unreadable model; pre_norm models, which transformers cannot run).

    python tools/parity.py MODEL_DIR_OR_HUB_ID
    python tools/parity.py demo --sentence "Le chat dort." --sentence "Il pleut."
    python tools/parity.py ./mine --reference ./original --tolerance 1e-4

--reference gives transformers another directory than flaubert-np's (default: the same one):
handy to check a converted or edited copy against its original. Needs torch and transformers
(and sentence-transformers for sentence models): `pip install flaubert-np[test]`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oracles import missing_message, require

DEFAULT_TOLERANCE = 1e-5
SENTENCES = [
    "Le chat dort sur le canapé.",
    "Une femme épluche des pommes de terre à la cuisine.",
    "L'élève n'a pas compris la question, mais il a levé la main.",
    "Où est passée la clé ?",
    "Les négociations reprendront jeudi à Bruxelles, selon un porte-parole du gouvernement.",
    "Ça va ?",
]


def stage_names(n_layers: int) -> list[str]:
    """The stages of the forward pass, in order (the keys of a trace)."""
    names = ["embeddings"]
    for i in range(n_layers):
        names += [
            f"layer.{i}.{part}" for part in ("attention", "layer_norm1", "ffn", "layer_norm2")
        ]
    return names


@dataclass
class Row:
    stage: str
    max_abs: float
    max_rel: float
    min_cos: float
    ok: bool
    note: str = ""


def compare(stage: str, ours: np.ndarray, ref: np.ndarray, tolerance: float) -> Row:
    """One stage's values, flaubert-np's against the reference's.

    # ours, ref: [n, dim] (one row per real token, or per sentence) -> Row
    """
    if ours.shape != ref.shape:
        note = f"shapes differ: {list(ours.shape)} vs {list(ref.shape)}"
        return Row(stage, np.nan, np.nan, np.nan, False, note)
    a, b = ours.astype(np.float64), ref.astype(np.float64)
    max_abs = float(np.max(np.abs(a - b)))
    max_rel = max_abs / max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = np.sum(a * b, axis=-1) / np.maximum(norms, np.finfo(np.float64).tiny)
    min_cos = float(np.min(np.where(norms > 0, cos, 1.0)))
    return Row(stage, max_abs, max_rel, min_cos, bool(max_abs <= tolerance))


def reference_trace(model_dir: str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers' FlaubertModel on `inputs`, its stages recorded with forward hooks.

    # inputs: input_ids, attention_mask [batch, seq] -> {stage: [batch, seq, dim] float32}
    """
    import torch
    import transformers

    model = transformers.FlaubertModel.from_pretrained(str(model_dir)).eval()
    trace: dict[str, np.ndarray] = {}

    def record(name):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            # A copy: transformers masks the hidden state in place after layer_norm2.
            trace[name] = out.detach().float().numpy().copy()

        return hook

    modules = {"embeddings": model.layer_norm_emb}
    for i in range(model.config.n_layers):
        modules[f"layer.{i}.attention"] = model.attentions[i]  # output[0] is out_lin's output
        modules[f"layer.{i}.layer_norm1"] = model.layer_norm1[i]
        modules[f"layer.{i}.ffn"] = model.ffns[i]
        modules[f"layer.{i}.layer_norm2"] = model.layer_norm2[i]
    handles = [m.register_forward_hook(record(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            out = model(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()})
    finally:
        for h in handles:
            h.remove()
    trace["last_hidden_state"] = out.last_hidden_state.float().numpy()
    return trace


def flaubert_np_trace(
    model_dir: str | Path, inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """flaubert-np's FlaubertModel on `inputs`: the stages its `trace` option records (plain
    forward), and "last_hidden_state" from a second, untraced call (the fast forward).

    # inputs: input_ids, attention_mask [batch, seq] -> {stage: [batch, seq, dim] float32}
    """
    from flaubert_np.model import FlaubertModel

    model = FlaubertModel.from_pretrained(model_dir)
    trace: dict[str, np.ndarray] = {}
    model(**inputs, trace=trace)
    trace["last_hidden_state"] = model(**inputs).last_hidden_state
    return trace


def pooled_embeddings(
    model_dir: Path, reference_dir: Path, sentences: list[str], token_type_ids: str
) -> tuple[np.ndarray, np.ndarray]:
    """The sentence embeddings of both pipelines: (flaubert-np's, sentence-transformers').

    # -> [n_sentences, dim] x 2
    """
    import sentence_transformers

    from flaubert_np.sentence import SentenceEncoder

    encoder = SentenceEncoder.from_pretrained(str(model_dir), token_type_ids=token_type_ids)
    st = sentence_transformers.SentenceTransformer(str(reference_dir), device="cpu")
    return np.asarray(encoder.encode(sentences)), st.encode(sentences, convert_to_numpy=True)


def resolve(name_or_path: str) -> Path:
    """A model directory, a Hub id or "demo" -> the local directory holding its files."""
    from flaubert_np.hub import resolve_model_dir

    return Path(resolve_model_dir(name_or_path))


@dataclass
class Report:
    rows: list[Row]
    header: list[str]

    @property
    def first_divergence(self) -> str | None:
        return next((r.stage for r in self.rows if not r.ok), None)

    def render(self) -> str:
        width = max(len(r.stage) for r in self.rows)
        lines = [*self.header, ""]
        lines.append(
            f"{'stage':<{width}}  {'max abs diff':>12}  {'max rel diff':>12}  "
            f"{'min cos':>10}  status"
        )
        for r in self.rows:
            status = "ok" if r.ok else "DIVERGES"
            if np.isnan(r.max_abs):  # nothing to measure: the note says what happened
                lines.append(f"{r.stage:<{width}}  {r.note:<38}  {status}")
                continue
            lines.append(
                f"{r.stage:<{width}}  {r.max_abs:>12.3e}  {r.max_rel:>12.3e}  {r.min_cos:>10.7f}  "
                f"{status}{'  ' + r.note if r.note else ''}"
            )
        first = self.first_divergence
        lines.append("")
        if first is None:
            lines.append(f"all {len(self.rows)} stages within tolerance")
        else:
            n_bad = sum(not r.ok for r in self.rows)
            lines.append(f"first diverging stage: {first} ({n_bad} of {len(self.rows)} diverge)")
        return "\n".join(lines)


class NoReference(Exception):
    """The reference implementation cannot run this model."""


def parity_report(
    model: str | Path,
    reference: str | Path | None = None,
    sentences: list[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Report:
    """Run both implementations on `sentences` and compare them stage by stage."""
    from importlib.metadata import version

    from flaubert_np.modules import transformer_dir

    model_dir = resolve(str(model))
    reference_dir = model_dir if reference is None else resolve(str(reference))
    encoder_dir, reference_encoder_dir = transformer_dir(model_dir), transformer_dir(reference_dir)
    sentences = SENTENCES if sentences is None else sentences
    config = json.loads((reference_encoder_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("pre_norm", False):  # checked before the (slow) torch import
        raise NoReference(
            f"{reference_dir} is a pre_norm model: transformers {version('transformers')} cannot "
            "run pre_norm Flaubert models (its FlaubertModel.forward fails), nothing to compare"
        )

    import transformers

    from flaubert_np.tokenizer import FlaubertTokenizer

    ref_tok = transformers.AutoTokenizer.from_pretrained(str(reference_encoder_dir))
    max_length = min(ref_tok.model_max_length, config["max_position_embeddings"])
    kwargs = dict(padding=True, truncation=True, max_length=max_length, return_tensors="np")
    ref_inputs = dict(ref_tok(sentences, **kwargs))
    our_inputs = FlaubertTokenizer.from_pretrained(encoder_dir)(sentences, **kwargs)
    rows = [_compare_ids(our_inputs, ref_inputs)]

    # Both models get the reference's ids, so a tokenizer difference does not hide the rest.
    inputs = {k: np.asarray(v, dtype=np.int64) for k, v in ref_inputs.items()}
    ours = flaubert_np_trace(encoder_dir, inputs)
    ref = reference_trace(reference_encoder_dir, inputs)
    real = inputs["attention_mask"].astype(bool)
    for stage in [*stage_names(config["n_layers"]), "last_hidden_state"]:
        if stage not in ours:
            rows.append(Row(stage, np.nan, np.nan, np.nan, False, "missing from flaubert-np"))
        else:
            rows.append(compare(stage, ours[stage][real], ref[stage][real], tolerance))

    header = [
        f"flaubert-np: {model_dir}",
        f"reference:   {reference_dir} (transformers {transformers.__version__})",
        f"inputs:      {len(sentences)} sentences, {int(real.sum())} real tokens "
        "(padding excluded)",
        f"tolerance:   max abs diff <= {tolerance:g} per stage",
        "max rel diff = max abs diff / max |reference|; min cos = lowest cosine between the two "
        "vectors of one token (or sentence)",
    ]
    if (model_dir / "modules.json").is_file():
        # The reference's tokenizer decides whether token_type_ids reach the model (transformers
        # 4 sends zeros, 5 none); flaubert-np is told to do the same, to compare like with like.
        token_type_ids = "zeros" if "token_type_ids" in inputs else "none"
        pooled = pooled_embeddings(model_dir, reference_dir, sentences, token_type_ids)
        rows.append(compare("pooled", *pooled, tolerance))
    else:
        header.append("no pooled row: not a sentence-transformers model (no modules.json)")
    return Report(rows, header)


def _compare_ids(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> Row:
    """The token ids of each sentence, padding excluded, compared exactly (whatever the tolerance).

    ours, ref: tokenizer outputs with input_ids and attention_mask [batch, seq] -> Row
    """

    def sentences(inputs: dict[str, np.ndarray]) -> list[list[int]]:
        ids, mask = inputs["input_ids"], inputs["attention_mask"].astype(bool)
        return [row[keep].tolist() for row, keep in zip(ids, mask, strict=True)]

    n_diff = sum(a != b for a, b in zip(sentences(ours), sentences(ref), strict=True))
    if n_diff == 0:
        return Row("input_ids", np.nan, np.nan, np.nan, True, "identical")
    note = f"differ in {n_diff} of {len(ours['input_ids'])} sentences"
    return Row("input_ids", np.nan, np.nan, np.nan, False, note)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help='model directory, Hub id, or "demo"')
    parser.add_argument("--reference", help="directory or Hub id for transformers (default: model)")
    parser.add_argument("--sentence", action="append", help="a sentence (repeatable)")
    parser.add_argument("--file", type=Path, help="a UTF-8 text file, one sentence per line")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"max abs diff allowed per stage (default {DEFAULT_TOLERANCE:g})",
    )
    args = parser.parse_args(argv)
    sentences = list(args.sentence or [])
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            parser.error(f"cannot read --file {args.file}: {e}")
        sentences += [line.strip() for line in text.splitlines() if line.strip()]
    if (args.sentence or args.file) and not sentences:
        parser.error("no sentences given (empty --sentence/--file)")
    require("parity", "torch", "transformers")
    try:
        report = parity_report(args.model, args.reference, sentences or None, args.tolerance)
    except (NoReference, OSError, ValueError) as e:  # nothing to compare: say why in one line
        print(f"parity: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # sentence-transformers, asked for by a sentence model only
        print(missing_message("parity", e.name or str(e)), file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.first_divergence is None else 1


if __name__ == "__main__":
    sys.exit(main())
