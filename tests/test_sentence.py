"""flaubert_np/sentence.py: SentenceEncoder against sentence-transformers.

Two references:
- sentence-transformers 6.2 on transformers 5 (installed here): tiny models built and saved in
  the session (`sentence_model` in conftest), compared live;
- sentence-transformers 3.4.1 on transformers 4.57 (its own venv): golden embeddings made by
  tools/goldens_sentence_tf4.py, with the model they come from, in tests/goldens/sentence_tf4/.

The parity sentences are a representative subset of the ~14,500 STS sentences rather than all of
them, to keep the file under a minute: every 10th sentence for batch_size 32, every 20th for
batch_size 7 and every 100th for batch_size 1 (the slowest for both sides), each plus the 10
longest sentences. max_seq_length is 32, so the longer sentences are truncated.
"""

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from flaubert_np import sentence
from flaubert_np.files import ModelFileError
from flaubert_np.modules import resolve_token_type_ids, transformer_dir
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.tokenizer import FlaubertTokenizer

pytestmark = pytest.mark.oracle

GOLDENS = Path(__file__).parent / "goldens" / "sentence_tf4"
TOL = 1e-5


def max_diff(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def parity_sets(stsb_sentences) -> dict[int, list[str]]:
    """batch_size -> sentences (see the module docstring)."""
    longest = sorted(stsb_sentences, key=len)[-10:]
    return {
        1: stsb_sentences[5::100] + longest,
        7: stsb_sentences[3::20] + longest,
        32: stsb_sentences[::10] + longest,
    }


@pytest.fixture(scope="module")
def golden():
    sentences = json.loads((GOLDENS / "sentences.json").read_text(encoding="utf-8"))
    return sentences, np.load(GOLDENS / "embeddings.npy")


def check_parity(path: Path, sentences_by_batch: dict[int, list[str]], **encode_kwargs) -> None:
    reference = SentenceTransformer(str(path), device="cpu")
    ours = SentenceEncoder.from_pretrained(path)
    for batch_size, sentences in sentences_by_batch.items():
        expected = reference.encode(sentences, batch_size=batch_size, **encode_kwargs)
        got = ours.encode(sentences, batch_size=batch_size, **encode_kwargs)
        assert got.dtype == np.float32
        assert max_diff(got, expected) <= TOL, f"batch_size={batch_size}"


# ---------------------------------------------------------------------------------------------
# Parity with sentence-transformers 6.2 / transformers 5


def test_parity_sentences_exercise_truncation(parity_sets, tokenizer_dir):
    tokenizer = FlaubertTokenizer.from_pretrained(tokenizer_dir)
    for sentences in parity_sets.values():
        lengths = [len(tokenizer.tokenize(s)) + 2 for s in sentences]  # + <s> </s>
        assert sum(n > 32 for n in lengths) >= 10


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalize"])
@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_parity_with_sentence_transformers(
    sentence_model, parity_sets, pooling, normalize, torch_single_thread
):
    path = sentence_model(pooling, normalize=normalize)
    assert SentenceEncoder.from_pretrained(path).token_type_ids == "none"  # saved with tf 5
    check_parity(path, parity_sets)


@pytest.mark.parametrize("pooling", ["mean_sqrt_len_tokens", ("cls", "max", "mean")])
def test_parity_other_pooling(sentence_model, parity_sets, pooling, torch_single_thread):
    check_parity(sentence_model(pooling), {32: parity_sets[32][:500]})


@pytest.mark.parametrize(
    "dense, normalize, safe",
    [("Tanh", True, True), ("Identity", False, True), ("Tanh", False, False)],
    ids=["tanh-normalize", "identity", "tanh-pytorch_model.bin"],
)
def test_parity_dense(sentence_model, parity_sets, dense, normalize, safe, torch_single_thread):
    path = sentence_model("mean", normalize=normalize, dense=dense, safe_serialization=safe)
    assert (path / "2_Dense" / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    encoder = SentenceEncoder.from_pretrained(path)
    assert encoder.embedding_dimension == 24
    check_parity(path, {7: parity_sets[7][:300]})


def test_parity_pytorch_model_bin(sentence_model, parity_sets, torch_single_thread):
    path = sentence_model("mean", safe_serialization=False)
    assert (path / "pytorch_model.bin").is_file() and not (path / "model.safetensors").exists()
    check_parity(path, {32: parity_sets[32][:500]})


@pytest.fixture(scope="module")
def sharded_model(sentence_model, tmp_path_factory) -> Path:
    """The tiny mean model with its FlauBERT weights re-saved by transformers in shards."""
    import transformers

    src = sentence_model("mean")
    model_dir = copy_model(src, tmp_path_factory.mktemp("sharded"))
    (model_dir / "model.safetensors").unlink()
    model = transformers.FlaubertModel.from_pretrained(src)
    model.save_pretrained(model_dir, max_shard_size="100KB")
    assert len(list(model_dir.glob("model-*-of-*.safetensors"))) > 1
    return model_dir


def test_sharded_weights(sharded_model, sentence_model, parity_sets, torch_single_thread):
    check_parity(sharded_model, {7: parity_sets[7][:200]})
    whole = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(SOME)
    assert max_diff(SentenceEncoder.from_pretrained(sharded_model).encode(SOME), whole) == 0


def test_no_modules_json_is_a_transformers_model_with_mean_pooling(
    sentence_model, parity_sets, tmp_path, torch_single_thread
):
    """sentence-transformers reads a plain FlauBERT folder as Transformer + mean pooling, with
    max_seq_length = min(tokenizer model_max_length 512, max_position_embeddings 64)."""
    src = sentence_model("mean")
    for name in ["config.json", "model.safetensors", "vocab.json", "merges.txt"]:
        shutil.copy(src / name, tmp_path / name)
    config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["model_max_length"] = 512
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    encoder = SentenceEncoder.from_pretrained(tmp_path)
    assert encoder.max_seq_length == 64
    check_parity(tmp_path, {32: parity_sets[32][:300] + parity_sets[32][-10:]})


def test_default_max_seq_length_from_tokenizer_config(sentence_model, parity_sets):
    """sentence-transformers >= 5 keeps max length in tokenizer_config.json, not in
    sentence_bert_config.json."""
    path = sentence_model("mean", max_seq_length=None)
    assert "max_seq_length" not in json.loads((path / "sentence_bert_config.json").read_text())
    assert SentenceEncoder.from_pretrained(path).max_seq_length == 64
    check_parity(path, {32: parity_sets[32][-10:]})


# ---------------------------------------------------------------------------------------------
# encode(): its arguments and outputs


@pytest.fixture(scope="module")
def mean_model(sentence_model):
    path = sentence_model("mean")
    return path, SentenceEncoder.from_pretrained(path), SentenceTransformer(str(path), device="cpu")


SOME = [
    "Un homme joue de la guitare.",
    "  Une femme   coupe des oignons.  ",
    "UN CHAT DORT SUR LE CANAPÉ",
    "",
    "Des enfants jouent au football dans un parc, sous la pluie, pendant que leurs parents "
    "les regardent depuis les gradins en buvant du café.",
]


def test_single_string_gives_a_vector(mean_model):
    _, ours, reference = mean_model
    got = ours.encode(SOME[0])
    assert got.shape == (32,) and got.dtype == np.float32
    assert max_diff(got, reference.encode(SOME[0])) <= TOL


def test_empty_list(mean_model):
    _, ours, _ = mean_model
    got = ours.encode([])
    assert got.shape == (0, 32) and got.dtype == np.float32
    assert ours.encode([], output_value="token_embeddings") == []


def test_results_come_back_in_input_order(mean_model):
    _, ours, reference = mean_model
    batch = ours.encode(SOME, batch_size=2)
    one_by_one = np.stack([ours.encode(s) for s in SOME])
    assert max_diff(batch, one_by_one) <= TOL
    assert max_diff(batch, reference.encode(SOME, batch_size=2)) <= TOL
    assert max_diff(ours.encode(SOME[::-1], batch_size=2), batch[::-1]) <= TOL


def test_normalize_embeddings(mean_model):
    _, ours, reference = mean_model
    got = ours.encode(SOME, normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert max_diff(got, reference.encode(SOME, normalize_embeddings=True)) <= TOL


def test_token_embeddings(mean_model):
    _, ours, reference = mean_model
    got = ours.encode(SOME, batch_size=3, output_value="token_embeddings")
    expected = reference.encode(SOME, batch_size=3, output_value="token_embeddings")
    assert len(got) == len(SOME)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == np.float32
        assert max_diff(g, e.numpy()) <= TOL
    assert got[-1].shape == (32, 32)  # truncated at max_seq_length
    assert got[0].shape[0] < 32


def test_convert_to_numpy_false_gives_a_list(mean_model):
    _, ours, _ = mean_model
    got = ours.encode(SOME[:3], convert_to_numpy=False)
    assert isinstance(got, list) and [v.shape for v in got] == [(32,)] * 3
    assert max_diff(np.stack(got), ours.encode(SOME[:3])) == 0


def test_progress_bar_goes_to_stderr(mean_model, capsys):
    _, ours, _ = mean_model
    ours.encode(SOME, batch_size=2, show_progress_bar=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{len(SOME)}/{len(SOME)}" in captured.err
    ours.encode(SOME, batch_size=2)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("budget", [0, 25, 10**6])
def test_batches_share_forward_passes_up_to_a_token_budget(mean_model, monkeypatch, budget):
    _, ours, reference = mean_model
    passes = []
    token_embeddings = ours._token_embeddings
    monkeypatch.setattr(ours, "_token_embeddings", lambda features: passes.append(
        (len(features["input_ids"]), int(features["attention_mask"].sum())))
        or token_embeddings(features))  # fmt: skip
    monkeypatch.setattr(sentence, "TOKENS_PER_PASS", budget)
    texts = SOME * 6  # 30 sentences: 15 batches of 2
    got = ours.encode(texts, batch_size=2)
    assert max_diff(got, reference.encode(texts, batch_size=2)) <= TOL
    assert sum(n for n, _ in passes) == len(texts)
    if budget == 0:  # every batch alone
        assert [n for n, _ in passes] == [2] * 15
    elif budget == 25:  # joined while within budget; a batch over it alone
        assert 1 < len(passes) < 15
        assert all(tokens <= budget or n == 2 for n, tokens in passes)
    else:
        assert len(passes) == 1
    tokens = ours.encode(texts, batch_size=2, output_value="token_embeddings")
    alone = [ours.encode([t], output_value="token_embeddings")[0] for t in texts[:5]]
    for joined, single in zip(tokens[:5], alone, strict=True):
        assert joined.shape == single.shape and max_diff(joined, single) <= TOL


def test_joined_batches_are_padded_with_the_pad_id():
    batches = [
        {"input_ids": np.array([[0, 5, 1]]), "attention_mask": np.array([[1, 1, 1]])},
        {"input_ids": np.array([[0, 1], [0, 1]]), "attention_mask": np.array([[1, 1], [1, 1]])},
        {"input_ids": np.array([[0, 7, 8, 9, 1]]), "attention_mask": np.ones((1, 5), int)},
    ]
    passes = list(sentence._passes(iter(batches), max_tokens=7, pad_id=2))
    assert [len(p["input_ids"]) for p in passes] == [3, 1]  # 3 + 4 tokens, then 5
    assert passes[0]["input_ids"].tolist() == [[0, 5, 1], [0, 1, 2], [0, 1, 2]]
    assert passes[0]["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 0]]
    assert passes[1] is batches[2]  # a pass of one batch is that batch


@pytest.mark.parametrize(
    "sentences, kwargs, error, match",
    [
        (["ok", 3], {}, TypeError, r"sentences\[1\] is int"),
        ([None], {}, TypeError, r"sentences\[0\] is NoneType"),
        (["ok"], {"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
        (["ok"], {"output_value": "cls"}, ValueError, "output_value must be"),
        (["ok"], {"prompt_name": "nope"}, ValueError, "prompt_name 'nope' is not one of"),
    ],
)
def test_bad_encode_arguments(mean_model, sentences, kwargs, error, match):
    _, ours, _ = mean_model
    with pytest.raises(error, match=match):
        ours.encode(sentences, **kwargs)


def test_do_lower_case(sentence_model):
    """sentence_bert_config.json's do_lower_case lower-cases the text before the tokenizer, as
    sentence-transformers 2.x-4.x did (6.2 cannot load such a FlauBERT model: it tries to set
    the tokenizer's read-only do_lower_case)."""
    path = sentence_model("mean", tokenizer="cased")
    encoder = SentenceEncoder.from_pretrained(path)
    shouting, quiet = "UN HOMME JOUE DE LA GUITARE.", "un homme joue de la guitare."
    assert max_diff(encoder.encode(shouting), encoder.encode(quiet)) > 0.01  # cased tokenizer
    encoder.do_lower_case = True
    assert max_diff(encoder.encode(shouting), encoder.encode(quiet)) == 0


def test_do_lower_case_is_read_from_sentence_bert_config(sentence_model, tmp_path):
    shutil.copytree(sentence_model("mean", tokenizer="cased"), tmp_path, dirs_exist_ok=True)
    config_file = tmp_path / "sentence_bert_config.json"
    config = json.loads(config_file.read_text())
    config.update(do_lower_case=True, max_seq_length=32)
    config_file.write_text(json.dumps(config))
    assert SentenceEncoder.from_pretrained(tmp_path).do_lower_case is True


# ---------------------------------------------------------------------------------------------
# config_sentence_transformers.json: prompts and the similarity function


@pytest.mark.parametrize("include_prompt", [True, False])
def test_prompts(sentence_model, include_prompt, torch_single_thread):
    prompts = {"query": "question : ", "document": ""}
    path = sentence_model("mean", prompts=prompts, include_prompt=include_prompt)
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    assert ours.prompts == prompts
    for kwargs in ({"prompt_name": "query"}, {"prompt": "passage : "}, {"prompt_name": "document"}):
        got = ours.encode(SOME, **kwargs)
        assert max_diff(got, reference.encode(SOME, **kwargs)) <= TOL
    assert max_diff(ours.encode(SOME, prompt_name="query"), ours.encode(SOME)) > 0.01


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_function(sentence_model, name):
    path = sentence_model("mean", similarity_fn_name=name)
    ours = SentenceEncoder.from_pretrained(path)
    reference = SentenceTransformer(str(path), device="cpu")
    assert ours.similarity_fn_name == name
    a, b = ours.encode(SOME[:3]), ours.encode(SOME[2:])
    expected = reference.similarity(a, b).numpy()
    assert max_diff(ours.similarity(a, b), expected) <= TOL * max(1, np.abs(expected).max())


# ---------------------------------------------------------------------------------------------
# token_type_ids: transformers 4.x (zeros) vs 5 (none)


def test_goldens_were_made_by_the_4x_stack():
    versions = json.loads((GOLDENS / "versions.json").read_text())
    assert versions["transformers"].startswith("4.")
    assert versions["sentence_transformers"].startswith("3.")


@pytest.mark.parametrize("setting", ["auto", "zeros", True])
@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_4x_goldens(golden, setting, batch_size):
    sentences, expected = golden
    encoder = SentenceEncoder.from_pretrained(GOLDENS / "model", token_type_ids=setting)
    assert encoder.token_type_ids == "zeros"
    assert max_diff(encoder.encode(sentences, batch_size=batch_size), expected) <= TOL


def test_auto_reads_the_version_the_model_was_saved_with():
    encoder = SentenceEncoder.from_pretrained(GOLDENS / "model")
    version, source = encoder.saved_with
    assert version.startswith("4.") and source.name == "config_sentence_transformers.json"


def test_transformers_4_and_5_differ_and_each_mode_matches_its_stack(golden, torch_single_thread):
    """The issue's finding, reproduced: the same weights through sentence-transformers 6.2 on
    transformers 5 give other embeddings than the 4.x goldens (by about 1.2 here); flaubert-np
    matches each stack in the corresponding mode."""
    sentences, tf4 = golden
    tf5 = SentenceTransformer(str(GOLDENS / "model"), device="cpu").encode(sentences)
    assert max_diff(tf5, tf4) > 0.5
    for setting in ("none", False, None):
        encoder = SentenceEncoder.from_pretrained(GOLDENS / "model", token_type_ids=setting)
        assert encoder.token_type_ids == "none"
        assert max_diff(encoder.encode(sentences), tf5) <= TOL
    auto = SentenceEncoder.from_pretrained(GOLDENS / "model")
    assert max_diff(auto.encode(sentences), tf4) <= TOL


@pytest.mark.parametrize(
    "version, expected",
    [("4.57.6", "zeros"), ("4.7.0", "zeros"), ("3.5.1", "zeros"), ("5.0.0", "none"),
     ("5.24.0.dev0", "none"), ("10.1", "none")],
)  # fmt: skip
def test_auto_by_version(version, expected):
    assert resolve_token_type_ids("auto", (version, Path("config.json"))) == expected


def test_auto_without_a_version_is_4x():
    assert resolve_token_type_ids("auto", None) == "zeros"


@pytest.mark.parametrize("setting", ["yes", 0, "ZEROS", 1.0])
def test_bad_token_type_ids_setting(setting):
    with pytest.raises(ValueError, match="token_type_ids must be"):
        SentenceEncoder.from_pretrained(GOLDENS / "model", token_type_ids=setting)


def test_unreadable_version(tmp_path):
    shutil.copytree(GOLDENS / "model", tmp_path, dirs_exist_ok=True)
    config_file = tmp_path / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config["__version__"]["transformers"] = "unknown"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cannot read the transformers version 'unknown'"):
        SentenceEncoder.from_pretrained(tmp_path)
    assert SentenceEncoder.from_pretrained(tmp_path, token_type_ids="zeros").token_type_ids


def test_auto_for_a_model_saved_with_transformers_5(sentence_model):
    encoder = SentenceEncoder.from_pretrained(sentence_model("mean"))
    assert encoder.saved_with[0].startswith("5.") and encoder.token_type_ids == "none"


# ---------------------------------------------------------------------------------------------
# The 2021 layout


def make_2021_layout(dst: Path) -> Path:
    """The golden model rearranged as sentence-transformers 1.x/2.0 wrote it: the Transformer in
    0_Transformer/, the pooling config with the four booleans of the time, no
    config_sentence_transformers.json (the version comes from 0_Transformer/config.json)."""
    src = GOLDENS / "model"
    (dst / "0_Transformer").mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json"):
            shutil.copy(f, dst / "0_Transformer" / f.name)
    (dst / "1_Pooling").mkdir()
    pooling = {
        "word_embedding_dimension": 16,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (dst / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(
            [("0_Transformer", "Transformer"), ("1_Pooling", "Pooling")]
        )
    ]
    (dst / "modules.json").write_text(json.dumps(modules))
    return dst


def test_2021_layout(golden, tmp_path, torch_single_thread):
    sentences, tf4 = golden
    model_dir = make_2021_layout(tmp_path / "model")
    assert not list(model_dir.rglob("*.safetensors"))
    encoder = SentenceEncoder.from_pretrained(model_dir)
    assert encoder.token_type_ids == "zeros"
    assert encoder.saved_with[1].parent.name == "0_Transformer"
    assert transformer_dir(model_dir) == model_dir / "0_Transformer"
    assert transformer_dir(model_dir / "0_Transformer") == model_dir / "0_Transformer"
    assert max_diff(encoder.encode(sentences, batch_size=7), tf4) <= TOL
    tf5 = SentenceTransformer(str(model_dir), device="cpu").encode(sentences)
    none = SentenceEncoder.from_pretrained(model_dir, token_type_ids="none")
    assert max_diff(none.encode(sentences), tf5) <= TOL


def test_golden_model_is_the_old_layout():
    modules = json.loads((GOLDENS / "model" / "modules.json").read_text())
    assert [m["type"] for m in modules] == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
    ]
    pooling = json.loads((GOLDENS / "model" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True and "pooling_mode" not in pooling
    assert (GOLDENS / "model" / "pytorch_model.bin").is_file()
    assert not list((GOLDENS / "model").rglob("*.safetensors"))


# ---------------------------------------------------------------------------------------------
# What it refuses


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(edit(data) or data), encoding="utf-8")


@pytest.mark.parametrize(
    "module_type",
    ["sentence_transformers.models.LSTM", "my_package.modules.Pooling", "os.system"],
)
def test_unsupported_module_type_is_named(tmp_path, module_type):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    edit_json(model_dir / "modules.json", lambda m: m[1].update(type=module_type))
    with pytest.raises(ModelFileError, match=f"module type '{module_type}' is not supported") as e:
        SentenceEncoder.from_pretrained(model_dir)
    assert str(e.value).startswith(f"{model_dir / 'modules.json'}: ")


@pytest.mark.parametrize("path", ["../elsewhere", "/etc"])
def test_module_paths_stay_inside_the_model(tmp_path, path):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    edit_json(model_dir / "modules.json", lambda m: m[1].update(path=path))
    with pytest.raises(
        ModelFileError, match=f"module path '{path}' leaves the model directory"
    ) as e:
        SentenceEncoder.from_pretrained(model_dir)
    assert str(e.value).startswith(f"{model_dir / 'modules.json'}: ")


def test_modules_in_an_unexpected_order(tmp_path):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    edit_json(model_dir / "modules.json", lambda m: m.reverse())
    with pytest.raises(ValueError, match="expected Transformer, Pooling, then Dense/Normalize"):
        SentenceEncoder.from_pretrained(model_dir)


def test_unsupported_dense_activation_is_named(sentence_model, tmp_path):
    model_dir = copy_model(sentence_model("mean", dense="Tanh"), tmp_path)
    edit_json(
        model_dir / "2_Dense" / "config.json",
        lambda c: c.update(activation_function="torch.nn.modules.activation.ReLU"),
    )
    with pytest.raises(ValueError, match=r"activation 'torch\.nn\.modules\.activation\.ReLU'"):
        SentenceEncoder.from_pretrained(model_dir)


def test_dense_with_wrong_shapes(sentence_model, tmp_path):
    model_dir = copy_model(sentence_model("mean", dense="Tanh"), tmp_path)
    edit_json(model_dir / "2_Dense" / "config.json", lambda c: c.update(out_features=25))
    with pytest.raises(ValueError, match=r"'linear\.weight' has shape"):
        SentenceEncoder.from_pretrained(model_dir)


def test_pooling_dimension_mismatch(tmp_path):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    edit_json(
        model_dir / "1_Pooling" / "config.json", lambda c: c.update(word_embedding_dimension=8)
    )
    with pytest.raises(ValueError, match="pooling embedding_dimension 8 != the model's emb_dim 16"):
        SentenceEncoder.from_pretrained(model_dir)


def test_missing_pooling_config(tmp_path):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    (model_dir / "1_Pooling" / "config.json").unlink()
    with pytest.raises((OSError, ValueError), match="1_Pooling"):
        SentenceEncoder.from_pretrained(model_dir)


def test_corrupt_safetensors(sentence_model, tmp_path):
    model_dir = copy_model(sentence_model("mean"), tmp_path)
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises((OSError, ValueError), match=r"model\.safetensors"):
        SentenceEncoder.from_pretrained(model_dir)


def test_bad_modules_json(tmp_path):
    model_dir = copy_model(GOLDENS / "model", tmp_path)
    (model_dir / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match=r"modules\.json: not valid JSON"):
        SentenceEncoder.from_pretrained(model_dir)


class RunsCode:
    """A pickle that calls os.system when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_evil_torch_file(path: Path, marker: Path) -> None:
    """A file laid out like torch.save's zip, whose data.pkl would run a shell command."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": RunsCode(marker)}, protocol=2))
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


@pytest.mark.parametrize("where", ["transformer", "dense", "plain-pickle"])
def test_a_pickle_that_runs_code_is_refused(sentence_model, tmp_path, where):
    if where == "dense":
        model_dir = copy_model(sentence_model("mean", dense="Tanh", safe_serialization=False),
                               tmp_path / "model")  # fmt: skip
        target = model_dir / "2_Dense" / "pytorch_model.bin"
    else:
        model_dir = copy_model(GOLDENS / "model", tmp_path / "model")
        target = model_dir / "pytorch_model.bin"
    marker = tmp_path / "pwned"
    if where == "plain-pickle":
        target.write_bytes(pickle.dumps(RunsCode(marker)))
    else:
        write_evil_torch_file(target, marker)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin"):
        SentenceEncoder.from_pretrained(model_dir)
    assert not marker.exists()
