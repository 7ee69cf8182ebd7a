"""The model catalog: what a GGUF file is (read from its header, weights untouched), whether
it can be loaded, how much memory it needs, and which models are available."""

from engine.catalog.architectures import SUPPORTED_ARCHITECTURES
from engine.catalog.catalog import (
    CatalogEntry,
    bundled_model_path,
    list_models,
    resolve_model,
)
from engine.catalog.gguf_info import ModelInfo, read_model_info
from engine.catalog.header import GGUFHeader, TensorInfo, read_header
from engine.catalog.memory import (
    MemoryEstimate,
    available_memory_bytes,
    effective_n_ctx,
    estimate_memory,
    kv_bytes_per_token,
    max_context_that_fits,
)
from engine.catalog.validate import validate_model_file
from engine.units import format_bytes

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "CatalogEntry",
    "GGUFHeader",
    "MemoryEstimate",
    "ModelInfo",
    "TensorInfo",
    "available_memory_bytes",
    "bundled_model_path",
    "effective_n_ctx",
    "estimate_memory",
    "format_bytes",
    "kv_bytes_per_token",
    "list_models",
    "max_context_that_fits",
    "read_header",
    "read_model_info",
    "resolve_model",
    "validate_model_file",
]
