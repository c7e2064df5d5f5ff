"""Make tests/goldens/sentence_tf4/: a tiny FlauBERT sentence model and its embeddings under the
transformers 4.x / sentence-transformers 3.x stack.

Why: with the same weights, transformers 4.x and 5.x give different FlauBERT sentence embeddings.
transformers 4.x's FlaubertTokenizer returns all-zero `token_type_ids`, sentence-transformers passes
them to FlaubertModel, and the model adds the word embedding of id 0 at every position; transformers
5 returns no token_type_ids. Published FlauBERT sentence models were trained and scored with the
4.x behaviour, so tests/test_sentence.py checks flaubert-np's "zeros" (and "auto") mode against
these embeddings, which only the old stack can make.

Run from the repository root with the old stack (transformers 4.57, sentence-transformers 3.4.1,
torch; no pytest needed):

    /work/venv4/bin/python tools/goldens_sentence_tf4.py

Deterministic (fixed seeds) and small (about 75 kB):
  model/          the model as sentence-transformers 3.4.1 saves it with safe_serialization=False,
                  the 2021 layout: modules.json with the old type names
                  (`sentence_transformers.models.Transformer`), 1_Pooling/config.json with
                  `pooling_mode_*_tokens` booleans, sentence_bert_config.json with
                  max_seq_length 32, pytorch_model.bin only; FlauBERT 2 layers, 16 dims, with a
                  BPE vocabulary learned by tools/learn_bpe.py from 300 STS train sentences
  sentences.json  50 STS dev sentences: the first 40 and the 10 longest (truncated at 32 tokens)
  embeddings.npy  [50, 16] float32: SentenceTransformer.encode(sentences, batch_size=8)
  versions.json   the versions of the stack that made them
"""

import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # learn_bpe uses flaubert_np.tokenizer's Moses pipeline
sys.path.insert(0, str(ROOT / "tools"))

from oracles import require  # noqa: E402

OLD_STACK = 'pip install "transformers==4.57.*" "sentence-transformers==3.4.1" torch'
require("goldens_sentence_tf4.py", "torch", "transformers", "sentence_transformers",
        install=OLD_STACK)  # fmt: skip

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from learn_bpe import learn_bpe  # noqa: E402
from random_weights import randomize_flaubert  # noqa: E402
from sentence_transformers import SentenceTransformer, models  # noqa: E402

OUT = ROOT / "tests" / "goldens" / "sentence_tf4"
STSB = ROOT / "tests" / "data" / "stsb-fr"

# Tiny, so the committed pytorch_model.bin stays a few tens of kB.
CONFIG = {"emb_dim": 16, "n_layers": 2, "n_heads": 2, "max_position_embeddings": 64}
MAX_SEQ_LENGTH = 32
BPE_MERGES = 150
SEED = 0


def read_sentences(split: str) -> list[str]:
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as f:
        return [s for row in csv.reader(f) for s in row[:2]]


def golden_sentences() -> list[str]:
    dev = list(dict.fromkeys(read_sentences("dev")))  # unique, in file order
    first = dev[:40]
    longest = sorted(dev[40:], key=lambda s: (-len(s), s))[:10]
    return first + longest


def main() -> None:
    torch.manual_seed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        hf_dir = Path(tmp) / "hf"
        learn_bpe(read_sentences("train")[:300], BPE_MERGES, hf_dir, lowercase=True)
        tokenizer = transformers.FlaubertTokenizer(
            hf_dir / "vocab.json", hf_dir / "merges.txt", do_lowercase=True
        )
        config = transformers.FlaubertConfig(vocab_size=len(tokenizer), **CONFIG)
        flaubert = transformers.FlaubertModel(config).eval()
        randomize_flaubert(flaubert, SEED)
        flaubert.save_pretrained(hf_dir, safe_serialization=False)
        tokenizer.save_pretrained(hf_dir)

        transformer = models.Transformer(str(hf_dir), max_seq_length=MAX_SEQ_LENGTH)
        pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device="cpu")

        if OUT.exists():
            shutil.rmtree(OUT)
        model.save(str(OUT / "model"), safe_serialization=False, create_model_card=False)

    # Embeddings from the saved files, as a user of the old stack would get them.
    model = SentenceTransformer(str(OUT / "model"), device="cpu")
    features = model.tokenize(["Un homme joue de la guitare."])
    assert "token_type_ids" in features, "this stack should return token_type_ids"
    sentences = golden_sentences()
    embeddings = model.encode(sentences, batch_size=8, convert_to_numpy=True)
    np.save(OUT / "embeddings.npy", embeddings.astype(np.float32))
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
    print(f"wrote {OUT} ({size / 1000:.0f} kB): {embeddings.shape} embeddings, {versions}")


if __name__ == "__main__":
    main()
