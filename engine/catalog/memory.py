"""How much memory a model needs at a given context size, and how much the machine has free.

The figures are estimates for a CPU load: weights are the tensor data, the KV cache follows
llama.cpp's layout (K and V for every layer and every context cell, full-size even for
sliding-window layers, so it errs on the high side), and the compute buffer is a heuristic
dominated by the logits of one batch.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.catalog.gguf_info import ModelInfo
from engine.options import DEFAULT_CTX_CAP, KVType
from engine.units import format_bytes

KV_BYTES_PER_ELEMENT: dict[KVType, float] = {
    KVType.F16: 2.0,
    KVType.Q8_0: 34 / 32,  # blocks of 32 values: 32 int8 + an f16 scale
    KVType.Q4_0: 18 / 32,  # blocks of 32 values: 16 bytes of nibbles + an f16 scale
}
COMPUTE_SLACK_BYTES = 16 * 1024 * 1024
DEFAULT_N_BATCH = 512


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    n_ctx: int
    kv_type: KVType
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    total_bytes: int

    def describe(self) -> str:
        return (
            f"{format_bytes(self.weights_bytes)} weights + {format_bytes(self.kv_bytes)} KV "
            f"cache ({self.n_ctx} tokens, {self.kv_type.value}) + "
            f"{format_bytes(self.compute_bytes)} compute buffers"
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kv_type"] = self.kv_type.value
        return data


def effective_n_ctx(info: ModelInfo, n_ctx: int = 0) -> int:
    """``n_ctx=0`` means the trained context capped at ``DEFAULT_CTX_CAP``."""
    if n_ctx > 0:
        return n_ctx
    trained = info.context_length or DEFAULT_CTX_CAP
    return min(trained, DEFAULT_CTX_CAP)


def kv_bytes_per_token(info: ModelInfo, kv_type: KVType = KVType.F16) -> int:
    elements = info.block_count * info.head_count_kv * (info.key_length + info.value_length)
    return math.ceil(elements * KV_BYTES_PER_ELEMENT[KVType(kv_type)])


def compute_bytes(
    info: ModelInfo, n_ctx: int, n_batch: int = DEFAULT_N_BATCH, flash_attn: bool = True
) -> int:
    ff = info.feed_forward_length or 4 * info.embedding_length
    per_token = info.vocab_size + 4 * info.embedding_length + 2 * ff
    scores = 0 if flash_attn else n_ctx * max(info.head_count, 1)  # the KQ matrix
    return 4 * n_batch * (per_token + scores) + COMPUTE_SLACK_BYTES


def estimate_memory(
    info: ModelInfo,
    n_ctx: int = 0,
    kv_type: KVType = KVType.F16,
    *,
    n_batch: int = DEFAULT_N_BATCH,
    flash_attn: bool = True,
) -> MemoryEstimate:
    n_ctx = effective_n_ctx(info, n_ctx)
    kv = kv_bytes_per_token(info, kv_type) * n_ctx
    compute = compute_bytes(info, n_ctx, n_batch, flash_attn)
    return MemoryEstimate(
        n_ctx=n_ctx,
        kv_type=KVType(kv_type),
        weights_bytes=info.weights_bytes,
        kv_bytes=kv,
        compute_bytes=compute,
        total_bytes=info.weights_bytes + kv + compute,
    )


def max_context_that_fits(
    info: ModelInfo,
    kv_type: KVType,
    available_bytes: int,
    *,
    step: int = 256,
    n_batch: int = DEFAULT_N_BATCH,
    flash_attn: bool = True,
) -> int:
    """The largest context (a multiple of ``step``) whose estimate fits; 0 when none does."""
    base_compute = compute_bytes(info, 0, n_batch, flash_attn)
    growth = compute_bytes(info, 1, n_batch, flash_attn) - base_compute  # KQ without flash attn
    fixed = info.weights_bytes + base_compute
    per_token = kv_bytes_per_token(info, kv_type) + growth
    room = available_bytes - fixed
    if room < per_token * step:
        return 0
    if per_token == 0:  # recurrent models: the context costs nothing extra
        return info.context_length or DEFAULT_CTX_CAP
    return room // per_token // step * step


# ----------------------------------------------------------------------- available memory


def _meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Room left under a cgroup v2 memory limit (containers), page cache counted as free."""
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((root / "memory.current").read_text())
        stat = (root / "memory.stat").read_text().split()
    except (OSError, ValueError):
        return None
    fields = dict(zip(stat[::2], stat[1::2], strict=False))
    reclaimable = int(fields.get("inactive_file", 0))
    return max(int(limit) - used + reclaimable, 0)


def _windows_available() -> int | None:
    class MemoryStatusEx(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatusEx()
    status.dwLength = ctypes.sizeof(MemoryStatusEx)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]  # Windows only
        return None
    return int(status.ullAvailPhys)


def _macos_total() -> int | None:
    """Physical memory. macOS counts reclaimable cache as used, so its free-page count would
    refuse models that load fine; the total still catches models bigger than the machine."""
    libc = ctypes.CDLL(None)
    size = ctypes.c_uint64(0)
    length = ctypes.c_size_t(ctypes.sizeof(size))
    if libc.sysctlbyname(b"hw.memsize", ctypes.byref(size), ctypes.byref(length), None, 0):
        return None
    return int(size.value)


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory_bytes() -> int | None:
    """Memory a new model could use now, or None when it cannot be told (then skip checks)."""
    try:
        if sys.platform.startswith("linux"):
            figures = [_meminfo_available(), _cgroup_available()]
            known = [f for f in figures if f is not None]
            return min(known) if known else _sysconf_available()
        if sys.platform == "win32":
            return _windows_available()
        if sys.platform == "darwin":
            return _macos_total()
        return _sysconf_available()
    except Exception:  # a probe failing must not stop a model from loading
        return None
