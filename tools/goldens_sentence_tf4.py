"""Make tests/goldens/sentence_tf4/: a tiny FlauBERT sentence model and its embeddings under the
transformers 4.x / sentence-transformers 3.x stack.

Why: with the same weights, transformers 4.x and 5.x give different FlauBERT sentence embeddings.
transformers 4.x's FlaubertTokenizer returns all-zero `token_type_ids`, sentence-transformers passes
them to FlaubertModel, and the model adds the word embedding of id 0 at every position; transformers
5 returns no token_type_ids. Published FlauBERT sentence models were trained and scored with the
4.x behaviour, so tests/test_sentence.py checks flaubert-np's "zeros" (and "auto") mode against
these embeddings, which only the old stack can make.

Run from the repository root with the pinned old stack, in any venv:

    python3 -m venv /tmp/tf4 && /tmp/tf4/bin/pip install -r tools/requirements-goldens-tf4.txt
    PYTHONPATH=. /tmp/tf4/bin/python tools/goldens_sentence_tf4.py

(PYTHONPATH=.: tools/learn_bpe.py uses flaubert_np's Moses pipeline, not installed in that venv.)

Deterministic (fixed seeds) and small (about 400 kB):
  model/          the model as sentence-transformers 3.4.1 saves it with safe_serialization=False,
                  the 2021 layout: modules.json with the old type names
                  (`sentence_transformers.models.Transformer`), 1_Pooling/config.json with
                  `pooling_mode_*_tokens` booleans, sentence_bert_config.json with
                  max_seq_length 32, pytorch_model.bin only; FlauBERT 2 layers, 16 dims, with a
                  BPE vocabulary learned by tools/learn_bpe.py from 300 STS train sentences
  sentences.json  50 STS dev sentences: the first 40 and the 10 longest (truncated at 32 tokens)
  embeddings.npy  [50, 16] float32: SentenceTransformer.encode(sentences, batch_size=8)
  versions.json   the versions of the stack that made them
  variants/<name>/model/, variants/<name>/embeddings.npy
                  the same for the VARIANTS below (the same sentences, the same BPE vocabulary):
                  max pooling; Dense (Tanh) then Normalize; a second size (32 dims, 4 heads,
                  3 layers) with cls + max pooling concatenated and a Dense layer
"""

import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from learn_bpe import learn_bpe

ROOT = Path(__file__).resolve().parent.parent

OUT = ROOT / "tests" / "goldens" / "sentence_tf4"
STSB = ROOT / "tests" / "data" / "stsb-fr"
SETUP = (
    "python3 -m venv VENV && VENV/bin/pip install -r tools/requirements-goldens-tf4.txt, "
    "then run VENV/bin/python tools/goldens_sentence_tf4.py"
)

# Tiny, so the committed pytorch_model.bin files stay a few tens of kB.
CONFIG = {"emb_dim": 16, "n_layers": 2, "n_heads": 2, "max_position_embeddings": 64}
MAX_SEQ_LENGTH = 32
BPE_MERGES = 150
SEED = 0

# The model in model/ and the variants in variants/<name>/: FlauBERT config, pooling modes
# (concatenated in sentence-transformers' order), Dense output size (Tanh) or None, Normalize.
MAIN: dict[str, Any] = {"config": CONFIG, "pooling": ["mean"], "dense": None, "normalize": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "max": {**MAIN, "pooling": ["max"]},
    "mean_dense_normalize": {**MAIN, "dense": 12, "normalize": True},
    "size_32_cls_max_dense": {
        "config": {"emb_dim": 32, "n_layers": 3, "n_heads": 4, "max_position_embeddings": 64},
        "pooling": ["cls", "max"],
        "dense": 20,
        "normalize": False,
    },
}


def read_sentences(split: str) -> list[str]:
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as f:
        return [s for row in csv.reader(f) for s in row[:2]]


def golden_sentences() -> list[str]:
    dev = list(dict.fromkeys(read_sentences("dev")))  # unique, in file order
    first = dev[:40]
    longest = sorted(dev[40:], key=lambda s: (-len(s), s))[:10]
    return first + longest


def main() -> None:
    try:
        import sentence_transformers
        import torch
        import transformers
    except ImportError as e:
        sys.exit(f"{e}: this tool needs the pinned transformers 4.57 stack: {SETUP}")
    if not transformers.__version__.startswith("4."):
        sys.exit(f"needs transformers 4.x (found {transformers.__version__}): {SETUP}")

    torch.set_num_threads(1)  # the same sums on any machine's thread count
    if OUT.exists():
        shutil.rmtree(OUT)
    sentences = golden_sentences()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_dir = Path(tmp) / "bpe"
        learn_bpe(read_sentences("train")[:300], BPE_MERGES, vocab_dir, lowercase=True)
        shape = build(MAIN, vocab_dir, OUT, sentences)
        for name, spec in VARIANTS.items():
            build(spec, vocab_dir, OUT / "variants" / name, sentences)

    (OUT / "sentences.json").write_text(
        json.dumps(sentences, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    versions = {
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
    }
    (OUT / "versions.json").write_text(json.dumps(versions, indent=1) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({size / 1000:.0f} kB): {shape} embeddings, {len(VARIANTS)} variants, "
          f"{versions}")  # fmt: skip


def build(spec: dict, vocab_dir: Path, out: Path, sentences: list[str]) -> tuple[int, int]:
    """Save the model of `spec` in out/model and its embeddings of `sentences` in
    out/embeddings.npy; returns their shape."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer, models

    from random_weights import randomize_flaubert

    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / "hf"
        shutil.copytree(vocab_dir, hf_dir)
        tokenizer = transformers.FlaubertTokenizer(
            hf_dir / "vocab.json", hf_dir / "merges.txt", do_lowercase=True
        )
        config = transformers.FlaubertConfig(vocab_size=len(tokenizer), **spec["config"])
        flaubert = transformers.FlaubertModel(config).eval()
        randomize_flaubert(flaubert, SEED)
        flaubert.save_pretrained(hf_dir, safe_serialization=False)
        tokenizer.save_pretrained(hf_dir)

        transformer = models.Transformer(str(hf_dir), max_seq_length=MAX_SEQ_LENGTH)
        dim = transformer.get_word_embedding_dimension()
        if spec["pooling"] == ["mean"]:  # the first golden model's call, kept as it was made
            pooling = models.Pooling(dim, pooling_mode="mean")
        else:
            flags = {f"pooling_mode_{m}_tokens": m in spec["pooling"] for m in ("max", "mean")}
            pooling = models.Pooling(dim, pooling_mode_cls_token="cls" in spec["pooling"], **flags)
        modules = [transformer, pooling]
        if spec["dense"] is not None:
            n_in = pooling.get_sentence_embedding_dimension()
            modules.append(models.Dense(n_in, spec["dense"], activation_function=torch.nn.Tanh()))
        if spec["normalize"]:
            modules.append(models.Normalize())
        model = SentenceTransformer(modules=modules, device="cpu")
        model.save(str(out / "model"), safe_serialization=False, create_model_card=False)

    # Embeddings from the saved files, as a user of the old stack would get them.
    model = SentenceTransformer(str(out / "model"), device="cpu")
    features = model.tokenize(["Un homme joue de la guitare."])
    assert "token_type_ids" in features, "this stack should return token_type_ids"
    embeddings = model.encode(sentences, batch_size=8, convert_to_numpy=True)
    np.save(out / "embeddings.npy", embeddings.astype(np.float32))
    return embeddings.shape


if __name__ == "__main__":
    main()
