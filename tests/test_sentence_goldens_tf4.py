"""The transformers 4.57 / sentence-transformers 3.4.1 golden variants (tests/goldens/sentence_tf4/
variants/, tools/goldens_sentence_tf4.py): max pooling, Dense then Normalize, and a second model
size with cls + max pooling and Dense, through SentenceEncoder in its 4.x ("zeros") mode. The
first golden model (mean pooling, 16 dims) is tested in tests/test_sentence.py."""

import json
from pathlib import Path

import numpy as np
import pytest

import goldens_sentence_tf4 as tool
from flaubert_np.sentence import SentenceEncoder

GOLDENS = Path(__file__).parent / "goldens" / "sentence_tf4"
VARIANTS = sorted(p.name for p in (GOLDENS / "variants").iterdir())
TOL = 1e-5


def test_the_variants_are_the_tools_spec():
    assert VARIANTS == sorted(tool.VARIANTS)
    for name in VARIANTS:
        spec, model = tool.VARIANTS[name], GOLDENS / "variants" / name / "model"
        config = json.loads((model / "config.json").read_text())
        assert {k: config[k] for k in spec["config"]} == spec["config"]
        assert config["transformers_version"].startswith("4.57.")
        pooling = json.loads((model / "1_Pooling" / "config.json").read_text())
        flags = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                 "mean": "pooling_mode_mean_tokens"}  # fmt: skip
        assert [m for m, key in flags.items() if pooling[key]] == spec["pooling"]
        assert "pooling_mode" not in pooling  # the 3.x layout: one boolean per mode
        modules = [m["type"] for m in json.loads((model / "modules.json").read_text())]
        expected = ["Transformer", "Pooling"] + ["Dense"] * (spec["dense"] is not None)
        expected += ["Normalize"] * spec["normalize"]
        assert modules == [f"sentence_transformers.models.{m}" for m in expected]
        if spec["dense"] is not None:
            dense = json.loads((model / "2_Dense" / "config.json").read_text())
            assert dense["out_features"] == spec["dense"]
            assert (model / "2_Dense" / "pytorch_model.bin").is_file()


@pytest.mark.parametrize("batch_size", [1, 8, 32])
@pytest.mark.parametrize("name", VARIANTS)
def test_variant_goldens(name, batch_size):
    sentences = json.loads((GOLDENS / "sentences.json").read_text(encoding="utf-8"))
    expected = np.load(GOLDENS / "variants" / name / "embeddings.npy")
    spec = tool.VARIANTS[name]
    encoder = SentenceEncoder.from_pretrained(GOLDENS / "variants" / name / "model")
    assert encoder.token_type_ids == "zeros"  # "auto": saved with transformers 4.57
    got = encoder.encode(sentences, batch_size=batch_size)
    assert got.shape == expected.shape
    assert got.shape[1] == (spec["dense"] or spec["config"]["emb_dim"] * len(spec["pooling"]))
    assert np.abs(got - expected).max() <= TOL
    if spec["normalize"]:
        assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
