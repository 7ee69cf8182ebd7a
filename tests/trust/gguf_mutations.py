"""Corrupt GGUF files made from a real model: a map of where each header field lies, and
mutations that patch, truncate or rebuild the file.

The map is read here independently of ``engine.catalog.header`` (the code under test), with
the type codes of the ``gguf`` package.
"""

from __future__ import annotations

import random
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gguf import GGUFValueType

_SCALAR_SIZES = {
    GGUFValueType.UINT8: 1, GGUFValueType.INT8: 1, GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2, GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4, GGUFValueType.INT32: 4, GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8, GGUFValueType.INT64: 8, GGUFValueType.FLOAT64: 8,
}


@dataclass
class Field:
    key: str
    key_len_at: int  # offset of the u64 key length
    type_at: int  # offset of the u32 value type
    value_at: int  # offset of the value (for arrays: of the u32 item type)
    end: int
    vtype: int
    item_type: int | None = None
    count_at: int | None = None  # arrays: offset of the u64 element count
    first_item_at: int | None = None


@dataclass
class Tensor:
    name: str
    at: int
    n_dims_at: int
    dims_at: int
    type_at: int
    offset_at: int
    end: int


@dataclass
class GGUFMap:
    size: int
    tensor_count_at: int = 8
    kv_count_at: int = 16
    fields: dict[str, Field] = field(default_factory=dict)
    tensors: list[Tensor] = field(default_factory=list)
    header_end: int = 0  # end of the tensor table (data starts at the next alignment)


def read_map(path: Path) -> GGUFMap:
    data = path.read_bytes()
    at = 24
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    out = GGUFMap(len(data))

    def string(pos: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", data, pos)
        return data[pos + 8:pos + 8 + n].decode("utf-8", "replace"), pos + 8 + n

    def skip_value(vtype: int, pos: int) -> int:
        if vtype == GGUFValueType.STRING:
            return string(pos)[1]
        if vtype == GGUFValueType.ARRAY:
            item, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if item in _SCALAR_SIZES:
                return pos + count * _SCALAR_SIZES[GGUFValueType(item)]
            for _ in range(count):
                pos = skip_value(item, pos)
            return pos
        return pos + _SCALAR_SIZES[GGUFValueType(vtype)]

    for _ in range(n_kv):
        key_at = at
        key, at = string(at)
        (vtype,) = struct.unpack_from("<I", data, at)
        f = Field(key, key_at, at, at + 4, 0, vtype)
        if vtype == GGUFValueType.ARRAY:
            (f.item_type,) = struct.unpack_from("<I", data, at + 4)
            f.count_at, f.first_item_at = at + 8, at + 16
        f.end = skip_value(vtype, at + 4)
        out.fields[key] = f
        at = f.end
    for _ in range(n_tensors):
        start = at
        name, at = string(at)
        (n_dims,) = struct.unpack_from("<I", data, at)
        t = Tensor(name, start, at, at + 4, at + 4 + 8 * n_dims, at + 8 + 8 * n_dims,
                   at + 16 + 8 * n_dims)
        out.tensors.append(t)
        at = t.end
    out.header_end = at
    return out


@dataclass(frozen=True)
class Mutation:
    """One corrupt file: ``make(source, target)`` writes it."""

    name: str
    make: Callable[[Path, Path], None]


def _patched(patches: list[tuple[int, bytes]]) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        shutil.copyfile(source, target)
        with target.open("r+b") as f:
            for at, raw in patches:
                f.seek(at)
                f.write(raw)
    return make


def _truncated(size: int) -> Callable[[Path, Path], None]:
    def make(source: Path, target: Path) -> None:
        with source.open("rb") as src, target.open("wb") as dst:
            remaining = size
            while remaining > 0:
                chunk = src.read(min(remaining, 1 << 22))
                if not chunk:
                    break
                dst.write(chunk)
                remaining -= len(chunk)
    return make


def _flip(at: int, bit: int, data: bytes) -> Callable[[Path, Path], None]:
    return _patched([(at, bytes([data[at] ^ (1 << bit)]))])


def truncations(m: GGUFMap) -> Iterator[Mutation]:
    tokens = m.fields["tokenizer.ggml.tokens"]
    first = m.tensors[0]
    points = {
        "empty": 0, "inside magic": 3, "after magic": 4, "inside version": 6,
        "after version": 8, "inside tensor count": 12, "after counts": 24,
        "inside first key length": 28, "inside first key": 36,
        "inside token array header": tokens.value_at + 6,
        "inside the token strings": (tokens.value_at + tokens.end) // 2,
        "end of metadata": m.tensors[0].at, "inside tensor name": first.at + 9,
        "inside tensor dims": first.dims_at + 3, "end of tensor table": m.header_end,
        "start of tensor data": m.header_end + 32, "a quarter of the data": m.size // 4,
        "half the data": m.size // 2, "last 4 KiB missing": m.size - 4096,
        "last byte missing": m.size - 1,
    }
    for label, size in points.items():
        yield Mutation(f"truncated: {label} ({size:,} bytes)", _truncated(size))


def bit_flips(m: GGUFMap, data: bytes, count: int, seed: int = 15) -> Iterator[Mutation]:
    """Flips in the fixed header, in metadata keys, types and lengths, and in tensor info
    (names, dimension counts, dimensions, types, offsets)."""
    rng = random.Random(seed)
    targets: list[tuple[str, int, int]] = [("version", 4, 4), ("tensor count", 8, 8),
                                           ("kv count", 16, 8)]
    for f in m.fields.values():
        targets += [(f"key length of {f.key}", f.key_len_at, 8),
                    (f"type of {f.key}", f.type_at, 4)]
        if f.count_at is not None:
            targets.append((f"element count of {f.key}", f.count_at, 8))
            targets.append((f"item type of {f.key}", f.value_at, 4))
        elif f.vtype == GGUFValueType.STRING:
            targets.append((f"string length of {f.key}", f.value_at, 8))
        else:
            targets.append((f"value of {f.key}", f.value_at, f.end - f.value_at))
    for t in m.tensors:
        targets += [(f"n_dims of {t.name}", t.n_dims_at, 4),
                    (f"dims of {t.name}", t.dims_at, t.type_at - t.dims_at),
                    (f"type of {t.name}", t.type_at, 4), (f"offset of {t.name}", t.offset_at, 8),
                    (f"name length of {t.name}", t.at, 8)]
    seen: set[tuple[int, int]] = set()
    while len(seen) < count:
        label, at, width = rng.choice(targets)
        byte = at + rng.randrange(width)
        bit = rng.randrange(8)
        if (byte, bit) in seen:
            continue
        seen.add((byte, bit))
        yield Mutation(f"bit flip: {label} (byte {byte:,} bit {bit})",
                       _flip(byte, bit, data))


def absurd_values(m: GGUFMap) -> Iterator[Mutation]:
    u64 = struct.Struct("<Q").pack
    tokens = m.fields["tokenizer.ggml.tokens"]
    arch = m.fields["general.architecture"]
    first = m.tensors[0]
    assert tokens.count_at is not None
    cases = {
        "tensor count 2^63": [(m.tensor_count_at, u64(1 << 63))],
        "tensor count 2^32": [(m.tensor_count_at, u64(1 << 32))],
        "tensor count +1": [(m.tensor_count_at, u64(len(m.tensors) + 1))],
        "kv count 2^62": [(m.kv_count_at, u64(1 << 62))],
        "kv count 0": [(m.kv_count_at, u64(0))],
        "key length 2^62": [(arch.key_len_at, u64(1 << 62))],
        "key length 0": [(arch.key_len_at, u64(0))],
        "string length 2^63": [(arch.value_at, u64(1 << 63))],
        "first token string length 2^40": [(tokens.first_item_at or 0, u64(1 << 40))],
        "token array count 2^40": [(tokens.count_at, u64(1 << 40))],
        "token array count 2^64-1": [(tokens.count_at, u64((1 << 64) - 1))],
        "token array count 0": [(tokens.count_at, u64(0))],
        "tensor n_dims 2^31": [(first.n_dims_at, struct.pack("<I", 1 << 31))],
        "tensor dimension 2^62": [(first.dims_at, u64(1 << 62))],
        "tensor dimension 0": [(first.dims_at, u64(0))],
        "tensor type 9999": [(first.type_at, struct.pack("<I", 9999))],
        "tensor offset 2^60": [(first.offset_at, u64(1 << 60))],
        "tensor offset past the end": [(first.offset_at, u64(m.size))],
        "value type 9999": [(arch.type_at, struct.pack("<I", 9999))],
        "array item type 9999": [(tokens.value_at, struct.pack("<I", 9999))],
    }
    for label, patches in cases.items():
        yield Mutation(f"absurd: {label}", _patched(patches))


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def encode_value(vtype: GGUFValueType, value: object,
                 item: GGUFValueType | None = None) -> bytes:
    """The type code and value of one metadata entry."""
    head = struct.pack("<I", vtype)
    if vtype == GGUFValueType.ARRAY:
        assert item is not None and isinstance(value, list)
        body = struct.pack("<IQ", item, len(value))
        return head + body + b"".join(encode_value(item, v)[4:] for v in value)
    if vtype == GGUFValueType.STRING:
        return head + _string(value)  # type: ignore[arg-type]
    fmt = {GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.BOOL: "<?",
           GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I",
           GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.UINT64: "<Q",
           GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d"}[vtype]
    return head + struct.pack(fmt, value)


def spliced(changes: dict[str, bytes | None], alignment: int = 32
            ) -> Callable[[Path, Path], None]:
    """The file with the values of some metadata keys replaced (``encode_value`` bytes; a
    key not in the file is added, None removes it). Tensor data is copied unchanged to the
    next alignment after the new header, where its offsets (relative to it) stay right."""
    def make(source: Path, target: Path) -> None:
        m = read_map(source)
        data = source.read_bytes()
        parts = [data[:24]]
        kept = 0
        for key, f in m.fields.items():
            if key in changes:
                if changes[key] is None:
                    continue
                parts.append(_string(key) + changes[key])  # type: ignore[operator]
            else:
                parts.append(data[f.key_len_at:f.end])
            kept += 1
        for key, value in changes.items():
            if key not in m.fields and value is not None:
                parts.append(_string(key) + value)
                kept += 1
        parts.append(data[m.tensors[0].at:m.header_end])
        header = bytearray(b"".join(parts))
        struct.pack_into("<Q", header, 16, kept)
        old_start = -(-m.header_end // alignment) * alignment
        header += b"\0" * (-len(header) % alignment)
        with target.open("wb") as out:
            out.write(header)
            out.write(data[old_start:])
    return make


def structural(m: GGUFMap, data: bytes) -> Iterator[Mutation]:
    """Well-formed files with wrong types or values where llama.cpp reads its vocabulary
    and hyperparameters."""
    T = GGUFValueType
    arch = bytes(data[m.fields["general.architecture"].value_at + 8:
                      m.fields["general.architecture"].end]).decode()
    tokens_field = m.fields["tokenizer.ggml.tokens"]
    n_vocab = struct.unpack_from("<Q", data, tokens_field.count_at or 0)[0]

    def tokens(n: int) -> list[str]:
        return [f"t{i}" for i in range(n)]

    cases: dict[str, dict[str, bytes | None]] = {
        "token list of integers": {"tokenizer.ggml.tokens":
                                   encode_value(T.ARRAY, list(range(n_vocab)), T.INT32)},
        "token list of floats": {"tokenizer.ggml.tokens":
                                 encode_value(T.ARRAY, [0.5] * n_vocab, T.FLOAT32)},
        "token list is one string": {"tokenizer.ggml.tokens": encode_value(T.STRING, "abc")},
        "token list is a number": {"tokenizer.ggml.tokens": encode_value(T.UINT32, 7)},
        "merges are integers": {"tokenizer.ggml.merges":
                                encode_value(T.ARRAY, [1, 2, 3], T.INT32)},
        "token types are strings": {"tokenizer.ggml.token_type":
                                    encode_value(T.ARRAY, ["x"] * n_vocab, T.STRING)},
        "tiny vocabulary (8 tokens)": {"tokenizer.ggml.tokens":
                                       encode_value(T.ARRAY, tokens(8), T.STRING),
                                       "tokenizer.ggml.token_type": None,
                                       "tokenizer.ggml.merges": None},
        "tiny vocabulary (1 token)": {"tokenizer.ggml.tokens":
                                      encode_value(T.ARRAY, tokens(1), T.STRING),
                                      "tokenizer.ggml.token_type": None,
                                      "tokenizer.ggml.merges": None},
        "empty vocabulary": {"tokenizer.ggml.tokens": encode_value(T.ARRAY, [], T.STRING),
                             "tokenizer.ggml.token_type": None,
                             "tokenizer.ggml.merges": None},
        "no vocabulary": {"tokenizer.ggml.tokens": None, "tokenizer.ggml.merges": None,
                          "tokenizer.ggml.token_type": None},
        "vocabulary one token short": {"tokenizer.ggml.tokens":
                                       encode_value(T.ARRAY, tokens(n_vocab - 1), T.STRING)},
        "bos token id 2^31-1": {"tokenizer.ggml.bos_token_id":
                                encode_value(T.UINT32, 2**31 - 1)},
        "eos token id 4 billion": {"tokenizer.ggml.eos_token_id":
                                   encode_value(T.UINT32, 4_000_000_000)},
        "eos token id is text": {"tokenizer.ggml.eos_token_id": encode_value(T.STRING, "2")},
        "unknown tokenizer model": {"tokenizer.ggml.model": encode_value(T.STRING, "nonsense")},
        "chat template is a number": {"tokenizer.chat_template": encode_value(T.INT32, 42)},
        "architecture is a number": {"general.architecture": encode_value(T.UINT32, 7)},
        "context length 0": {f"{arch}.context_length": encode_value(T.UINT32, 0)},
        "context length 2^63": {f"{arch}.context_length": encode_value(T.UINT64, 2**63)},
        "block count 0": {f"{arch}.block_count": encode_value(T.UINT32, 0)},
        "block count 100000": {f"{arch}.block_count": encode_value(T.UINT32, 100_000)},
        "embedding length 0": {f"{arch}.embedding_length": encode_value(T.UINT32, 0)},
        "head count 0": {f"{arch}.attention.head_count": encode_value(T.UINT32, 0)},
        "kv head count 0": {f"{arch}.attention.head_count_kv": encode_value(T.UINT32, 0)},
        "kv head count 7 (does not divide)": {f"{arch}.attention.head_count_kv":
                                              encode_value(T.UINT32, 7)},
        "rope dimension 2^31": {f"{arch}.rope.dimension_count": encode_value(T.UINT32, 2**31)},
        "alignment 0": {"general.alignment": encode_value(T.UINT32, 0)},
        "alignment 3": {"general.alignment": encode_value(T.UINT32, 3)},
    }
    for label, changes in cases.items():
        yield Mutation(f"structure: {label}", spliced(changes))
