"""How llama.cpp's OpenMP threads wait at barriers: sleep, libgomp's long default spin, or
the engine's short spin (``engine.system.configure_openmp``), on a quiet machine, beside one
busy process, and with two engines decoding at once.

Each setting runs a probe in a fresh process (the policy is read when the library loads):
a 450-token prompt, then greedy single-sequence steps and 4-sequence steps (median ms,
at most 60 steps or 8 s each).

    .venv/bin/python bench/bench_openmp.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from common import ROOT, default_model, save, table

from engine.system import OPENMP_SPINCOUNT

SETTINGS = {
    "sleep (OMP_WAIT_POLICY=passive)": {"OMP_WAIT_POLICY": "passive"},
    "libgomp default spin": {},
    f"Verso: GOMP_SPINCOUNT={OPENMP_SPINCOUNT}": {"GOMP_SPINCOUNT": OPENMP_SPINCOUNT},
}

PROBE = r"""
import json, statistics, sys, time
import numpy as np
import llama_cpp
from llama_cpp._internals import LlamaBatch, LlamaContext
llm = llama_cpp.Llama(sys.argv[1], n_ctx=512, n_threads=2, verbose=False)
params = llama_cpp.llama_context_default_params()
params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 4096, 512, 512, 4
params.kv_unified, params.flash_attn_type = False, 0
params.n_threads = params.n_threads_batch = 2
ctx = LlamaContext(model=llm._model, params=params, verbose=False)
batch = LlamaBatch(n_tokens=512, embd=0, n_seq_max=4, verbose=False)
memory = llama_cpp.llama_get_memory(ctx.ctx)
def decode(entries):
    b = batch.batch
    b.n_tokens = len(entries)
    for j, (token, pos, seq, logits) in enumerate(entries):
        b.token[j], b.pos[j], b.seq_id[j][0] = token, pos, seq
        b.n_seq_id[j], b.logits[j] = 1, logits
    assert llama_cpp.llama_decode(ctx.ctx, b) == 0
prompt = [100 + (i * 37) % 20000 for i in range(450)]
start = time.perf_counter()
decode([(t, i, 0, i == 449) for i, t in enumerate(prompt)])
prefill = 450 / (time.perf_counter() - start)
for seq in (1, 2, 3):
    llama_cpp.llama_memory_seq_cp(memory, 0, seq, -1, -1)
def steps(n, count=60, budget_s=8.0):
    times, token, began = [], 500, time.perf_counter()
    for r in range(count):
        if time.perf_counter() - began > budget_s:  # a pathological setting: enough seen
            break
        start = time.perf_counter()
        decode([(token, 450 + r, seq, True) for seq in range(n)])
        times.append(time.perf_counter() - start)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, 0),
                                       shape=(llm.n_vocab(),))
        token = int(logits.argmax())
        busy_until = time.perf_counter() + 0.0005  # the engine's own work between steps
        while time.perf_counter() < busy_until:
            pass
    for seq in range(4):
        llama_cpp.llama_memory_seq_rm(memory, seq, 450, -1)
    return statistics.median(times) * 1000
print(json.dumps({"prefill_tps": prefill, "x1_ms": steps(1), "x4_ms": steps(4)}))
"""


def probe_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    return {**env, **extra, "PYTHONPATH": str(ROOT)}


def run_probes(model: str, extra: dict[str, str], copies: int) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", PROBE, model], env=probe_env(extra),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(copies)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    model = default_model()
    rows, results = [], []
    for condition in ("quiet", "one busy process", "two engines at once"):
        for label, extra in SETTINGS.items():
            busy = None
            if condition == "one busy process":
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(0.2)
            try:
                probes = run_probes(model, extra, 2 if condition == "two engines at once" else 1)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            worst = {k: (min if k == "prefill_tps" else max)(p[k] for p in probes)
                     for k in probes[0]}
            rows.append([condition, label, worst["prefill_tps"], worst["x1_ms"],
                         worst["x4_ms"]])
            results.append({"condition": condition, "setting": label, **worst})
            print(f"  {condition} / {label}: {worst}", flush=True)
    print(table(["condition", "threads wait by", "prompt tok/s", "1 seq ms/step",
                 "4 seq ms/step"], rows))
    print("(two engines: the slower of the two)")
    path = save("openmp", {"model": model, "threads": 2, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
