"""What a GGUF model is, read from its header: ``read_model_info``."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gguf import LlamaFileType

from engine.catalog.header import GGUFArray, GGUFHeader, TensorInfo, read_header
from engine.catalog.names import display_name
from engine.errors import ModelFileError

_FTYPE_GUESSED = 1024  # llama.cpp ORs this into general.file_type when it guessed the type


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    file_name: str
    file_size: int
    gguf_version: int
    architecture: str
    name: str  # the name a person recognises (``engine.catalog.names.display_name``)
    size_label: str | None  # general.size_label, e.g. "135M"
    parameter_count: int  # sum of the tensors' element counts
    quantization: str  # e.g. "Q4_K_M", from general.file_type or the dominant tensor type
    file_type: int | None  # general.file_type as stored
    context_length: int  # trained context; 0 when the header does not say
    block_count: int  # layers
    embedding_length: int
    feed_forward_length: int | None
    head_count: int
    head_count_kv: int
    key_length: int  # per head; embedding_length / head_count when not stored
    value_length: int
    rope_freq_base: float | None
    sliding_window: int | None
    vocab_size: int
    tokenizer_model: str | None  # tokenizer.ggml.model, e.g. "gpt2", "llama"
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    tensor_count: int
    weights_bytes: int  # tensor data, i.e. what loading maps into memory
    expected_size: int  # where the last tensor's data ends; a complete file is this long
    languages: tuple[str, ...] = ()  # general.languages (ISO codes such as "en"); () unknown

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    @property
    def is_truncated(self) -> bool:
        return self.file_size < self.expected_size

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_chat_template"] = self.has_chat_template
        return data


def _scalar(value: Any) -> Any:
    """Per-layer arrays (e.g. head_count_kv in some models) collapse to their largest value,
    which keeps memory estimates on the safe side."""
    if isinstance(value, GGUFArray):
        numbers = [v for v in value.values or () if isinstance(v, int | float)]
        return max(numbers) if numbers else None
    return value


def _int(md: dict[str, Any], key: str) -> int | None:
    """A count, size or token id; negative values are as meaningless as absent ones."""
    value = _scalar(md.get(key))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _float(md: dict[str, Any], key: str) -> float | None:
    value = _scalar(md.get(key))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(md: dict[str, Any], key: str) -> str | None:
    value = md.get(key)
    return value if isinstance(value, str) and value else None


def _file_type_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        name = LlamaFileType(code & ~_FTYPE_GUESSED).name
    except ValueError:
        return None
    return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")


def _dominant_type(tensors: tuple[TensorInfo, ...]) -> str:
    """The type holding most of the weights, counting matrices only (norms stay F32)."""
    counts: Counter[str] = Counter()
    for t in tensors:
        if len(t.shape) >= 2:
            counts[t.ggml_type.name] += t.n_elements
    if not counts:
        counts.update({t.ggml_type.name: t.n_elements for t in tensors})
    return counts.most_common(1)[0][0] if counts else "unknown"


def _strings(md: dict[str, Any], key: str) -> tuple[str, ...]:
    value = md.get(key)
    if isinstance(value, GGUFArray):
        return tuple(v.strip() for v in value.values or () if isinstance(v, str) and v.strip())
    return (value.strip(),) if isinstance(value, str) and value.strip() else ()


def _vocab_size(md: dict[str, Any], arch: str) -> int:
    tokens = md.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GGUFArray):
        return tokens.count
    return _int(md, f"{arch}.vocab_size") or 0


def _architecture(path: str, md: dict[str, Any]) -> str:
    arch = _str(md, "general.architecture")
    if arch is None:
        raise ModelFileError(path, "not a model: the header has no general.architecture")
    return arch


def model_info_from_header(path: str | os.PathLike[str], header: GGUFHeader) -> ModelInfo:
    name = os.fspath(path)
    md = header.metadata
    arch = _architecture(name, md)

    def key(suffix: str) -> str:
        return f"{arch}.{suffix}"

    embd = _int(md, key("embedding_length")) or 0
    heads = _int(md, key("attention.head_count")) or 0
    head_dim = embd // heads if heads else 0
    file_type = _int(md, "general.file_type")
    return ModelInfo(
        path=name,
        file_name=Path(name).name,
        file_size=header.file_size,
        gguf_version=header.version,
        architecture=arch,
        name=display_name(Path(name).name, _str(md, "general.basename"),
                          _str(md, "general.size_label"), _str(md, "general.name")),
        size_label=_str(md, "general.size_label"),
        parameter_count=sum(t.n_elements for t in header.tensors),
        quantization=_file_type_name(file_type) or _dominant_type(header.tensors),
        file_type=file_type,
        context_length=_int(md, key("context_length")) or 0,
        block_count=_int(md, key("block_count")) or 0,
        embedding_length=embd,
        feed_forward_length=_int(md, key("feed_forward_length")),
        head_count=heads,
        head_count_kv=_int(md, key("attention.head_count_kv")) or heads,
        key_length=_int(md, key("attention.key_length")) or head_dim,
        value_length=_int(md, key("attention.value_length")) or head_dim,
        rope_freq_base=_float(md, key("rope.freq_base")),
        sliding_window=_int(md, key("attention.sliding_window")),
        vocab_size=_vocab_size(md, arch),
        tokenizer_model=_str(md, "tokenizer.ggml.model"),
        chat_template=_str(md, "tokenizer.chat_template"),
        bos_token_id=_int(md, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_int(md, "tokenizer.ggml.eos_token_id"),
        tensor_count=len(header.tensors),
        weights_bytes=header.tensor_bytes,
        expected_size=header.data_end,
        languages=_strings(md, "general.languages"),
    )


def read_model_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read what the model is from its header, without loading the weights. Raises
    ``ModelFileError`` when the header cannot be read. Does not check that the tensor data
    is complete or that the architecture is supported: ``validate_model_file`` does."""
    header = read_header(path)
    try:
        return model_info_from_header(path, header)
    except ModelFileError:
        raise
    except Exception as exc:  # odd metadata must not escape as a random exception
        raise ModelFileError(
            os.fspath(path), f"unreadable metadata ({type(exc).__name__}: {exc})"
        ) from exc
