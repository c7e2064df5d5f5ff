"""Read a PyTorch `pytorch_model.bin` state dict with NumPy: no torch, and no code from the file.

torch.save (torch >= 1.6) writes a zip archive, every member stored uncompressed:

    <archive>/data.pkl       the pickled state dict; each tensor is pickled as
                             torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
                             where `storage` is a persistent id
                             ("storage", torch.FloatStorage, key, location, numel)
    <archive>/data/<key>     the raw bytes of storage <key>
    <archive>/byteorder      "little" or "big" (absent in older files: little)
    <archive>/version, .format_version, .storage_alignment, .data/serialization_id

Security: unpickling calls whatever function the pickle names, so a .bin can run any code on
`torch.load(..., weights_only=False)` or `pickle.load`. `_StateDictUnpickler` resolves only the
few globals a state dict needs, each to a function of this module that builds a NumPy array
(`collections.OrderedDict` is the one real class it hands out); any other global (os.system,
builtins.eval, functools.partial, ...) stops the load before anything from the file runs.

Memory: the file is memory-mapped copy-on-write, so loading copies nothing; pages are read when
first used, and writing to an array changes that array only, never the file. A tensor that spans
its whole storage is a view of the map: tensors torch saved on one storage (tied weights) share
memory here too, as after torch.load. Other views (transposed, offset, strided) are copied out.
Every array is writable and C-contiguous, in native byte order. dtypes are kept (float16 stays
float16, the weight loader upcasts) except bfloat16, which NumPy lacks: it becomes float32,
exactly (a bfloat16 is the top half of a float32). The file must not be truncated while its
arrays are in use (like any memory map; the Hugging Face cache never rewrites a file in place).

Refused, each with a one-line error: the pre-1.6 format (a bare pickle or a tar archive, never
unpickled), TorchScript archives, anything but a flat {name: tensor} dict. Stored members are
mapped without a CRC check, as torch reads them; compressed ones (a re-zipped file) are read and
CRC-checked by zipfile.
"""

from __future__ import annotations

import collections
import io
import mmap
import pickle
import reprlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class TorchBinError(ValueError):
    """The file is not a PyTorch state dict that can be read safely."""


class UnsafePickleError(TorchBinError, pickle.UnpicklingError):
    """The pickle names a global (a function or class) outside the state-dict allowlist."""


# torch dtype name -> little-endian NumPy dtype of its bytes (bfloat16: raw uint16 bits)
_DTYPES = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "complex128": np.dtype("<c16"),
    "complex64": np.dtype("<c8"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "uint32": np.dtype("<u4"),
    "uint16": np.dtype("<u2"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}

# The legacy typed storage classes torch pickles for each dtype (torch.FloatStorage, ...).
_STORAGE_CLASSES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# torch.<name> globals that _rebuild_tensor_v3 receives as its dtype argument.
_DTYPE_GLOBALS = {
    **{name: name for name in _DTYPES},
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}

_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature ... name length, extra length
_ZIP_LOCAL_SIGNATURE = 0x04034B50  # b"PK\x03\x04"


@dataclass(frozen=True)
class _StorageType:
    """Stands in for torch.FloatStorage & co. (dtype None: torch.UntypedStorage, raw bytes)."""

    dtype: str | None


@dataclass(frozen=True)
class _TorchDType:
    """Stands in for torch.float32 & co."""

    name: str


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    data: np.ndarray  # [numel] in the file's byte order, usually a view of the memory map
    byteorder: str  # the file's: "<" or ">"


def _tensor_from_storage(
    storage: _Storage, dtype: str, offset: object, size: object, stride: object, path: Path
) -> np.ndarray:
    """The tensor torch describes on a storage: the storage itself if the tensor spans all of it
    contiguously, else a copy of the strided view; native byte order, C-contiguous, writable."""
    # [numel] storage -> [*size] tensor
    where = f"{path}: tensor on storage data/{storage.key}"
    if type(offset) is not int or offset < 0:
        raise TorchBinError(f"{where}: bad storage offset {reprlib.repr(offset)}")
    for name, value in (("size", size), ("stride", stride)):
        if not isinstance(value, tuple) or not all(type(n) is int and n >= 0 for n in value):
            raise TorchBinError(f"{where}: bad {name} {reprlib.repr(value)}")
    if len(size) != len(stride):
        raise TorchBinError(f"{where}: size {size} and stride {stride} differ in length")
    flat = storage.data
    if dtype != storage.dtype:  # _rebuild_tensor_v3 reads raw bytes as its own dtype
        if flat.nbytes % _DTYPES[dtype].itemsize:
            raise TorchBinError(f"{where}: {flat.nbytes} bytes do not make {dtype} elements")
        flat = flat.view(_DTYPES[dtype].newbyteorder(storage.byteorder))
    if 0 in size:
        view = np.empty(size, dtype=flat.dtype)
    else:
        # Checked before as_strided, which would otherwise read past the storage.
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= flat.size:
            raise TorchBinError(
                f"{where}: size {size} stride {stride} offset {offset} reach element {last} "
                f"of a storage of {flat.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=size,
            strides=tuple(s * flat.itemsize for s in stride),
            writeable=False,
        )
    if dtype == "bfloat16":  # the bits of a bfloat16 are the high 16 bits of a float32
        return (view.astype(np.uint32, order="C") << 16).view(np.float32)
    if view.flags.c_contiguous and view.size == flat.size and flat.dtype.isnative:
        return flat.reshape(size)  # the whole storage, shared as torch.load shares it
    return view.astype(flat.dtype.newbyteorder("="), order="C")


class _StateDictUnpickler(pickle.Unpickler):
    """An Unpickler that builds tensors from the archive and refuses every other global."""

    def __init__(self, data: bytes, path: Path, archive: _Archive):
        super().__init__(io.BytesIO(data))
        self._path = path
        self._archive = archive
        self._storages: dict[str, _Storage] = {}
        self._functions = {
            ("torch._utils", "_rebuild_tensor"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("collections", "OrderedDict"): collections.OrderedDict,
        }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._functions:
            return self._functions[(module, name)]
        if module in ("torch", "torch.cuda") and name in _STORAGE_CLASSES:
            return _StorageType(_STORAGE_CLASSES[name])
        if module in ("torch", "torch.storage") and name == "UntypedStorage":
            return _StorageType(None)
        if module == "torch" and name in _DTYPE_GLOBALS:
            return _TorchDType(_DTYPE_GLOBALS[name])
        raise UnsafePickleError(
            f"{self._path}: refused to load global {module}.{name}: a state dict holds only "
            "tensors, and flaubert-np never runs code from a weights file"
        )

    def persistent_load(self, pid: object) -> _Storage:
        # ("storage", storage type, key, location, numel); location ("cpu", "cuda:0") is ignored
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchBinError(f"{self._path}: unknown persistent id {reprlib.repr(pid)}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise TorchBinError(f"{self._path}: bad storage reference {reprlib.repr(pid)}")
        dtype = storage_type.dtype or "uint8"
        if key not in self._storages:
            data = self._archive.storage(key, _DTYPES[dtype], numel)
            self._storages[key] = _Storage(key, dtype, data, self._archive.byteorder)
        storage = self._storages[key]
        if storage.dtype != dtype or storage.data.size != numel:
            raise TorchBinError(
                f"{self._path}: storage data/{key} is read as {storage.dtype}[{storage.data.size}]"
                f" and as {dtype}[{numel}]"
            )
        return storage

    def _check_storage(self, storage: object) -> _Storage:
        if not isinstance(storage, _Storage):
            raise TorchBinError(
                f"{self._path}: a tensor is built from {reprlib.repr(storage)}, not a storage"
            )
        return storage

    def _rebuild_tensor(self, storage, offset, size, stride) -> np.ndarray:
        storage = self._check_storage(storage)
        return _tensor_from_storage(storage, storage.dtype, offset, size, stride, self._path)

    def _rebuild_tensor_v2(
        self, storage, offset, size, stride, requires_grad, backward_hooks, metadata=None
    ) -> np.ndarray:
        if metadata:
            raise TorchBinError(f"{self._path}: unsupported tensor metadata (conj/neg bits)")
        return self._rebuild_tensor(storage, offset, size, stride)

    def _rebuild_tensor_v3(
        self,
        storage,
        offset,
        size,
        stride,
        requires_grad,
        backward_hooks,
        dtype,
        metadata=None,
    ) -> np.ndarray:
        # torch uses v3 for dtypes without a legacy storage class (uint16, ...): an untyped
        # storage of bytes plus the dtype to read them as.
        storage = self._check_storage(storage)
        if not isinstance(dtype, _TorchDType):
            raise TorchBinError(f"{self._path}: unsupported tensor dtype {reprlib.repr(dtype)}")
        if metadata:
            raise TorchBinError(f"{self._path}: unsupported tensor metadata (conj/neg bits)")
        if storage.dtype != "uint8":
            raise TorchBinError(f"{self._path}: {dtype.name} tensor on a {storage.dtype} storage")
        return _tensor_from_storage(storage, dtype.name, offset, size, stride, self._path)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks) -> np.ndarray:
        # an nn.Parameter saved directly (not through state_dict()): keep its tensor
        if not isinstance(data, np.ndarray):
            raise TorchBinError(
                f"{self._path}: a parameter wraps {reprlib.repr(data)}, not a tensor"
            )
        return data


class _Archive:
    """The zip archive torch.save writes."""

    def __init__(self, path: Path):
        self.path = path
        self._check_is_zip()
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise TorchBinError(f"{path}: corrupt zip archive ({e})") from e
        try:
            self.byteorder = self._check_layout()
        except TorchBinError:
            self._zip.close()
            raise
        with open(path, "rb") as f:
            # Copy-on-write: arrays viewing the map are writable, and the file is never written.
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)

    def close(self) -> None:
        # The map itself closes when the last array viewing it is gone.
        self._zip.close()

    def _check_layout(self) -> str:
        """Check the members torch.save writes; return the storages' byte order, "<" or ">"."""
        names = self._zip.namelist()
        # torch names the archive's top folder after the file; it reads the first member's.
        self._prefix = names[0].split("/")[0] if names and "/" in names[0] else ""
        if self._member("constants.pkl") in names:
            raise TorchBinError(f"{self.path}: a TorchScript archive, not a torch.save state dict")
        if self._member("data.pkl") not in names:
            raise TorchBinError(f"{self.path}: a zip without data.pkl, not a torch.save file")
        byteorder = "little"  # torch's default for files written before the record existed
        if self._member("byteorder") in names:
            byteorder = self.read("byteorder").decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise TorchBinError(f"{self.path}: unknown byteorder {reprlib.repr(byteorder)}")
        return "<" if byteorder == "little" else ">"

    def _check_is_zip(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(512)
        if zipfile.is_zipfile(self.path):
            return
        if head.startswith(b"PK\x03\x04"):
            raise TorchBinError(f"{self.path}: truncated or corrupt zip archive")
        if head.startswith(b"\x80") or head[257:262] == b"ustar":
            raise TorchBinError(
                f"{self.path}: not in the zip format of torch.save since torch 1.6 (a legacy "
                "torch file or a plain pickle, which flaubert-np never unpickles); re-save it "
                "with torch: torch.save(torch.load(path, weights_only=True), path)"
            )
        raise TorchBinError(f"{self.path}: not a PyTorch checkpoint (not a zip archive)")

    def _member(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._member(name))
        except (zipfile.BadZipFile, OSError, RuntimeError) as e:  # bad CRC, encrypted, ...
            raise TorchBinError(f"{self.path}: cannot read {name} ({e})") from e

    def storage(self, key: str, dtype: np.dtype, numel: object) -> np.ndarray:
        """The bytes of data/<key> as a [numel] array in the file's byte order."""
        name = f"data/{key}"
        if type(numel) is not int or numel < 0:
            raise TorchBinError(f"{self.path}: bad element count {reprlib.repr(numel)} for {name}")
        try:
            info = self._zip.getinfo(self._member(name))
        except KeyError:
            raise TorchBinError(f"{self.path}: storage {name} is missing") from None
        dtype = dtype.newbyteorder(self.byteorder)
        if info.file_size != numel * dtype.itemsize:
            raise TorchBinError(
                f"{self.path}: storage {name} holds {info.file_size} bytes, "
                f"expected {numel} x {dtype.itemsize}"
            )
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
            return np.frombuffer(self.read(name), dtype=dtype).copy()  # decompressed, CRC-checked
        # A stored member's bytes follow its local header: view them in place.
        header_end = info.header_offset + _ZIP_LOCAL_HEADER.size
        if header_end > len(self._map):
            raise TorchBinError(f"{self.path}: corrupt zip entry for {name}")
        signature, *_, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack_from(
            self._map, info.header_offset
        )
        if signature != _ZIP_LOCAL_SIGNATURE:
            raise TorchBinError(f"{self.path}: corrupt zip entry for {name}")
        start = header_end + name_length + extra_length
        if start + info.file_size > len(self._map):
            raise TorchBinError(f"{self.path}: storage {name} runs past the end of the file")
        data = np.frombuffer(self._map, dtype=dtype, count=numel, offset=start)
        # torch aligns storages to 64 bytes; copy the rare misaligned one (other zip writers)
        return data if data.flags.aligned else data.copy()


def load_torch_bin(path: str | Path) -> dict[str, np.ndarray]:
    """Read a torch.save'd state dict ({name: tensor}) as NumPy arrays, without torch.

    Only tensors, storages and OrderedDict are unpickled; anything else in the pickle raises
    UnsafePickleError before it can run. A malformed file raises TorchBinError (a ValueError).
    """
    path = Path(path)
    archive = _Archive(path)
    try:
        state_dict = _StateDictUnpickler(archive.read("data.pkl"), path, archive).load()
    except TorchBinError:
        raise
    except Exception as e:  # nothing but the functions above ran: a malformed pickle
        raise TorchBinError(f"{path}: corrupt data.pkl ({type(e).__name__}: {e})") from e
    finally:
        archive.close()
    if not isinstance(state_dict, dict):
        raise TorchBinError(f"{path}: holds a {type(state_dict).__name__}, not a state dict")
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TorchBinError(f"{path}: a state dict key is {reprlib.repr(name)}, not a name")
        if not isinstance(value, np.ndarray):
            raise TorchBinError(
                f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor: "
                "expected a flat state dict {name: tensor}"
            )
    return dict(state_dict)
