"""FlauBERT weights: a checkpoint's tensors as float32 NumPy arrays, checked against the config.

safetensors files are memory-mapped, not read: a float32 tensor comes back as a read-only view
of the file (the 200 MB embedding table of FlauBERT base costs no RAM until rows are looked up).
The format is small enough to read by hand, which also lets every malformed file fail with an
error that names it:

    [8 bytes: N, little-endian u64][N bytes: JSON header][tensor bytes]
    header = {"<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
              "__metadata__": {...}}   # offsets count from the first byte after the header

The header is checked before any tensor is touched: at most MAX_HEADER_BYTES, UTF-8 JSON without
repeated names, shapes NumPy can make, offsets that tile the data exactly. Every tensor's name
and shape is then compared with the config before anything is computed from it: float16 and
bfloat16 tensors are upcast to float32 (copies) only once they are known to belong, and the
sinusoidal position table is built only after that. Names are returned bare
("attentions.0.q_lin.weight"), whether the file stores them bare (FlaubertModel) or under
`transformer.` (FlaubertWithLMHeadModel and the other heads, whose own weights are ignored).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flaubert_np.config import FlaubertConfig
from flaubert_np.files import ModelFileError, inside, parse_json, read_json_object

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
TORCH_BIN_NAME = "pytorch_model.bin"
TORCH_BIN_INDEX_NAME = "pytorch_model.bin.index.json"

PREFIX = "transformer."  # base_model_prefix of transformers' Flaubert* models with a head

# safetensors dtype codes -> how their bytes read in NumPy (BF16 as raw bits: NumPy has no bf16).
_ST_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}  # fmt: skip
# The header of flaubert-large's model.safetensors is ~45 KB; the safetensors library allows
# 100 MB, which costs ~1 GB of RAM to parse. 16 MiB leaves ample room.
MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_NDIM = 8
_MAX_ELEMENTS = 1 << 40  # the product of a shape's non-zero dimensions (1 TB of int8)


class WeightsError(ModelFileError):
    """A weight file that cannot be used; the message names the file and the tensor."""


def expected_shapes(config: FlaubertConfig) -> dict[str, tuple[int, ...]]:
    """The tensors a FlauBERT encoder with this config has, by bare name, with their shapes."""
    dim, hidden = config.emb_dim, config.ffn_dim
    shapes = {
        "position_embeddings.weight": (config.max_position_embeddings, dim),
        "embeddings.weight": (config.n_words, dim),
        "layer_norm_emb.weight": (dim,),
        "layer_norm_emb.bias": (dim,),
    }
    if config.n_langs > 1 and config.use_lang_emb:
        shapes["lang_embeddings.weight"] = (config.n_langs, dim)
    for i in range(config.n_layers):
        for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
            shapes[f"attentions.{i}.{lin}.weight"] = (dim, dim)
            shapes[f"attentions.{i}.{lin}.bias"] = (dim,)
        shapes[f"ffns.{i}.lin1.weight"] = (hidden, dim)
        shapes[f"ffns.{i}.lin1.bias"] = (hidden,)
        shapes[f"ffns.{i}.lin2.weight"] = (dim, hidden)
        shapes[f"ffns.{i}.lin2.bias"] = (dim,)
        for norm in ("layer_norm1", "layer_norm2"):
            shapes[f"{norm}.{i}.weight"] = (dim,)
            shapes[f"{norm}.{i}.bias"] = (dim,)
    return shapes


def sinusoidal_position_table(n_pos: int, dim: int) -> np.ndarray:
    """The fixed table transformers fills in for `sinusoidal_embeddings` (XLM's formula).

    [n_pos, dim]: even columns sin(pos / 10000^(2i/dim)), odd columns cos of the same angle.
    Computed in float64 and rounded to float32, as transformers does.
    """
    pos = np.arange(n_pos, dtype=np.float64)[:, None]
    angle = pos / np.power(10000, 2 * (np.arange(dim) // 2) / dim)  # [n_pos, dim]
    table = np.empty((n_pos, dim), dtype=np.float32)
    table[:, 0::2] = np.sin(angle[:, 0::2])
    table[:, 1::2] = np.cos(angle[:, 1::2])
    return table


def read_safetensors(path: str | Path) -> dict[str, tuple[str, np.ndarray]]:
    """Every tensor of a safetensors file, memory-mapped: {name: (dtype code, array)}.

    Arrays are read-only views of the file in its own dtype (BF16 as uint16 bits). The header is
    checked completely (size, UTF-8 JSON, dtypes, shapes, offsets that tile the data exactly,
    file size) before any tensor is returned.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n > size - 8:
            raise WeightsError(
                f"{path}: not a safetensors file (header length {n} does not fit in {size} bytes)"
            )
        if n > MAX_HEADER_BYTES:
            raise WeightsError(
                f"{path}: safetensors header of {n} bytes, more than the {MAX_HEADER_BYTES} allowed"
            )
        raw_header = f.read(n)
    try:
        text = raw_header.decode("utf-8")
    except UnicodeDecodeError:
        raise WeightsError(f"{path}: not a safetensors file (its header is not UTF-8)") from None
    header = parse_json(text, f"{path}: safetensors header", unique_keys=True, error=WeightsError)
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: not a safetensors file (its header is not a JSON object)")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise WeightsError(f"{path}: __metadata__ must be an object of strings")

    data_start = 8 + n
    spans = [(*_tensor_span(path, name, info), name) for name, info in header.items()]
    spans.sort()
    data_size = size - data_start
    position = 0
    for begin, end, _, _, name in spans:
        if begin != position:
            raise WeightsError(f"{path}: tensor '{name}' overlaps another or leaves a gap")
        position = end
    if position > data_size:
        raise WeightsError(
            f"{path}: truncated: its header needs {data_start + position} bytes, "
            f"the file has {size}"
        )
    if position < data_size:
        raise WeightsError(
            f"{path}: {data_size - position} bytes after the last tensor (not a safetensors file?)"
        )

    if size == data_start:  # no tensor data at all: nothing to map
        return {
            name: (code, np.zeros(shape, _ST_DTYPES[code])) for _, _, code, shape, name in spans
        }
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    return {
        name: (
            code,
            mapped[data_start + begin : data_start + end].view(_ST_DTYPES[code]).reshape(shape),
        )
        for begin, end, code, shape, name in spans
    }


def _tensor_span(path: Path, name: str, info: Any) -> tuple[int, int, str, tuple[int, ...]]:
    """(begin, end, dtype code, shape) of one header entry, checked: the offsets span exactly
    the bytes the shape needs, and the shape is one NumPy can make."""
    try:
        code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        ints = [*shape, begin, end]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
            raise TypeError
    except (TypeError, KeyError, ValueError):
        raise WeightsError(f"{path}: tensor '{name}' has a malformed header entry") from None
    if not isinstance(code, str) or code not in _ST_DTYPES:
        raise WeightsError(f"{path}: tensor '{name}' has unsupported dtype {code!r}")
    if len(shape) > _MAX_NDIM or math.prod(max(d, 1) for d in shape) > _MAX_ELEMENTS:
        raise WeightsError(
            f"{path}: tensor '{name}' has shape {reprlib.repr(shape)}: at most {_MAX_NDIM} "
            f"dimensions and {_MAX_ELEMENTS} elements are allowed"
        )
    nbytes = math.prod(shape) * np.dtype(_ST_DTYPES[code]).itemsize
    if end - begin != nbytes:
        raise WeightsError(
            f"{path}: tensor '{name}' spans {end - begin} bytes in the file, but "
            f"{code} {tuple(shape)} needs {nbytes}"
        )
    return begin, end, code, tuple(shape)


def to_float32(code: str, array: np.ndarray, where: str) -> np.ndarray:
    """A float32 array for a tensor stored as `code` (float32 stays the same array, no copy)."""
    if code == "F32":
        return array
    if code == "F16":
        return np.array(array, dtype=np.float32)
    if code == "BF16":  # bfloat16 is the top half of a float32: shift its bits back in place
        return (np.asarray(array).astype(np.uint32) << 16).view(np.float32)
    raise WeightsError(
        f"{where}: dtype {code} is not a float type flaubert-np reads (F32, F16, BF16)"
    )


def load_weights(model_dir: str | Path, config: FlaubertConfig) -> dict[str, np.ndarray]:
    """The encoder's float32 weights from `model_dir`, by bare name, checked against `config`.

    Reads, in transformers' order of preference: model.safetensors,
    model.safetensors.index.json (shards), pytorch_model.bin, pytorch_model.bin.index.json.
    """
    model_dir = Path(model_dir)
    for name in (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, TORCH_BIN_NAME, TORCH_BIN_INDEX_NAME):
        if (model_dir / name).is_file():
            tensors = _read_checkpoint(model_dir / name)
            break
    else:
        raise FileNotFoundError(
            f"{model_dir}: no weights found (looked for {SAFETENSORS_NAME}, "
            f"{SAFETENSORS_INDEX_NAME}, {TORCH_BIN_NAME}, {TORCH_BIN_INDEX_NAME})"
        )
    encoder = _encoder_tensors(tensors)
    source = str(model_dir / name)
    files = {key: file for key, (_, _, file) in encoder.items()}
    shapes = {key: tuple(np.shape(array)) for key, (_, array, _) in encoder.items()}
    # transformers fills the fixed table in when the checkpoint lacks it
    sinusoidal = config.sinusoidal_embeddings and "position_embeddings.weight" not in encoder
    if sinusoidal:
        shapes["position_embeddings.weight"] = (config.max_position_embeddings, config.emb_dim)
    check_shapes(shapes, config, files, source)  # before any conversion or table is made
    if sinusoidal:
        table = sinusoidal_position_table(config.max_position_embeddings, config.emb_dim)
        encoder["position_embeddings.weight"] = ("F32", table, source)
    weights = {
        key: to_float32(code, array, f"{file}: tensor '{key}'")
        for key, (code, array, file) in encoder.items()
    }
    check_weights(weights, config, files, source)
    return weights


def check_weights(
    weights: Mapping[str, np.ndarray],
    config: FlaubertConfig,
    files: Mapping[str, str] | None = None,
    source: str = "weights",
) -> None:
    """Raise WeightsError unless `weights` holds exactly the config's tensors, in their shapes.

    `files` tells which file each tensor came from, for the messages; `source` names the whole.
    """
    check_shapes({key: tuple(np.shape(a)) for key, a in weights.items()}, config, files, source)
    files = files or {}
    for key, array in weights.items():
        if np.asarray(array).dtype != np.float32:
            raise WeightsError(
                f"{files.get(key, source)}: tensor '{key}' is "
                f"{np.asarray(array).dtype}, expected float32"
            )


def check_shapes(
    shapes: Mapping[str, tuple[int, ...]],
    config: FlaubertConfig,
    files: Mapping[str, str] | None = None,
    source: str = "weights",
) -> None:
    """Raise WeightsError unless `shapes` names exactly the config's tensors, in their shapes."""
    files = files or {}
    expected = expected_shapes(config)
    for key, shape in expected.items():
        if key not in shapes:
            raise WeightsError(
                f"{source}: tensor '{key}' is missing (expected shape {shape}, from config.json: "
                f"{_config_summary(config)})"
            )
        if shapes[key] != shape:
            raise WeightsError(
                f"{files.get(key, source)}: tensor '{key}' has shape {shapes[key]}, expected "
                f"{shape} (config.json: {_config_summary(config)})"
            )
    for key in shapes:
        if key not in expected:
            raise WeightsError(
                f"{files.get(key, source)}: unexpected tensor '{key}' with shape "
                f"{shapes[key]}; config.json describes no such tensor "
                f"({_config_summary(config)})"
            )


def _config_summary(config: FlaubertConfig) -> str:
    return (
        f"emb_dim={config.emb_dim}, n_layers={config.n_layers}, n_words={config.n_words}, "
        f"max_position_embeddings={config.max_position_embeddings}, n_langs={config.n_langs}, "
        f"use_lang_emb={str(config.use_lang_emb).lower()}"
    )


def _read_checkpoint(path: Path) -> dict[str, tuple[str, np.ndarray, str]]:
    """{name: (dtype code, array, file)} from one weight file or a sharded index."""
    if path.name.endswith(".index.json"):
        return _read_index(path)
    return _read_file(path)


def _read_file(path: Path) -> dict[str, tuple[str, np.ndarray, str]]:
    """{name: (dtype code, array, file)} from a .safetensors or a pytorch .bin file."""
    if path.suffix == ".safetensors":
        return {
            name: (code, arr, str(path)) for name, (code, arr) in read_safetensors(path).items()
        }
    from flaubert_np.torch_bin import load_torch_bin  # only for the old format

    # torch_bin keeps float16 and float32 and turns bfloat16 into float32.
    codes = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    return {
        name: (codes.get(arr.dtype, str(arr.dtype)), arr, str(path))
        for name, arr in load_torch_bin(path).items()
    }


def _read_index(index: Path) -> dict[str, tuple[str, np.ndarray, str]]:
    """Tensors of a sharded checkpoint: the index maps each tensor name to its shard file."""
    weight_map = read_json_object(index, error=WeightsError).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightsError(
            f"{index}: not a shard index (expected JSON with a "
            "'weight_map' of tensor name -> file name)"
        )
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise WeightsError(f"{index}: shard {shard!r} is not a file name in the model folder")
        path = inside(index.parent, shard, f"shard {shard} listed in {index.name}")
        if not path.is_file():
            raise WeightsError(f"{index}: shard {shard} is missing")
        found = _read_file(path)
        listed = {name for name, file in weight_map.items() if file == shard}
        if missing := sorted(listed - found.keys()):
            raise WeightsError(f"{path}: tensor '{missing[0]}' listed in {index.name} is missing")
        if unlisted := sorted(found.keys() - listed):
            raise WeightsError(f"{path}: tensor '{unlisted[0]}' is not listed in {index.name}")
        tensors.update(found)
    return tensors


def _encoder_tensors(tensors: dict[str, tuple]) -> dict[str, tuple]:
    """The encoder's tensors under their bare names.

    `position_ids` (a buffer some checkpoints carry) is dropped. If any name starts with
    `transformer.`, the encoder is what lies under that prefix and the rest belongs to a head
    (pred_layer, sequence_summary, ...), which the encoder does not use.
    """
    tensors = {k: v for k, v in tensors.items() if k.split(".")[-1] != "position_ids"}
    if any(k.startswith(PREFIX) for k in tensors):
        return {k[len(PREFIX) :]: v for k, v in tensors.items() if k.startswith(PREFIX)}
    return {k: v for k, v in tensors.items() if not k.startswith("pred_layer.")}
