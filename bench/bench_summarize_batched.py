"""Map step of a summary, batched vs sequential, on a document of 20,000+ tokens.

Batched: all chunks go through ``generate_batch`` (N parallel sequences in one context, the
instruction prefix evaluated once). Sequential: each chunk through ``Runtime.chat`` in one
session, one after another (its KV prefix reuse also skips the shared instruction). Both
greedy, same prompts, same max_tokens. The document is generated here from word lists and
sentence templates (no network); it is varied enough that chunks differ.

    .venv/bin/python bench/bench_summarize_batched.py [--model PATH] [--parallel 8]
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace

from common import default_model, save, table

from engine.documents import document_from_text, segment, vocab_token_counter
from engine.events import Done
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.runtime.batch import BatchRequest, SeqDone, generate_batch
from engine.runtime.runtime import Runtime
from engine.tasks.jobs import InProcessClient, batch_items, prompt_tokens
from engine.tasks.summarize import SummarizeSettings, _map_prompt

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--chunk-tokens", type=int, default=512)
    parser.add_argument("--note-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    model = args.model or default_model()
    count = vocab_token_counter(model)
    text = make_document(args.tokens, count)
    document = document_from_text(text, name="bench.md", markdown=True)
    doc_tokens = count(document.to_markdown())
    chunks = segment(document, count, args.chunk_tokens)
    rt = Runtime()
    for _ in rt.load(LoadSettings(path=model, n_ctx=2048, n_threads=args.threads)):
        pass
    client = InProcessClient(rt)
    chat = bool(rt.loaded.has_chat_template)
    settings = SummarizeSettings(chunk_tokens=args.chunk_tokens)
    prompts = [_map_prompt(c, "bench.md", settings) for c in chunks]
    sampling = replace(GREEDY, max_tokens=args.note_tokens)
    print(f"document: {doc_tokens} tokens, {len(chunks)} chunks; model {rt.loaded.name}")

    start = time.perf_counter()
    sequential: list[str] = []
    seq_generated = 0
    for p in prompts:
        events = rt.chat(ChatRequest((ChatMessage("user", p),), sampling, session_id="bench"),
                         lambda: False)
        done = next(e for e in events if isinstance(e, Done))
        sequential.append(done.text)
        seq_generated += done.stats.generated_tokens
    seq_s = time.perf_counter() - start

    start = time.perf_counter()
    items = batch_items([prompt_tokens(client, p, chat) for p in prompts])
    batched: dict[int, str] = {}
    final = None
    for event in generate_batch(rt, BatchRequest(items, sampling, n_parallel=args.parallel)):
        if isinstance(event, SeqDone):
            batched[event.index] = event.text
        elif isinstance(event, Done):
            final = event
    batch_s = time.perf_counter() - start
    same = sum(batched[i].strip() == sequential[i].strip() for i in range(len(prompts)))
    rows = [
        ["sequential", len(prompts), seq_generated, seq_s, seq_generated / seq_s, 1.0],
        [f"batched x{args.parallel}", len(prompts), final.stats.generated_tokens, batch_s,
         final.stats.generated_tokens / batch_s, seq_s / batch_s],
    ]
    print(table(["map step", "chunks", "generated", "seconds", "gen tok/s", "speedup"], rows))
    print(f"identical notes (greedy, not batch-invariant): {same}/{len(prompts)}; "
          f"prompt tokens shared: {final.stats.reused_tokens}")
    path = save("summarize_batched", {
        "model": rt.loaded.name, "document_tokens": doc_tokens, "chunks": len(chunks),
        "chunk_tokens": args.chunk_tokens, "note_tokens": args.note_tokens,
        "parallel": args.parallel, "threads": args.threads or "physical cores",
        "sequential_s": seq_s, "batched_s": batch_s, "speedup": seq_s / batch_s,
        "sequential_generated": seq_generated,
        "batched_generated": final.stats.generated_tokens,
        "prompt_tokens_shared": final.stats.reused_tokens,
        "identical_notes": same,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
