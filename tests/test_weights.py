"""flaubert_np.weights: memory-mapped safetensors, key layouts, upcasting, and broken files."""

import json
import shutil

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
import transformers

from flaubert_np.config import FlaubertConfig
from flaubert_np.model import FlaubertModel
from flaubert_np.weights import (
    WeightsError,
    expected_shapes,
    load_weights,
    read_safetensors,
    sinusoidal_position_table,
)

pytestmark = pytest.mark.oracle


def copy_checkpoint(src, dst):
    shutil.copytree(src, dst)
    return dst


def tensors_of(folder) -> dict[str, np.ndarray]:
    return safetensors.numpy.load_file(folder / "model.safetensors")


def rewrite(folder, tensors) -> None:
    safetensors.numpy.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_read_safetensors_matches_the_safetensors_library(flaubert_checkpoint):
    path = flaubert_checkpoint() / "model.safetensors"
    ours = read_safetensors(path)
    ref = safetensors.numpy.load_file(path)
    assert ours.keys() == ref.keys()
    for name, (code, array) in ours.items():
        assert code == "F32"
        assert np.array_equal(array, ref[name]), name


def test_float32_weights_are_memory_mapped_not_copied(flaubert_checkpoint):
    folder = flaubert_checkpoint()
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    table = weights["embeddings.weight"]
    assert isinstance(table, np.memmap)
    assert str(table.filename) == str((folder / "model.safetensors").resolve())
    assert not table.flags.writeable  # a read-only view of the file
    assert np.array_equal(table, tensors_of(folder)["embeddings.weight"])
    # The model keeps the very same mapped tables.
    model = FlaubertModel.from_pretrained(folder)
    assert isinstance(model.params.embeddings, np.memmap)
    assert isinstance(model.params.position_embeddings, np.memmap)


def test_bare_names_match_transformers_state_dict(flaubert_checkpoint):
    folder = flaubert_checkpoint(n_langs=3)
    config = FlaubertConfig.from_pretrained(folder)
    weights = load_weights(folder, config)
    ref = transformers.FlaubertModel.from_pretrained(folder).state_dict()
    ref.pop("position_ids", None)
    assert weights.keys() == ref.keys() == expected_shapes(config).keys()
    for name, tensor in ref.items():
        assert np.array_equal(weights[name], tensor.numpy()), name


def test_lm_head_checkpoint_prefixed_keys_and_pred_layer(flaubert_checkpoint):
    folder = flaubert_checkpoint(head=True)
    stored = tensors_of(folder)
    assert "transformer.embeddings.weight" in stored and "pred_layer.proj.bias" in stored
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    assert not any(k.startswith(("transformer.", "pred_layer.")) for k in weights)
    for name, array in weights.items():
        assert np.array_equal(array, stored[f"transformer.{name}"]), name


@pytest.mark.parametrize("key", ["position_ids", "transformer.position_ids"])
def test_position_ids_buffer_is_ignored(flaubert_checkpoint, tmp_path, key):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    tensors = tensors_of(folder)
    if key.startswith("transformer."):
        tensors = {f"transformer.{k}": v for k, v in tensors.items()}
    tensors[key] = np.arange(40, dtype=np.int64)[None]
    rewrite(folder, tensors)
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    assert "position_ids" not in weights and len(weights) == len(tensors) - 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_checkpoints_are_upcast_exactly(flaubert_checkpoint, dtype):
    folder = flaubert_checkpoint(dtype=dtype)
    stored = safetensors.torch.load_file(folder / "model.safetensors")
    assert all(t.dtype == getattr(torch, dtype) for t in stored.values())
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    for name, array in weights.items():
        assert array.dtype == np.float32
        assert np.array_equal(array, stored[name].float().numpy()), name


def test_sharded_checkpoint(flaubert_checkpoint):
    folder = flaubert_checkpoint(max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 2 and not (folder / "model.safetensors").exists()
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    stored = {}
    for shard in shards:
        stored.update(safetensors.numpy.load_file(shard))
    assert weights.keys() == stored.keys()
    for name, array in weights.items():
        assert np.array_equal(array, stored[name]), name
        assert isinstance(array, np.memmap)


def test_pytorch_model_bin_is_read_and_safetensors_preferred(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(head=True), tmp_path / "m")
    config = FlaubertConfig.from_pretrained(folder)
    stored = tensors_of(folder)
    half = {k: torch.from_numpy(v).half() for k, v in stored.items()}
    torch.save(half, folder / "pytorch_model.bin")
    from_safetensors = load_weights(folder, config)  # both present: safetensors wins
    for name, array in from_safetensors.items():
        assert np.array_equal(array, stored[f"transformer.{name}"]), name
    (folder / "model.safetensors").unlink()
    from_bin = load_weights(folder, config)
    assert from_bin.keys() == from_safetensors.keys()
    for name, array in from_bin.items():
        assert array.dtype == np.float32
        assert np.array_equal(array, half[f"transformer.{name}"].float().numpy()), name


def test_sinusoidal_table_missing_from_the_file_is_filled_in_as_transformers_does(
    flaubert_checkpoint, tmp_path
):
    folder = copy_checkpoint(flaubert_checkpoint(sinusoidal_embeddings=True), tmp_path / "m")
    tensors = tensors_of(folder)
    del tensors["position_embeddings.weight"]
    rewrite(folder, tensors)
    weights = load_weights(folder, FlaubertConfig.from_pretrained(folder))
    ref = transformers.FlaubertModel.from_pretrained(folder).position_embeddings.weight
    assert np.array_equal(weights["position_embeddings.weight"], ref.detach().numpy())
    assert np.array_equal(sinusoidal_position_table(40, 32), ref.detach().numpy())


# Broken weights: each error names the file, the tensor and what was expected.


def broken(flaubert_checkpoint, tmp_path, edit) -> tuple:
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    tensors = tensors_of(folder)
    edit(tensors)
    rewrite(folder, tensors)
    return folder, FlaubertConfig.from_pretrained(folder)


def test_missing_tensor(flaubert_checkpoint, tmp_path):
    folder, config = broken(
        flaubert_checkpoint, tmp_path, lambda t: t.pop("attentions.1.v_lin.weight")
    )
    with pytest.raises(WeightsError) as info:
        load_weights(folder, config)
    message = str(info.value)
    assert str(folder / "model.safetensors") in message
    assert "tensor 'attentions.1.v_lin.weight' is missing (expected shape (32, 32)" in message


def test_missing_position_table_without_sinusoidal_embeddings(flaubert_checkpoint, tmp_path):
    folder, config = broken(
        flaubert_checkpoint, tmp_path, lambda t: t.pop("position_embeddings.weight")
    )
    with pytest.raises(WeightsError, match=r"'position_embeddings\.weight' is missing"):
        load_weights(folder, config)


def test_wrong_shape(flaubert_checkpoint, tmp_path):
    def edit(t):
        t["ffns.0.lin1.weight"] = t["ffns.0.lin1.weight"][:100]

    folder, config = broken(flaubert_checkpoint, tmp_path, edit)
    with pytest.raises(WeightsError) as info:
        load_weights(folder, config)
    assert str(folder / "model.safetensors") in str(info.value)
    assert "tensor 'ffns.0.lin1.weight' has shape (100, 32), expected (128, 32)" in str(info.value)


def test_extra_tensor(flaubert_checkpoint, tmp_path):
    def edit(t):
        t["attentions.2.q_lin.weight"] = t["attentions.1.q_lin.weight"]

    folder, config = broken(flaubert_checkpoint, tmp_path, edit)
    with pytest.raises(
        WeightsError,
        match=r"unexpected tensor 'attentions.2.q_lin.weight' "
        r"with shape \(32, 32\).*n_layers=2",
    ):
        load_weights(folder, config)


def test_config_and_weights_disagree(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 120
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        WeightsError,
        match=r"'embeddings.weight' has shape \(99, 32\), "
        r"expected \(120, 32\)",
    ):
        FlaubertModel.from_pretrained(folder)


def test_integer_tensor_is_refused(flaubert_checkpoint, tmp_path):
    def edit(t):
        t["layer_norm_emb.bias"] = t["layer_norm_emb.bias"].astype(np.int64)

    folder, config = broken(flaubert_checkpoint, tmp_path, edit)
    with pytest.raises(
        WeightsError, match=r"tensor 'layer_norm_emb.bias'.*dtype I64 is not a float"
    ):
        load_weights(folder, config)


def raw_file(folder, header: dict, data: bytes) -> None:
    blob = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + data)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a safetensors file"),
        (b"\x01\x02", "not a safetensors file"),
        (b"PK\x03\x04" + bytes(200), "not a safetensors file .header length"),
        ((5).to_bytes(8, "little") + b"nope!", "safetensors header: not valid JSON"),
        ((2).to_bytes(8, "little") + b"[]", "its header is not a JSON object"),
    ],
)
def test_not_a_safetensors_file(flaubert_checkpoint, tmp_path, content, message):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    (folder / "model.safetensors").write_bytes(content)
    with pytest.raises(WeightsError, match=message) as info:
        load_weights(folder, FlaubertConfig.from_pretrained(folder))
    assert str(folder / "model.safetensors") in str(info.value)


def test_a_torch_pickle_named_safetensors_is_not_unpickled(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    torch.save({"embeddings.weight": torch.zeros(2)}, folder / "model.safetensors")
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights(folder, FlaubertConfig.from_pretrained(folder))


def test_truncated_file(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    path = folder / "model.safetensors"
    full = path.read_bytes()
    path.write_bytes(full[:-1000])
    with pytest.raises(
        WeightsError,
        match=rf"truncated: its header needs {len(full)} bytes, "
        rf"the file has {len(full) - 1000}",
    ):
        load_weights(folder, FlaubertConfig.from_pretrained(folder))


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4),
         r"tensor 'a' spans 4 bytes in the file, but F32 \(2,\) needs 8"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8),
         "tensor 'a' overlaps another or leaves a gap"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(6),
         "2 bytes after the last tensor"),
        ({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, bytes(1),
         "tensor 'a' has unsupported dtype 'F8_E4M3'"),
        ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4),
         "tensor 'a' has a malformed header entry"),
        ({"a": {"dtype": "F32", "shape": [1]}}, bytes(4), "tensor 'a' has a malformed header"),
        ({"a": [1, 2]}, bytes(4), "tensor 'a' has a malformed header entry"),
    ],
)  # fmt: skip
def test_malformed_header(tmp_path, header, data, message):
    raw_file(tmp_path, header, data)
    with pytest.raises(WeightsError, match=message) as info:
        read_safetensors(tmp_path / "model.safetensors")
    assert str(tmp_path / "model.safetensors") in str(info.value)


def test_no_weights_at_all(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(), tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"no weights found \(looked for model\.safetensors"
    ):
        FlaubertModel.from_pretrained(folder)


def sharded_copy(flaubert_checkpoint, tmp_path):
    folder = copy_checkpoint(flaubert_checkpoint(max_shard_size="20KB"), tmp_path / "m")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    return folder, index


def write_index(folder, index) -> None:
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_sharded_missing_shard(flaubert_checkpoint, tmp_path):
    folder, index = sharded_copy(flaubert_checkpoint, tmp_path)
    shard = index["weight_map"]["embeddings.weight"]
    (folder / shard).unlink()
    with pytest.raises(WeightsError, match=f"shard {shard} is missing"):
        FlaubertModel.from_pretrained(folder)


def test_sharded_index_points_outside_the_folder(flaubert_checkpoint, tmp_path):
    folder, index = sharded_copy(flaubert_checkpoint, tmp_path)
    index["weight_map"]["embeddings.weight"] = "../elsewhere.safetensors"
    write_index(folder, index)
    with pytest.raises(WeightsError, match="is not a file name in the model folder"):
        FlaubertModel.from_pretrained(folder)


def test_sharded_index_and_shards_disagree(flaubert_checkpoint, tmp_path):
    folder, index = sharded_copy(flaubert_checkpoint, tmp_path)
    shard = index["weight_map"]["embeddings.weight"]
    index["weight_map"]["attentions.0.extra"] = shard
    write_index(folder, index)
    with pytest.raises(
        WeightsError,
        match=f"{shard}: tensor 'attentions.0.extra' listed in "
        "model.safetensors.index.json is missing",
    ):
        FlaubertModel.from_pretrained(folder)
    del index["weight_map"]["attentions.0.extra"], index["weight_map"]["embeddings.weight"]
    write_index(folder, index)
    with pytest.raises(WeightsError, match=f"{shard}: tensor 'embeddings.weight' is not listed"):
        FlaubertModel.from_pretrained(folder)
    (folder / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(WeightsError, match="not a shard index"):
        FlaubertModel.from_pretrained(folder)


def test_model_refuses_weights_of_another_dtype(flaubert_checkpoint):
    folder = flaubert_checkpoint()
    config = FlaubertConfig.from_pretrained(folder)
    weights = {k: np.asarray(v, dtype=np.float64) for k, v in load_weights(folder, config).items()}
    with pytest.raises(WeightsError, match="is float64, expected float32"):
        FlaubertModel(config, weights)
