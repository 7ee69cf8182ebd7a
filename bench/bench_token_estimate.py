"""How close the conservative token estimate (engine/token_estimate) comes to the real counts
of both bundled models' tokenizers, per language.

Usage: .venv/bin/python bench/bench_token_estimate.py

Texts: the held-out sample in tests/data/token_estimate_holdout.jsonl (UDHR articles and
first sentences no part of training saw, code, Markdown, numbers, mixed texts), plus two
out-of-domain sets: the licence files of the installed packages (English legal text) and
modules of Python's standard library (code). Prints a table and writes
bench/results/token_estimate.json; also times the estimate on 1 MB of text.
"""

from __future__ import annotations

import json
import sys
import sysconfig
import time
from collections import defaultdict
from pathlib import Path

from common import ROOT, save, table

from engine.token_estimate import estimate_tokens

HOLDOUT = ROOT / "tests" / "data" / "token_estimate_holdout.jsonl"
GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"  # as tests/conftest.py
NAMES = {"eng": "English", "deu_1996": "German", "fra": "French", "spa": "Spanish",
         "rus": "Russian", "cmn_hans": "Chinese (simplified)", "jpn": "Japanese",
         "arb": "Arabic", "hin": "Hindi"}


def out_of_domain() -> list[dict]:
    site = Path(sysconfig.get_paths()["purelib"])
    records = []
    for path in sorted(site.glob("*.dist-info/LICEN[CS]E*"))[:40]:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")[:6000].strip()
            if text:
                records.append({"lang": "licences (out of domain)", "text": text,
                                "kind": "text"})
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py"))[:200:5]:
        text = path.read_text(encoding="utf-8", errors="replace")[:4000]
        records.append({"lang": "Python stdlib (out of domain)", "text": text, "kind": "text"})
    return records


def main() -> None:
    import llama_cpp

    from engine.catalog import bundled_model_path

    smol = bundled_model_path()
    if smol is None or not GEMMA.exists():
        raise SystemExit("needs both bundled models: run `make install`")
    tokenizers = {name: llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
                  for name, path in (("smol", smol), ("gemma", GEMMA))}
    records = [json.loads(line) for line in HOLDOUT.read_text(encoding="utf-8").splitlines()]
    records += out_of_domain()
    groups: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for record in records:
        lang = NAMES.get(record["lang"], record["lang"])
        if record.get("source") == "udhr" and record["lang"] not in NAMES:
            lang = "other scripts (25 languages)"
        if record.get("source") == "sentence":
            lang += " (sentences)"
        real = [len(llm.tokenize(record["text"].encode("utf-8"), add_bos=False,
                                 special=False)) for llm in tokenizers.values()]
        groups[lang].append((real[0], real[1], estimate_tokens(record["text"])))

    headers = ["language", "texts", "real smol", "real gemma", "estimate",
               "worst under smol %", "worst under gemma %", "mean over smol %",
               "mean over gemma %"]
    rows, results = [], {}
    order = [*NAMES.values()]

    def position(lang: str) -> tuple[int, bool]:
        name = lang.removesuffix(" (sentences)")
        return (order.index(name) if name in order else len(order), name != lang)

    for lang, items in sorted(groups.items(), key=lambda g: position(g[0])):
        smol_real = sum(i[0] for i in items)
        gemma_real = sum(i[1] for i in items)
        estimate = sum(i[2] for i in items)
        under = [max(0.0, 1 - i[2] / i[k]) * 100 for i in items for k in (0, 1)]
        under_s = max(max(0.0, 1 - i[2] / i[0]) * 100 for i in items)
        under_g = max(max(0.0, 1 - i[2] / i[1]) * 100 for i in items)
        over_s = sum(i[2] / i[0] - 1 for i in items) / len(items) * 100
        over_g = sum(i[2] / i[1] - 1 for i in items) / len(items) * 100
        worst_over = max(i[2] / min(i[0], i[1]) - 1 for i in items) * 100
        rows.append([lang, len(items), smol_real, gemma_real, estimate, f"{under_s:.1f}",
                     f"{under_g:.1f}", f"{over_s:.0f}", f"{over_g:.0f}"])
        results[lang] = {"texts": len(items), "real_smol": smol_real,
                         "real_gemma": gemma_real, "estimate": estimate,
                         "worst_under_pct": round(max(under), 2),
                         "worst_under_smol_pct": round(under_s, 2),
                         "worst_under_gemma_pct": round(under_g, 2),
                         "mean_over_smol_pct": round(over_s, 1),
                         "mean_over_gemma_pct": round(over_g, 1),
                         "worst_over_pct": round(worst_over, 1)}
    print(table(headers, rows))

    text = "".join(r["text"] + "\n" for r in records)
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    estimate_tokens("warm up")
    start = time.perf_counter()
    estimate_tokens(text)
    seconds = time.perf_counter() - start
    print(f"\n1,000,000 characters estimated in {seconds:.2f} s")
    path = save("token_estimate", {"groups": results, "seconds_per_million_chars": seconds})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
