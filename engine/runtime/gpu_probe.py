"""Ask llama.cpp's ggml backend registry which devices this build can use and how much
memory each has free. Loads llama.cpp's libraries (and, on a GPU build, initialises the GPU
driver), so it runs in a child process: ``engine.worker.gpu_probe.probe_gpu``."""

from __future__ import annotations

import ctypes
from pathlib import Path

from engine.gpu import GpuDevice, GpuInfo, unknown_gpu

# enum ggml_backend_dev_type (ggml-backend.h in the vendored llama.cpp)
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
_GGML_LIBS = ("libggml.so", "libggml.dylib", "ggml.dll")


def _ggml(lib_dir: Path) -> ctypes.CDLL | None:
    for name in _GGML_LIBS:
        path = lib_dir / name
        if path.exists():
            try:
                return ctypes.CDLL(str(path))
            except OSError:
                continue
    return None


def _declare(lib: ctypes.CDLL) -> None:
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.ggml_backend_reg_count.restype = sz
    lib.ggml_backend_reg_get.restype, lib.ggml_backend_reg_get.argtypes = vp, [sz]
    lib.ggml_backend_reg_name.restype, lib.ggml_backend_reg_name.argtypes = ctypes.c_char_p, [vp]
    lib.ggml_backend_dev_count.restype = sz
    lib.ggml_backend_dev_get.restype, lib.ggml_backend_dev_get.argtypes = vp, [sz]
    for fn in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
        fn.restype, fn.argtypes = ctypes.c_char_p, [vp]
    lib.ggml_backend_dev_type.restype, lib.ggml_backend_dev_type.argtypes = ctypes.c_int, [vp]
    lib.ggml_backend_dev_memory.restype = None
    lib.ggml_backend_dev_memory.argtypes = [vp, ctypes.POINTER(sz), ctypes.POINTER(sz)]
    lib.ggml_backend_dev_backend_reg.restype = vp
    lib.ggml_backend_dev_backend_reg.argtypes = [vp]


def _text(value: bytes | None) -> str:
    return (value or b"").decode(errors="replace").strip()


def probe() -> GpuInfo:
    """The backends and non-CPU devices of the llama.cpp that ``llama_cpp`` loads."""
    try:
        import llama_cpp
    except Exception as exc:  # a missing or broken build must not stop the app
        return unknown_gpu(f"llama.cpp could not be loaded ({exc})")
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    lib = _ggml(Path(llama_cpp.__file__).parent / "lib")
    if lib is None:
        return unknown_gpu("llama.cpp's ggml library was not found")
    try:
        _declare(lib)
        backends = tuple(_text(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)))
                         for i in range(lib.ggml_backend_reg_count()))
        devices = []
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            if _DEVICE_TYPES.get(lib.ggml_backend_dev_type(dev)) in ("cpu", "meta", None):
                continue
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            reg = lib.ggml_backend_dev_backend_reg(dev)
            devices.append(GpuDevice(
                name=_text(lib.ggml_backend_dev_name(dev)),
                description=_text(lib.ggml_backend_dev_description(dev)),
                backend=_text(lib.ggml_backend_reg_name(reg)) if reg else "",
                free_bytes=int(free.value) if total.value else None,
                total_bytes=int(total.value) or None))
    except (OSError, AttributeError) as exc:
        return unknown_gpu(f"this llama.cpp build has no device registry ({exc})")
    return GpuInfo(backends=backends, offload=offload, devices=tuple(devices))
