"""Every pooling mode, and several concatenated, with and without Dense and Normalize: a tiny
model saved by sentence-transformers 6 (conftest's `sentence_model`) through `SentenceEncoder`,
against sentence-transformers' own `encode`."""

import json

import numpy as np
import pytest

from flaubert_np.pooling import POOLING_MODES
from flaubert_np.sentence import SentenceEncoder

pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("torch_single_thread")]

TOL = 1e-5
COMBINATIONS = [
    ("cls", "max", "mean"),
    ("mean", "weightedmean", "lasttoken"),
    ("lasttoken", "cls"),  # not in sentence-transformers' own order
    POOLING_MODES,  # all six
]
HEADS = {  # name -> sentence_model arguments after pooling
    "pooling_only": {},
    "normalize": {"normalize": True},
    "dense": {"dense": "Tanh"},
    "dense_normalize": {"dense": "Tanh", "normalize": True},
}


@pytest.fixture(scope="module")
def sentences(stsb_sentences) -> list[str]:
    """Fifty STS sentences of every length, the 5 longest truncated at 32 tokens."""
    return stsb_sentences[::320] + sorted(stsb_sentences, key=len)[-5:]


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize(
    "pooling",
    [*POOLING_MODES, *COMBINATIONS],
    ids=lambda p: p if isinstance(p, str) else "+".join(p),
)
def test_parity_with_sentence_transformers(sentence_model, sentences, pooling, head):
    from sentence_transformers import SentenceTransformer

    modes = [pooling] if isinstance(pooling, str) else list(pooling)
    path = sentence_model(pooling, **HEADS[head])
    saved = json.loads((path / "1_Pooling" / "config.json").read_text())["pooling_mode"]
    assert ([saved] if isinstance(saved, str) else saved) == modes
    modules = json.loads((path / "modules.json").read_text())
    expected_modules = ["Transformer", "Pooling"]
    expected_modules += ["Dense"] * ("dense" in head) + ["Normalize"] * ("normalize" in head)
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == expected_modules

    reference = SentenceTransformer(str(path), device="cpu")
    ours = SentenceEncoder.from_pretrained(path)
    assert ours.embedding_dimension == (24 if "dense" in head else 32 * len(modes))
    for batch_size, texts in ((8, sentences), (1, sentences[-6:])):  # padded batches, and none
        expected = reference.encode(texts, batch_size=batch_size)
        got = ours.encode(texts, batch_size=batch_size)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() <= TOL, batch_size
    if "normalize" in head:
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
