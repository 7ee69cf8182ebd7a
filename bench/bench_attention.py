"""Attention capture cost (``engine.runtime.attention``): milliseconds to capture the last
token's attention over ~100 and ~500 tokens, in a fresh capture context (the whole text is
evaluated) and when the capture context already holds the text up to the previous token (the
"click the next token" case), against plain evaluation of the same tokens with flash
attention off and no eval callback. Also the round trip through the engine process.
Writes bench/results/attention.json.

    python bench/bench_attention.py [MODEL.gguf ...]   (default: the bundled model)
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from common import default_model, save, table

from engine.options import LoadSettings
from engine.runtime.runtime import Runtime
from engine.worker import EngineClient

LENGTHS = (100, 500)
THREADS = 1
REPEATS = 3


def _tokens(runtime: Runtime, n: int) -> list[int]:
    rnd = random.Random(0)
    llm = runtime._llama
    head = [llm.token_bos()] if llm._model.add_bos_token() else []
    return head + [rnd.randrange(1000, 20000) for _ in range(n - len(head))]


def _plain_eval_ms(runtime: Runtime, tokens: list[int]) -> float:
    """The same tokens in the same kind of context, without the eval callback."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = -(-len(tokens) // 256) * 256
    params.n_batch = params.n_ubatch = min(512, params.n_ctx)
    params.n_threads = params.n_threads_batch = THREADS
    params.flash_attn_type = 0
    params.swa_full = True
    ctx = llama_cpp.llama_init_from_model(runtime._llama._model.model, params)
    try:
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        start = time.perf_counter()
        for i in range(0, len(tokens), params.n_batch):
            chunk = min(params.n_batch, len(tokens) - i)
            batch = llama_cpp.llama_batch_get_one(_offset(array, i), chunk)
            assert llama_cpp.llama_decode(ctx, batch) == 0
        return (time.perf_counter() - start) * 1000
    finally:
        llama_cpp.llama_free(ctx)


def _offset(array, index: int):
    import ctypes

    import llama_cpp

    return ctypes.cast(ctypes.byref(array, index * ctypes.sizeof(llama_cpp.llama_token)),
                       ctypes.POINTER(llama_cpp.llama_token))


def measure(model: str) -> list[dict]:
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=model, n_ctx=1024, n_threads=THREADS)):
        pass
    rows = []
    try:
        for n in LENGTHS:
            tokens = _tokens(runtime, n)
            plain = fresh = reuse = float("inf")
            for _ in range(REPEATS):  # best of a few: the machine may be shared
                plain = min(plain, _plain_eval_ms(runtime, tokens))
                if runtime._attention is not None:
                    runtime._attention.close()  # a fresh capture context
                start = time.perf_counter()
                att = runtime.attention(tokens, n - 1)
                fresh = min(fresh, (time.perf_counter() - start) * 1000)
                runtime.attention(tokens, n - 2)
                start = time.perf_counter()
                runtime.attention(tokens, n - 1)
                reuse = min(reuse, (time.perf_counter() - start) * 1000)
            rows.append({"model": Path(model).name, "tokens": n,
                         "shape": list(att.weights.shape), "plain_eval_ms": round(plain, 1),
                         "fresh_capture_ms": round(fresh, 1),
                         "next_token_capture_ms": round(reuse, 1)})
    finally:
        runtime.unload()
    with EngineClient() as client:
        for _ in client.load(LoadSettings(path=model, n_ctx=1024, n_threads=THREADS)):
            pass
        ids = client.tokenize("word " * (LENGTHS[-1] - 1), add_bos=True)[: LENGTHS[-1]]
        client.attention(ids, len(ids) - 2)
        start = time.perf_counter()
        client.attention(ids, len(ids) - 1)
        rows[-1]["next_token_capture_via_engine_process_ms"] = round(
            (time.perf_counter() - start) * 1000, 1)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    results = [row for model in (args.models or [default_model()]) for row in measure(model)]
    headers = list(results[0])
    print(table(headers, [[row.get(h, "") for h in headers] for row in results]))
    print(save("attention", {"threads": THREADS, "results": results}))
