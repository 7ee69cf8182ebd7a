"""What this build of Verso runs on: printed by ``verso --version`` and shown in the app, so a
bug report names the exact llama.cpp inside (it has had a long series of GGUF-parsing CVEs)."""

from __future__ import annotations

import ctypes
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from engine import __version__


@dataclass(frozen=True)
class BuildInfo:
    verso: str
    llama_cpp_python: str
    ggml_version: str
    ggml_commit: str
    gpu_offload: bool
    backends: tuple[str, ...]
    system_info: str

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        commit = "" if self.ggml_commit in ("", "unknown") else f" ({self.ggml_commit})"
        gpu = "available" if self.gpu_offload else "not available (CPU-only build)"
        return [
            f"Verso {self.verso}",
            f"llama-cpp-python {self.llama_cpp_python}, vendored llama.cpp ggml "
            f"{self.ggml_version}{commit}",
            f"backends: {', '.join(self.backends) or 'CPU'}; GPU offload: {gpu}",
        ]


def _ggml_string(lib_dir: Path, symbol: str) -> str:
    for name in ("libggml-base.so", "libggml-base.dylib", "ggml-base.dll", "libggml.so",
                 "libggml.dylib", "ggml.dll"):
        path = lib_dir / name
        if not path.exists():
            continue
        try:
            fn = getattr(ctypes.CDLL(str(path)), symbol)
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        return (fn() or b"").decode()
    return "unknown"


def _backends(lib_dir: Path) -> tuple[str, ...]:
    """Names of the compute backends registered in this llama.cpp build (CPU, CUDA, Metal…)."""
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        path = lib_dir / name
        if not path.exists():
            continue
        try:
            lib = ctypes.CDLL(str(path))
            lib.ggml_backend_reg_count.restype = ctypes.c_size_t
            lib.ggml_backend_reg_get.restype = ctypes.c_void_p
            lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
            lib.ggml_backend_reg_name.restype = ctypes.c_char_p
            lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
            return tuple(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode()
                         for i in range(lib.ggml_backend_reg_count()))
        except (OSError, AttributeError):
            continue
    return ()


def build_info() -> BuildInfo:
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    return BuildInfo(
        verso=__version__,
        llama_cpp_python=metadata.version("llama-cpp-python"),
        ggml_version=_ggml_string(lib_dir, "ggml_version"),
        ggml_commit=_ggml_string(lib_dir, "ggml_commit"),
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        backends=_backends(lib_dir),
        system_info=llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    )
