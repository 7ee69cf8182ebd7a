"""Run ``engine.runtime.gpu_probe`` in a short-lived child process.

Probing a GPU build initialises the GPU driver (a CUDA context holds hundreds of MB of video
memory for as long as the process lives), so the GUI and the CLI never do it in their own
process: a spawned child answers and exits. A child that hangs or dies is reported in
``GpuInfo.problem``, never raised."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection

from engine.gpu import GpuInfo, unknown_gpu

PROBE_TIMEOUT_S = 60.0


def _child(conn: Connection) -> None:
    from engine.runtime.gpu_probe import probe

    try:
        conn.send(probe().to_dict())
    finally:
        conn.close()


def probe_gpu(timeout: float = PROBE_TIMEOUT_S) -> GpuInfo:
    """This build's backends and GPUs with their free memory, asked in a child process."""
    from engine.worker.client import _main_module_hidden

    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send,), name="verso-gpu-probe", daemon=True)
    try:
        with _main_module_hidden():
            proc.start()
    except OSError as exc:
        return unknown_gpu(f"the probe process could not start ({exc})")
    send.close()
    try:
        if not receive.poll(timeout):
            return unknown_gpu(f"the probe did not answer within {timeout:g} s")
        return GpuInfo.from_dict(receive.recv())
    except (EOFError, OSError):
        proc.join(5)
        return unknown_gpu(f"the probe process stopped (exit code {proc.exitcode})")
    finally:
        receive.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
