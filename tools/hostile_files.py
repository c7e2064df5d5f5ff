"""Hostile model folders: build every attack of issue 16 as files, and check that flaubert-np
refuses each one cleanly (tests/test_hostile.py runs this under an address-space limit).

    python tools/hostile_files.py build DIR       # DIR/<case>/ model folders + DIR/cases.json
    python tools/hostile_files.py check DIR       # load each case; one JSON line per case
    python tools/hostile_files.py fuzz DIR N SEED # N random mutations of a .bin and a .safetensors

Every case is a copy of the embedded demo model (files hard-linked) with one file replaced or
added, loaded as a user loads it: `SentenceEncoder.from_pretrained(case_dir)`. The expected outcome
is a ModelFileError whose one-line message names the file, and nothing executed: payloads that
would run code `touch` a PWNED file in their case folder. No binary blob is stored: .bin files are
written by `torch_zip` below (torch.save's layout, pickles assembled opcode by opcode), so no torch
is needed.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parents[1] / "flaubert_np" / "models" / "demo"
MARKER = "PWNED"

# ---------------------------------------------------------------------------------------------
# A torch.save writer: pickle protocol 2 assembled by hand, in torch's zip layout


def p_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def p_int(n: int) -> bytes:
    if 0 <= n < 1 << 31:
        return b"J" + struct.pack("<i", n)
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def p_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_storage(key: str, numel: int, cls: str = "FloatStorage") -> bytes:
    """A storage by persistent id, as torch pickles it."""
    pid = p_tuple(p_str("storage"), p_global("torch", cls), p_str(key), p_str("cpu"), p_int(numel))
    return pid + b"Q"


def p_tensor(storage: bytes, offset: int, size: tuple, stride: tuple, hooks: bytes = b"") -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
    empty_hooks = p_global("collections", "OrderedDict") + b")R" + hooks
    args = p_tuple(
        storage, p_int(offset), p_tuple(*map(p_int, size)), p_tuple(*map(p_int, stride)),
        b"\x89", empty_hooks,
    )  # fmt: skip
    return p_global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def p_state_dict(items: dict[str, bytes], tail: bytes = b"") -> bytes:
    """A pickled {name: value} dict; `tail` runs before STOP (with the dict on the stack)."""
    body = b"".join(p_str(k) + v for k, v in items.items())
    return b"\x80\x02}(" + body + b"u" + tail + b"."


def zip_entry(name: str, content: bytes, deflate: bool = False) -> dict:
    """One member, as raw_zip writes it; a case may then edit any field to lie."""
    data = content
    if deflate:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = packer.compress(content) + packer.flush()
    return {"name": name.encode(), "data": data, "size": len(content), "crc": zlib.crc32(content),
            "method": 8 if deflate else 0, "flags": 0 if name.isascii() else 0x800}  # fmt: skip


def raw_zip(path: Path, entries: list[dict]) -> None:
    """A zip written field by field (local headers, central directory, end record), so that a
    case can make any field lie. An entry's "offset_of" points its directory record at another
    entry's local header."""
    out, central, offsets = bytearray(), bytearray(), {}
    for e in entries:
        offsets[e["name"]] = len(out)
        local_name = e.get("local_name", e["name"])  # a lie the central directory does not tell
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, e["flags"], e["method"], 0, 0x21,
                           e["crc"], len(e["data"]), e["size"], len(local_name), 0)  # fmt: skip
        out += local_name + e["data"]
    for e in entries:
        offset = offsets[e.get("offset_of", e["name"])]
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, e["flags"], e["method"],
                               0, 0x21, e["crc"], len(e["data"]), e["size"], len(e["name"]),
                               0, 0, 0, 0, 0, offset) + e["name"]  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                      len(out), 0)  # fmt: skip
    path.write_bytes(bytes(out + central + end))


def torch_zip(
    path: Path, pickle: bytes, storages: dict[str, bytes], prefix: str = "archive",
    compress: tuple[str, ...] = (), edit: Callable[[dict[str, dict]], None] | None = None,
) -> None:  # fmt: skip
    """A zip laid out as torch.save lays it out; members named in `compress` are deflated;
    `edit` may change the entries ({short name: entry}) before they are written."""
    members = {"data.pkl": pickle, "byteorder": b"little"}
    members.update({f"data/{k}": v for k, v in storages.items()})
    members["version"] = b"3\n"
    entries = {
        name: zip_entry(f"{prefix}/{name}" if prefix else name, data, name in compress)
        for name, data in members.items()
    }
    if edit:
        edit(entries)
    raw_zip(path, list(entries.values()))


def state_dict_bin(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """A legitimate pytorch_model.bin of float32 tensors: one storage each."""
    items, storages = {}, {}
    for i, (name, array) in enumerate(tensors.items()):
        array = np.ascontiguousarray(array, dtype="<f4")
        strides = tuple(s // 4 for s in array.strides)
        items[name] = p_tensor(p_storage(str(i), array.size), 0, array.shape, strides)
        storages[str(i)] = array.tobytes()
    torch_zip(path, p_state_dict(items), storages)


def demo_tensors() -> dict[str, np.ndarray]:
    from flaubert_np.weights import read_safetensors

    return {k: np.array(a) for k, (_, a) in read_safetensors(DEMO / "model.safetensors").items()}


# ---------------------------------------------------------------------------------------------
# Files of other kinds


def safetensors_bytes(header: object, data: bytes = b"", raw: bytes | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def sparse_file(path: Path, size: int, head: bytes = b"") -> None:
    """A file of `size` bytes that costs no disk: `head`, then a hole of zeros."""
    path.unlink(missing_ok=True)  # it may be a hard link to the demo model: never write through
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


# ---------------------------------------------------------------------------------------------
# The cases: (name, file the error must name, regex of the message, setup(case folder))

Setup = Callable[[Path], None]
CASES: list[tuple[str, str, str, Setup]] = []


def case(name: str, file: str, match: str) -> Callable[[Setup], Setup]:
    def register(setup: Setup) -> Setup:
        CASES.append((name, file, match, setup))
        return setup

    return register


BIN = "pytorch_model.bin"
ONE = p_tensor(p_storage("0", 4), 0, (4,), (1,))  # a fine 4-float tensor on storage 0
FOUR_FLOATS = {"0": bytes(16)}


def bin_case(
    name: str, match: str, pickle: bytes, storages: dict | None = None, **kw: object
) -> None:
    def setup(folder: Path) -> None:
        (folder / "model.safetensors").unlink()
        torch_zip(folder / BIN, pickle, FOUR_FLOATS if storages is None else storages, **kw)  # type: ignore[arg-type]

    case(name, BIN, match)(setup)


touch = f"touch {MARKER}"
# -- the unpickler: code, BUILD, nesting, memo, views --
bin_case(
    "pickle: os.system by GLOBAL + REDUCE",
    "refused to load global posix.system",
    p_state_dict({"x": p_global("posix", "system") + p_tuple(p_str(touch)) + b"R"}),
)
bin_case(
    "pickle: builtins.eval",
    "refused to load global builtins.eval",
    p_state_dict(
        {
            "x": p_global("builtins", "eval")
            + p_tuple(p_str(f"__import__('os').system('{touch}')"))
            + b"R"
        }
    ),
)
bin_case(
    "pickle: INST", "refused pickle opcode INST", b"\x80\x02(" + p_str(touch) + b"iposix\nsystem\n."
)
bin_case(
    "pickle: OBJ",
    "refused pickle opcode OBJ",
    b"\x80\x02(" + p_str("posix.system") + p_str(touch) + b"o.",
)
bin_case(
    "pickle: STACK_GLOBAL (protocol 4)",
    "refused pickle protocol 4",
    b"\x80\x04\x8c\x05posix\x8c\x06system\x93" + p_tuple(p_str(touch)) + b"R.",
)
bin_case(
    "pickle: NEWOBJ",
    "refused pickle opcode NEWOBJ",
    b"\x80\x02" + p_str("subprocess.Popen") + b")\x81.",
)
bin_case("pickle: EXT1 (copyreg registry)", "refused pickle opcode EXT1", b"\x80\x02\x82\x01.")
bin_case("pickle: text PERSID", "refused pickle opcode PERSID", b"\x80\x02Pstorage\n.")
bin_case(
    "pickle: REDUCE on a string",
    "refused REDUCE",
    p_state_dict({"x": p_str("os.system") + p_tuple(p_str(touch)) + b"R"}),
)
bin_case(
    "pickle: torch function outside the allow-list",
    "refused to load global torch.load",
    p_state_dict({"x": p_global("torch", "load") + p_tuple(p_str("x")) + b"R"}),
)
bin_case(
    "pickle: BUILD swaps a storage's data (out-of-bounds read)",
    "refused BUILD",
    p_state_dict(
        {
            "a": p_tensor(p_storage("0", 4) + b"q\x07", 0, (4,), (1,)),
            "b": b"h\x07}" + p_str("data") + p_str("x") + b"sb",
        }
    ),
)
bin_case(
    "pickle: BUILD sets items on the state dict",
    "refused BUILD",
    p_state_dict({"a": ONE}, tail=b"}" + p_str("items") + b"]sb"),
)
bin_case(
    "pickle: BUILD on a tensor",
    "refused BUILD",
    p_state_dict({"a": ONE + b"}" + p_str("_metadata") + b"}sb"}),
)
bin_case(
    "pickle: 200,000-deep tuple as a dict key",
    "nested deeper than 16",
    b"\x80\x02}" + b")" + b"\x85" * 200_000 + ONE + b"s.",
)
bin_case(
    "pickle: 50,000-deep list",
    "nested deeper than 16",
    b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b".",
)
bin_case(
    "pickle: memo index 0x08000000",
    "memo index 134217728 out of range",
    b"\x80\x02}r\x00\x00\x00\x08.",
)
bin_case(
    "pickle: 100,000 values on the stack",
    "builds more values than a state dict holds",
    b"\x80\x02" + b"N" * 100_000 + b".",
)
bin_case(
    "pickle: 300,000 dicts",
    "builds more values than a state dict holds",
    b"\x80\x02}" + (b"(" + (p_str("k") + b"}") * 30_000 + b"u") * 10 + b".",
)
bin_case("pickle: memo read before written", r"memo 5 is empty", b"\x80\x02h\x05.")
bin_case(
    "pickle: a dict put inside itself",
    "a container put inside itself",
    b"\x80\x02}q\x00" + p_str("x") + b"h\x00s.",
)
bin_case(
    "pickle: stride-0 view, 3 x 16384^2 floats from 64 bytes",
    "stride 0 on a dimension",
    p_state_dict({"x": p_tensor(p_storage("0", 16), 0, (3, 16384, 16384), (0, 0, 0))}),
    {"0": bytes(64)},
)
bin_case(
    "pickle: overlapping strides, 16384^2 floats from 128 KB",
    "overlapping strides",
    p_state_dict({"x": p_tensor(p_storage("0", 32767), 0, (16384, 16384), (1, 1))}),
    {"0": bytes(4 * 32767)},
)
bin_case(
    "pickle: offset past the storage",
    "reach byte 4000016 of a storage of 16 bytes",
    p_state_dict({"x": p_tensor(p_storage("0", 4), 1_000_000, (4,), (1,))}),
)
bin_case(
    "pickle: untyped storage read as a wider dtype past its end",
    "reach byte 24 of a storage of 16 bytes",
    p_state_dict(
        {
            "x": p_global("torch._utils", "_rebuild_tensor_v3")
            + p_tuple(
                p_storage("0", 16, "UntypedStorage").replace(
                    b"ctorch\nUntypedStorage", b"ctorch.storage\nUntypedStorage"
                ),
                p_int(0),
                p_tuple(p_int(3)),
                p_tuple(p_int(1)),
                b"\x89",
                p_global("collections", "OrderedDict") + b")R",
                p_global("torch", "float64"),
            )
            + b"R"
        }
    ),
)
bin_case(
    "pickle: storage element count beyond its bytes",
    "holds 16 bytes, expected",
    p_state_dict({"x": p_tensor(p_storage("0", 1 << 40), 0, (4,), (1,))}),
)
bin_case(
    "pickle: a tensor built on a tensor",
    "not a storage",
    p_state_dict({"x": p_tensor(ONE, 0, (4,), (1,))}),
)
bin_case(
    "pickle: backward hooks",
    "no backward hooks",
    p_state_dict(
        {"x": p_tensor(p_storage("0", 4), 0, (4,), (1,), hooks=p_str("h") + p_str("x") + b"s")}
    ),
)
bin_case(
    "pickle: OrderedDict called with items",
    "only ever built empty",
    p_state_dict({"x": p_global("collections", "OrderedDict") + p_tuple(ONE) + b"R"}),
)
bin_case(
    "pickle: nested state dict",
    "entry 'model' is a dict, not a tensor",
    p_state_dict({"model": b"}" + p_str("w") + ONE + b"s"}),
)
bin_case(
    "pickle: non-string key",
    "a state dict key is 7, not a name",
    b"\x80\x02}" + p_int(7) + ONE + b"s.",
)
bin_case("pickle: bytes after STOP", "bytes after its STOP", p_state_dict({"x": ONE}) + b"junk")
bin_case("pickle: truncated", "corrupt data.pkl", p_state_dict({"x": ONE})[:-20])
bin_case("pickle: stack underflow", "stack underflow", b"\x80\x02s.")
# -- the zip --


def _set(member: str, **fields: object) -> Callable[[dict[str, dict]], None]:
    return lambda entries: entries[member].update(fields)


def _add(member: str, entry: dict) -> Callable[[dict[str, dict]], None]:
    return lambda entries: entries.update({member: entry})


def _bomb(megabytes: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return b"".join(packer.compress(bytes(1 << 20)) for _ in range(megabytes)) + packer.flush()


SIMPLE = p_state_dict({"x": ONE})
bin_case(
    "zip: deflated storage declaring 1 GiB",
    "compressed entries would expand",
    SIMPLE,
    compress=("data/0",),
    edit=_set("data/0", size=1 << 30),
)
bin_case(
    "zip: deflate stream of 64 MiB declared as 16 bytes",
    r"cannot read .*data/0",
    SIMPLE,
    compress=("data/0",),
    edit=lambda entries: entries["data/0"].update(data=_bomb(64)),
)
bin_case(
    "zip: corrupt deflate stream",
    r"cannot read .*data/0",
    SIMPLE,
    compress=("data/0",),
    edit=_set("data/0", data=b"\xff" * 40),
)
bin_case(
    "zip: deflated data.pkl declaring 1 GiB",
    "compressed entries would expand",
    SIMPLE,
    compress=("data.pkl",),
    edit=_set("data.pkl", size=1 << 30),
)
bin_case(
    "zip: data.pkl of 100 MB, stored",
    "data.pkl holds 100000000 bytes, more than",
    SIMPLE,
    edit=_set("data.pkl", data=b"\x80\x02}." + bytes(100_000_000 - 4), size=100_000_000),
)
bin_case(
    "zip: data.pkl twice",
    "'archive/data.pkl' appears twice",
    SIMPLE,
    edit=_add("second", zip_entry("archive/data.pkl", b"\x80\x02}.")),
)
bin_case(
    "zip: unexpected entry",
    "unexpected zip entry 'archive/evil.py'",
    SIMPLE,
    edit=_add("evil", zip_entry("archive/evil.py", b"import os")),
)
bin_case(
    "zip: entry outside the archive folder",
    "unexpected zip entry 'other/data/0'",
    SIMPLE,
    edit=_add("other", zip_entry("other/data/0", bytes(16))),
)
bin_case(
    "zip: central directory offset redirected to another storage",
    "does not match the central directory",
    p_state_dict({"x": ONE, "y": p_tensor(p_storage("1", 4), 0, (4,), (1,))}),
    {"0": bytes(16), "1": b"\x01" * 16},
    edit=_set("data/1", offset_of=b"archive/data/0"),
)
bin_case("zip: entry name not UTF-8 (flagged UTF-8)", "name is not UTF-8", SIMPLE,
         edit=_add("bad", {**zip_entry("archive/data/x", b""), "name": b"archive/data/\xff",
                           "flags": 0x800}))  # fmt: skip
bin_case(
    "zip: entry name not UTF-8 (not flagged)",
    "name is not UTF-8",
    SIMPLE,
    edit=_add("bad", {**zip_entry("archive/data/x", b""), "name": b"archive/data/\xe9"}),
)
bin_case("zip: encrypted entry", "is encrypted", SIMPLE, edit=_set("data/0", flags=1))
bin_case(
    "zip: local header names another entry",
    "does not match the central directory",
    SIMPLE,
    edit=_set("byteorder", local_name=b"archive/data/0"),
)


@case("zip: a legacy pickle file (never unpickled)", BIN, r"torch 1\.6")
def _legacy(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    payload = b"\x80\x02cposix\nsystem\n(X" + struct.pack("<I", len(touch)) + touch.encode()
    (folder / BIN).write_bytes(payload + b"tR.")


@case("zip: truncated", BIN, "truncated or corrupt zip")
def _truncated(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    torch_zip(folder / BIN, p_state_dict({"x": ONE}), FOUR_FLOATS)
    data = (folder / BIN).read_bytes()
    (folder / BIN).write_bytes(data[: len(data) - 30])


# -- safetensors --
ST = "model.safetensors"


def st_case(name: str, match: str, content: Callable[[], bytes] | bytes) -> None:
    def setup(folder: Path) -> None:
        (folder / ST).unlink()
        (folder / ST).write_bytes(content() if callable(content) else content)

    case(name, ST, match)(setup)


def _f32(shape: list, begin: int = 0) -> dict:
    return {
        "dtype": "F32",
        "shape": shape,
        "data_offsets": [begin, begin + 4 * int(np.prod(shape))],
    }


st_case(
    "safetensors: 200,000-deep JSON header",
    "nested deeper than the 32 levels",
    safetensors_bytes(None, raw=deep_json(200_000).encode()),
)
st_case(
    "safetensors: shape [0, 2**70]",
    "at most 8 dimensions and 1099511627776 elements",
    safetensors_bytes({"x": {"dtype": "F32", "shape": [0, 2**70], "data_offsets": [0, 0]}}),
)
st_case(
    "safetensors: negative dimension",
    "malformed header entry",
    safetensors_bytes({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}),
)
st_case(
    "safetensors: dtype is a list",
    r"unsupported dtype \['F32'\]",
    safetensors_bytes({"x": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, bytes(4)),
)
st_case(
    "safetensors: header entry is a string",
    "malformed header entry",
    safetensors_bytes({"x": "F32"}),
)
st_case(
    "safetensors: __metadata__ of numbers",
    "__metadata__ must be an object of strings",
    safetensors_bytes({"__metadata__": {"format": 1}}),
)
st_case(
    "safetensors: __metadata__ a list",
    "__metadata__ must be an object of strings",
    safetensors_bytes({"__metadata__": ["pt"]}),
)
st_case(
    "safetensors: a name twice",
    "key 'x' appears twice",
    safetensors_bytes(
        None,
        raw=b'{"x": '
        + json.dumps(_f32([1])).encode()
        + b', "x": '
        + json.dumps(_f32([1])).encode()
        + b"}",
        data=bytes(4),
    ),
)
st_case(
    "safetensors: two tensors on the same bytes",
    "overlaps another",
    safetensors_bytes({"x": _f32([1]), "y": _f32([1])}, bytes(4)),
)
st_case(
    "safetensors: header not UTF-8",
    "header is not UTF-8",
    safetensors_bytes(None, raw=b'{"\xff": 1}'),
)
st_case("safetensors: truncated", "truncated", safetensors_bytes({"x": _f32([4])}, bytes(8)))


@case("safetensors: 99 MB header", ST, "more than the 16777216 allowed")
def _huge_header(folder: Path) -> None:
    n = 99_000_000
    sparse_file(folder / ST, 8 + n, struct.pack("<Q", n) + b"{")


@case("safetensors: unexpected float16 tensor of 400 MB (refused before conversion)", ST,
      "unexpected tensor 'extra.weight'")  # fmt: skip
def _unexpected_f16(folder: Path) -> None:
    # Converting it to float32 would take 800 MB more than the 1 GiB the check runs under.
    tensors = demo_tensors()
    header: dict = {}
    offset = 0
    for name, array in tensors.items():
        header[name] = _f32(list(array.shape), offset)
        offset += array.nbytes
    n_extra = 200 * 1024 * 1024
    header["extra.weight"] = {"dtype": "F16", "shape": [n_extra],
                              "data_offsets": [offset, offset + 2 * n_extra]}  # fmt: skip
    head = safetensors_bytes(header, b"".join(a.astype("<f4").tobytes() for a in tensors.values()))
    (folder / ST).unlink()
    sparse_file(folder / ST, len(head) + 2 * n_extra, head)


# -- config.json --
def json_case(name: str, file: str, match: str, content: object, raw: bytes | None = None) -> None:
    def setup(folder: Path) -> None:
        path = folder / file
        if path.exists():
            path.unlink()  # a hard link: replace, never write through
        if raw is not None:
            path.write_bytes(raw)
        else:
            value = content(json.loads((DEMO / file).read_text())) if callable(content) else content
            path.write_text(json.dumps(value))

    case(name, file, match)(setup)


def _with(**changes: object) -> Callable[[dict], dict]:
    return lambda config: {**config, **changes}


json_case(
    "config: n_layers 10**9",
    "config.json",
    "n_layers must be between 1 and 256",
    _with(n_layers=10**9),
)
json_case(
    "config: sinusoidal table of 10**6 positions",
    "config.json",
    "max_position_embeddings must be between 1 and 16384",
    _with(sinusoidal_embeddings=True, max_position_embeddings=10**6),
)
json_case(
    "config: emb_dim 10**7",
    "config.json",
    "emb_dim must be between 1 and 16384",
    _with(emb_dim=10**7, n_heads=1),
)
json_case(
    "config: vocab of 10**9 words",
    "config.json",
    "n_words must be between 1 and",
    _with(vocab_size=10**9),
)
json_case(
    "config: 200,000-deep JSON",
    "config.json",
    "nested deeper than the 32 levels",
    None,
    raw=deep_json(200_000).encode(),
)
json_case("config: not UTF-8", "config.json", "not UTF-8", None, raw=b'{"model_type": "\xff"}')
json_case("config: a list", "config.json", "expected a JSON object", [1, 2])


@case("config: 17 MB file", "config.json", "more than the 16777216 allowed")
def _big_config(folder: Path) -> None:
    (folder / "config.json").unlink()
    sparse_file(folder / "config.json", 17 * 1024 * 1024, b"{")


# -- tokenizer files --
json_case("vocab.json: not UTF-8", "vocab.json", "not UTF-8", None, raw=b'{"\xc3(": 1}')
json_case(
    "vocab.json: 200,000-deep JSON",
    "vocab.json",
    "nested deeper than the 32 levels",
    None,
    raw=b'{"a": ' + deep_json(200_000).encode() + b"}",
)
json_case(
    "vocab.json: ids are strings", "vocab.json", "expected an object of token -> int id", {"a": "1"}
)
json_case("merges.txt: not UTF-8", "merges.txt", "not UTF-8", None, raw=b"a b\n\xff\xfe c\n")
json_case("tokenizer_config.json: a list", "tokenizer_config.json", "expected a JSON object", ["x"])
json_case(
    "special_tokens_map.json: 200,000-deep",
    "special_tokens_map.json",
    "nested deeper than the 32 levels",
    None,
    raw=deep_json(200_000).encode(),
)
# -- sentence-transformers files --
json_case(
    "modules.json: 200,000-deep JSON",
    "modules.json",
    "nested deeper than the 32 levels",
    None,
    raw=deep_json(200_000).encode(),
)
json_case("modules.json: an object", "modules.json", "expected a list of modules", {"a": 1})
json_case(
    "config_sentence_transformers.json: __version__ a list",
    "config_sentence_transformers.json",
    "__version__ must be an object",
    {"__version__": [1]},
)
json_case(
    "config_sentence_transformers.json: prompts a list",
    "config_sentence_transformers.json",
    "prompts must be an object",
    {"prompts": ["q"]},
)
json_case(
    "sentence_bert_config.json: max_seq_length a string",
    "sentence_bert_config.json",
    "max_seq_length must be an integer",
    {"max_seq_length": "long"},
)
json_case(
    "sentence_bert_config.json: a list", "sentence_bert_config.json", "expected a JSON object", []
)
json_case(
    "1_Pooling/config.json: 200,000-deep JSON",
    "1_Pooling/config.json",
    "nested deeper than the 32 levels",
    None,
    raw=deep_json(200_000).encode(),
)
json_case(
    "1_Pooling/config.json: pooling_mode an object",
    "1_Pooling/config.json",
    "pooling mode must be a name",
    {"embedding_dimension": 128, "pooling_mode": {"a": 1}},
)

DENSE_MODULE = {"idx": 2, "name": "2", "path": "2_Dense",
                "type": "sentence_transformers.models.Dense"}  # fmt: skip


def dense_case(name: str, match: str, config: object, file: str = "2_Dense/config.json") -> None:
    def setup(folder: Path) -> None:
        modules = [*json.loads((DEMO / "modules.json").read_text()), DENSE_MODULE]
        (folder / "modules.json").unlink()
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "2_Dense").mkdir()
        (folder / "2_Dense" / "config.json").write_text(json.dumps(config))
        weights = {"linear.weight": _f32([4, 128]), "linear.bias": _f32([4], 4 * 4 * 128)}
        (folder / "2_Dense" / ST).write_bytes(safetensors_bytes(weights, bytes(4 * 4 * 129)))

    case(name, file, match)(setup)


dense_case("Dense config: a list", "expected a JSON object", [128, 4])
dense_case(
    "Dense config: in_features a string",
    "in_features must be an integer",
    {"in_features": "128", "out_features": 4},
)
dense_case(
    "Dense config: activation an object",
    "activation_function must be a string",
    {"in_features": 128, "out_features": 4, "activation_function": {"x": 1}},
)
dense_case(
    "Dense config: no out_features",
    "in_features and out_features are required",
    {"in_features": 128},
)


# -- links out of the model folder --
@case("module folder: a symlink out of the model folder", "1_Pooling", "outside the model folder")
def _linked_module(folder: Path) -> None:
    outside = folder.parent / "outside-pooling"
    outside.mkdir(exist_ok=True)
    shutil.copy(DEMO / "1_Pooling" / "config.json", outside / "config.json")
    shutil.rmtree(folder / "1_Pooling")
    (folder / "1_Pooling").symlink_to(outside)


@case("shard: a symlink out of the model folder", "model-00001-of-00001.safetensors",
      "outside the model folder")  # fmt: skip
def _linked_shard(folder: Path) -> None:
    outside = folder.parent / "outside-shard.safetensors"
    if not outside.exists():
        shutil.copy(DEMO / ST, outside)
    (folder / ST).unlink()
    shard = "model-00001-of-00001.safetensors"
    names = demo_tensors()
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, shard)}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / shard).symlink_to(outside)


@case(
    "shard index: 200,000-deep JSON",
    "model.safetensors.index.json",
    "nested deeper than the 32 levels",
)
def _deep_index(folder: Path) -> None:
    (folder / ST).unlink()
    (folder / "model.safetensors.index.json").write_text(deep_json(200_000))


# ---------------------------------------------------------------------------------------------
# build / check / fuzz


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")[:80]


def build(root: Path) -> list[dict]:
    """Write every case's model folder under `root`; return [{name, dir, file, match}]."""
    root.mkdir(parents=True, exist_ok=True)
    before = {p: p.read_bytes() for p in DEMO.rglob("*") if p.is_file()}
    table = []
    for name, file, match, setup in CASES:
        folder = root / slug(name)
        shutil.copytree(DEMO, folder, copy_function=os.link)
        setup(folder)
        table.append({"name": name, "dir": str(folder), "file": file, "match": match})
    if any(p.read_bytes() != data for p, data in before.items()):  # cases hard-link its files
        raise RuntimeError(f"a case wrote through a hard link into {DEMO}")
    (root / "cases.json").write_text(json.dumps(table, indent=1))
    return table


def limit_memory(megabytes: int) -> None:
    """Cap this process's address space: a blow-up becomes a MemoryError, not a dead machine."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def check(root: Path) -> None:
    """Load every case of `root`; print one JSON line per case (after a START line, so that a
    crash names its case)."""
    from flaubert_np.files import ModelFileError
    from flaubert_np.sentence import SentenceEncoder

    for entry in json.loads((root / "cases.json").read_text()):
        print(json.dumps({"start": entry["name"]}), flush=True)
        result: dict = {"name": entry["name"]}
        try:
            SentenceEncoder.from_pretrained(entry["dir"])
            result["outcome"] = "loaded"
        except ModelFileError as e:
            result.update(outcome="ModelFileError", type=type(e).__name__, message=str(e))
        except BaseException as e:  # exactly what the test must see
            result.update(outcome="other", type=type(e).__name__, message=str(e)[:500])
        result["executed"] = (Path(entry["dir"]) / MARKER).exists() or Path(MARKER).exists()
        print(json.dumps(result), flush=True)


def fuzz(root: Path, count: int, seed: int) -> None:
    """`count` random mutations each of a small .bin and a small .safetensors file. Prints a JSON
    summary: counts per outcome and every case that was neither a ModelFileError nor a correct
    load. The .bin files that loaded are kept in root/loaded/ for torch to read too."""
    from safetensors.numpy import load as st_load
    from safetensors.numpy import save as st_save

    from flaubert_np.files import ModelFileError
    from flaubert_np.torch_bin import load_torch_bin
    from flaubert_np.weights import read_safetensors

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        "a.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a.bias": np.ones(4, dtype=np.float16),
        "b": np.arange(6, dtype=np.int64),
    }
    originals = {".safetensors": st_save(arrays)}
    state_dict_bin(root / "base.bin", {k: v.astype(np.float32) for k, v in arrays.items()})
    originals[".bin"] = (root / "base.bin").read_bytes()
    outcomes: dict[str, int] = {}
    bad: list[dict] = []
    start = time.perf_counter()
    for i in range(count):
        for suffix, original in originals.items():
            data = _mutate(rng, original, suffix)
            path = root / f"fuzz{suffix}"
            path.write_bytes(data)
            try:
                if suffix == ".bin":
                    got = load_torch_bin(path)
                    ok = all(isinstance(k, str) and isinstance(v, np.ndarray)
                             for k, v in got.items())  # fmt: skip
                else:
                    got = {k: a for k, (_, a) in read_safetensors(path).items()}
                    ok = _same_as_safetensors(got, data, st_load)
                outcome = "loaded" if ok else "wrong load"
                if ok and suffix == ".bin":  # kept for an oracle to compare (torch.load)
                    (root / "loaded").mkdir(exist_ok=True)
                    path.rename(root / "loaded" / f"{i}.bin")
            except ModelFileError:
                outcome = "ModelFileError"
            except BaseException as e:  # the invariant's "anything else"
                outcome = f"{type(e).__module__}.{type(e).__name__}: {str(e)[:200]}"
            kind = f"{suffix} {outcome.split(':')[0]}"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            if outcome not in ("loaded", "ModelFileError"):
                bad.append({"case": i, "file": suffix, "outcome": outcome})
    seconds = round(time.perf_counter() - start, 1)
    print(json.dumps({"outcomes": outcomes, "bad": bad[:20], "seconds": seconds}))


def _same_as_safetensors(got: dict, data: bytes, st_load: Callable) -> bool:
    """What we read equals what the safetensors library reads (when it reads the file at all)."""
    try:
        theirs = st_load(data)
    except Exception:  # the library refuses more (e.g. unaligned offsets)
        return True
    return set(got) == set(theirs) and all(
        got[k].shape == theirs[k].shape and got[k].tobytes() == theirs[k].tobytes() for k in got
    )


def _mutate(rng: random.Random, data: bytes, suffix: str) -> bytes:
    """1-4 edits: overwrite bytes (mostly where the structure is), insert, delete or truncate."""
    out = bytearray(data)
    if suffix == ".safetensors":
        hot = 8 + int.from_bytes(data[:8], "little")  # the length and the JSON header
    else:
        hot = len(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        at = rng.randrange(min(hot, len(out)) or 1)
        if kind < 0.7 and out:
            out[at % len(out)] = rng.choice([rng.randrange(256), 0, 0xFF, 0x7F, ord("9")])
        elif kind < 0.8:
            out[at:at] = bytes([rng.randrange(256)])
        elif kind < 0.9:
            del out[at : at + rng.randint(1, 8)]
        else:
            del out[rng.randrange(len(out) or 1) :]
    return bytes(out)


def main(argv: list[str]) -> None:
    command, root = argv[0], Path(argv[1])
    if "--limit-mb" in argv:
        limit_memory(int(argv[argv.index("--limit-mb") + 1]))
    if command == "build":
        build(root)
    elif command == "check":
        os.chdir(root)  # a payload's relative `touch PWNED` would land here
        check(root)
    elif command == "fuzz":
        fuzz(root, int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
