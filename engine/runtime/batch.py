"""Several completions decoded together as parallel sequences of one llama.cpp context.

A second ``LlamaContext`` on the runtime's model holds ``n_parallel`` generating sequences
plus one that only keeps the prompts' common token prefix: the prefix is evaluated once and
copied (``llama_memory_seq_cp``) into each sequence's own KV stream before its suffix is
evaluated. Every step decodes one ``llama_batch`` holding the next token of each generating
sequence plus, up to ``n_batch``, prompt tokens of sequences still being filled (continuous
batching with chunked prefill): generation rides along with prompt evaluation instead of
waiting for it, and a finished sequence's slot takes the next waiting prompt at once.

``required`` texts are enforced while decoding, not requested. While a required text is
missing, each step checks whether the model would start it here: when the text's first token
is the sampled token, or at least ``_OPPORTUNE`` times as likely as it (and not a short, generic
piece), the whole text is forced from that point, so a term lands where the model would have
put it. When a sequence is about to end (end-of-generation token, stop string, or too few
tokens left) with a required text still missing, its tokens are forced there as a last resort.

llama.cpp's kernels are not batch-invariant, so a sequence decoded beside others can differ
slightly from the same prompt decoded alone. One prompt on its own is evaluated without prefix
splitting, exactly as ``Runtime.complete`` does.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import BadRequestError, Cancelled, ContextOverflowError
from engine.events import Done, Event, FinishReason, SeqDone, SeqRollback, SeqToken, Stats
from engine.loop_guard import LoopDetector, LoopPenalty
from engine.options import BatchRequest
from engine.runtime.llama_plumbing import (
    AbortSwitch,
    CancelCheck,
    decode_failure,
    ggml_kv_type,
    logits_row,
    logsumexp,
    shared_prefix,
    thread_counts,
)
from engine.runtime.runtime import _BANNED_LOGIT, LOOP_RETRIES, Runtime
from engine.runtime.sampling import TokenSampler
from engine.runtime.text_stream import TextStream

_CTX_ROUND = 256
_OPPORTUNE = 0.2  # a required text may start where its first token is this likely vs the pick
_MIN_START_CHARS = 3  # ...unless that first token is a short piece such as " a" or " de"


@dataclass
class _Seq:
    index: int
    slot: int
    sampler: TokenSampler
    stops: tuple[str, ...]
    required: list[str]
    stream: TextStream = field(init=False)
    raw: str = ""  # everything decoded, stop strings included
    n_past: int = 0
    generated: int = 0
    logprob_sum: float = 0.0
    forced_queue: list[int] = field(default_factory=list)
    forced_done: set[str] = field(default_factory=set)
    forced_count: int = 0
    pending_token: int = -1  # sampled, streamed, not yet decoded
    prefill: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    spellings: dict[str, list[list[int]]] = field(default_factory=dict)  # term -> tokenizations
    prompt: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # generated (streamed) so far
    pieces: list[bytes] = field(default_factory=list)
    forced_flags: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    # term -> (generated token where forcing it began, its number of tokens)
    forced_at: dict[str, tuple[int, int]] = field(default_factory=dict)
    loops: LoopDetector | None = None
    penalty: LoopPenalty = field(default_factory=LoopPenalty)
    bans: dict[int, set[int]] = field(default_factory=dict)  # position -> tokens banned there
    n_loops: int = 0

    def __post_init__(self) -> None:
        self.stream = TextStream(self.stops)

    def truncate(self, n_tokens: int) -> int:
        """Keep the first ``n_tokens`` generated tokens; return how many streamed characters
        that takes back (the text is rebuilt by replaying what is kept)."""
        emitted = self.stream.emitted_chars
        for name in ("tokens", "pieces", "forced_flags", "logprobs"):
            del getattr(self, name)[n_tokens:]
        self.forced_at = {t: at for t, at in self.forced_at.items() if at[0] < n_tokens}
        self.forced_done = {t for t in self.forced_done if t in self.forced_at}
        self.forced_queue = []
        self.raw = "".join(p.decode("utf-8", errors="ignore") for p in self.pieces)
        self.generated = n_tokens
        self.forced_count = sum(self.forced_flags)
        self.logprob_sum = sum(self.logprobs)
        self.stream = TextStream(self.stops)
        for piece in self.pieces:
            self.stream.push(piece)
        return emitted - self.stream.emitted_chars

    def missing(self) -> list[str]:
        return [t for t in self.required if t not in self.raw and t not in self.forced_done]


class BatchDecoder:
    """One run of a ``BatchRequest`` on a fresh context (closed when the run ends, so it
    never outlives the model it was made for)."""

    def __init__(self, runtime: Runtime, request: BatchRequest, cancel: CancelCheck) -> None:
        self.rt = runtime
        self.llm = runtime._require_model()
        self.request = request
        self.cancel = cancel
        self.n_parallel = max(1, min(request.n_parallel, len(request.items)))
        self.prefix_seq = self.n_parallel
        self.prompts = [list(item.tokens) for item in request.items]
        self.prefix = shared_prefix(self.prompts)
        self.ctx: Any = None  # llama_cpp._internals.LlamaContext (see Runtime._llama)
        self.batch: Any = None  # llama_cpp._internals.LlamaBatch
        self._abort = AbortSwitch(cancel)
        self.evaluated = 0
        self.generated = 0
        self._seed = 0

    # ------------------------------------------------------------ setup

    def _open(self) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        sampling = self.request.sampling
        longest = max(len(p) for p in self.prompts)
        train = self.llm._model.n_ctx_train()
        if longest + sampling.max_tokens > train:
            raise ContextOverflowError(longest + sampling.max_tokens, train)
        per_seq = max(len(p) - self.prefix for p in self.prompts) + sampling.max_tokens + 8
        # One KV stream per sequence (not unified): a token then attends over its own
        # sequence's cells only, not over every sequence's, which on small models cost more
        # than the parallel decoding saved. The shared prefix is copied into each stream.
        per_stream = -(-(self.prefix + per_seq) // _CTX_ROUND) * _CTX_ROUND
        n_ctx = per_stream * (self.n_parallel + 1)
        settings = self.rt._settings
        threads, threads_batch = thread_counts(settings)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = min(512, n_ctx)
        params.n_seq_max = self.n_parallel + 1
        params.kv_unified = False
        params.n_threads = threads
        params.n_threads_batch = threads_batch
        params.flash_attn_type = 1 if (settings is None or settings.flash_attn) else 0
        if settings is not None:
            params.type_k = params.type_v = ggml_kv_type(settings.kv_type)
        self.ctx = LlamaContext(model=self.llm._model, params=params, verbose=False)
        self.n_batch = params.n_batch
        self.batch = LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=self.n_parallel + 1,
                                verbose=False)

    def close(self) -> None:
        if self.ctx is not None:
            self.ctx.close()
        if self.batch is not None:
            self.batch.close()
        self.ctx = self.batch = None

    # ------------------------------------------------------------ decoding

    def _decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, position, seq, wants_logits) entries in one llama_batch."""
        import llama_cpp

        b = self.batch.batch
        b.n_tokens = len(entries)
        for j, (token, pos, seq, logits) in enumerate(entries):
            b.token[j] = token
            b.pos[j] = pos
            b.seq_id[j][0] = seq
            b.n_seq_id[j] = 1
            b.logits[j] = logits
        rc = llama_cpp.llama_decode(self.ctx.ctx, b)
        if rc != 0:  # aborted: Cancelled
            raise decode_failure(rc, "in a batched run")

    def _evaluate(self, tokens: Sequence[int], start: int, seq: int) -> None:
        """Evaluate a prompt slice in ``seq``; the last token's logits are kept."""
        with self._abort.armed_on(self.ctx.ctx):
            for at in range(0, len(tokens), self.n_batch):
                if self.cancel():
                    raise Cancelled
                part = tokens[at:at + self.n_batch]
                last = at + len(part) == len(tokens)
                self._decode([(t, start + at + i, seq, last and i == len(part) - 1)
                              for i, t in enumerate(part)])
                self.evaluated += len(part)

    def _admit(self, index: int, slot: int, seed: int) -> _Seq:
        """Give prompt ``index`` the KV stream ``slot``; its suffix is evaluated by the
        following steps."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
        if self.prefix:
            # The whole prefix sequence: llama.cpp copies between KV streams only whole.
            llama_cpp.llama_memory_seq_cp(memory, self.prefix_seq, slot, -1, -1)
        prompt = self.prompts[index]
        sampling = self.request.sampling
        return _Seq(index=index, slot=slot, sampler=self._sampler(index, seed),
                    stops=tuple(sampling.stop), required=list(self.request.items[index].required),
                    n_past=self.prefix, prefill=prompt[self.prefix:], prompt=prompt,
                    loops=LoopDetector() if sampling.loop_guard else None)

    def _sampler(self, index: int, seed: int) -> TokenSampler:
        return TokenSampler(self.request.sampling, seed % 2**31 if index < 0 else
                            (seed + index) % 2**31, self.llm._model.vocab, self.llm.n_vocab(),
                            self.ctx.n_ctx())

    def _plan(self, active: dict[int, _Seq]) -> tuple[list[tuple[int, int, int, bool]],
                                                      list[tuple[_Seq, int]]]:
        """One step's batch: each generating sequence's pending token, then prompt tokens of
        filling sequences (in admission order) while room is left. Returns the entries and
        the sequences to sample after the decode, with their logits' batch index."""
        entries: list[tuple[int, int, int, bool]] = []
        sample: list[tuple[_Seq, int]] = []
        for slot in sorted(active):
            seq = active[slot]
            if not seq.prefill:
                sample.append((seq, len(entries)))
                entries.append((seq.pending_token, seq.n_past, slot, True))
                seq.n_past += 1
        for seq in active.values():
            room = self.n_batch - len(entries)
            if room <= 0:
                break
            if not seq.prefill:
                continue
            part, seq.prefill = seq.prefill[:room], seq.prefill[room:]
            for i, token in enumerate(part):
                last = not seq.prefill and i == len(part) - 1
                if last:
                    sample.append((seq, len(entries)))
                entries.append((token, seq.n_past + i, seq.slot, last))
            seq.n_past += len(part)
            self.evaluated += len(part)
        return entries, sample

    def _logits(self, batch_index: int) -> np.ndarray:
        return logits_row(self.ctx.ctx, batch_index, self.llm.n_vocab())

    def _force(self, seq: _Seq, term: str, tokens: list[int] | None = None) -> None:
        if tokens is None:
            lead = "" if not seq.raw or seq.raw[-1].isspace() else " "
            tokens = self.rt.tokenize(lead + term, add_bos=False, special=False)
        seq.forced_queue = list(tokens)
        seq.forced_done.add(term)
        seq.forced_at[term] = (seq.generated, len(tokens))

    def _spellings(self, seq: _Seq, term: str) -> list[list[int]]:
        """The term's tokenizations with and without a leading space (first tokens differ)."""
        if term not in seq.spellings:
            found = [self.rt.tokenize(lead + term, add_bos=False, special=False)
                     for lead in (" ", "")]
            seq.spellings[term] = [t for t in found if t]
        return seq.spellings[term]

    def _opportune(self, seq: _Seq, missing: list[str], logits: np.ndarray,
                   token: int) -> tuple[str, list[int]] | None:
        """A missing required text the model would start now, with the tokens to force."""
        top = float(logits[token])
        after_word = bool(seq.raw) and seq.raw[-1].isalnum()
        for term in missing:
            for tokens in self._spellings(seq, term):
                first = tokens[0]
                if first == token:
                    return term, tokens
                if math.exp(float(logits[first]) - top) < _OPPORTUNE:
                    continue
                piece = self.rt._piece(first)
                long_enough = len(piece.strip()) >= _MIN_START_CHARS or len(tokens) == 1
                if long_enough and (piece.startswith(b" ") or not after_word):
                    return term, tokens
        return None

    def _next_token(self, seq: _Seq, batch_index: int) -> tuple[int, bool]:
        """The sequence's next token and whether it was forced."""
        import llama_cpp

        vocab = self.llm._model.vocab
        remaining = self.request.sampling.max_tokens - seq.generated
        if not seq.forced_queue:
            missing = seq.missing()
            if missing:
                need = len(self.rt.tokenize(" " + missing[0], add_bos=False, special=False))
                if remaining <= need + sum(len(m) // 2 for m in missing[1:]):
                    self._force(seq, missing[0])
        if seq.forced_queue:
            token = seq.forced_queue.pop(0)
            seq.sampler.accept(token)
            return token, True
        logits = self._logits(batch_index)
        if seq.penalty or seq.generated in seq.bans:
            logits = logits.copy()
            seq.penalty.apply(logits)
            if seq.generated in seq.bans:
                logits[list(seq.bans[seq.generated])] = _BANNED_LOGIT
        token = seq.sampler.sample(logits)
        if seq.generated < self.request.min_tokens and llama_cpp.llama_vocab_is_eog(vocab, token):
            logits = logits.copy()
            while llama_cpp.llama_vocab_is_eog(vocab, token):
                logits[token] = -np.inf
                token = seq.sampler.sample(logits)
        missing = seq.missing()
        if missing:
            opportune = self._opportune(seq, missing, logits, token)
            if opportune is not None:
                self._force(seq, *opportune)
                token = seq.forced_queue.pop(0)
                seq.sampler.accept(token)
                return token, True
            ending = llama_cpp.llama_vocab_is_eog(vocab, token)
            if not ending and seq.stops:
                tail = seq.raw[-64:] + self.rt._piece(token).decode("utf-8", errors="ignore")
                ending = any(s in tail for s in seq.stops)
            if ending:
                self._force(seq, missing[0])
                token = seq.forced_queue.pop(0)
                seq.sampler.accept(token)
                return token, True
        seq.sampler.accept(token)
        return token, False

    def run(self) -> Iterator[Event]:
        start = time.perf_counter()
        sampling = self.request.sampling
        seed = self._seed = sampling.seed if sampling.seed >= 0 else random.randrange(2**31)
        want_logprobs = self.request.logprobs
        vocab = self.llm._model.vocab
        self._open()
        pending = list(range(len(self.prompts)))
        active: dict[int, _Seq] = {}
        free = list(range(self.n_parallel))
        finish_all: FinishReason | None = None
        try:
            if self.prefix:
                self._evaluate(self.prompts[0][:self.prefix], 0, self.prefix_seq)
            while pending or active:
                while free and pending:
                    slot = free.pop(0)
                    active[slot] = self._admit(pending.pop(0), slot, seed)
                if self.cancel():
                    raise Cancelled
                evaluated = self.evaluated
                entries, sample = self._plan(active)
                # Cancel mid-decode only while prefilling.
                self._abort.arm(self.ctx.ctx, self.evaluated > evaluated)
                try:
                    self._decode(entries)
                finally:
                    self._abort.arm(self.ctx.ctx, False)
                for seq, batch_index in sample:
                    ended = yield from self._step_one(seq, batch_index, want_logprobs, vocab)
                    if ended is not None:
                        del active[seq.slot]
                        free.append(seq.slot)
        except Cancelled:
            finish_all = FinishReason.CANCELLED
            for seq in active.values():
                yield self._done(seq, FinishReason.CANCELLED)
            for index in pending:
                yield SeqDone(index, FinishReason.CANCELLED, "", 0)
        finally:
            self.close()
        seconds = time.perf_counter() - start
        total_prompt = sum(len(p) for p in self.prompts)
        yield Done(finish_all or FinishReason.STOP, "", Stats(
            prompt_tokens=total_prompt, reused_tokens=total_prompt - self.evaluated,
            evaluated_tokens=self.evaluated, generated_tokens=self.generated,
            generation_s=seconds,
            generation_tps=self.generated / seconds if seconds > 0 else 0.0))

    def _step_one(self, seq: _Seq, batch_index: int, want_logprobs: bool, vocab: Any
                  ) -> Generator[Event, None, FinishReason | None]:
        """Choose ``seq``'s next token from the logits at ``batch_index`` and stream it.
        Returns the finish reason when the sequence ended, else None (the token to decode
        next is left in ``seq.pending_token``)."""
        import llama_cpp

        token, forced = self._next_token(seq, batch_index)
        if not forced and llama_cpp.llama_vocab_is_eog(vocab, token):
            yield self._done(seq, FinishReason.STOP)
            return FinishReason.STOP
        piece = self.rt._piece(token)
        loop = seq.loops.push(piece) if seq.loops is not None else None
        if loop is not None:
            return (yield from self._undo_loop(seq, token, loop.token_index, loop.text))
        logprob = None
        if want_logprobs:
            logits = self._logits(batch_index)
            logprob = float(logits[token]) - logsumexp(logits)
            seq.logprob_sum += logprob
            seq.logprobs.append(logprob)
        seq.tokens.append(token)
        seq.pieces.append(piece)
        seq.forced_flags.append(forced)
        seq.penalty.accept(token)
        seq.raw += piece.decode("utf-8", errors="ignore")
        seq.generated += 1
        self.generated += 1
        seq.forced_count += forced
        text = seq.stream.push(piece)
        yield SeqToken(seq.index, token, text, logprob, forced)
        if seq.stream.stopped:
            yield self._done(seq, FinishReason.STOP)
            return FinishReason.STOP
        if seq.generated >= self.request.sampling.max_tokens and not seq.forced_queue:
            yield self._done(seq, FinishReason.LENGTH)
            return FinishReason.LENGTH
        seq.pending_token = token
        return None

    def _undo_loop(self, seq: _Seq, token: int, at: int, text: str
                   ) -> Generator[Event, None, FinishReason | None]:
        """Roll ``seq`` back to generated token ``at``, where a loop began (``token``, the one
        that completed it, was not streamed). As in ``Runtime._generate``: the loop's first
        token is banned there and the rest penalised, and the loop after ``LOOP_RETRIES``
        ends the sequence. Returns the finish reason when it ended, else None."""
        import llama_cpp

        for begun, length in seq.forced_at.values():  # never keep half a forced term
            if begun < at < begun + length:
                at = begun
        seq.n_loops += 1
        loop_tokens = [*seq.tokens, token][at:]
        streamed = len(seq.tokens) - at
        n_chars = seq.truncate(at)
        assert seq.loops is not None
        seq.loops.truncate(at)
        if streamed:
            yield SeqRollback(seq.index, streamed, n_chars, text)
        if seq.n_loops > LOOP_RETRIES:
            yield self._done(seq, FinishReason.REPEATING)
            return FinishReason.REPEATING
        seq.penalty.add_loop(loop_tokens)
        seq.penalty.reset(seq.tokens)
        seq.bans = {p: b for p, b in seq.bans.items() if p <= at}
        seq.bans.setdefault(at, set()).add(loop_tokens[0])
        # The KV cells from the last kept token on are evaluated again for fresh logits.
        last = len(seq.prompt) + at - 1
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx.ctx), seq.slot,
                                      last, -1)
        seq.n_past = last
        seq.pending_token = seq.tokens[-1] if seq.tokens else seq.prompt[-1]
        seq.sampler.close()
        seq.sampler = self._sampler(-1, self._seed + seq.index + seq.n_loops)
        for kept in seq.tokens:
            seq.sampler.accept(kept)
        return None

    def _done(self, seq: _Seq, reason: FinishReason) -> SeqDone:
        seq.stream.flush()
        mean = seq.logprob_sum / seq.generated if self.request.logprobs and seq.generated \
            else None
        return SeqDone(seq.index, reason, seq.stream.text, seq.generated, mean, seq.forced_count,
                       seq.n_loops)


def generate_batch(runtime: Runtime, request: BatchRequest,
                   cancel: CancelCheck = lambda: False) -> Iterator[Event]:
    """Stream ``SeqToken`` and ``SeqDone`` events for every item, then one ``Done`` whose
    stats add up the run (``reused_tokens``: prompt tokens shared instead of evaluated)."""
    if not request.items or any(not item.tokens for item in request.items):
        raise BadRequestError("A batched request needs prompts of at least one token each.")
    problems = request.sampling.validate()
    if problems:
        raise BadRequestError("Invalid sampling settings: " + "; ".join(problems) + ".")
    if request.n_parallel < 1:
        raise BadRequestError("n_parallel must be at least 1.")
    n_vocab = runtime._require_model().n_vocab()
    for item in request.items:
        if any(not 0 <= t < n_vocab for t in item.tokens):
            raise BadRequestError("A prompt token is not in the model's vocabulary.")
    yield from BatchDecoder(runtime, request, cancel).run()
