"""What this build of llama.cpp can offload to: its compute backends, the GPUs they see and
their free memory. The probing itself needs llama.cpp's libraries, so it lives in
``engine.runtime.gpu_probe`` and runs in a child process (``engine.worker.gpu_probe``); this
module holds the answer, which any process can use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.units import format_bytes

_GPU_BACKENDS = ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL", "OpenCL", "CANN", "MUSA")


@dataclass(frozen=True, slots=True)
class GpuDevice:
    name: str  # the backend's device name, e.g. "CUDA0", "Metal"
    description: str  # what the driver calls it, e.g. "NVIDIA H200"
    backend: str  # the backend that drives it, e.g. "CUDA"
    free_bytes: int | None  # None when the backend does not report it
    total_bytes: int | None

    def describe(self) -> str:
        label = self.description or self.name
        if self.free_bytes is None or not self.total_bytes:
            return f"{label} (free memory not reported)"
        return (f"{label} ({format_bytes(self.free_bytes)} free of "
                f"{format_bytes(self.total_bytes)})")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    backends: tuple[str, ...]  # every registered backend, "CPU" included
    offload: bool  # llama_supports_gpu_offload()
    devices: tuple[GpuDevice, ...] = ()  # GPUs (and accelerators other than the CPU)
    problem: str | None = None  # why the probe could not tell; None when it could

    @property
    def backend(self) -> str:
        """The backend models are offloaded with: "CUDA", "Metal", "Vulkan", … or "CPU"."""
        for name in self.backends:
            for known in _GPU_BACKENDS:
                if name.lower().startswith(known.lower()):
                    return known
        for name in self.backends:
            if name.upper() not in ("CPU", "BLAS", "RPC"):
                return name
        return "CPU"

    @property
    def cpu_only(self) -> bool:
        return not self.offload or self.backend == "CPU"

    @property
    def usable(self) -> bool:
        """Layers can go to a GPU: a GPU build that sees at least one device."""
        return not self.cpu_only and bool(self.devices)

    @property
    def free_bytes(self) -> int | None:
        """Free memory over every GPU (llama.cpp splits the layers across them); None when
        no device reports it."""
        known = [d.free_bytes for d in self.devices if d.free_bytes is not None]
        return sum(known) if known else None

    def summary(self) -> str:
        """One or two sentences for Settings and the Models panel."""
        if self.problem and not self.backends:
            return f"GPU support could not be checked: {self.problem}"
        if self.cpu_only:
            return ("CPU only: this build of llama.cpp has no GPU backend (CUDA, Metal or "
                    "Vulkan), so every layer runs on the CPU.")
        if not self.devices:
            return (f"{self.backend} build, but no {self.backend} device was found (is the "
                    "driver installed?): every layer runs on the CPU.")
        return f"{self.backend}: " + "; ".join(d.describe() for d in self.devices)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuInfo:
        devices = tuple(GpuDevice(**d) for d in data.get("devices", ()))
        return cls(backends=tuple(data.get("backends", ())), offload=bool(data.get("offload")),
                   devices=devices, problem=data.get("problem"))


def unknown_gpu(problem: str) -> GpuInfo:
    return GpuInfo(backends=(), offload=False, problem=problem)
