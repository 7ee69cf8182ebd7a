"""Refuse a model file before llama.cpp sees it, with a reason a person can act on."""

from __future__ import annotations

import os

from engine.catalog.architectures import architecture_problem
from engine.catalog.gguf_info import ModelInfo, read_model_info
from engine.catalog.memory import (
    DEFAULT_N_BATCH,
    MemoryEstimate,
    available_memory_bytes,
    estimate_memory,
    max_context_that_fits,
)
from engine.errors import InsufficientMemoryError, ModelFileError
from engine.options import KVType
from engine.units import format_bytes

# No model file is this large; a header whose tensors claim more is corrupt, not cut short.
IMPLAUSIBLE_MODEL_BYTES = 1 << 46  # 64 TiB


def check_complete(info: ModelInfo) -> None:
    if info.tensor_count == 0:
        raise ModelFileError(info.path, "contains no tensors (a vocabulary-only file?)")
    if info.expected_size > IMPLAUSIBLE_MODEL_BYTES:
        raise ModelFileError(
            info.path,
            f"header is corrupt: its tensor table claims {format_bytes(info.expected_size)} of "
            "data, more than any model file",
        )
    if info.is_truncated:
        have, want = format_bytes(info.file_size), format_bytes(info.expected_size)
        if have == want:  # a few bytes short: rounded sizes would read "98.4 MB of 98.4 MB"
            have = f"{info.expected_size - info.file_size:,} bytes short of"
        else:
            have += " of"
        raise ModelFileError(
            info.path, f"truncated: {have} {want} expected (an incomplete download or copy?)")


def check_architecture(info: ModelInfo) -> None:
    problem = architecture_problem(info.architecture)
    if problem:
        raise ModelFileError(info.path, problem)
    # llama.cpp aborts the whole process (SIGABRT) on a model without layers.
    for name, value in (("block_count", info.block_count),
                        ("embedding_length", info.embedding_length)):
        if value < 1:
            raise ModelFileError(
                info.path, f"header is corrupt: {info.architecture}.{name} is {value}")


def _memory_hint(
    info: ModelInfo, estimate: MemoryEstimate, available: int, n_batch: int, flash_attn: bool
) -> str:
    fixed = estimate.weights_bytes + estimate.compute_bytes
    if fixed >= available:
        return (
            f"Even without a KV cache it needs {format_bytes(fixed)} for weights and compute "
            f"buffers: close other programs or choose a smaller or more strongly quantized model."
        )
    hints = []
    fits = max_context_that_fits(
        info, estimate.kv_type, available, n_batch=n_batch, flash_attn=flash_attn
    )
    if fits:
        hints.append(f"a smaller context (at most {fits} tokens)")
    if estimate.kv_type != KVType.Q4_0:
        hints.append("a quantized KV cache (q8_0 halves it, q4_0 quarters it)")
    if not hints:
        return "Close other programs or choose a smaller model."
    return "Try " + " or ".join(hints) + "."


def ensure_fits_in_memory(
    info: ModelInfo,
    n_ctx: int,
    kv_type: KVType,
    available_bytes: int | None,
    *,
    n_batch: int = DEFAULT_N_BATCH,
    flash_attn: bool = True,
) -> MemoryEstimate:
    """Raise ``InsufficientMemoryError`` when the estimate exceeds ``available_bytes``
    (None: measure it now; skipped if the platform cannot tell)."""
    estimate = estimate_memory(info, n_ctx, kv_type, n_batch=n_batch, flash_attn=flash_attn)
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if available is None or estimate.total_bytes <= available:
        return estimate
    hint = _memory_hint(info, estimate, available, n_batch, flash_attn)
    raise InsufficientMemoryError(
        info.path,
        f"not enough memory: needs about {format_bytes(estimate.total_bytes)} "
        f"({estimate.describe()}) but only {format_bytes(available)} is available. {hint}",
    )


def validate_model_file(
    path: str | os.PathLike[str],
    n_ctx: int = 0,
    kv_type: KVType = KVType.F16,
    available_bytes: int | None = None,
    *,
    check_memory: bool = True,
    n_batch: int = DEFAULT_N_BATCH,
    flash_attn: bool = True,
) -> ModelInfo:
    """Everything that can be checked without loading: a readable GGUF header, complete
    tensor data, a supported architecture and, unless ``check_memory`` is False, enough
    memory for weights, KV cache and compute buffers at ``n_ctx`` (0: trained, capped).
    Raises ``ModelFileError`` (``InsufficientMemoryError`` for memory)."""
    info = read_model_info(path)
    check_complete(info)
    check_architecture(info)
    if check_memory:
        ensure_fits_in_memory(
            info, n_ctx, kv_type, available_bytes, n_batch=n_batch, flash_attn=flash_attn
        )
    return info
