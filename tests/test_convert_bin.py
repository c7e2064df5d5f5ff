"""tools/convert_bin.py: pytorch_model.bin -> model.safetensors, checked against torch.load."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

TOOL = Path(__file__).parent.parent / "tools" / "convert_bin.py"


def _run(*args):
    command = [sys.executable, str(TOOL), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def bin_model_dir(tmp_path_factory):
    """A tiny FlauBERT saved the pre-safetensors way: config.json + pytorch_model.bin."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.FlaubertConfig(
        vocab_size=60, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=40
    )
    model = transformers.FlaubertModel(config).eval()
    path = tmp_path_factory.mktemp("bin_model")
    config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


@pytest.mark.oracle
def test_model_dir_round_trips(bin_model_dir):
    import torch
    import transformers

    result = _run(bin_model_dir)
    assert result.returncode == 0, result.stderr
    converted = load_file(bin_model_dir / "model.safetensors")
    original = torch.load(bin_model_dir / "pytorch_model.bin", weights_only=True)
    assert sorted(converted) == sorted(original)  # safetensors stores names sorted
    for name, tensor in original.items():
        assert converted[name].dtype == tensor.numpy().dtype, name
        np.testing.assert_array_equal(converted[name], tensor.numpy(), err_msg=name)

    # transformers loads the converted folder to the same weights
    reloaded = transformers.FlaubertModel.from_pretrained(bin_model_dir).state_dict()
    for name, tensor in original.items():
        assert torch.equal(reloaded[name], tensor), name


@pytest.mark.oracle
def test_mixed_dtypes_and_shared_storage(tmp_path):
    import torch

    base = torch.randn(5, 6)
    state_dict = {
        "w": base,
        "tied": base,  # the same tensor twice, as tied weights are
        "view": base[1:, 2:].t(),
        "half": torch.randn(4).half(),
        "bf16": torch.randn(3, 2).bfloat16(),
        "ids": torch.arange(7).expand((1, -1)),
    }
    torch.save(state_dict, tmp_path / "weights.bin")
    out = tmp_path / "sub" / "converted.safetensors"
    out.parent.mkdir()
    result = _run(tmp_path / "weights.bin", "--out", out)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    converted = load_file(out)
    for name, tensor in state_dict.items():
        want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert converted[name].dtype == want.dtype, name
        np.testing.assert_array_equal(converted[name], want, err_msg=name)
    assert not list(tmp_path.glob("**/*.partial"))


@pytest.mark.oracle
def test_existing_output_needs_force(tmp_path):
    import torch

    torch.save({"w": torch.ones(2)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").write_bytes(b"keep me")
    result = _run(tmp_path)
    assert result.returncode == 1
    assert "exists; pass --force" in result.stderr
    assert (tmp_path / "model.safetensors").read_bytes() == b"keep me"
    assert _run(tmp_path, "--force").returncode == 0
    np.testing.assert_array_equal(load_file(tmp_path / "model.safetensors")["w"], np.ones(2))


def test_errors_are_one_line(tmp_path):
    (tmp_path / "hostile.bin").write_bytes(b"\x80\x04K\x01.")  # a plain pickle
    (tmp_path / "empty").mkdir()
    (tmp_path / "sharded").mkdir()
    (tmp_path / "sharded" / "pytorch_model.bin.index.json").write_text("{}")
    cases = {
        tmp_path / "hostile.bin": "torch 1.6",
        tmp_path / "missing.bin": "no such file",
        tmp_path / "empty": "no such file",
        tmp_path / "sharded": "sharded",
    }
    for source, message in cases.items():
        result = _run(source)
        assert result.returncode == 1, source
        assert result.stderr.startswith("convert_bin: error: "), result.stderr
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not list(tmp_path.glob("**/*.safetensors*"))
