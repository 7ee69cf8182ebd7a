"""Facts about the machine that the engine's defaults depend on."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


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
