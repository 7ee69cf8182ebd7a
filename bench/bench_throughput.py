"""Generation throughput of the engine (child process + event stream, measured where the
caller receives the tokens) against a bare llama.cpp decode loop in one process, same model,
threads, context and greedy sampling. Target: at least 0.95x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from common import default_model, save, table

from engine.events import Done, Token
from engine.options import GREEDY, CompletionRequest, LoadSettings
from engine.system import physical_cores
from engine.worker import EngineClient

PROMPT = "Here is a long story about a journey across the mountains. Chapter 1."
N_CTX = 2048


def bare_loop(model: str, n_tokens: int, flash_attn: bool) -> float:
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    threads = physical_cores()
    llm = llama_cpp.Llama(model, n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads,
                          flash_attn=flash_attn, verbose=False)
    tokens = llm.tokenize(PROMPT.encode(), add_bos=True)
    llm.eval(tokens)
    sampler = LlamaSampler()
    sampler.add_logit_bias(llm.n_vocab(), {llm.token_eos(): -1e9})
    sampler.add_greedy()
    batch = llm._batch
    pos = len(tokens)
    start = time.perf_counter()
    for _ in range(n_tokens):
        token = sampler.sample(llm._ctx, -1)
        llm._model.token_to_piece(token)
        batch.set_batch([token], n_past=pos, logits_all=False)
        llama_cpp.llama_decode(llm.ctx, batch.batch)
        pos += 1
    elapsed = time.perf_counter() - start
    llm.close()
    return n_tokens / elapsed


def engine_run(client: EngineClient, n_tokens: int, eos: int, i: int) -> float:
    sampling = replace(GREEDY, max_tokens=n_tokens + 1, logit_bias=((eos, -1e9),))
    first = last = None
    count = 0
    for event in client.complete(CompletionRequest(PROMPT, sampling, session_id=f"t{i}")):
        if isinstance(event, Token) and event.token_id >= 0:
            now = time.perf_counter()
            first = first or now
            last = now
            count += 1
        elif isinstance(event, Done):
            break
    # first token arrives after prompt evaluation; count the n_tokens decode steps after it
    return (count - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flash-attn", action="store_true", help="Measure with it on.")
    args = parser.parse_args()
    model = default_model()
    fa = args.flash_attn
    engine_tps, bare_tps = [], []
    with EngineClient() as client:
        for _ in client.load(LoadSettings(path=model, n_ctx=N_CTX, flash_attn=fa)):
            pass
        import llama_cpp

        vocab_model = llama_cpp.Llama(model, vocab_only=True, verbose=False)
        eos = vocab_model.token_eos()
        vocab_model.close()
        for i in range(args.rounds):
            engine_tps.append(engine_run(client, args.tokens, eos, i))
            client.forget_session(f"t{i}")
            bare_tps.append(bare_loop(model, args.tokens, fa))
    rows = [[i + 1, e, b, e / b] for i, (e, b) in enumerate(zip(engine_tps, bare_tps,
                                                                 strict=True))]
    print(table(["round", "engine tok/s", "bare loop tok/s", "ratio"], rows))
    ratio = statistics.median(engine_tps) / statistics.median(bare_tps)
    print(f"\nmedian engine / bare: {ratio:.3f}x (target >= 0.95x), {args.tokens} tokens, "
          f"{physical_cores()} threads, flash attention {'on' if fa else 'off'}")
    path = save("throughput", {"engine_tps": engine_tps, "bare_tps": bare_tps,
                               "ratio_of_medians": ratio, "tokens": args.tokens,
                               "flash_attn": fa})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
