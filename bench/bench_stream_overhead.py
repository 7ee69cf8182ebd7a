"""Streaming overhead per token over a 2,000-token reply: the time between two Token events
minus the time llama_decode took for that token (which grows with the context on its own).
Target: the mean overhead of the last 100 tokens at most 1.2x that of the first 100.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace

from common import default_model, mean, save, table

from engine.events import Token
from engine.options import GREEDY, CompletionRequest, LoadSettings
from engine.runtime.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args()
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=default_model(), n_ctx=4096)):
        pass
    decode_times: list[float] = []
    original = runtime._decode_one

    def timed_decode(token: int) -> None:
        start = time.perf_counter()
        original(token)
        decode_times.append(time.perf_counter() - start)

    runtime._decode_one = timed_decode  # type: ignore[method-assign]
    eos = runtime._llama.token_eos()
    sampling = replace(GREEDY, max_tokens=args.tokens, logit_bias=((eos, -1e9),),
                       stop=("<|never|>", "###END###"))
    stamps: list[float] = []
    for event in runtime.complete(CompletionRequest("Once upon a time", sampling), lambda: False):
        if isinstance(event, Token) and event.token_id >= 0:
            stamps.append(time.perf_counter())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    overhead = [g - d for g, d in zip(gaps, decode_times, strict=False)]
    first, last = overhead[:100], overhead[-100:]
    ratio = mean(last) / mean(first)
    rows = [["first 100", mean(first) * 1e6, mean(decode_times[:100]) * 1e3],
            ["last 100", mean(last) * 1e6, mean(decode_times[-100:]) * 1e3]]
    print(table(["tokens", "overhead per token (us)", "llama_decode (ms)"], rows))
    print(f"\nlast/first overhead: {ratio:.2f}x (target <= 1.2x) over {len(stamps)} tokens")
    path = save("stream_overhead", {"tokens": len(stamps), "overhead_first100_us":
                                    mean(first) * 1e6, "overhead_last100_us": mean(last) * 1e6,
                                    "ratio": ratio})
    print(f"wrote {path}")
    runtime.unload()


if __name__ == "__main__":
    main()
