"""Read a PyTorch `pytorch_model.bin` state dict with NumPy: no torch, and no code from the file.

torch.save (torch >= 1.6) writes a zip archive, every member stored uncompressed:

    <archive>/data.pkl       the pickled state dict; each tensor is pickled as
                             torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
                             where `storage` is a persistent id
                             ("storage", torch.FloatStorage, key, location, numel)
    <archive>/data/<key>     the raw bytes of storage <key>
    <archive>/byteorder      "little" or "big" (absent in older files: little)
    <archive>/version, .format_version, .storage_alignment, .data/serialization_id

Security: a .bin is a stranger's data, and a pickle is a program. So data.pkl is not unpickled
with `pickle`: `_StateDictReader` is a small stack machine that runs only the opcodes torch.save
emits for a state dict (protocol 2) and knows only the values a state dict is made of. GLOBAL
resolves a handful of names to inert tags (the rebuild functions, OrderedDict, storage classes,
dtypes); REDUCE calls nothing but this module's own tensor builders; BUILD is accepted in the one
form torch writes (`_metadata` on the state dict) and ignored; every other opcode or global stops
the load. Nothing from the file can set an attribute, reach a storage's bytes other than through
a checked tensor view, or nest values deeper than `_MAX_DEPTH`.

Every tensor view is checked in bytes against its storage before any array is made: offset,
size and strides inside the storage, no stride 0 on a dimension longer than 1 (a broadcast view
multiplies memory), no more bytes than the storage holds. The result must be a flat
{name: tensor} dict.

The zip around it is read by `torch_zip.Archive`, which checks every entry before anything is
read, and bounds what a load allocates (copied views, inflated entries, bfloat16 -> float32) by
twice the archive's uncompressed size plus 64 MiB: the model's own weights, not more.

Memory: the file is memory-mapped copy-on-write, so loading copies nothing; pages are read when
first used, and writing to an array changes that array only, never the file. A tensor that spans
its whole storage is a view of the map: tensors torch saved on one storage (tied weights) share
memory here too, as after torch.load. Other views (transposed, offset, strided) are copied out.
Every array is writable and C-contiguous, in native byte order. dtypes are kept (float16 stays
float16, the weight loader upcasts) except bfloat16, which NumPy lacks: it becomes float32,
exactly (a bfloat16 is the top half of a float32). The file must not be truncated while its
arrays are in use (like any memory map; the Hugging Face cache never rewrites a file in place).

Refused, each with a one-line error naming the file: the pre-1.6 format (a bare pickle or a tar
archive, never unpickled), TorchScript archives, anything but a flat {name: tensor} dict. Stored
storages are mapped without a CRC check (which would read the whole file up front; torch checks
it), so a flipped bit in a storage changes a weight instead of failing; data.pkl, byteorder and
compressed entries are CRC-checked.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flaubert_np.torch_zip import Archive, TorchBinError


class UnsafePickleError(TorchBinError, pickle.UnpicklingError):
    """The pickle names a global or an opcode outside the state-dict allow-list."""


# Limits, each far above what a FlauBERT checkpoint needs (data.pkl of flaubert-large: ~60 KB,
# values nested 3 deep, ~2,000 memo entries).
_MAX_DEPTH = 16  # tuples / dicts / lists inside one another
_MAX_MEMO = 1 << 18  # highest memo index
_MAX_STACK = 1 << 16  # values on the stack, and marks
_MAX_VALUES = 1 << 18  # tuples, lists, dicts and tensors made in all
_MAX_NDIM = 32
_MAX_INT = 1 << 48  # offsets, sizes, strides, element counts

# torch dtype name -> little-endian NumPy dtype of its bytes (bfloat16: raw uint16 bits)
_DTYPES: dict[str, np.dtype] = {
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

# The functions REDUCE may call, by the name the pickle gives them.
_FUNCTIONS = {
    ("collections", "OrderedDict"): "OrderedDict",
    ("torch._utils", "_rebuild_tensor"): "_rebuild_tensor",
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "_rebuild_tensor_v3",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
}

# Every opcode torch.save emits for a state dict (protocol 2), and the list ones for a clear
# "not a state dict" error; anything else (INST, OBJ, NEWOBJ, STACK_GLOBAL, EXT*, PERSID, ...)
# is refused where it stands.
_OPCODES = frozenset(
    "PROTO STOP GLOBAL REDUCE BUILD BINPERSID MARK BINPUT LONG_BINPUT BINGET LONG_BINGET NONE "
    "NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 BINUNICODE EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 "
    "TUPLE3 EMPTY_DICT SETITEM SETITEMS EMPTY_LIST APPEND APPENDS".split()
)


@dataclass(frozen=True)
class _Function:
    """Stands in for a function the pickle names by GLOBAL: REDUCE dispatches on `name`."""

    name: str


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
    """What persistent_load returned: only tensor views reach its bytes, through the checks."""

    key: str
    dtype: str
    data: np.ndarray = field(repr=False)  # [nbytes] uint8, usually a view of the memory map
    byteorder: Literal["<", ">"]  # the file's


def _is_int(value: object, low: int = 0, high: int = _MAX_INT) -> bool:
    return type(value) is int and low <= value <= high


class _StateDictReader:
    """Runs data.pkl on a stack machine that knows only what a state dict is made of."""

    def __init__(self, data: bytes, archive: Archive):
        self._data = data
        self._archive = archive
        self._path = archive.path
        self._stack: list[Any] = []
        self._marks: list[int] = []
        self._memo: dict[int, Any] = {}
        self._storages: dict[str, _Storage] = {}
        # Containers made here: their nesting depth by id(), kept alive so ids stay unique; a
        # container is sealed (no more items) once it is put inside another, so no cycles.
        self._depth: dict[int, int] = {}
        self._alive: list[object] = []
        self._sealed: set[int] = set()

    def load(self) -> object:
        stop = None
        try:
            for opcode, arg, pos in pickletools.genops(self._data):  # parsed one at a time
                assert pos is not None  # genops reads bytes: positions are known
                if opcode.name not in _OPCODES:
                    raise UnsafePickleError(
                        f"{self._path}: refused pickle opcode {opcode.name} at byte {pos} of "
                        "data.pkl: torch.save never writes it for a state dict"
                    )
                if opcode.name == "STOP":
                    stop = pos
                    break
                self._step(opcode.name, arg, pos)
                if len(self._stack) + len(self._marks) > _MAX_STACK or (
                    len(self._alive) > _MAX_VALUES
                ):
                    raise TorchBinError(
                        f"{self._path}: data.pkl builds more values than a state dict holds "
                        f"(at most {_MAX_STACK} on the stack, {_MAX_VALUES} in all)"
                    )
        except TorchBinError:
            raise
        except ValueError as e:  # unknown opcode, truncated argument, no STOP
            raise TorchBinError(f"{self._path}: corrupt data.pkl ({e})") from None
        if stop != len(self._data) - 1:
            raise TorchBinError(f"{self._path}: corrupt data.pkl (bytes after its STOP)")
        if len(self._stack) != 1 or self._marks:
            raise TorchBinError(f"{self._path}: corrupt data.pkl (stack left unbalanced)")
        return self._stack[0]

    def _step(self, op: str, arg: Any, pos: int) -> None:
        push = self._stack.append
        if op == "PROTO":
            if arg not in (2, 3):
                raise UnsafePickleError(f"{self._path}: refused pickle protocol {arg}")
        elif op in ("NONE", "NEWTRUE", "NEWFALSE"):
            push({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[op])
        elif op in ("BININT", "BININT1", "BININT2", "LONG1", "BINUNICODE"):
            if op == "LONG1" and not _is_int(abs(arg), 0, _MAX_INT):
                raise TorchBinError(f"{self._path}: integer {arg} too large in data.pkl")
            push(arg)
        elif op == "MARK":
            self._marks.append(len(self._stack))
        elif op in ("BINPUT", "LONG_BINPUT"):
            if not _is_int(arg, 0, _MAX_MEMO):
                raise TorchBinError(f"{self._path}: memo index {arg} out of range in data.pkl")
            self._memo[arg] = self._top()
        elif op in ("BINGET", "LONG_BINGET"):
            if arg not in self._memo:
                raise TorchBinError(f"{self._path}: corrupt data.pkl (memo {arg} is empty)")
            push(self._memo[arg])
        elif op == "GLOBAL":
            push(self._global(*arg.split(" ", 1)))
        elif op in ("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            count = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(op)
            items = self._pop_mark() if count is None else self._pop(count)
            push(self._container(tuple(items), items))
        elif op in ("EMPTY_DICT", "EMPTY_LIST"):
            push(self._container({} if op == "EMPTY_DICT" else [], []))
        elif op in ("SETITEM", "SETITEMS"):
            items = self._pop(2) if op == "SETITEM" else self._pop_mark()
            if len(items) % 2:
                raise TorchBinError(f"{self._path}: corrupt data.pkl (odd SETITEMS at {pos})")
            target = self._open_container(dict)
            for key, value in zip(items[::2], items[1::2], strict=True):
                if type(key) not in (str, int):
                    raise TorchBinError(
                        f"{self._path}: a dict key is {reprlib.repr(key)}, not a name"
                    )
                self._add(target, value)
                target[key] = value
        elif op in ("APPEND", "APPENDS"):
            items = self._pop(1) if op == "APPEND" else self._pop_mark()
            target = self._open_container(list)
            for value in items:
                self._add(target, value)
                target.append(value)
        elif op == "BINPERSID":
            push(self._persistent_load(self._pop(1)[0]))
        elif op == "REDUCE":
            function, args = self._pop(2)
            if not isinstance(function, _Function) or not isinstance(args, tuple):
                raise UnsafePickleError(
                    f"{self._path}: refused REDUCE on {reprlib.repr(function)}: only tensor "
                    "rebuild functions and OrderedDict are called"
                )
            value = self._reduce(function.name, args)
            if isinstance(value, np.ndarray):
                self._alive.append(value)  # counted with the containers
            push(value)
        elif op == "BUILD":
            (state,) = self._pop(1)
            if not (isinstance(self._top(), dict) and isinstance(state, dict)
                    and set(state) <= {"_metadata"}
                    and isinstance(state.get("_metadata", {}), dict)):  # fmt: skip
                raise UnsafePickleError(
                    f"{self._path}: refused BUILD at byte {pos} of data.pkl: only torch's "
                    "_metadata on a state dict is accepted (and ignored)"
                )

    def _top(self) -> Any:
        if len(self._stack) <= (self._marks[-1] if self._marks else 0):
            raise TorchBinError(f"{self._path}: corrupt data.pkl (empty stack)")
        return self._stack[-1]

    def _pop(self, count: int) -> list[Any]:
        floor = self._marks[-1] if self._marks else 0
        if len(self._stack) - count < floor:
            raise TorchBinError(f"{self._path}: corrupt data.pkl (stack underflow)")
        items = self._stack[len(self._stack) - count :]
        del self._stack[len(self._stack) - count :]
        return items

    def _pop_mark(self) -> list[Any]:
        if not self._marks:
            raise TorchBinError(f"{self._path}: corrupt data.pkl (no MARK)")
        start = self._marks.pop()
        items = self._stack[start:]
        del self._stack[start:]
        return items

    def _container(self, obj: Any, items: list[Any]) -> Any:
        """Record a new tuple, list or dict made of `items` (sealed, as they now sit inside)."""
        depth = 1
        for item in items:
            self._seal(item)
            depth = max(depth, 1 + self._depth_of(item))
        if depth > _MAX_DEPTH:
            raise TorchBinError(f"{self._path}: values nested deeper than {_MAX_DEPTH} levels")
        self._depth[id(obj)] = depth
        self._alive.append(obj)
        return obj

    def _open_container(self, kind: type) -> Any:
        target = self._top()
        if type(target) is not kind or id(target) not in self._depth:
            raise TorchBinError(f"{self._path}: corrupt data.pkl (items added to a {kind})")
        if id(target) in self._sealed:
            raise TorchBinError(f"{self._path}: items added to a container already in use")
        return target

    def _add(self, target: Any, value: Any) -> None:
        self._seal(value)
        if id(target) in self._sealed:  # the value was the container itself
            raise TorchBinError(f"{self._path}: a container put inside itself")
        depth = max(self._depth[id(target)], 1 + self._depth_of(value))
        if depth > _MAX_DEPTH:
            raise TorchBinError(f"{self._path}: values nested deeper than {_MAX_DEPTH} levels")
        self._depth[id(target)] = depth

    def _depth_of(self, value: Any) -> int:
        return self._depth.get(id(value), 0) if isinstance(value, (tuple, list, dict)) else 0

    def _seal(self, value: Any) -> None:
        if isinstance(value, (list, dict)):
            self._sealed.add(id(value))

    def _global(self, module: str, name: str) -> object:
        if (module, name) in _FUNCTIONS:
            return _Function(_FUNCTIONS[(module, name)])
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

    def _persistent_load(self, pid: object) -> _Storage:
        # ("storage", storage type, key, location, numel); location ("cpu", "cuda:0") is ignored
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchBinError(f"{self._path}: unknown persistent id {reprlib.repr(pid)}")
        _, storage_type, key, location, numel = pid
        if not (isinstance(storage_type, _StorageType) and type(key) is str
                and type(location) is str and _is_int(numel)):  # fmt: skip
            raise TorchBinError(f"{self._path}: bad storage reference {reprlib.repr(pid)}")
        dtype = storage_type.dtype or "uint8"
        nbytes = numel * _DTYPES[dtype].itemsize
        if key not in self._storages:
            data = self._archive.storage(key, nbytes)
            self._storages[key] = _Storage(key, dtype, data, self._archive.byteorder)
        storage = self._storages[key]
        if storage.dtype != dtype or storage.data.size != nbytes:
            raise TorchBinError(
                f"{self._path}: storage data/{key} is read as {storage.dtype} "
                f"({storage.data.size} bytes) and as {dtype} ({nbytes} bytes)"
            )
        return storage

    def _reduce(self, function: str, args: tuple) -> object:
        where = f"{self._path}: {function}() in data.pkl"
        if function == "OrderedDict":
            if args:
                raise TorchBinError(f"{where}: OrderedDict is only ever built empty")
            return self._container({}, [])
        if function == "_rebuild_parameter":  # an nn.Parameter saved directly: keep its tensor
            if len(args) != 3 or not isinstance(args[0], np.ndarray):
                raise TorchBinError(f"{where}: a parameter must wrap a tensor")
            self._check_flags(args[1], args[2], None, where)
            return args[0]
        if function == "_rebuild_tensor" and len(args) == 4:  # older torch: no flags
            storage, offset, size, stride = args
            return self._tensor(self._check_storage(storage), None, offset, size, stride)
        if function == "_rebuild_tensor_v2" and len(args) in (6, 7):
            storage, offset, size, stride, requires_grad, hooks, *metadata = args
            self._check_flags(requires_grad, hooks, metadata[0] if metadata else None, where)
            return self._tensor(self._check_storage(storage), None, offset, size, stride)
        if function == "_rebuild_tensor_v3" and len(args) in (7, 8):
            # torch uses v3 for dtypes without a legacy storage class (uint16, ...): an untyped
            # storage of bytes plus the dtype to read them as.
            storage, offset, size, stride, requires_grad, hooks, dtype, *metadata = args
            self._check_flags(requires_grad, hooks, metadata[0] if metadata else None, where)
            storage = self._check_storage(storage)
            if not isinstance(dtype, _TorchDType):
                raise TorchBinError(f"{where}: unsupported tensor dtype {reprlib.repr(dtype)}")
            if storage.dtype != "uint8":
                raise TorchBinError(f"{where}: {dtype.name} tensor on a {storage.dtype} storage")
            return self._tensor(storage, dtype.name, offset, size, stride)
        raise TorchBinError(f"{where}: wrong number of arguments")

    def _check_flags(self, requires_grad: object, hooks: object, metadata: object, where: str):
        if type(requires_grad) is not bool or not (isinstance(hooks, dict) and not hooks):
            raise TorchBinError(f"{where}: expected requires_grad and no backward hooks")
        if metadata:
            raise TorchBinError(f"{where}: unsupported tensor metadata (conj/neg bits)")

    def _check_storage(self, storage: object) -> _Storage:
        if not isinstance(storage, _Storage):
            raise TorchBinError(
                f"{self._path}: a tensor is built from {reprlib.repr(storage)}, not a storage"
            )
        return storage

    def _tensor(
        self, storage: _Storage, dtype: str | None, offset: object, size: object, stride: object
    ) -> np.ndarray:
        """The tensor torch describes on a storage: the storage itself if the tensor spans all of
        it contiguously, else a copy of the strided view; native byte order, C-contiguous,
        writable. Checked in bytes before any array is made."""
        # [nbytes] uint8 storage -> [*size] tensor
        where = f"{self._path}: tensor on storage data/{storage.key}"
        if not _is_int(offset):
            raise TorchBinError(f"{where}: bad storage offset {reprlib.repr(offset)}")
        dims: list[tuple[int, ...]] = []
        for what, value in (("size", size), ("stride", stride)):
            if not (isinstance(value, tuple) and len(value) <= _MAX_NDIM
                    and all(_is_int(n) for n in value)):  # fmt: skip
                raise TorchBinError(f"{where}: bad {what} {reprlib.repr(value)}")
            dims.append(value)
        shape, steps = dims
        if len(shape) != len(steps):
            raise TorchBinError(f"{where}: size {shape} and stride {steps} differ in length")
        if math.prod(max(n, 1) for n in shape) > _MAX_INT:
            raise TorchBinError(f"{where}: size {reprlib.repr(shape)} is too large")
        name = dtype or storage.dtype
        item = _DTYPES[name].newbyteorder(storage.byteorder)
        out_dtype = np.dtype(np.float32) if name == "bfloat16" else item.newbyteorder("=")
        numel = math.prod(shape)
        if numel == 0:
            return np.zeros(shape, dtype=out_dtype)
        if any(n > 1 and s == 0 for n, s in zip(shape, steps, strict=True)):
            raise TorchBinError(
                f"{where}: size {shape} stride {steps}: stride 0 on a dimension longer than 1 "
                "(a broadcast view, which would multiply memory) is refused"
            )
        nbytes = storage.data.size
        start = offset * item.itemsize
        end = start + (sum((n - 1) * s for n, s in zip(shape, steps, strict=True)) + 1) * (
            item.itemsize
        )
        if end > nbytes:
            raise TorchBinError(
                f"{where}: size {shape} stride {steps} offset {offset} reach byte {end} of a "
                f"storage of {nbytes} bytes"
            )
        if numel * item.itemsize > nbytes:
            raise TorchBinError(
                f"{where}: size {shape} needs {numel * item.itemsize} bytes, more than its "
                f"storage's {nbytes} (overlapping strides are refused)"
            )
        view = np.ndarray(
            shape, dtype=item, buffer=storage.data, offset=start,
            strides=tuple(s * item.itemsize for s in steps),
        )  # fmt: skip
        whole = start == 0 and numel * item.itemsize == nbytes and view.flags.c_contiguous
        if whole and out_dtype == item and view.flags.aligned:
            return view  # the whole storage, shared as torch.load shares it
        self._archive.spend(numel * out_dtype.itemsize, f"tensor on storage data/{storage.key}")
        if name == "bfloat16":  # the bits of a bfloat16 are the top half of a float32
            bits = view.astype(np.uint32, order="C")
            bits <<= 16
            return bits.view(np.float32)
        return view.astype(out_dtype, order="C")


def load_torch_bin(path: str | Path) -> dict[str, np.ndarray]:
    """Read a torch.save'd state dict ({name: tensor}) as NumPy arrays, without torch.

    Only the opcodes and globals of a state dict are run; anything else raises
    UnsafePickleError before it can do anything. A malformed file raises TorchBinError (a
    ModelFileError, a ValueError), naming the file.
    """
    path = Path(path)
    archive = Archive(path)
    try:
        state_dict = _StateDictReader(archive.read("data.pkl"), archive).load()
    except TorchBinError:
        raise
    except Exception as e:  # nothing from the file ran: a malformed pickle we did not foresee
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
