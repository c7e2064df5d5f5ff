"""The demo model shipped in flaubert_np/models/demo/ (tools/train_demo_model.py trains it).

flaubert-np must give the numbers sentence-transformers gives on the same files, the model must
rank a paraphrase above an unrelated sentence, and its model card must quote exactly the dev
score that tools/eval_sts.py measures, so that the card cannot drift from the weights.
"""

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import STSB, read_sts_sentences

import eval_sts
import flaubert_np
from flaubert_np import SentenceEncoder
from flaubert_np.hub import resolve_model_dir

DEMO = Path(flaubert_np.__file__).parent / "models" / "demo"


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.from_pretrained("demo")  # the short name, as users load it


def test_short_name_is_the_package_directory():
    assert resolve_model_dir("demo") == DEMO


@pytest.mark.oracle  # tools/train_demo_model.py imports torch
def test_ships_only_the_model_files():
    import train_demo_model

    shipped = sorted(str(p.relative_to(DEMO)) for p in DEMO.rglob("*") if p.is_file())
    assert shipped == sorted(train_demo_model.SHIPPED)
    size_mb = sum((DEMO / name).stat().st_size for name in shipped) / 1e6
    assert size_mb < 10, f"the demo model should stay small, it is {size_mb:.1f} MB"


@pytest.mark.oracle
def test_matches_sentence_transformers(encoder, torch_single_thread):
    from sentence_transformers import SentenceTransformer

    dev = read_sts_sentences("dev")
    sentences = dev[:600] + sorted(dev, key=len)[-20:]  # the longest ones too
    reference = SentenceTransformer(str(DEMO), device="cpu").encode(
        sentences, batch_size=32, convert_to_numpy=True
    )
    ours = encoder.encode(sentences, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 1e-5


# (sentence, paraphrase, unrelated sentence), written for this test: none is in the STS splits
TRIPLETS = [
    (
        "Le chat dort sur le canapé.",
        "Un chat est endormi sur le sofa.",
        "Le gouvernement a présenté son budget.",
    ),
    (
        "Un homme joue de la guitare dans la rue.",
        "Un musicien joue de la guitare dehors.",
        "La neige tombe sur les montagnes.",
    ),
    (
        "Une femme coupe des légumes dans la cuisine.",
        "Une femme découpe des carottes.",
        "Deux équipes de football jouent un match.",
    ),
    (
        "Les enfants jouent au ballon dans le parc.",
        "Des enfants jouent avec un ballon au parc.",
        "Le prix du pétrole a baissé hier.",
    ),
    (
        "Un avion décolle de l'aéroport.",
        "Un avion s'envole depuis l'aéroport.",
        "Une femme lit un livre dans son lit.",
    ),
]


@pytest.mark.parametrize(("sentence", "paraphrase", "unrelated"), TRIPLETS)
def test_paraphrase_ranks_above_unrelated(encoder, sentence, paraphrase, unrelated):
    a, p, u = encoder.encode([sentence, paraphrase, unrelated], normalize_embeddings=True)
    assert a @ p > a @ u


def test_model_card_quotes_the_measured_dev_score(encoder):
    card = (DEMO / "README.md").read_text(encoding="utf-8")
    quoted = re.search(
        r"\| Spearman x 100 \| Pearson x 100 \|\n\|---\|---\|\n"
        r"\| (\d+\.\d\d) \| (\d+\.\d\d) \|",
        card,
    )
    assert quoted, "the model card has no 'Spearman x 100 | Pearson x 100' table"
    assert "python tools/eval_sts.py --model demo --data tests/data/stsb-fr/dev.csv" in card
    first, second, scores = eval_sts.read_sts_csv(STSB / "dev.csv")
    measured = eval_sts.evaluate(encoder, first, second, scores)
    # the card prints 2 decimals: allow the rounding, nothing more
    assert abs(float(quoted[1]) - measured["spearman"]) <= 0.005 + 1e-9
    assert abs(float(quoted[2]) - measured["pearson"]) <= 0.005 + 1e-9
    assert f"dev** split ({measured['pairs']} pairs)" in card
