"""The quality benchmark: what a user gets from summaries and translations of real documents
nobody here wrote, with both bundled models, measured with the product's own guards.

One row per (task, document, model) in one table, with the measures of issue 14 and their
targets: repeated sentences (0), distinct word trigrams (>= 0.8), leaked prompt lines (0),
glossary terms appended (0) or missing / in excess, segments flagged untranslated, and the
share of summary points supported by the chunk they cite. The summary half is
``bench/quality_summary.py``'s ``run()``, the translation half
``bench/quality_translate.py``'s; ``--classify N`` adds the calibration figures of
``bench/bench_classify.py`` on N labelled tweets per label (about a second per line and
model on 2 CPU threads, so it is off by default). Writes ``bench/results/quality.json`` with
every output text, so the figures can be checked by reading them.

    .venv/bin/python bench/bench_quality.py                      # both models, ~25 min on 2 CPUs
    .venv/bin/python bench/bench_quality.py --models smol --summary-documents apache-2.0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import bench_classify
import quality_summary
import quality_translate
from common import default_model, save, table

GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
SUMMARY_DOCUMENTS = ("apache-2.0", "ruth-kjv")  # mime-spec (21 chunks) on request
TARGETS = {"repeated sentences": "0", "distinct trigrams": ">= 0.8", "leaked lines": "0",
           "terms appended": "0"}
HEADERS = ["task", "document", "model", "parts", "repeated sentences", "distinct trigrams",
           "leaked lines", "terms placed/appended/missing/excess", "untranslated",
           "supported", "notes", "s"]


def models_available() -> dict[str, str]:
    found = {"smol": default_model()}
    if GEMMA.exists():
        found["gemma"] = str(GEMMA)
    return found


def summary_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        notes = []
        if r["fell_back"]:
            notes.append("fell back to the notes")
        if r["left_out"]:
            notes.append("looping point left out")
        if r.get("repeating_steps"):
            notes.append(f"{r['repeating_steps']} step(s) stopped repeating")
        out.append(["summary", r["document"], r["model"], f"{r['chunks']} chunks",
                    r["repeated_sentences"], r["distinct_trigrams"], "-", "-", "-",
                    f"{r['supported']:.0%} of {r['points']}", "; ".join(notes) or "-",
                    r["seconds"]])
    return out


def translation_rows(rows: list[dict[str, Any]], names: dict[str, str]) -> list[list[Any]]:
    out = []
    for r in rows:
        repeating = sum(o.get("finish_reason") == "repeating" for o in r["outputs"])
        out.append(["translation", r["document"], names.get(r["model"], r["model"]),
                    f"{r['segments']} segments", r["repeated_sentences"],
                    r["distinct_trigrams"], r["leaked_lines"],
                    f"{r['in_position']}/{r['appended']}/{r['missing']}/{r['excess']}",
                    r["untranslated"], "-",
                    f"{repeating} stopped repeating" if repeating else "-", r["seconds"]])
    return out


def classify_figures(models: dict[str, str], per_class: int, threads: int) -> list[dict]:
    tasks = {task: bench_classify.load_lines(labels, per_class, 14)
             for task, labels in bench_classify.TASKS.items()}
    return [{"name": name, **bench_classify.run_model(path, tasks, threads)}
            for name, path in models.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    available = models_available()
    parser.add_argument("--models", default=",".join(available),
                        help=f"comma-separated, of: {', '.join(available)}")
    parser.add_argument("--summary-documents", default=",".join(SUMMARY_DOCUMENTS),
                        help="comma-separated, of: "
                        + ", ".join(d.name for d in quality_summary.DOCUMENTS)
                        + " (empty: no summaries)")
    parser.add_argument("--translate-documents", default="",
                        help="comma-separated names (default: all; 'none': no translations)")
    parser.add_argument("--chars", type=int, default=quality_translate.CHARS,
                        help="characters of each document translated")
    parser.add_argument("--classify", type=int, default=0, metavar="N",
                        help="also measure classification with N tweets per label")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    models = {name: available[name] for name in args.models.split(",")}
    names = {Path(path).name: name for name, path in models.items()}
    started = time.perf_counter()

    wanted = [d for d in args.summary_documents.split(",") if d]
    summary_docs = [d for d in quality_summary.DOCUMENTS if d.name in wanted]
    summaries = quality_summary.run(models, summary_docs, threads=args.threads,
                                    log=lambda line: print(line, flush=True))
    translations: list[dict[str, Any]] = []
    if args.translate_documents != "none":
        keep = [d for d in args.translate_documents.split(",") if d]
        documents = [d for d in quality_translate.default_documents(args.chars)
                     if not keep or d["name"] in keep]
        translations = quality_translate.run(list(models.values()), documents,
                                             threads=args.threads)
    classification = (classify_figures(models, args.classify, args.threads)
                      if args.classify else [])

    print(table(HEADERS, summary_rows(summaries) + translation_rows(translations, names)))
    print("targets: " + ", ".join(f"{k} {v}" for k, v in TARGETS.items()))
    for result in classification:
        for task, t in result["tasks"].items():
            print(f"classify {result['name']}, {task} (n={t['n']}): accuracy raw "
                  f"{t['raw']['accuracy']:.3f}, calibrated {t['calibrated']['accuracy']:.3f}")
    path = save("quality", {"threads": args.threads,
                            "seconds": round(time.perf_counter() - started, 1),
                            "targets": TARGETS, "summaries": summaries,
                            "translations": translations, "classification": classification})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
