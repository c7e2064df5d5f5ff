"""The zip archive torch.save writes, read with its every entry checked first.

torch.save (torch >= 1.6) writes `<archive>/data.pkl`, `<archive>/data/<key>` (one storage's raw
bytes each), `<archive>/byteorder` and a few small records, every member stored uncompressed.
`Archive` checks the whole directory before anything is read: no duplicate or unexpected entry
names, names in UTF-8, no encryption, only stored or deflated entries, each entry's local header
agreeing with the central directory (name, method, position), no two entries overlapping,
data.pkl at most `MAX_PICKLE_BYTES`, compressed entries expanding to a bounded total. It then
hands out stored storages as views of a copy-on-write memory map (no copy, and no CRC check,
which would read the whole file up front) and inflates compressed ones itself, never past their
declared size.

`budget` bounds what a whole load may allocate (inflated entries, copied tensor views, bfloat16
-> float32): twice the archive's uncompressed size plus `SLACK_BYTES`.
"""

from __future__ import annotations

import itertools
import mmap
import reprlib
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from flaubert_np.files import ModelFileError


class TorchBinError(ModelFileError):
    """The file is not a PyTorch state dict that can be read safely."""


MAX_PICKLE_BYTES = 16 * 1024 * 1024  # data.pkl of flaubert-large: ~60 KB
SLACK_BYTES = 64 * 1024 * 1024
_INFLATE_FACTOR = 16  # compressed entries may expand to 16 x the file size (+ the slack) in all

# The members torch.save writes besides data/<key> (older versions: a subset, .data/version).
_RECORDS = frozenset(
    {"data.pkl", "byteorder", "version", ".format_version", ".storage_alignment",
     ".data/serialization_id", ".data/version"}
)  # fmt: skip

_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # signature ... name length, extra length
_ZIP_LOCAL_SIGNATURE = 0x04034B50  # b"PK\x03\x04"
_ZIP_UTF8_FLAG = 0x800
_ZIP_ENCRYPTED_FLAG = 0x1


class Archive:
    """The zip archive torch.save writes, checked entry by entry before anything is read."""

    def __init__(self, path: Path):
        self.path = path
        self._check_is_zip()
        try:
            self._zip = zipfile.ZipFile(path)
        except UnicodeDecodeError:
            raise TorchBinError(f"{path}: a zip entry name is not UTF-8") from None
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
                struct.error) as e:  # fmt: skip
            raise TorchBinError(f"{path}: corrupt zip archive ({e})") from e
        with open(path, "rb") as f:
            # Copy-on-write: arrays viewing the map are writable, and the file is never written.
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            self._entries = self._check_entries()
            self.byteorder = self._read_byteorder()
        except TorchBinError:
            self.close()
            self._map.close()
            raise

    def close(self) -> None:
        # The map itself closes when the last array viewing it is gone.
        self._zip.close()

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

    def _check_entries(self) -> dict[str, tuple[zipfile.ZipInfo, int]]:
        """{name inside the top folder: (entry, offset of its data)}, every entry checked."""
        infos = self._zip.infolist()
        names = [info.filename for info in infos]
        if not names:
            raise TorchBinError(f"{self.path}: an empty zip, not a torch.save file")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise TorchBinError(f"{self.path}: zip entry {name!r} appears twice")
            seen.add(name)
        # torch names the archive's top folder after the file; every entry lies in it.
        prefix = names[0].split("/")[0] + "/" if "/" in names[0] else ""
        inner = [name[len(prefix) :] if name.startswith(prefix) else name for name in names]
        if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
            raise TorchBinError(f"{self.path}: a TorchScript archive, not a torch.save state dict")
        if "data.pkl" not in inner:
            raise TorchBinError(f"{self.path}: a zip without data.pkl, not a torch.save file")
        for name, short in zip(names, inner, strict=True):
            key = short[len("data/") :] if short.startswith("data/") else None
            expected = short in _RECORDS or (key and "/" not in key and key.isprintable())
            if not name.startswith(prefix) or not expected:
                raise TorchBinError(
                    f"{self.path}: unexpected zip entry {name!r} (torch.save writes data.pkl, "
                    "data/<key> and its small records, all in one folder)"
                )
        entries = {
            short: (info, self._check_local_header(info))
            for short, info in zip(inner, infos, strict=True)
        }
        spans = sorted((info.header_offset, start + info.compress_size, info.filename)
                       for info, start in entries.values())  # fmt: skip
        for (_, end, name), (next_start, _, _) in itertools.pairwise(spans):
            if end > next_start:
                raise TorchBinError(f"{self.path}: zip entry {name!r} overlaps the next one")
        size = len(self._map)
        inflated = sum(i.file_size for i in infos if i.compress_type != zipfile.ZIP_STORED)
        if inflated > _INFLATE_FACTOR * size + SLACK_BYTES:
            raise TorchBinError(
                f"{self.path}: compressed entries would expand to {inflated} bytes, more than "
                f"{_INFLATE_FACTOR} x the file's {size} + {SLACK_BYTES} allowed"
            )
        pickle_size = entries["data.pkl"][0].file_size
        if pickle_size > MAX_PICKLE_BYTES:
            raise TorchBinError(
                f"{self.path}: data.pkl holds {pickle_size} bytes, more than the "
                f"{MAX_PICKLE_BYTES} allowed"
            )
        # What a load may allocate: copies, inflated entries, bfloat16 -> float32.
        self.budget = 2 * sum(i.file_size for i in infos) + SLACK_BYTES
        return entries

    def _check_local_header(self, info: zipfile.ZipInfo) -> int:
        """Where the entry's data starts, once its local header agrees with the directory."""
        where = f"{self.path}: zip entry {info.filename!r}"
        if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
            raise TorchBinError(f"{where} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise TorchBinError(f"{where} uses compression method {info.compress_type}")
        if not info.flag_bits & _ZIP_UTF8_FLAG and not info.orig_filename.isascii():
            raise TorchBinError(f"{where}: its name is not UTF-8")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise TorchBinError(f"{where} is stored, yet its sizes differ")
        offset = info.header_offset
        if not 0 <= offset <= len(self._map) - _ZIP_LOCAL_HEADER.size:
            raise TorchBinError(f"{where}: its local header lies past the end of the file")
        signature, _, _, method, *_, name_length, extra_length = _ZIP_LOCAL_HEADER.unpack_from(
            self._map, offset
        )
        name_start = offset + _ZIP_LOCAL_HEADER.size
        raw_name = self._map[name_start : name_start + name_length]
        encoding = "utf-8" if info.flag_bits & _ZIP_UTF8_FLAG else "ascii"
        if (
            signature != _ZIP_LOCAL_SIGNATURE
            or method != info.compress_type
            or raw_name != info.orig_filename.encode(encoding)
        ):
            raise TorchBinError(f"{where}: its local header does not match the central directory")
        start = name_start + name_length + extra_length
        if start + info.compress_size > len(self._map):
            raise TorchBinError(f"{where} runs past the end of the file")
        return start

    def _read_byteorder(self) -> Literal["<", ">"]:
        byteorder = "little"  # torch's default for files written before the record existed
        if "byteorder" in self._entries:
            byteorder = self.read("byteorder").decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise TorchBinError(f"{self.path}: unknown byteorder {reprlib.repr(byteorder)}")
        return "<" if byteorder == "little" else ">"

    def spend(self, nbytes: int, what: str) -> None:
        """Charge an allocation to the load's budget, before making it."""
        if nbytes > self.budget:
            raise TorchBinError(
                f"{self.path}: {what} would allocate {nbytes} bytes, beyond what the archive's "
                "size allows (twice its uncompressed size + 64 MiB for the whole load)"
            )
        self.budget -= nbytes

    def read(self, name: str) -> bytes:
        """A small record (data.pkl, byteorder), CRC-checked."""
        info, start = self._entries[name]
        if info.compress_type != zipfile.ZIP_STORED:
            return self._inflate(info, start).tobytes()
        data = self._map[start : start + info.file_size]
        if zlib.crc32(data) != info.CRC:
            raise TorchBinError(f"{self.path}: cannot read {info.filename} (bad CRC)")
        return data

    def _inflate(self, info: zipfile.ZipInfo, start: int) -> np.ndarray:
        """[file_size] uint8: a deflated entry, inflated into one array and never past its
        declared size; the stream must end exactly there, with the right CRC."""
        self.spend(info.file_size, f"reading {info.filename}")
        size, end = info.file_size, start + info.compress_size
        out = np.empty(size, dtype=np.uint8)
        done, source, pending = 0, start, b""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # a zip holds raw deflate streams
        try:
            while not inflater.eof:
                if not pending:
                    if source >= end:
                        break
                    pending = self._map[source : min(end, source + (1 << 20))]
                    source += len(pending)
                piece = inflater.decompress(pending, size - done + 1)  # at most 1 byte over
                pending = inflater.unconsumed_tail
                if done + len(piece) > size:
                    raise TorchBinError(f"{self.path}: cannot read {info.filename} (it inflates "
                                        f"past its declared {size} bytes)")  # fmt: skip
                out[done : done + len(piece)] = np.frombuffer(piece, dtype=np.uint8)
                done += len(piece)
        except zlib.error as e:
            raise TorchBinError(f"{self.path}: cannot read {info.filename} ({e})") from None
        if not inflater.eof or done != size or pending or source < end or inflater.unused_data:
            raise TorchBinError(f"{self.path}: cannot read {info.filename} (corrupt deflate data)")
        if zlib.crc32(out.data) != info.CRC:
            raise TorchBinError(f"{self.path}: cannot read {info.filename} (bad CRC)")
        return out

    def storage(self, key: str, nbytes: int) -> np.ndarray:
        """The bytes of data/<key>, [nbytes] uint8: a view of the map if stored."""
        name = f"data/{key}"
        if name not in self._entries:
            raise TorchBinError(f"{self.path}: storage {name} is missing")
        info, start = self._entries[name]
        if info.file_size != nbytes:
            raise TorchBinError(
                f"{self.path}: storage {name} holds {info.file_size} bytes, expected {nbytes}"
            )
        if info.compress_type != zipfile.ZIP_STORED:
            return self._inflate(info, start)
        return np.frombuffer(self._map, dtype=np.uint8, count=nbytes, offset=start)
