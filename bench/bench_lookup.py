"""Prompt-lookup (n-gram) speculative decoding on copy-heavy tasks: greedy generation speed
with and without it, same prompts, in one run, and whether the replies are identical.

Verso's runtime does not use it (README, Performance): this script carries its own
draft-and-verify loop on llama.cpp's low-level API, beside a plain one-token-at-a-time greedy
loop on the same context. A draft is what followed the latest earlier occurrence of the last
3 (else 2) tokens in the prompt and output; the chosen token and the draft are decoded in one
batch with logits for every position, the longest prefix the greedy argmax confirms is kept
and the rest is removed from the KV cache. The draft length adapts: doubled after a draft
confirmed whole, else what was confirmed plus one (2 to ``--draft``).

Tasks, on real text nobody here wrote (bench/data: the Book of Ruth, KJV, and the GPL-2):
- post-edit: a paragraph with a few misspellings put in, "correct the spelling";
- re-translate: a segment and an earlier French draft of it, "improve this translation";
- extractive summary: "summarize using sentences from the text".

    .venv/bin/python bench/bench_lookup.py [--model FILE] [--draft 8] [--flash-attn]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np
from common import ROOT, default_model, save, table

from engine.options import ChatMessage, LoadSettings
from engine.runtime.runtime import Runtime

DATA = ROOT / "bench" / "data"
THREADS = 2
MAX_TOKENS = 200

TYPOS = {"the ": "teh ", "which ": "wich ", "receive ": "recieve ", "software": "sofware",
         "their ": "thier ", "program": "progam", "license": "lisence"}


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str


def _paragraphs(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if len(p.split()) > 40]


def tasks() -> list[Task]:
    gpl = _paragraphs(DATA / "COPYING.GPL-2")
    ruth = _paragraphs(DATA / "ruth-kjv.txt")
    paragraph = gpl[3]
    misspelt = paragraph
    for right, wrong in TYPOS.items():
        misspelt = misspelt.replace(right, wrong, 1)
    segment = " ".join(ruth[0].split(". ")[:3]) + "."
    draft = ("Et il arriva, au temps où les juges jugeaient, qu'il y eut une famine dans le "
             "pays. Et un homme de Bethléem de Juda s'en alla séjourner au pays de Moab, lui, "
             "sa femme et ses deux fils. Et le nom de l'homme était Élimélec, et le nom de sa "
             "femme Naomi, et les noms de ses deux fils Machlon et Kiljon, Éphratiens, de "
             "Bethléem de Juda.")
    summary_text = " ".join(ruth[0].split(". ")[:12]) + "."
    return [
        Task("post-edit", "Correct the spelling mistakes in this paragraph. Reply with the "
             f"corrected paragraph only.\n\n{misspelt}"),
        Task("re-translate", f"English: {segment}\n\nFrench draft: {draft}\n\nImprove the "
             "French draft so that it matches the English exactly. Reply with the French "
             "translation only."),
        Task("extractive summary", "Summarize this text in five sentences, using the "
             f"text's own sentences.\n\n{summary_text}"),
    ]


MAX_NGRAM, MIN_NGRAM = 3, 2


class NgramIndex:
    """The token history with, for each n-gram of MIN_NGRAM..MAX_NGRAM tokens, where it
    last ended while something already followed it."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens: list[int] = []
        self._last: dict[tuple[int, ...], int] = {}
        for token in tokens:
            self.push(token)

    def push(self, token: int) -> None:
        end = len(self.tokens) - 1
        for n in range(MIN_NGRAM, MAX_NGRAM + 1):
            if end - n + 1 >= 0:
                self._last[tuple(self.tokens[end - n + 1:end + 1])] = end
        self.tokens.append(token)

    def draft(self, k: int) -> list[int]:
        for n in range(MAX_NGRAM, MIN_NGRAM - 1, -1):
            end = self._last.get(tuple(self.tokens[-n:])) if len(self.tokens) >= n else None
            if end is not None:
                return self.tokens[end + 1:end + 1 + k]
        return []


@dataclass
class Run:
    tokens: list[int]
    seconds: float
    batches: int = 0
    confirmed: int = 0

    @property
    def tps(self) -> float:
        return len(self.tokens) / self.seconds


class Loops:
    """Greedy decoding on one llama.cpp context, one token at a time or with lookup."""

    def __init__(self, model: str, flash_attn: bool) -> None:
        self.llm = llama_cpp.Llama(model_path=model, n_ctx=2048, n_batch=512, n_ubatch=512,
                                   n_threads=THREADS, n_threads_batch=THREADS,
                                   flash_attn=flash_attn, verbose=False)
        self.n_vocab = self.llm.n_vocab()
        self.vocab = self.llm._model.vocab
        self.memory = llama_cpp.llama_get_memory(self.llm.ctx)

    def _decode(self, tokens: list[int], n_past: int, all_logits: bool) -> None:
        batch = self.llm._batch
        batch.set_batch(batch=tokens, n_past=n_past, logits_all=all_logits)
        if llama_cpp.llama_decode(self.llm.ctx, batch.batch) != 0:
            raise SystemExit(f"llama_decode failed at position {n_past}")

    def _argmax(self, row: int) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, row),
                                       shape=(self.n_vocab,))
        return int(np.argmax(logits))

    def _prefill(self, prompt: list[int]) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, 0, -1, -1)
        for start in range(0, len(prompt), 512):
            self._decode(prompt[start:start + 512], start, False)

    def plain(self, prompt: list[int], max_tokens: int) -> Run:
        self._prefill(prompt)
        began = time.perf_counter()
        out: list[int] = []
        while len(out) < max_tokens:
            token = self._argmax(-1)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            out.append(token)
            self._decode([token], len(prompt) + len(out) - 1, False)
        return Run(out, time.perf_counter() - began)

    def lookup(self, prompt: list[int], max_tokens: int, max_draft: int) -> Run:
        self._prefill(prompt)
        began = time.perf_counter()
        index = NgramIndex(prompt)
        run = Run([], 0.0)
        out = run.tokens
        row, pending, drafted, draft_len = -1, [], 0, max_draft
        while len(out) < max_tokens:
            token = self._argmax(row)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                break
            out.append(token)
            index.push(token)
            if pending and pending[0] == token:
                pending.pop(0)
                row += 1
                run.confirmed += 1
                continue
            n_past = len(prompt) + len(out) - 1
            if drafted:
                confirmed = drafted - len(pending)
                grown = 2 * confirmed if confirmed == drafted else confirmed + 1
                draft_len = max(2, min(max_draft, grown))
                llama_cpp.llama_memory_seq_rm(self.memory, 0, n_past, -1)
            draft = index.draft(min(draft_len, max_tokens - len(out)))
            self._decode([token, *draft], n_past, bool(draft))
            row, pending, drafted = (0 if draft else -1), list(draft), len(draft)
            run.batches += bool(draft)
        run.seconds = time.perf_counter() - began
        return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--draft", type=int, default=8, help="most tokens drafted per step")
    parser.add_argument("--flash-attn", action="store_true")
    args = parser.parse_args()
    model = args.model or default_model()
    renderer = Runtime()
    for _ in renderer.load(LoadSettings(path=model, n_ctx=2048, n_threads=THREADS)):
        pass
    prompts = [(task, renderer.tokenize_prompt(renderer.render_chat(
        [ChatMessage("user", task.prompt)]))) for task in tasks()]
    renderer.unload()
    loops = Loops(model, args.flash_attn)
    load_before = os.getloadavg()[0]
    rows = []
    for task, prompt in prompts:
        base = loops.plain(prompt, MAX_TOKENS)
        fast = loops.lookup(prompt, MAX_TOKENS, args.draft)
        same = base.tokens == fast.tokens
        text = loops.llm.detokenize(base.tokens).decode("utf-8", errors="replace")
        rows.append({"task": task.name, "prompt_tokens": len(prompt),
                     "generated": len(base.tokens), "plain_tps": base.tps,
                     "lookup_tps": fast.tps, "speedup": fast.tps / base.tps,
                     "batches": fast.batches, "confirmed": fast.confirmed,
                     "identical": same, "reply": text})
        print(f"--- {task.name}: {text!r}", flush=True)
        if not same:
            n = next((i for i, (a, b) in enumerate(zip(base.tokens, fast.tokens, strict=False))
                      if a != b), min(len(base.tokens), len(fast.tokens)))
            other = loops.llm.detokenize(fast.tokens).decode("utf-8", errors="replace")
            rows[-1]["first_difference"] = n
            print(f"--- {task.name} with lookup (differs from token {n}): {other!r}",
                  flush=True)
    load_after = os.getloadavg()[0]
    print(table(["task", "tokens", "plain tok/s", "lookup tok/s", "speedup", "batches",
                 "confirmed", "identical"],
                [[r["task"], r["generated"], r["plain_tps"], r["lookup_tps"], r["speedup"],
                  r["batches"], r["confirmed"], r["identical"]] for r in rows]))
    print(f"load average before {load_before:.2f}, after {load_after:.2f}")
    name = "lookup" + ("_fa" if args.flash_attn else "")
    if args.model:
        name += "_" + re.sub(r"[^a-z0-9]+", "_", Path(model).stem.lower())
    path = save(name, {"model": Path(model).name, "draft_tokens": args.draft,
                       "flash_attn": args.flash_attn, "threads": THREADS,
                       "max_tokens": MAX_TOKENS, "load_average": [load_before, load_after],
                       "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
