"""A small, bounded reader for the GGUF header (metadata and tensor table), no weights.

``gguf.GGUFReader`` memory-maps the whole file and builds numpy views for every token string:
3-4 s for SmolLM2 and ~15 s for a 262k-token vocabulary, and on garbage it fails in many
different ways. This reader streams the header once, skips large arrays without decoding them,
checks every length against the file size before reading (so garbage cannot make it allocate
or loop for long), and turns every failure into a ``ModelFileError`` that names the file. Type
codes and quantization block sizes come from the ``gguf`` package.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from engine.errors import ModelFileError
from engine.events import ErrorKind

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_NESTING = 2
DECODE_ARRAY_LIMIT = 1024  # longer arrays (token lists, scores) are only counted
_CHUNK = 1 << 20

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALARS: dict[GGUFValueType, struct.Struct] = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: _U32,
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: _U64,
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}

# Recognisable non-GGUF files, by their first bytes, for a more useful message.
_KNOWN_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (a PyTorch checkpoint?)"),
    (b"lmgg", "an old GGML model; convert it to GGUF"),
    (b"fmgg", "an old GGML model; convert it to GGUF"),
    (b"tjgg", "an old GGML model; convert it to GGUF"),
    (b"version https://git-lfs", "a Git LFS pointer, not the model itself"),
    (b"<!DOCTYPE", "an HTML page (a failed download?)"),
    (b"<html", "an HTML page (a failed download?)"),
    (b"\x89HDF", "an HDF5 file (a Keras model?)"),
)


class _FormatError(Exception):
    """Internal: the header is malformed; the message is the reason shown to the user."""


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """A metadata array. ``values`` is None when the array was too long to be worth decoding
    (vocabularies, merges, scores); ``count`` is always known."""

    item_type: GGUFValueType
    count: int
    values: tuple[Any, ...] | None

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType
    offset: int  # relative to the start of the tensor data section
    n_elements: int
    n_bytes: int


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # where the tensor data section starts in the file
    file_size: int

    @property
    def data_end(self) -> int:
        """The file offset where the last tensor's data ends: the size a complete file has."""
        return self.data_offset + max((t.offset + t.n_bytes for t in self.tensors), default=0)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)


class _Stream:
    """Sequential little-endian reads over a file; the header stays in one growing buffer."""

    def __init__(self, f: BinaryIO, file_size: int) -> None:
        self._f = f
        self.size = file_size
        self.data = bytearray()
        self.pos = 0

    def need(self, n: int) -> None:
        end = self.pos + n
        if end > self.size:
            raise _FormatError(
                f"header is corrupt or truncated: a field at byte {self.pos:,} runs past the "
                f"end of the file ({self.size:,} bytes)"
            )
        short = end - len(self.data)
        if short > 0:
            chunk = self._f.read(max(short, _CHUNK))
            self.data += chunk
            if len(chunk) < short:
                raise _FormatError("the file changed size while it was being read")

    def scalar(self, st: struct.Struct) -> Any:
        self.need(st.size)
        (value,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return value

    def u32(self) -> int:
        return self.scalar(_U32)

    def u64(self) -> int:
        return self.scalar(_U64)

    def raw_string(self) -> bytes:
        n = self.u64()
        self.need(n)
        value = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return value

    def string(self) -> str:
        return self.raw_string().decode("utf-8", errors="replace")

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` strings; the hot loop for vocabularies, kept free of method calls."""
        data, pos, unpack = self.data, self.pos, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > len(data):
                self.pos = pos
                self.need(8)
            (n,) = unpack(data, pos)
            pos += 8 + n
            if pos > self.size:
                self.pos = pos - n
                self.need(n)
        self.pos = pos
        self.need(0)


def _value_type(code: int) -> GGUFValueType:
    try:
        return GGUFValueType(code)
    except ValueError:
        raise _FormatError(f"header is corrupt: unknown metadata value type {code}") from None


def _read_value(s: _Stream, vtype: GGUFValueType, depth: int = 0) -> Any:
    if vtype == GGUFValueType.STRING:
        return s.string()
    if vtype == GGUFValueType.ARRAY:
        return _read_array(s, depth)
    return s.scalar(_SCALARS[vtype])


def _read_array(s: _Stream, depth: int) -> GGUFArray:
    if depth >= MAX_ARRAY_NESTING:
        raise _FormatError("header is corrupt: arrays nested too deeply")
    item_type = _value_type(s.u32())
    count = s.u64()
    decode = count <= DECODE_ARRAY_LIMIT
    if item_type in _SCALARS and not decode:
        s.skip(count * _SCALARS[item_type].size)
        return GGUFArray(item_type, count, None)
    if item_type == GGUFValueType.STRING and not decode:
        s.skip_strings(count)
        return GGUFArray(item_type, count, None)
    if count * 8 > s.size:  # every non-scalar element takes at least 8 bytes
        raise _FormatError(f"header is corrupt: an array claims {count:,} elements")
    values = tuple(_read_value(s, item_type, depth + 1) for _ in range(count))
    return GGUFArray(item_type, count, values if decode else None)


def _read_metadata(s: _Stream, count: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for _ in range(count):
        try:
            key = s.raw_string().decode("utf-8")
        except UnicodeDecodeError:
            raise _FormatError("header is corrupt: a metadata key is not text") from None
        if key in metadata:
            raise _FormatError(f"header is corrupt: duplicate metadata key {key!r}")
        metadata[key] = _read_value(s, _value_type(s.u32()))
    return metadata


def _tensor_size(
    name: str, shape: tuple[int, ...], type_code: int
) -> tuple[GGMLQuantizationType, int, int]:
    try:
        ggml_type = GGMLQuantizationType(type_code)
        block, type_size = GGML_QUANT_SIZES[ggml_type]
    except (ValueError, KeyError):
        raise _FormatError(
            f"tensor {name!r} has unknown type {type_code} (a newer quantization format?)"
        ) from None
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if n_elements % block:
        raise _FormatError(f"header is corrupt: tensor {name!r} has a bad shape {shape}")
    return ggml_type, n_elements, n_elements // block * type_size


def _read_tensor(s: _Stream) -> TensorInfo:
    name = s.string()
    n_dims = s.u32()
    if not 1 <= n_dims <= MAX_DIMS:
        raise _FormatError(f"header is corrupt: tensor {name!r} has {n_dims} dimensions")
    shape = tuple(s.u64() for _ in range(n_dims))
    ggml_type, n_elements, n_bytes = _tensor_size(name, shape, s.u32())
    offset = s.u64()
    return TensorInfo(name, shape, ggml_type, offset, n_elements, n_bytes)


def _read_tensors(s: _Stream, count: int, alignment: int) -> tuple[TensorInfo, ...]:
    tensors = tuple(_read_tensor(s) for _ in range(count))
    names = set()
    for t in tensors:
        if t.name in names:
            raise _FormatError(f"header is corrupt: duplicate tensor {t.name!r}")
        if t.offset % alignment:
            raise _FormatError(f"header is corrupt: tensor {t.name!r} is misaligned")
        names.add(t.name)
    return tensors


def _alignment(metadata: dict[str, Any]) -> int:
    value = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise _FormatError(f"header is corrupt: bad general.alignment {value!r}")
    return value


def describe_magic(head: bytes) -> str:
    """The reason a file that does not start with ``GGUF`` is refused."""
    shown = repr(head[:4])[1:]
    for magic, what in _KNOWN_MAGICS:
        if head.startswith(magic):
            return f"not a GGUF file (starts with {shown}; looks like {what})"
    if head[8:9] == b"{":
        return f"not a GGUF file (starts with {shown}; looks like a safetensors file)"
    return f"not a GGUF file (starts with {shown})"


def _check_version(version: int) -> None:
    if version in SUPPORTED_VERSIONS:
        return
    if version and not version & 0xFFFF:
        raise _FormatError("big-endian GGUF file; only little-endian files can be loaded here")
    raise _FormatError(
        f"unsupported GGUF version {version} (this build reads versions "
        f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
    )


def _parse(f: BinaryIO, file_size: int) -> GGUFHeader:
    s = _Stream(f, file_size)
    s.skip(len(MAGIC))
    version = s.u32()
    _check_version(version)
    n_tensors, n_kv = s.u64(), s.u64()
    # The smallest metadata entry takes 13 bytes and the smallest tensor entry 29.
    if n_kv * 13 > file_size or n_tensors * 29 > file_size:
        raise _FormatError(
            f"header is corrupt: it claims {n_kv:,} metadata entries and {n_tensors:,} tensors"
        )
    metadata = _read_metadata(s, n_kv)
    alignment = _alignment(metadata)
    tensors = _read_tensors(s, n_tensors, alignment)
    data_offset = -(-s.pos // alignment) * alignment
    return GGUFHeader(version, metadata, tensors, data_offset, file_size)


def _open(path: str | os.PathLike[str]) -> tuple[BinaryIO, int]:
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ModelFileError(name, "is a directory, not a model file")
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise ModelFileError(name, "no such file", ErrorKind.MODEL_NOT_FOUND) from None
    except OSError as exc:
        raise ModelFileError(name, f"cannot be read: {exc.strerror or exc}") from None
    return f, os.fstat(f.fileno()).st_size


def _check_start(f: BinaryIO, file_size: int) -> None:
    if file_size == 0:
        raise _FormatError("empty file (0 bytes)")
    head = f.read(32)
    f.seek(0)
    if not head.startswith(MAGIC):
        raise _FormatError(describe_magic(head))
    if file_size < 24:
        raise _FormatError(f"too small to be a GGUF model ({file_size} bytes)")


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse the GGUF header of ``path``. Raises ``ModelFileError`` for anything unreadable
    (never another exception type)."""
    name = os.fspath(path)
    f, file_size = _open(name)
    with f:
        try:
            _check_start(f, file_size)
            return _parse(f, file_size)
        except _FormatError as exc:
            raise ModelFileError(name, str(exc)) from None
        except OSError as exc:
            raise ModelFileError(name, f"cannot be read: {exc.strerror or exc}") from None
        except Exception as exc:  # garbage must never escape as a random exception
            raise ModelFileError(
                name, f"unreadable GGUF header ({type(exc).__name__}: {exc})"
            ) from exc
