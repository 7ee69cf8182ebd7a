"""Segmentation time for summaries: text without sentence breaks (the case that was
quadratic: 1 MB took ~127 s before) and ordinary prose of the same size, counted with the
bundled model's vocabulary in this process. Target: linear, so 4x the text takes at most
about 4x the time, and 1 MB without breaks costs about what prose does.
"""

from __future__ import annotations

import argparse
import random
import time

from common import default_model, save, table

from engine.documents import document_from_text, segment, vocab_token_counter

WORDS = ("river", "engine", "document", "summary", "model", "token", "budget", "chunk",
         "paragraph", "sentence", "translation", "glossary", "context", "cache")


def prose(n_chars: int, rng: random.Random) -> str:
    out: list[str] = []
    size = 0
    while size < n_chars:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize()
        out.append(sentence + ".")
        size += len(sentence) + 2
        if rng.random() < 0.15:
            out.append("\n\n")
    return " ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="250000,1000000", help="characters, comma-separated")
    parser.add_argument("--chunk-tokens", type=int, default=512)
    args = parser.parse_args()
    count = vocab_token_counter(default_model())
    rng = random.Random(7)
    rows, results = [], []
    for n in (int(s) for s in args.sizes.split(",")):
        for kind, text in (("no sentence breaks", ("word " * (n // 5 + 1))[:n]),
                           ("prose", prose(n, rng)[:n])):
            start = time.perf_counter()
            chunks = segment(document_from_text(text), count, args.chunk_tokens)
            seconds = time.perf_counter() - start
            rows.append([kind, f"{n:,}", len(chunks), f"{seconds:.2f}"])
            results.append({"kind": kind, "chars": n, "chunks": len(chunks),
                            "seconds": seconds})
    print(table(["text", "characters", "chunks", "seconds"], rows))
    save("segment", {"chunk_tokens": args.chunk_tokens, "results": results})


if __name__ == "__main__":
    main()
