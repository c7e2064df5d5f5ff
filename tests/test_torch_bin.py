"""flaubert_np.torch_bin against torch.load, and against hostile or broken files."""

import collections
import functools
import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import transformers

from flaubert_np.torch_bin import TorchBinError, UnsafePickleError, load_torch_bin

pytestmark = pytest.mark.oracle


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    # bfloat16 has no NumPy dtype: load_torch_bin returns it as float32, exactly
    t = t.detach()
    return t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _assert_same_as_torch(path):
    ours = load_torch_bin(path)
    theirs = torch.load(path, weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        want = _as_numpy(tensor)
        got = ours[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable and got.flags.aligned, name
    return ours


def _write_torch_zip(path, data_pkl, storages, byteorder="little", compression=zipfile.ZIP_STORED):
    """A zip laid out as torch.save lays it out, with any pickle and storages we like."""
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/.format_version", "1")
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


class _FakeStorage:
    def __init__(self, key, numel, storage_type=torch.FloatStorage):
        self.key, self.numel, self.storage_type = key, numel, storage_type


class _FakeTensor:
    """Pickles as torch pickles a tensor, with whatever offset/size/stride we give it."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


def _torch_like_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _TorchLikePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


@pytest.fixture(scope="session")
def flaubert_state_dict():
    torch.manual_seed(0)
    config = transformers.FlaubertConfig(
        vocab_size=50, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=40
    )
    state_dict = transformers.FlaubertModel(config).eval().state_dict()
    # Older transformers saved this buffer: int64, an expanded view (stride 0 on dim 0).
    state_dict["position_ids"] = torch.arange(40).expand((1, -1))
    return state_dict


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_flaubert_state_dict_matches_torch_load(tmp_path, flaubert_state_dict, dtype):
    state_dict = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in flaubert_state_dict.items()
    }
    path = tmp_path / "pytorch_model.bin"
    torch.save(state_dict, path)
    ours = _assert_same_as_torch(path)
    assert ours["position_ids"].dtype == np.int64
    assert ours["embeddings.weight"].dtype == (np.float16 if dtype == torch.float16 else np.float32)


def test_dtypes_views_and_shared_storages(tmp_path):
    torch.manual_seed(1)
    base = torch.randn(6, 7)
    state_dict = {
        "base": base,
        "transposed": base.t(),  # non-contiguous, same storage
        "offset_view": base[2:, 3:],  # a view starting at storage offset 17
        "column": base[:, 4],  # stride 7
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
        "float64": torch.randn(3, dtype=torch.float64),
        "float16": torch.randn(2, 3).half().t(),
        "bfloat16": torch.randn(4, 3).bfloat16()[1:],
        "int64": torch.arange(9),
        "int32": torch.arange(-3, 3, dtype=torch.int32),
        "int16": torch.arange(5, dtype=torch.int16),
        "int8": torch.arange(-4, 4, dtype=torch.int8),
        "uint8": torch.arange(250, 256, dtype=torch.uint8),
        "uint16": torch.arange(60000, 60004).to(torch.uint16),  # pickled with _rebuild_tensor_v3
        "bool": torch.tensor([True, False, True]),
        "complex64": torch.randn(3, dtype=torch.complex64),
        "parameter": torch.nn.Parameter(torch.randn(2, 2)),  # via _rebuild_parameter
    }
    path = tmp_path / "mixed.bin"
    torch.save(state_dict, path)
    ours = _assert_same_as_torch(path)
    ours["transposed"][0, 0] = 1e6  # a view other than the whole storage is a copy
    assert ours["base"][0, 0] != 1e6


def test_broadcast_views_are_refused(tmp_path):
    """A stride-0 dimension longer than 1 multiplies memory (3 x 16384^2 floats from 64 bytes):
    refused, even though torch.save writes one for an expanded tensor."""
    path = tmp_path / "expanded.bin"
    torch.save({"expanded": torch.randn(3, 1).expand(3, 5)}, path)
    with pytest.raises(TorchBinError, match=r"stride \(1, 0\): stride 0 on a dimension") as err:
        load_torch_bin(path)
    assert str(path) in str(err.value)


def test_tied_weights_share_memory_and_writes_stay_in_memory(tmp_path):
    """Tensors saved on one storage share memory, as after torch.load; the file is mapped
    copy-on-write, so writing to an array never reaches the file."""
    weight = torch.randn(8, 4)
    path = tmp_path / "tied.bin"
    torch.save({"embeddings.weight": weight, "pred_layer.proj.weight": weight}, path)
    before = path.read_bytes()
    ours = load_torch_bin(path)
    assert np.shares_memory(ours["embeddings.weight"], ours["pred_layer.proj.weight"])
    ours["embeddings.weight"][:] = 7.0
    assert (ours["pred_layer.proj.weight"] == 7.0).all()  # torch's tied tensors behave the same
    del ours
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load_torch_bin(path)["embeddings.weight"], weight.numpy())


def test_bfloat16_becomes_float32_exactly(tmp_path):
    values = torch.tensor([1.0, -2.5, 3.140625, 1e-30, -1e30, float("inf")], dtype=torch.bfloat16)
    torch.save({"x": values}, tmp_path / "bf16.bin")
    got = load_torch_bin(tmp_path / "bf16.bin")["x"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values.float().numpy())


def test_big_endian_and_compressed_archives(tmp_path):
    """Two layouts torch.save does not write here but a reader meets: a big-endian checkpoint, and
    one re-zipped with compression (read through zipfile instead of the memory map)."""
    x = torch.randn(3, 4)
    big = x.numpy().astype(">f4").tobytes()
    pkl = _torch_like_pickle({"x": _FakeTensor(_FakeStorage("0", 12), 0, (3, 4), (4, 1))})
    _write_torch_zip(tmp_path / "big.bin", pkl, {"0": big}, byteorder="big")
    got = load_torch_bin(tmp_path / "big.bin")["x"]
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, x.numpy())

    torch.save({"x": x, "y": x[1:].t()}, tmp_path / "plain.bin")
    with (
        zipfile.ZipFile(tmp_path / "plain.bin") as src,
        zipfile.ZipFile(tmp_path / "deflated.bin", "w", compression=zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    with zipfile.ZipFile(tmp_path / "deflated.bin") as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_DEFLATED}
    _assert_same_as_torch(tmp_path / "deflated.bin")


class _Reduces:
    """Unpickles by calling func(*args): what a hostile pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_os_system_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    torch.save({"weight": torch.zeros(2), "evil": _Reduces(os.system, f"touch {marker}")}, path)

    with pytest.raises(UnsafePickleError) as err:
        load_torch_bin(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "posix.system" in message or "os.system" in message
    assert isinstance(err.value, pickle.UnpicklingError) and isinstance(err.value, ValueError)
    assert not marker.exists()

    # The payload is live: torch's own unrestricted load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def _eval_payload(marker):
    payload = _Reduces(eval, f"__import__('os').system('touch {marker}')")
    return pickle.dumps({"x": payload}, protocol=3)


def _hostile_pickles(marker):
    """Raw data.pkl payloads, each reaching for a callable in another way."""
    command = f"touch {marker}"
    return {
        "builtins.eval": _eval_payload(marker),
        "subprocess.Popen": pickle.dumps(_Reduces(subprocess.Popen, ["true"]), protocol=3),
        "functools.partial": pickle.dumps({"x": functools.partial(print, "x")}, protocol=2),
        "posix.system via INST": b"(S'" + command.encode() + b"'\niposix\nsystem\n.",
        "os.system via STACK_GLOBAL": pickle.dumps(_Reduces(os.system, command), protocol=4),
        "torch.load": pickle.dumps(_Reduces(torch.load, "x"), protocol=2),
        "torch._utils other function": b"\x80\x02ctorch._utils\n_rebuild_from_type_v2\n.",
    }


@pytest.mark.parametrize("name", list(_hostile_pickles("m")))
def test_hostile_pickles_are_refused(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.bin"
    _write_torch_zip(path, _hostile_pickles(marker)[name], {})
    # INST and STACK_GLOBAL (protocol 4) are refused as opcodes, the others as globals
    with pytest.raises(UnsafePickleError, match=r"refused (to load global|pickle )") as err:
        load_torch_bin(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_hostile_pickle_payloads_are_live(tmp_path):
    """The payloads above do run when unpickled plainly (so the refusals mean something)."""
    marker = tmp_path / "pwned"
    for name in ("builtins.eval", "posix.system via INST", "os.system via STACK_GLOBAL"):
        marker.unlink(missing_ok=True)
        pickle.loads(_hostile_pickles(marker)[name])
        assert marker.exists(), name


def test_plain_pickle_file_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(_eval_payload(marker))
    with pytest.raises(TorchBinError, match=r"torch 1\.6") as err:
        load_torch_bin(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_legacy_format_is_refused_with_advice(tmp_path):
    path = tmp_path / "legacy.bin"
    torch.save({"x": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(TorchBinError, match=r"torch 1\.6.*re-save it with torch"):
        load_torch_bin(path)


def test_truncated_file(tmp_path, flaubert_state_dict):
    full = tmp_path / "full.bin"
    torch.save(flaubert_state_dict, full)
    data = full.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        path = tmp_path / "truncated.bin"
        path.write_bytes(data[:cut])
        with pytest.raises(TorchBinError, match="truncated or corrupt") as err:
            load_torch_bin(path)
        assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content", [b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\n", b""]
)
def test_non_checkpoint_files(tmp_path, content):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(content)
    with pytest.raises(TorchBinError, match="not a PyTorch checkpoint") as err:
        load_torch_bin(path)
    assert str(path) in str(err.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.bin"):
        load_torch_bin(tmp_path / "nope.bin")


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.bin"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("docs/readme.txt", "hello")
    with pytest.raises(TorchBinError, match=r"without data\.pkl"):
        load_torch_bin(path)


@pytest.mark.parametrize(
    ("tensor", "storages", "match"),
    [
        # reads past the end of its 4-element storage: refused before any memory is touched
        (_FakeTensor(_FakeStorage("0", 4), 0, (100,), (1,)), {"0": bytes(16)}, "reach byte 400 of"),
        (_FakeTensor(_FakeStorage("0", 4), 3, (2,), (1,)), {"0": bytes(16)}, "reach byte 20 of"),
        (_FakeTensor(_FakeStorage("0", 4), 0, (2, 2), (3, 1)), {"0": bytes(16)}, "reach"),
        (_FakeTensor(_FakeStorage("0", 4), 0, (2,), (-1,)), {"0": bytes(16)}, "bad stride"),
        (_FakeTensor(_FakeStorage("0", 4), -1, (2,), (1,)), {"0": bytes(16)}, "bad storage offset"),
        (_FakeTensor(_FakeStorage("0", 4), 0, (2,), (1,)), {}, "storage data/0 is missing"),
        (_FakeTensor(_FakeStorage("0", 4), 0, (2,), (1,)), {"0": bytes(12)}, "holds 12 bytes, exp"),
        (_FakeTensor("not a storage", 0, (2,), (1,)), {}, "not a storage"),
    ],
)
def test_malformed_tensors(tmp_path, tensor, storages, match):
    path = tmp_path / "malformed.bin"
    _write_torch_zip(path, _torch_like_pickle({"x": tensor}), storages)
    with pytest.raises(TorchBinError, match=match) as err:
        load_torch_bin(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_one_storage_read_as_two_dtypes_is_refused(tmp_path):
    a = _FakeTensor(_FakeStorage("0", 4), 0, (4,), (1,))
    b = _FakeTensor(_FakeStorage("0", 2, torch.DoubleStorage), 0, (2,), (1,))
    path = tmp_path / "aliased.bin"
    _write_torch_zip(path, _torch_like_pickle({"a": a, "b": b}), {"0": bytes(16)})
    with pytest.raises(TorchBinError, match="read as float32"):
        load_torch_bin(path)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ([torch.zeros(2)], "holds a list, not a state dict"),
        ({"model": {"w": torch.zeros(2)}}, "entry 'model' is a dict"),
        ({"w": torch.zeros(2), "epoch": 3}, "entry 'epoch' is a int"),
        ({0: torch.zeros(2)}, "a state dict key is 0, not a name"),
        ({"c": torch.randn(2, dtype=torch.complex64).conj()}, r"metadata \(conj/neg bits\)"),
    ],
)
def test_non_state_dicts_are_refused(tmp_path, obj, match):
    path = tmp_path / "checkpoint.bin"
    torch.save(obj, path)
    with pytest.raises(TorchBinError, match=match):
        load_torch_bin(path)


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.bin"
    _write_torch_zip(path, pickle.dumps({}), {})
    with zipfile.ZipFile(path, "a") as z:  # what torch.jit.save adds beside data.pkl
        z.writestr("archive/constants.pkl", pickle.dumps(()))
        z.writestr("archive/code/__torch__.py", "")
    with pytest.raises(TorchBinError, match="TorchScript"):
        load_torch_bin(path)


def test_corrupt_pickle(tmp_path):
    path = tmp_path / "garbled.bin"
    _write_torch_zip(path, b"\x80\x02}q\x00(X\x01\x00\x00", {})
    with pytest.raises(TorchBinError, match=r"corrupt data\.pkl"):
        load_torch_bin(path)


def test_import_does_not_pull_torch():
    code = "import sys, flaubert_np.torch_bin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
