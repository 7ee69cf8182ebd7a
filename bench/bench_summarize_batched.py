"""A whole abstractive summary of a 20,000+ token document: sequential vs batched map step.

Both runs go through ``engine.tasks.summarize.summarize`` end to end (segmentation, map,
hierarchical reduce, citations) with the same greedy settings; the only difference is
``n_parallel``: 1 (each chunk decoded alone, one after another) against N parallel sequences
in one context with the instruction prefix shared. The document is generated here from word
lists and sentence templates (no network); it is varied enough that chunks differ.

It also times prompt evaluation alone and prints the best speedup any schedule of the same
work could reach (batching only speeds up generation).

    .venv/bin/python bench/bench_summarize_batched.py [--model PATH] [--parallel 4,8]
    .venv/bin/python bench/bench_summarize_batched.py \
        --model .venv/test-models/gemma-3-270m-q4_k_m.gguf   # after `make test`
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from dataclasses import replace

from common import default_model, save, table

from engine.documents import document_from_text, vocab_token_counter
from engine.events import Done
from engine.options import GREEDY, BatchRequest, CompletionRequest, LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize

SUBJECTS = ["The council", "A small bakery", "The river authority", "Our research team",
            "The regional museum", "A volunteer group", "The harbour master", "The city library",
            "An independent school", "The transport office", "A local orchestra", "The clinic"]
VERBS = ["announced", "postponed", "reviewed", "expanded", "questioned", "funded", "completed",
         "redesigned", "measured", "documented", "approved", "tested"]
OBJECTS = ["a plan for new cycle lanes", "the winter opening hours", "its annual budget",
           "a survey of water quality", "the restoration of the old mill", "a reading programme",
           "repairs to the northern pier", "a festival of early music", "a study of bird counts",
           "the timetable for night buses", "a pilot for free vaccinations", "a new archive"]
DETAILS = ["after two years of consultation", "despite objections from residents",
           "with help from a national grant", "following a dry summer",
           "in cooperation with the university", "at a cost of {n} thousand euros",
           "before the elections in {m}", "because {n} people signed a petition",
           "although the first results were mixed", "to reduce waiting times by {n} percent"]
MONTHS = ["March", "April", "June", "September", "October", "November"]


def make_document(min_tokens: int, count_tokens) -> str:
    rng = random.Random(7)
    paragraphs: list[str] = []
    total = 0
    section = 0
    while total < min_tokens:
        if len(paragraphs) % 6 == 0:
            section += 1
            heading = f"# Section {section}: {rng.choice(OBJECTS).capitalize()}"
            paragraphs.append(heading)
        sentences = []
        for _ in range(rng.randint(3, 6)):
            detail = rng.choice(DETAILS).format(n=rng.randint(2, 90), m=rng.choice(MONTHS))
            sentences.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} "
                             f"{rng.choice(OBJECTS)} {detail}.")
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += count_tokens(paragraph) + 2
    return "\n\n".join(paragraphs)


class RecordingClient(InProcessEngine):
    """Adds up what the batched runs report: prompt tokens evaluated, tokens generated."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.evaluated = self.generated = self.shared = 0

    def generate_batch(self, request: BatchRequest) -> Iterator[object]:
        for event in super().generate_batch(request):
            if isinstance(event, Done):
                self.evaluated += event.stats.evaluated_tokens
                self.shared += event.stats.reused_tokens
                self.generated += event.stats.generated_tokens
            yield event


def run(rt: Runtime, document, settings: SummarizeSettings) -> tuple[dict, SummaryResult]:
    client = RecordingClient(rt)
    start = time.perf_counter()
    result = next(e for e in summarize(client, [document], settings)
                  if isinstance(e, SummaryResult))
    seconds = time.perf_counter() - start
    return {"n_parallel": settings.n_parallel, "seconds": seconds,
            "prompt_tokens_evaluated": client.evaluated, "prompt_tokens_shared": client.shared,
            "generated_tokens": client.generated, "map_steps": len(result.chunks),
            "points": [p.text for p in result.points]}, result


def prompt_rate(rt: Runtime, text: str, tokens: int = 1500) -> float:
    """Prompt tokens per second, evaluated in one request (the rate both runs pay for every
    prompt token: no schedule evaluates prompts faster)."""
    ids = rt.tokenize(text, add_bos=False, special=False)[:tokens]
    prompt = rt.detokenize(ids)
    done = [e for e in rt.complete(CompletionRequest(prompt, replace(GREEDY, max_tokens=1),
                                                     session_id="rate"), lambda: False)
            if isinstance(e, Done)]
    rt.forget_session("rate")
    return done[-1].stats.prompt_tps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--parallel", default="4,8",
                        help="comma-separated n_parallel values to compare with 1")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    model = args.model or default_model()
    count = vocab_token_counter(model)
    text = make_document(args.tokens, count)
    document = document_from_text(text, name="bench.md", markdown=True)
    doc_tokens = count(document.to_markdown())
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=model, n_ctx=4096, n_threads=args.threads)):
        pass
    base = SummarizeSettings()  # the product's defaults: chunks, note length, greedy
    print(f"document: {doc_tokens} tokens; model {rt.loaded.name}; chunk {base.chunk_tokens} "
          f"tokens, notes <= {base.note_tokens} tokens")
    rate = prompt_rate(rt, text)
    runs = []
    for n in [1, *(int(v) for v in args.parallel.split(","))]:
        data, _ = run(rt, document, replace(base, n_parallel=n))
        runs.append(data)
        print(f"  n_parallel={n}: {data['seconds']:.1f} s", flush=True)
    sequential = runs[0]["seconds"]
    rows = [[("sequential" if r["n_parallel"] == 1 else f"batched x{r['n_parallel']}"),
             r["map_steps"], r["prompt_tokens_evaluated"], r["generated_tokens"], r["seconds"],
             sequential / r["seconds"]] for r in runs]
    print(table(["whole summary", "chunks", "prompt evaluated", "generated", "seconds",
                 "speedup"], rows))
    floor = min(r["prompt_tokens_evaluated"] for r in runs) / rate
    print(f"prompt evaluation alone at {rate:.0f} tok/s: {floor:.1f} s; even if generation "
          f"cost nothing, batching could not beat {sequential / floor:.2f}x here")
    path = save("summarize_batched", {
        "model": rt.loaded.name, "document_tokens": doc_tokens,
        "chunk_tokens": base.chunk_tokens, "note_tokens": base.note_tokens,
        "threads": args.threads or "physical cores", "runs": runs,
        "prompt_tps": rate, "prompt_floor_s": floor, "speedup_ceiling": sequential / floor,
        "speedups": {str(r["n_parallel"]): sequential / r["seconds"] for r in runs[1:]},
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
