"""Translation quality on real documents nobody here wrote, for each model: the translation
half of the quality benchmark (bench/bench_quality.py combines it with the summary half).

Each document (the first 3,200 characters of a license text shipped in site-packages, and the
history section of CPython's own LICENSE) is translated to German with a two-term glossary
whose required translations no model writes by itself ("Lizenz-XQ"), so every one in the
output was placed. Per document and model:

- ``repeated_sentences``: output sentences that repeat an earlier one (beyond the repeats
  the source itself has), ``distinct_trigrams``: distinct word trigrams / all trigrams;
- glossary terms ``in_position`` (placed where a source occurrence is), ``appended`` (tacked
  onto the end: ``term_placement.appended``), ``missing`` and ``excess`` (more often than
  the source term occurs), counted on the final text;
- ``untranslated``: segments flagged untranslated (source language or a copy);
- ``leaked_lines``: prompt lines still in the final text (``prompt_echo`` run again on it),
  ``echoes_removed``: segments whose raw output had an echo that was stripped.

    .venv/bin/python bench/quality_translate.py [--models smol,gemma] [--formats system]
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from common import default_model, save, table

from engine.documents import document_from_text, split_sentences
from engine.options import LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.glossary import Glossary
from engine.tasks.prompt_echo import strip_echo
from engine.tasks.term_placement import appended, occurrences
from engine.tasks.translate import TranslateSettings, Translation, translate
from engine.tasks.translate_prompt import DEFAULT_FORMAT, FORMATS

GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
CHARS = 3200
_WORD = re.compile(r"\w+", re.UNICODE)


def model_path(name: str) -> str:
    return {"smol": default_model, "gemma": lambda: str(GEMMA)}.get(name, lambda: name)()


def _site_license() -> Path:
    """requests' Apache-2.0 LICENSE (any *.dist-info LICENSE with "Apache License" otherwise)."""
    site = Path(sysconfig.get_paths()["purelib"])
    found = sorted(site.glob("requests-*.dist-info/**/LICENSE*"))
    found += sorted(p for p in site.glob("*.dist-info/**/LICENSE*")
                    if "Apache License" in p.read_text(errors="ignore")[:400])
    if not found:
        raise SystemExit("no Apache-2.0 license text in site-packages")
    return found[0]


def _python_history(chars: int) -> tuple[str, str]:
    path = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    text = path.read_text(encoding="utf-8")
    start = text.find("A. HISTORY OF THE SOFTWARE")
    return str(path), text[start if start >= 0 else 0:][:chars]


def default_documents(chars: int = CHARS) -> list[dict]:
    """Name, where it comes from, text and glossary of each document (its first ``chars``)."""
    apache = _site_license()
    history_path, history = _python_history(chars)
    return [
        {"name": "Apache-2.0", "path": str(apache),
         "text": apache.read_text(encoding="utf-8")[:chars],
         "glossary": [("License", "Lizenz-XQ"), ("Work", "Werk-XQ")]},
        {"name": "Python history", "path": history_path, "text": history,
         "glossary": [("license", "Lizenz-XQ"), ("software", "Programm-XQ")]},
    ]


def sentences(text: str) -> list[str]:
    return [" ".join(s.text.lower().split()) for s in split_sentences(text) if s.text.strip()]


def repeated_sentences(text: str) -> int:
    """Sentences that repeat an earlier sentence of ``text`` (of at least three words)."""
    counts = Counter(s for s in sentences(text) if len(_WORD.findall(s)) >= 3)
    return sum(n - 1 for n in counts.values())


def distinct_trigrams(text: str) -> float:
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return len(set(grams)) / len(grams) if grams else 1.0


def term_counts(translation: Translation, glossary: Glossary) -> dict[str, int]:
    counts = Counter(in_position=0, appended=0, missing=0, excess=0)
    targets = [e.target for e in glossary.entries]
    for segment in translation.segments:
        for entry in glossary.applicable(segment.source):
            expected = len(occurrences(entry.source, segment.source))
            found = len(occurrences(entry.target, segment.text))
            tacked = len(appended(segment.source, segment.text, entry, targets))
            placed = min(found - tacked, expected)
            counts["in_position"] += placed
            counts["appended"] += tacked
            counts["missing"] += expected - placed
            counts["excess"] += max(0, found - tacked - expected)
    return dict(counts)


def leaked_lines(engine: InProcessEngine, translation: Translation,
                 settings: TranslateSettings) -> int:
    """Segments whose final text still holds a line of their prompt (instruction, glossary
    line, examples), found by running ``prompt_echo`` again on the final text."""
    from engine.tasks.jobs import model_has_chat
    from engine.tasks.translate_prompt import FORMATS, glossary_line, segment_prompt

    count = 0
    for segment in translation.segments:
        if not segment.translated or not segment.text:
            continue
        terms = settings.glossary.applicable(segment.source)
        lines = {glossary_line(terms)} if terms else set()
        for form in FORMATS:  # every format's lines, not only the one used
            lines.update(segment_prompt(engine, segment.source, "English", "German", terms,
                                        model_has_chat(engine), form).instructions)
        count += bool(strip_echo(segment.text, sorted(lines), segment.source).removed)
    return count


def measure(engine: InProcessEngine, document: dict, form: str) -> dict:
    glossary = Glossary.from_pairs(document["glossary"])
    settings = TranslateSettings(target="de", source="en", glossary=glossary,
                                 prompt_format=form)
    start = time.perf_counter()
    translation = list(translate(engine, document_from_text(document["text"]), settings))[-1]
    assert isinstance(translation, Translation)
    seconds = time.perf_counter() - start
    output = "\n\n".join(s.text for s in translation.segments)
    source_repeats = repeated_sentences(document["text"])
    return {
        "document": document["name"], "source": document["path"], "format": form,
        "segments": len(translation.segments), "seconds": round(seconds, 1),
        "repeated_sentences": max(0, repeated_sentences(output) - source_repeats),
        "distinct_trigrams": round(distinct_trigrams(output), 3),
        **term_counts(translation, glossary),
        "untranslated": sum(s.untranslated for s in translation.segments),
        "leaked_lines": leaked_lines(engine, translation, settings),
        "echoes_removed": sum(bool(s.leaked) for s in translation.segments),
        "needs_review": sum(s.needs_review for s in translation.segments),
        "outputs": [{"source": s.source, "text": s.text, "finish_reason": s.finish_reason,
                     "flags": [f.message for f in s.flags], "leaked": list(s.leaked)}
                    for s in translation.segments],
    }


def run(models: Sequence[str], documents: Sequence[dict] | None = None,
        formats: Sequence[str] = (DEFAULT_FORMAT,), threads: int = 2) -> list[dict]:
    """One row per model, document and prompt format (``models``: paths or smol/gemma)."""
    documents = list(documents) if documents is not None else default_documents()
    rows = []
    for name in models:
        runtime = Runtime()
        path = model_path(name)
        for _ in runtime.load(LoadSettings(path=path, n_ctx=2048, n_threads=threads)):
            pass
        engine = InProcessEngine(runtime)
        try:
            for document in documents:
                for form in formats:
                    rows.append({"model": Path(path).name, **measure(engine, document, form)})
        finally:
            runtime.unload()
    return rows


COLUMNS = ["model", "document", "format", "segments", "repeated_sentences", "distinct_trigrams",
           "in_position", "appended", "missing", "excess", "untranslated", "leaked_lines",
           "echoes_removed", "needs_review", "seconds"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smol,gemma")
    parser.add_argument("--formats", default=DEFAULT_FORMAT,
                        help="comma-separated, of: " + ", ".join(FORMATS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chars", type=int, default=CHARS, help="characters of each document")
    parser.add_argument("--documents", default="",
                        help="comma-separated names to keep (default: all)")
    args = parser.parse_args(argv)
    documents = [d for d in default_documents(args.chars)
                 if not args.documents or d["name"] in args.documents.split(",")]
    rows = run(args.models.split(","), documents, args.formats.split(","), args.threads)
    print(table(COLUMNS, [[row[c] for c in COLUMNS] for row in rows]))
    print(f"[wrote {save('quality_translate', {'rows': rows})}]")


if __name__ == "__main__":
    main()
