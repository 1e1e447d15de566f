"""A bounds-checked reader of a GGUF file's header: metadata and tensor directory.

MLX's native GGUF reader trusts the file and can crash the process on a truncated or
corrupt one, and the `gguf` package's reader takes seconds on a 50k-token vocabulary.
This reader walks the header once, checks every length against the bytes that are
really there, and checks that each tensor's data lies inside the file, so that only
validated files ever reach `mx.load`.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from mullama._core import ModelLoadError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
# Generous caps: a header claiming more than this is corrupt, not big.
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_DIMS = 4

# GGUF metadata value types (gguf spec numbering).
_STRING = 8
_ARRAY = 9
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_NUMPY_DTYPES = {
    0: np.uint8,
    1: np.int8,
    2: np.uint16,
    3: np.int16,
    4: np.uint32,
    5: np.int32,
    6: np.float32,
    7: np.bool_,
    10: np.uint64,
    11: np.int64,
    12: np.float64,
}
_TYPE_NAMES = {
    0: "uint8",
    1: "int8",
    2: "uint16",
    3: "int16",
    4: "uint32",
    5: "int32",
    6: "float32",
    7: "bool",
    8: "str",
    9: "array",
    10: "uint64",
    11: "int64",
    12: "float64",
}


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor directory. `shape` is row-major (outermost first),
    i.e. GGUF's ne[] reversed, the order numpy and MLX use."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    offset: int  # absolute file offset of the data
    n_bytes: int

    @property
    def type_name(self) -> str:
        return self.ggml_type.name


@dataclass(frozen=True)
class OmittedArray:
    """Stands in for a metadata array too large to keep (vocabularies, merges)."""

    element_type: str
    length: int


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    data_offset: int
    file_size: int
    large_arrays: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None


class _Cursor:
    """Reads little-endian values from a buffer, raising ModelLoadError past its end."""

    def __init__(self, buf: Any, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelLoadError(
                f"GGUF file {self.path} is truncated or corrupt: {what} needs {n} bytes "
                f"at offset {self.pos}, file has {self.size}"
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def string(self, what: str) -> str:
        length = self.u64(f"length of {what}")
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        # Vocabularies hold byte fragments that are not always valid UTF-8.
        return raw.decode("utf-8", errors="replace")


# Arrays longer than this stay out of `metadata` (they are vocabulary-sized).
MAX_KEPT_ARRAY = 1024


def read_gguf_file(path: str | Path) -> GGUFFile:
    """Parse and validate a GGUF header. Raises ModelLoadError for anything malformed."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            file_size = path.stat().st_size
            if file_size < 24:
                raise ModelLoadError(
                    f"{path} is not a GGUF file: only {file_size} bytes (too short for a header)"
                )
            magic = fh.read(4)
            if magic != GGUF_MAGIC:
                raise ModelLoadError(
                    f"{path} is not a GGUF file: magic is {magic!r}, expected {GGUF_MAGIC!r}"
                )
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Cursor(buf, path), path, file_size)
    except ModelLoadError:
        raise
    except (OSError, ValueError, struct.error, OverflowError, MemoryError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {path}: {exc}") from exc


def _parse(cur: _Cursor, path: Path, file_size: int) -> GGUFFile:
    cur.pos = 4
    version = cur.u32("version")
    if version not in (2, 3):
        raise ModelLoadError(f"GGUF file {path} has unsupported version {version} (need 2 or 3)")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise ModelLoadError(
            f"GGUF file {path} is corrupt: header claims {n_tensors} tensors and {n_kv} "
            "metadata entries"
        )

    metadata: dict[str, Any] = {}
    large_arrays: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        vtype = cur.u32(f"type of {key}")
        if vtype == _ARRAY:
            value = _read_array(cur, key)
            if len(value) > MAX_KEPT_ARRAY:
                large_arrays[key] = value
                etype = "str" if isinstance(value, list) else str(value.dtype)
                metadata[key] = OmittedArray(etype, len(value))
            else:
                metadata[key] = value if isinstance(value, list) else value.tolist()
        else:
            metadata[key] = _read_scalar(cur, vtype, key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment % 8:
        raise ModelLoadError(f"GGUF file {path} has invalid general.alignment {alignment!r}")

    infos: list[tuple[str, tuple[int, ...], GGMLQuantizationType, int]] = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.u32(f"dimension count of {name}")
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise ModelLoadError(f"GGUF file {path} is corrupt: tensor {name} has {n_dims} dims")
        ne = [cur.u64(f"dimension of {name}") for _ in range(n_dims)]
        raw_type = cur.u32(f"type of {name}")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
        except ValueError:
            raise ModelLoadError(
                f"GGUF file {path}: tensor {name} has unknown tensor type id {raw_type}"
            ) from None
        rel_offset = cur.u64(f"data offset of {name}")
        infos.append((name, tuple(reversed(ne)), ggml_type, rel_offset))

    data_offset = -(-cur.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    for name, shape, ggml_type, rel_offset in infos:
        n_bytes = _tensor_nbytes(path, name, shape, ggml_type)
        start = data_offset + rel_offset
        if rel_offset % alignment or start + n_bytes > file_size:
            raise ModelLoadError(
                f"GGUF file {path} is truncated or corrupt: tensor {name} ({n_bytes} bytes at "
                f"offset {start}) lies outside the file of {file_size} bytes"
            )
        if name in tensors:
            raise ModelLoadError(f"GGUF file {path} is corrupt: tensor {name} appears twice")
        tensors[name] = TensorInfo(name, shape, ggml_type, start, n_bytes)

    return GGUFFile(path, version, metadata, tensors, data_offset, file_size, large_arrays)


def _tensor_nbytes(
    path: Path, name: str, shape: tuple[int, ...], ggml_type: GGMLQuantizationType
) -> int:
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if shape[-1] % block_size:
        raise ModelLoadError(
            f"GGUF file {path} is corrupt: tensor {name} row of {shape[-1]} elements is not a "
            f"multiple of the {ggml_type.name} block size {block_size}"
        )
    return n_elements // block_size * type_size


def _read_scalar(cur: _Cursor, vtype: int, key: str) -> Any:
    if vtype == _STRING:
        return cur.string(key)
    fmt = _SCALAR_FORMATS.get(vtype)
    if fmt is None:
        raise ModelLoadError(f"GGUF file {cur.path}: metadata {key} has unknown type id {vtype}")
    return cur.scalar(fmt, key)


def _read_array(cur: _Cursor, key: str) -> Any:
    etype = cur.u32(f"element type of {key}")
    length = cur.u64(f"length of {key}")
    if etype == _STRING:
        # Each string needs at least its 8-byte length: a cheap bound before looping.
        cur.need(length * 8, key)
        return [cur.string(key) for _ in range(length)]
    dtype = _NUMPY_DTYPES.get(etype)
    if dtype is None:
        name = _TYPE_NAMES.get(etype, f"type id {etype}")
        raise ModelLoadError(
            f"GGUF file {cur.path}: metadata {key} is an array of unsupported {name}"
        )
    n_bytes = length * np.dtype(dtype).itemsize
    cur.need(n_bytes, key)
    arr = np.frombuffer(cur.buf, dtype=dtype, count=length, offset=cur.pos).copy()
    cur.pos += n_bytes
    return arr


def tensor_bytes(gguf: GGUFFile, info: TensorInfo) -> np.ndarray:
    """The raw bytes of one tensor as a read-only memory map, shaped (rows, bytes per row)."""
    raw = np.memmap(gguf.path, dtype=np.uint8, mode="r", offset=info.offset, shape=(info.n_bytes,))
    rows = info.n_bytes // _row_bytes(info)
    return raw.reshape(rows, -1)


def _row_bytes(info: TensorInfo) -> int:
    block_size, type_size = GGML_QUANT_SIZES[info.ggml_type]
    return info.shape[-1] // block_size * type_size
