"""flaubert_np/hub.py: local directories, short names and Hub ids (no network here).

The Hugging Face Hub cannot be reached from the test machines, so Hub loading is tested the way
it is used offline: a model laid out in a temporary Hub cache exactly as huggingface_hub lays it
out (models--org--name/{refs/main, blobs/, snapshots/<commit>/}) loads by repo id, and what is
asked of `snapshot_download` (which files, in which order) is checked with a stand-in that
serves a local "remote" repository.
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import huggingface_hub.errors
import numpy as np
import pytest
from conftest import place_in_hub_cache

from flaubert_np import hub
from flaubert_np.model import FlaubertModel
from flaubert_np.sentence import SentenceEncoder
from flaubert_np.tokenizer import FlaubertTokenizer

GOLDEN_MODEL = Path(__file__).parent / "goldens" / "sentence_tf4" / "model"
REPO_ID = "flaubert-np-tests/tiny-sentence-model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["Un homme joue de la guitare.", "Une femme coupe des oignons."]


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1, also for a huggingface_hub that read its constants at import."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub_cache(tmp_path, sentence_model):
    """A Hub cache holding the tiny mean-pooling model as REPO_ID at COMMIT."""
    cache = tmp_path / "hub"
    place_in_hub_cache(sentence_model("mean"), cache, REPO_ID, COMMIT)
    return cache


# ---------------------------------------------------------------------------------------------
# Local directories and short names


def test_local_directory_is_used_as_is(tmp_path):
    assert hub.resolve_model_dir(tmp_path) == tmp_path
    assert hub.resolve_model_dir(str(tmp_path)) == tmp_path


def test_a_file_is_not_a_model_directory(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file, not a model directory"):
        hub.resolve_model_dir(f)


@pytest.mark.parametrize("name", ["./no-such-model", "/no/such/model", "a/b/c", "~/no-model"])
def test_a_missing_path_is_reported_as_a_path(name):
    with pytest.raises(FileNotFoundError, match=f"model directory '{name}' does not exist"):
        hub.resolve_model_dir(name)


@pytest.mark.parametrize("name", ["", "   ", None, 3])
def test_bad_names(name):
    with pytest.raises(ValueError, match="non-empty string"):
        hub.resolve_model_dir(name)


def test_demo_is_the_package_models_directory():
    import flaubert_np

    assert hub.SHORT_NAMES["demo"] == Path(flaubert_np.__file__).parent / "models" / "demo"


@pytest.mark.oracle
def test_short_names_resolve_to_their_directory(monkeypatch, sentence_model):
    model_dir = sentence_model("mean")
    monkeypatch.setitem(hub.SHORT_NAMES, "tiny", model_dir)
    assert hub.resolve_model_dir("tiny") == model_dir
    expected = SentenceEncoder.from_pretrained(model_dir).encode(TEXTS)
    assert np.array_equal(SentenceEncoder.from_pretrained("tiny").encode(TEXTS), expected)


def test_a_short_name_without_files_says_it_is_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(hub.SHORT_NAMES, "tiny", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="the 'tiny' model is not installed"):
        hub.resolve_model_dir("tiny")


# ---------------------------------------------------------------------------------------------
# The Hub cache, offline


@pytest.mark.oracle
def test_loads_from_the_hub_cache_by_repo_id(hub_cache, offline, sentence_model):
    expected = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(TEXTS)
    for revision in (None, "main", COMMIT):
        encoder = SentenceEncoder.from_pretrained(REPO_ID, revision=revision, cache_dir=hub_cache)
        assert np.array_equal(encoder.encode(TEXTS), expected)
    assert hub.resolve_model_dir(REPO_ID, cache_dir=hub_cache) == (
        hub_cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    )


@pytest.mark.oracle
def test_local_files_only_uses_the_cache(hub_cache, sentence_model):
    expected = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(TEXTS)
    encoder = SentenceEncoder.from_pretrained(REPO_ID, cache_dir=hub_cache, local_files_only=True)
    assert np.array_equal(encoder.encode(TEXTS), expected)


@pytest.mark.oracle
def test_hub_cache_env_var_and_offline_in_a_fresh_process(hub_cache, sentence_model, tmp_path):
    """HF_HUB_CACHE and HF_HUB_OFFLINE set before huggingface_hub is imported, as a user would."""
    out = tmp_path / "embeddings.npy"
    code = (
        "import sys, numpy as np; from flaubert_np import SentenceEncoder; "
        f"np.save(sys.argv[1], SentenceEncoder.from_pretrained({REPO_ID!r}).encode(sys.argv[2:]))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HOME", None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(out), *TEXTS], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    expected = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(TEXTS)
    assert np.array_equal(np.load(out), expected)


@pytest.mark.oracle
def test_hub_unreachable_without_offline_mode(hub_cache, sentence_model, tmp_path):
    """No HF_HUB_OFFLINE, but the Hub cannot be reached (an endpoint that refuses connections):
    a cached model still loads, an uncached one fails with the one-line error."""
    out = tmp_path / "embeddings.npy"
    code = (
        "import sys, numpy as np; from flaubert_np import SentenceEncoder; "
        "np.save(sys.argv[1], SentenceEncoder.from_pretrained(sys.argv[2]).encode(sys.argv[3:]))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_HOME", None)
    ok = subprocess.run([sys.executable, "-c", code, str(out), REPO_ID, *TEXTS], env=env,
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    expected = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(TEXTS)
    assert np.array_equal(np.load(out), expected)
    start = time.monotonic()
    missing = subprocess.run([sys.executable, "-c", code, str(out), "org/not-cached", *TEXTS],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode != 0
    assert time.monotonic() - start < 15  # huggingface_hub alone retries for ~25 s
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("OSError: model 'org/not-cached' is not a local directory nor in the "
                           "Hugging Face cache")  # fmt: skip
    assert "the Hugging Face Hub cannot be reached (127.0.0.1: Connection refused)" in last
    assert last.endswith("download it once with the network on, or give a local directory")


@pytest.mark.oracle
def test_unknown_repo_offline_is_one_clear_line(hub_cache, offline):
    with pytest.raises(OSError) as info:
        SentenceEncoder.from_pretrained("nobody/no-such-model", cache_dir=hub_cache)
    assert str(info.value) == (
        f"model 'nobody/no-such-model' is not a local directory nor in the Hugging Face cache "
        f"({hub_cache}), and offline mode is on: download it once with the network on, or give "
        "a local directory"
    )


@pytest.mark.oracle
def test_unknown_revision_offline(hub_cache, offline):
    message = f"model '{REPO_ID}' (revision 'v2') is not a local directory nor in the Hugging Face"
    with pytest.raises(OSError, match=re.escape(message)):
        SentenceEncoder.from_pretrained(REPO_ID, revision="v2", cache_dir=hub_cache)


# ---------------------------------------------------------------------------------------------
# What is asked of snapshot_download


class FakeHub:
    """Stands in for huggingface_hub.snapshot_download: serves `remote` (a folder playing a Hub
    repo), copying the files that match allow_patterns (fnmatch, as huggingface_hub) into one
    snapshot folder, and records every call."""

    def __init__(self, remote: Path, snapshot: Path):
        self.remote, self.snapshot, self.calls = remote, snapshot, []

    def __call__(self, repo_id, *, allow_patterns, **kwargs):
        self.calls.append({"repo_id": repo_id, "allow_patterns": list(allow_patterns), **kwargs})
        for f in self.remote.rglob("*"):
            name = f.relative_to(self.remote).as_posix()
            if f.is_file() and any(fnmatch.fnmatch(name, p) for p in allow_patterns):
                (self.snapshot / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, self.snapshot / name)
        return str(self.snapshot)

    def fetched(self) -> set[str]:
        return {
            f.relative_to(self.snapshot).as_posix() for f in self.snapshot.rglob("*") if f.is_file()
        }


def fake_hub(monkeypatch, tmp_path, remote: Path) -> FakeHub:
    fake = FakeHub(remote, tmp_path / "snapshot")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(hub, "network_problem", lambda: None)  # the "Hub" is reachable
    return fake


def add_clutter(remote: Path) -> None:
    """What Hub repos carry besides what flaubert-np needs."""
    for name in ["onnx/model.onnx", "openvino/openvino_model.bin", "README.md", "train.log",
                 "checkpoint-500/optimizer.pt", "tf_model.h5"]:  # fmt: skip
        (remote / name).parent.mkdir(parents=True, exist_ok=True)
        (remote / name).write_bytes(b"not needed")


@pytest.mark.oracle
def test_only_the_needed_files_are_fetched(monkeypatch, tmp_path, sentence_model):
    remote = shutil.copytree(sentence_model("mean", dense="Tanh", normalize=True), tmp_path / "r")
    add_clutter(remote)
    # a repo with both formats: the safetensors are enough, the .bin must not be downloaded
    (remote / "pytorch_model.bin").write_bytes(b"a second copy of the weights")
    fake = fake_hub(monkeypatch, tmp_path, remote)
    model_dir = hub.resolve_model_dir(
        "org/model", revision="v1", cache_dir="/c", local_files_only=False, token="t"
    )
    needed = {
        "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json",
        "config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", "merges.txt",
        "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors",
        "3_Normalize/config.json",
    }  # fmt: skip
    if (remote / "special_tokens_map.json").exists():
        needed.add("special_tokens_map.json")
    assert fake.fetched() == needed
    assert len(fake.calls) == 2  # the small files, then the safetensors; no .bin round
    for call in fake.calls:
        assert call["repo_id"] == "org/model" and call["revision"] == "v1"
        assert call["cache_dir"] == "/c" and call["token"] == "t"
    assert np.array_equal(
        SentenceEncoder.from_pretrained(model_dir).encode(TEXTS),
        SentenceEncoder.from_pretrained(remote).encode(TEXTS),
    )


@pytest.mark.oracle
def test_sharded_safetensors_are_fetched(monkeypatch, tmp_path, sentence_model):
    import transformers

    remote = shutil.copytree(sentence_model("mean"), tmp_path / "r")
    (remote / "model.safetensors").unlink()
    model = transformers.FlaubertModel.from_pretrained(sentence_model("mean"))
    model.save_pretrained(remote, max_shard_size="100KB")
    shards = {f.name for f in remote.glob("model-*-of-*.safetensors")}
    assert len(shards) > 1
    fake = fake_hub(monkeypatch, tmp_path, remote)
    model_dir = hub.resolve_model_dir("org/sharded")
    assert shards | {"model.safetensors.index.json"} <= fake.fetched()
    assert "pytorch_model.bin" not in fake.fetched() and len(fake.calls) == 2
    expected = SentenceEncoder.from_pretrained(sentence_model("mean")).encode(TEXTS)
    assert np.array_equal(SentenceEncoder.from_pretrained(model_dir).encode(TEXTS), expected)


def test_pytorch_model_bin_is_fetched_only_when_there_is_no_safetensors(monkeypatch, tmp_path):
    remote = shutil.copytree(GOLDEN_MODEL, tmp_path / "r")
    add_clutter(remote)
    fake = fake_hub(monkeypatch, tmp_path, remote)
    model_dir = hub.resolve_model_dir("org/old-model")
    assert "pytorch_model.bin" in fake.fetched()
    assert not {"onnx/model.onnx", "openvino/openvino_model.bin", "README.md", "tf_model.h5",
                "train.log", "checkpoint-500/optimizer.pt"} & fake.fetched()  # fmt: skip
    assert [c["allow_patterns"] for c in fake.calls][-1] == ["pytorch_model.bin"]
    expected = SentenceEncoder.from_pretrained(GOLDEN_MODEL).encode(TEXTS)
    assert np.array_equal(SentenceEncoder.from_pretrained(model_dir).encode(TEXTS), expected)


def test_2021_layout_weights_are_fetched_from_their_folder(monkeypatch, tmp_path):
    remote = tmp_path / "r"
    (remote / "0_Transformer").mkdir(parents=True)
    for f in GOLDEN_MODEL.iterdir():
        if f.is_file() and f.name != "modules.json":
            shutil.copy(f, remote / "0_Transformer" / f.name)
    shutil.copytree(GOLDEN_MODEL / "1_Pooling", remote / "1_Pooling")
    modules = json.loads((GOLDEN_MODEL / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (remote / "modules.json").write_text(json.dumps(modules))
    fake = fake_hub(monkeypatch, tmp_path, remote)
    model_dir = hub.resolve_model_dir("org/model-2021")
    needed = {
        "0_Transformer/pytorch_model.bin", "0_Transformer/vocab.json",
        "0_Transformer/sentence_bert_config.json", "1_Pooling/config.json",
    }  # fmt: skip
    assert needed <= fake.fetched()
    assert fake.calls[-1]["allow_patterns"] == ["0_Transformer/pytorch_model.bin"]
    expected = SentenceEncoder.from_pretrained(GOLDEN_MODEL).encode(TEXTS)
    assert np.array_equal(SentenceEncoder.from_pretrained(model_dir).encode(TEXTS), expected)


def hub_error(cls) -> Exception:
    """One of huggingface_hub's HTTP errors, with its usual long text."""
    import httpx2  # what huggingface_hub's errors are built on

    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/model")
    response = httpx2.Response(404, request=request)
    return cls("404 Client Error.\n\nRepository Not Found for url: (long text)", response=response)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (huggingface_hub.errors.LocalEntryNotFoundError(
            "Cannot find an appropriate cached snapshot folder\nfor the specified revision."),
         "model 'org/model' is not a local directory nor in the Hugging Face cache (/c), and the "
         "Hugging Face Hub cannot be reached: download it once with the network on, or give a "
         "local directory"),
        (hub_error(huggingface_hub.errors.RepositoryNotFoundError),
         "model 'org/model' is not a local directory nor a model on the Hugging Face Hub (a "
         "private one needs HF_TOKEN)"),
        (hub_error(huggingface_hub.errors.GatedRepoError),
         "model 'org/model' is gated on the Hugging Face Hub: accept its conditions on its page, "
         "then set HF_TOKEN (or `hf auth login`)"),
        (hub_error(huggingface_hub.errors.RevisionNotFoundError),
         "model 'org/model': no such revision on the Hugging Face Hub"),
        (RuntimeError("something\nelse " + "x" * 300),
         "model 'org/model' could not be fetched from the Hugging Face Hub: something else "
         + "x" * 185),
    ],
)  # fmt: skip
def test_hub_errors_become_one_short_line(monkeypatch, error, message):
    def refuse(repo_id, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(hub, "network_problem", lambda: None)
    with pytest.raises(OSError) as info:
        hub.resolve_model_dir("org/model", cache_dir="/c")
    assert str(info.value) == message


# ---------------------------------------------------------------------------------------------
# Every from_pretrained: "demo", a folder, a Hub id; a near miss of "demo" suggests it


@pytest.mark.oracle  # sentence_model: sentence-transformers
def test_model_and_tokenizer_load_demo_folders_and_hub_ids(hub_cache, offline, sentence_model):
    folder = sentence_model("mean")
    ids = FlaubertTokenizer.from_pretrained(folder)(TEXTS, padding=True)["input_ids"]
    expected = FlaubertModel.from_pretrained(folder)(ids).last_hidden_state
    tokenizer = FlaubertTokenizer.from_pretrained(REPO_ID, cache_dir=hub_cache)
    assert np.array_equal(tokenizer(TEXTS, padding=True)["input_ids"], ids)
    model = FlaubertModel.from_pretrained(REPO_ID, cache_dir=hub_cache, revision=COMMIT)
    assert np.array_equal(model(ids).last_hidden_state, expected)
    demo = hub.SHORT_NAMES["demo"]
    demo_ids = FlaubertTokenizer.from_pretrained(demo)(TEXTS, padding=True)["input_ids"]
    by_name = FlaubertTokenizer.from_pretrained("demo")(TEXTS, padding=True)["input_ids"]
    assert np.array_equal(by_name, demo_ids)
    expected = FlaubertModel.from_pretrained(demo)(demo_ids).last_hidden_state
    got = FlaubertModel.from_pretrained("demo")(demo_ids).last_hidden_state
    assert np.array_equal(got, expected)


@pytest.mark.oracle  # sentence_model: sentence-transformers
def test_the_tokenizer_does_not_download_weights(monkeypatch, tmp_path, sentence_model):
    remote = shutil.copytree(sentence_model("mean"), tmp_path / "r")
    fake = fake_hub(monkeypatch, tmp_path, remote)
    FlaubertTokenizer.from_pretrained("org/model", revision="v1")
    assert len(fake.calls) == 1 and fake.calls[0]["revision"] == "v1"
    assert not any(name.endswith((".safetensors", ".bin")) for name in fake.fetched())
    FlaubertModel.from_pretrained("org/model")
    assert "model.safetensors" in fake.fetched()


@pytest.mark.parametrize("name", ["Demo", "DEMO", "dmeo", "demo2", "dem"])
@pytest.mark.parametrize("loader", [SentenceEncoder, FlaubertModel, FlaubertTokenizer])
def test_a_near_miss_of_demo_suggests_it_without_going_to_the_hub(monkeypatch, name, loader):
    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setattr(hub, "network_problem", no_hub)
    with pytest.raises(FileNotFoundError) as info:
        loader.from_pretrained(name)
    assert str(info.value) == (
        f"model '{name}' is not a local directory; did you mean 'demo' (the model shipped with "
        "flaubert-np)?"
    )


@pytest.mark.parametrize("name", ["org/demo", "camembert", "flaubert/flaubert_base_cased"])
def test_hub_ids_are_not_near_misses(name):
    assert hub.near_short_name(name) is None


@pytest.mark.oracle  # sentence_model: sentence-transformers
def test_offline_fails_at_once_in_one_line_without_python_advice(hub_cache, tmp_path):
    """The CLI with --offline and a model that is not in the cache."""
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache)}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flaubert_np.cli", "encode", "--offline", "-m", "org/not-cached",
         "Une phrase."], env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - start < 15
    assert result.returncode == 1
    assert result.stderr == (
        f"flaubert-np: error: model 'org/not-cached' is not a local directory nor in the Hugging "
        f"Face cache ({hub_cache}), and offline mode is on: download it once with the network "
        "on, or give a local directory\n"
    )


def test_network_problem(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert hub.network_problem() == "offline mode is on"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in hub._PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    assert hub.network_problem() == (
        "the Hugging Face Hub cannot be reached (127.0.0.1: Connection refused)"
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # left to huggingface_hub
    assert hub.network_problem() is None
