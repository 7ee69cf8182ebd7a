"""What this machine offers models: free memory (read when asked, it changes) and the GPU
backends and devices of the llama.cpp build (probed once, in a child process, off the GUI
thread). ``machine()`` is the one instance the window, the Models panel, Settings and the
model view share."""

from __future__ import annotations

import contextlib
import threading

from PySide6.QtCore import QObject, Signal

from engine.catalog.memory import available_memory_bytes
from engine.gpu import GpuInfo


class Machine(QObject):
    gpu_ready = Signal(object)  # GpuInfo, once probed

    def __init__(self) -> None:
        super().__init__()
        self.gpu: GpuInfo | None = None
        self._probing = False

    def ram_free(self) -> int | None:
        return available_memory_bytes()

    def vram_free(self) -> int | None:
        return self.gpu.free_bytes if self.gpu is not None and self.gpu.usable else None

    def set_gpu(self, info: GpuInfo) -> None:
        self.gpu = info
        with contextlib.suppress(RuntimeError):
            self.gpu_ready.emit(info)

    def probe(self) -> None:
        """Probe the GPU in the background (once); ``gpu_ready`` says when it is known."""
        if self.gpu is not None or self._probing:
            return
        self._probing = True

        def run() -> None:
            from engine.worker.gpu_probe import probe_gpu

            self.set_gpu(probe_gpu())

        threading.Thread(target=run, name="verso-gpu-probe", daemon=True).start()

    def gpu_summary(self) -> str:
        return self.gpu.summary() if self.gpu is not None else "Checking the GPU…"


_machine: Machine | None = None


def machine() -> Machine:
    global _machine
    if _machine is None:
        _machine = Machine()
    return _machine
