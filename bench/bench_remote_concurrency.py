"""A whole abstractive summary of the ~20,000-token benchmark document through a local
``llama-server -np 4`` on loopback: chunks sent one at a time (concurrency 1) against as
many at once as the server has slots (4), both bundled models.

Both runs use ``engine.tasks.summarize.summarize`` through ``RemoteEngine`` with the product's
defaults (the same document and settings as ``bench_summarize_batched.py``, so the ratio
compares with the local batched one). The server is restarted before each run so neither
starts with the other's prompt cache; it runs with 2 threads, flash attention off and 2,048
tokens per slot, like Verso's own engine here.

    .venv/bin/python bench/bench_remote_concurrency.py [--models PATH,PATH] [--tokens N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from bench_summarize_batched import make_document
from common import default_model, save, table

from engine.documents import document_from_text, vocab_token_counter
from engine.events import Event, SeqDone
from engine.model_ref import ModelRef
from engine.options import BatchRequest, LoadSettings
from engine.remote import Endpoint, RemoteEngine
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize

LLAMA_SERVER = Path(sys.prefix) / "llama.cpp" / "build" / "bin" / "llama-server"
GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
SLOTS = 4
SLOT_CTX = 2048


class CountingEngine(RemoteEngine):
    """Adds up the tokens the server generated for the batches."""

    generated = 0

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        for event in super().generate_batch(request):
            if isinstance(event, SeqDone):
                self.generated += event.n_tokens
            yield event


def start_server(model: str, port: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    command = [str(LLAMA_SERVER), "-m", model, "-np", str(SLOTS), "-c", str(SLOTS * SLOT_CTX),
               "-t", str(threads), "-fa", "off", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"llama-server did not start: {log.read_text()[-1500:]}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(model: str, document: object, concurrency: int, threads: int, logs: Path) -> dict:
    port = free_port()
    server = start_server(model, port, threads, logs / f"server-{port}.log")
    try:
        url = f"http://127.0.0.1:{port}"
        engine = CountingEngine(Endpoint(url, concurrency=concurrency))
        list(engine.load(LoadSettings.remote(ModelRef.remote(url, ""))))
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        result = next(e for e in summarize(engine, [document], SummarizeSettings())
                      if isinstance(e, SummaryResult))
        seconds = time.perf_counter() - start
        engine.close()
    finally:
        server.terminate()
        server.wait(30)
    return {"concurrency": concurrency, "seconds": seconds, "chunks": len(result.chunks),
            "load_average": [load_before, os.getloadavg()[0]],
            "generated_tokens": engine.generated, "points": [p.text for p in result.points]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None,
                        help="comma-separated GGUF paths (default: SmolLM2 and Gemma 3 270M)")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not LLAMA_SERVER.exists():
        raise SystemExit(f"{LLAMA_SERVER} is missing: run `make llama-server`")
    models = args.models.split(",") if args.models else [default_model(), str(GEMMA)]
    rows, results = [], []
    with tempfile.TemporaryDirectory() as logs:
        for model in models:
            count = vocab_token_counter(model)
            text = make_document(args.tokens, count)
            document = document_from_text(text, name="bench.md", markdown=True)
            tokens = count(document.to_markdown())
            print(f"{Path(model).name}: document {tokens} tokens", flush=True)
            runs = []
            for concurrency in (1, SLOTS):
                data = run(model, document, concurrency, args.threads, Path(logs))
                runs.append(data)
                print(f"  concurrency {concurrency}: {data['seconds']:.1f} s (load average "
                      f"{data['load_average'][0]:.1f} -> {data['load_average'][1]:.1f})",
                      flush=True)
            ratio = runs[0]["seconds"] / runs[1]["seconds"]
            results.append({"model": Path(model).name, "document_tokens": tokens,
                            "runs": runs, "speedup": ratio})
            for r in runs:
                rows.append([Path(model).name, "sequential" if r["concurrency"] == 1
                             else f"concurrent x{r['concurrency']}", r["chunks"],
                             r["generated_tokens"], r["seconds"],
                             runs[0]["seconds"] / r["seconds"]])
    print(table(["model", "whole summary", "chunks", "generated", "seconds", "speedup"], rows))
    path = save("remote_concurrency", {"server": f"llama-server -np {SLOTS} "
                                                 f"-c {SLOTS * SLOT_CTX} -t {args.threads}",
                                       "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
