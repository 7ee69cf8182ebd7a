"""Sampling and load options as data: one schema drives the CLI flags, the GUI controls and
validation, so a new option is added in one place."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from engine.model_ref import ModelRef


def _opt(default: Any, *, lo: float | None = None, hi: float | None = None, help: str = "",
         step: float | None = None, escaped: bool = False) -> Any:
    """A field with its range and help. ``escaped``: a text list whose entries are typed
    and shown with ``engine.text_lists.escape`` (``\\n`` for a line break)."""
    return field(default=default, metadata={"min": lo, "max": hi, "help": help, "step": step,
                                            "escaped": escaped})


DRY_BREAKER_CHARS = 40  # llama.cpp cuts longer sequence breakers


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = _opt(0.7, lo=0.0, hi=2.0, step=0.05,
                              help="Randomness. 0 always picks the most likely token (greedy).")
    top_k: int = _opt(40, lo=0, hi=200, help="Sample only among the k most likely tokens (0: off).")
    top_p: float = _opt(0.95, lo=0.0, hi=1.0, step=0.01,
                        help="Nucleus: smallest set of tokens whose probabilities add up to p.")
    min_p: float = _opt(0.05, lo=0.0, hi=1.0, step=0.01,
                        help="Drop tokens less likely than min_p times the most likely one.")
    typical_p: float = _opt(1.0, lo=0.0, hi=1.0, step=0.01,
                            help="Locally typical sampling (1: off).")
    repeat_penalty: float = _opt(1.1, lo=1.0, hi=2.0, step=0.01,
                                 help="Penalise tokens seen in the recent window (1: off).")
    repeat_last_n: int = _opt(64, lo=0, hi=4096, help="Window of recent tokens for penalties.")
    presence_penalty: float = _opt(0.0, lo=-2.0, hi=2.0, step=0.05,
                                   help="Flat penalty for any token already present.")
    frequency_penalty: float = _opt(0.0, lo=-2.0, hi=2.0, step=0.05,
                                    help="Penalty growing with how often a token appeared.")
    dry_multiplier: float = _opt(
        0.0, lo=0.0, hi=5.0, step=0.05,
        help="DRY (don't repeat yourself): penalise a token that would extend a repeat of "
             "earlier output; strength (0: off, 0.8 is usual).")
    dry_base: float = _opt(1.75, lo=1.0, hi=4.0, step=0.05,
                           help="DRY: how fast the penalty grows with the repeat's length.")
    dry_allowed_length: int = _opt(2, lo=1, hi=64,
                                   help="DRY: repeats up to this many tokens are not penalised.")
    dry_penalty_last_n: int = _opt(64, lo=-1, hi=131072,
                                   help="DRY: tokens of the output scanned for repeats "
                                        "(-1: the whole context, 0: off).")
    dry_sequence_breakers: tuple[str, ...] = _opt(
        ("\n", ":", "\"", "*"), escaped=True,
        help="DRY: texts that end a repeat (a repeat never spans them); \\n is a line break.")
    xtc_probability: float = _opt(
        0.0, lo=0.0, hi=1.0, step=0.01,
        help="XTC (exclude top choices): chance per token of removing every likely token but "
             "the least likely of them (0: off).")
    xtc_threshold: float = _opt(0.1, lo=0.0, hi=1.0, step=0.01,
                                help="XTC: tokens at least this likely count as top choices "
                                     "(above 0.5: off).")
    mirostat: int = _opt(0, lo=0, hi=2, help="Mirostat adaptive sampling: 0 off, 1 v1, 2 v2.")
    mirostat_tau: float = _opt(5.0, lo=0.0, hi=10.0, step=0.1, help="Mirostat target surprise.")
    mirostat_eta: float = _opt(0.1, lo=0.0, hi=1.0, step=0.01, help="Mirostat learning rate.")
    seed: int = _opt(-1, lo=-1, hi=2**31 - 1, help="Random seed (-1: random each run).")
    max_tokens: int = _opt(512, lo=1, hi=131072, help="Stop after this many generated tokens.")
    stop: tuple[str, ...] = _opt((), help="Stop when any of these strings appears.")
    n_probs: int = _opt(0, lo=0, hi=20, help="Report this many top alternatives per token.")
    grammar: str | None = _opt(None, help="GBNF grammar constraining the output.")
    logit_bias: tuple[tuple[int, float], ...] = _opt((), help="(token id, bias) pairs.")
    ban_phrases: tuple[str, ...] = _opt(
        (), help="Words or phrases that never appear in the output (enforced while decoding).")
    ban_any_case: bool = _opt(False, help="Match banned phrases in any casing.")
    loop_guard: bool = _opt(
        True, help="Stop loops: undo a repeated sentence or passage as it is written, steer "
                   "the model away from it, and end the output if it keeps repeating itself.")

    def validate(self) -> list[str]:
        """Problems with the values, as sentences; empty when valid."""
        problems = []
        for f in fields(self):
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                problems.append(f"{f.name}={value} is not a number")
                continue
            if lo is not None and value < lo:
                problems.append(f"{f.name}={value} is below the minimum {lo}")
            if hi is not None and value > hi:
                problems.append(f"{f.name}={value} is above the maximum {hi}")
        if any(not text for text in self.stop):
            problems.append("stop strings must not be empty (an empty one would match at once)")
        for token, bias in self.logit_bias:
            if not math.isfinite(bias):
                problems.append(f"logit_bias for token {token} is {bias}: it must be a finite "
                                "number (use banned words to keep a word out)")
        for breaker in self.dry_sequence_breakers:
            if not breaker:
                problems.append("dry_sequence_breakers has an empty entry")
            elif len(breaker) > DRY_BREAKER_CHARS:
                problems.append(f"dry_sequence_breakers entry {breaker[:20]!r}… is longer than "
                                f"{DRY_BREAKER_CHARS} characters")
        return problems


GREEDY = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
# Summaries and translations: greedy with DRY over the whole output. Measured with both
# bundled models on real documents (bench/bench_dry.py): with the loop guard alone 3 of 6
# outputs had under 0.8 distinct word trigrams (0.65-0.74), with DRY none (0.82-0.96).
DOCUMENT_SAMPLING = SamplingParams(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                   repeat_penalty=1.0, dry_multiplier=0.8,
                                   dry_penalty_last_n=-1)


class KVType(StrEnum):
    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


class ContextPolicy(StrEnum):
    REFUSE = "refuse"  # error that says how many tokens over
    DROP_OLDEST = "drop_oldest"  # drop the oldest turns, keep the system prompt, report it


DEFAULT_CTX_CAP = 8192
MIN_CTX = 256  # llama.cpp pads smaller contexts up to this anyway
MAX_CTX = 1 << 20


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How to load a model. Flash attention is off by default: measured on 2 x86 cores it
    evaluated prompts ~30 % slower (87 tokens at position 1,000: 714 vs 453 ms) at the same
    generation speed; it saves memory at long contexts. ``n_ctx=0`` means the model's trained
    context, capped at ``DEFAULT_CTX_CAP``; thread counts of 0 mean all physical cores.
    A model on a server is named by ``model`` (``ModelRef.remote``) with an empty ``path``;
    the server ignores the thread, GPU and KV settings."""

    path: str
    n_ctx: int = 0
    n_threads: int = 0
    n_threads_batch: int = 0
    flash_attn: bool = False
    n_gpu_layers: int = 0
    kv_type: KVType = KVType.F16
    n_batch: int = 512
    check_memory: bool = True
    model: ModelRef | None = None

    @classmethod
    def remote(cls, ref: ModelRef, n_ctx: int = 0) -> LoadSettings:
        return cls(path="", n_ctx=n_ctx, model=ref)

    def validate(self) -> list[str]:
        """Problems with the values, as sentences; empty when valid. Thread counts above the
        machine's CPU threads only slow llama.cpp down (OpenMP starts that many threads:
        1,000 took 32 s for 3 tokens on 2 cores, 100,000 crashed it)."""
        problems = []
        cpus = os.cpu_count() or 1
        for name in ("n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if not 0 <= value <= cpus:
                problems.append(f"{name}={value} must be between 1 and this machine's {cpus} "
                                "CPU threads (0: all physical cores)")
        if self.n_ctx != 0 and not MIN_CTX <= self.n_ctx <= MAX_CTX:
            problems.append(f"n_ctx={self.n_ctx} must be between {MIN_CTX:,} and {MAX_CTX:,} "
                            "tokens (0: the model's own, at most "
                            f"{DEFAULT_CTX_CAP:,})")
        if self.n_batch < 1:
            problems.append(f"n_batch={self.n_batch} must be at least 1")
        if self.n_gpu_layers < -1:
            problems.append(f"n_gpu_layers={self.n_gpu_layers} must be -1 (all) or more")
        return problems


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = SamplingParams()
    session_id: str = "default"
    policy: ContextPolicy = ContextPolicy.REFUSE
    continue_last: bool = False  # continue the final assistant message instead of a new turn
    json_schema: str | None = None  # the schema ``sampling.grammar`` was compiled from, if any


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    prompt: str
    sampling: SamplingParams = SamplingParams()
    session_id: str = "default"
    add_bos: bool = True
    forced_prefix_tokens: tuple[int, ...] = ()  # appended after the prompt before sampling
    echo_forced: bool = False  # stream the forced tokens as Token events; Done.text has them
    json_schema: str | None = None  # the schema ``sampling.grammar`` was compiled from, if any


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One prompt of a batch: its tokens, or, for a backend without exact tokenization
    (``Feature.EXACT_TOKENS`` absent, e.g. a server that only takes text), the prompt as one
    conversation (``messages``, sent to its chat endpoint) or as raw ``text``."""

    tokens: tuple[int, ...]  # the whole prompt, BOS included if wanted
    required: tuple[str, ...] = ()  # texts the output must contain
    messages: tuple[ChatMessage, ...] = ()
    text: str = ""


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Several prompts decoded together; answered by ``SeqToken``/``SeqDone`` events and a
    closing ``Done`` whose stats add up the run."""

    items: tuple[BatchItem, ...]
    sampling: SamplingParams = GREEDY
    n_parallel: int = 4
    logprobs: bool = False  # report each token's log-probability and the mean per item
    min_tokens: int = 0  # end-of-generation tokens are refused before this many tokens


def prompt_limit(n_ctx: int, max_tokens: int) -> int:
    """Tokens a prompt may use: the context minus room for a reply (at most a quarter of the
    context is reserved, so a large max_tokens does not refuse ordinary prompts)."""
    return n_ctx - max(1, min(max_tokens, n_ctx // 4))
