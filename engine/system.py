"""Facts about the machine that the engine's defaults depend on."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from functools import cache
from pathlib import Path

# Pause-loop iterations an OpenMP thread spins at a barrier before it sleeps (GNU libgomp).
OPENMP_SPINCOUNT = "300"


@cache
def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's arithmetic units, so llama.cpp runs
    no faster on them). Falls back to the logical CPU count."""
    logical = os.cpu_count() or 1
    try:
        cores: set[tuple[str, str]] = set()
        physical = core = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "physical id":
                physical = value
            elif key == "core id":
                core = value
            elif not line.strip() and core:
                cores.add((physical, core))
                core = ""
        if core:
            cores.add((physical, core))
        affinity = len(os.sched_getaffinity(0))
        return max(1, min(len(cores) or logical, affinity))
    except (OSError, AttributeError):
        return logical


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> None:
    """Let llama.cpp's OpenMP threads spin briefly at each graph-node barrier, then sleep.

    Must run before llama.cpp's libraries load. A CPU decode step crosses hundreds of
    barriers; sleeping at each (``OMP_WAIT_POLICY=passive``) made one SmolLM2 token cost
    ~20 ms instead of ~14 ms on 2 cores, while libgomp's default spin (300,000 pauses) made
    threads fight a busy process or a second engine for the cores (4 parallel sequences:
    163 ms a step against 77 ms sleeping). 300 pauses keep the quiet speed and stay within
    ~20 % of sleeping under contention (bench/bench_openmp.py). A user's own
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins."""
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = OPENMP_SPINCOUNT
