"""The one owner of a loaded ``llama_cpp.Llama``.

It runs in the engine process (see ``engine.worker``); everything else reaches it through
``EngineClient``. Prompt evaluation and decoding are driven here directly rather than through
``Llama.generate``/``create_completion`` so that:

- the KV cache is reused from the longest common token prefix, and each session's token
  history is kept so a follow-up turn is a token-level extension of the last one;
- a long prompt can be aborted mid-evaluation (llama.cpp's abort callback);
- detokenization is incremental and stop strings are matched across tokens at constant cost;
- switching sessions saves and restores per-sequence KV state instead of re-prefilling.
"""

from __future__ import annotations

import ctypes
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.catalog import validate_model_file
from engine.errors import BadRequestError, ContextOverflowError, VersoError
from engine.events import (
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    Event,
    FinishReason,
    ModelLoaded,
    Progress,
    Stats,
    Token,
    TokenAlternative,
)
from engine.options import (
    DEFAULT_CTX_CAP,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    KVType,
    LoadSettings,
    SamplingParams,
)
from engine.runtime.chat_template import ChatTemplate
from engine.runtime.snapshots import SessionHistory, Snapshot, SnapshotCache
from engine.runtime.text_stream import TextStream
from engine.system import physical_cores

log = logging.getLogger(__name__)

CancelCheck = Callable[[], bool]

_KV_GGML_TYPES = {KVType.F16: 1, KVType.Q8_0: 8, KVType.Q4_0: 2}
_LLAMA_DECODE_ABORTED = 2
DEFAULT_SNAPSHOT_BUDGET = 384 * 1024 * 1024


class Cancelled(Exception):
    pass


@dataclass
class _Timer:
    start: float = field(default_factory=time.perf_counter)
    first_text: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class Runtime:
    def __init__(self, snapshot_budget_bytes: int = DEFAULT_SNAPSHOT_BUDGET,
                 reuse_kv: bool = True, batch_invariant: bool = False) -> None:
        self._llama = None
        self._settings: LoadSettings | None = None
        self._template: ChatTemplate | None = None
        self._loaded: ModelLoaded | None = None
        self.reuse_kv = reuse_kv
        self.batch_invariant = batch_invariant
        self._kv_batched = 0  # leading KV entries computed in batches of two or more tokens
        self.snapshots = SnapshotCache(snapshot_budget_bytes)
        self._session: str | None = None
        self._kv_tokens: list[int] = []
        self._history: dict[str, SessionHistory] = {}
        self._cancel: CancelCheck = lambda: False
        self._abort_active = False
        self._abort_cb = None

    # ------------------------------------------------------------------ loading

    @property
    def loaded(self) -> ModelLoaded | None:
        return self._loaded

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        import llama_cpp

        start = time.perf_counter()
        yield Progress("load", 0, 1)
        info = validate_model_file(
            settings.path,
            n_ctx=settings.n_ctx,
            kv_type=settings.kv_type,
            available_bytes=None if settings.check_memory else 1 << 62,
        )
        self.unload()
        n_ctx = settings.n_ctx or min(info.context_length or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
        threads = settings.n_threads or physical_cores()
        kv = _KV_GGML_TYPES[KVType(settings.kv_type)]
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(settings.path),
                n_ctx=n_ctx,
                n_batch=min(settings.n_batch, n_ctx),
                n_ubatch=min(settings.n_batch, n_ctx),
                n_threads=threads,
                n_threads_batch=settings.n_threads_batch or threads,
                flash_attn=settings.flash_attn,
                n_gpu_layers=settings.n_gpu_layers,
                type_k=kv,
                type_v=kv,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise VersoError(
                f"{settings.path}: llama.cpp could not load this model ({exc}). "
                "The file may be corrupt or made for a newer llama.cpp.",
                ErrorKind.MODEL_INVALID,
            ) from exc
        llm = self._llama
        self._settings = settings
        self._install_abort_callback()
        meta = llm.metadata
        eos = llm.token_eos()
        bos = llm.token_bos()
        self._template = ChatTemplate.from_model(
            meta.get("tokenizer.chat_template"),
            bos_token=llm._model.token_get_text(bos) if bos >= 0 else "",
            eos_token=llm._model.token_get_text(eos) if eos >= 0 else "",
        )
        self._loaded = ModelLoaded(
            path=str(settings.path),
            name=info.name,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            n_vocab=llm.n_vocab(),
            has_chat_template=self._template.source == "model",
            gpu_layers=settings.n_gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0,
            load_seconds=time.perf_counter() - start,
        )
        yield Progress("load", 1, 1)
        yield self._loaded

    def unload(self) -> None:
        if self._llama is not None:
            self._llama.close()
        self._llama = None
        self._loaded = None
        self._template = None
        self._session = None
        self._kv_tokens = []
        self._history.clear()
        self.snapshots.clear()

    def _install_abort_callback(self) -> None:
        import llama_cpp

        def abort(_data: ctypes.c_void_p) -> bool:
            return self._abort_active and self._cancel()

        self._abort_cb = llama_cpp.ggml_abort_callback(abort)
        llama_cpp.llama_set_abort_callback(self._llama.ctx, self._abort_cb, None)

    def _set_abortable(self, on: bool) -> None:
        """The abort callback runs once per graph node; during generation it would cost
        ~5 % of throughput, so it is armed only while evaluating a prompt (generation
        checks for cancellation between tokens instead)."""
        import llama_cpp

        if on == self._abort_active:
            return
        self._abort_active = on
        callback = self._abort_cb if on else ctypes.cast(None, llama_cpp.ggml_abort_callback)
        llama_cpp.llama_set_abort_callback(self._llama.ctx, callback, None)

    def _require_model(self):
        if self._llama is None:
            raise VersoError("No model is loaded. Load a model first.", ErrorKind.NO_MODEL)
        return self._llama

    # --------------------------------------------------------------- tokenizing

    @property
    def template(self) -> ChatTemplate:
        self._require_model()
        assert self._template is not None
        return self._template

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        llm = self._require_model()
        if not text:
            return [llm.token_bos()] if add_bos and llm.token_bos() >= 0 else []
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        llm = self._require_model()
        return llm.detokenize(list(tokens)).decode("utf-8", errors="replace")

    def render_chat(self, messages: Sequence[ChatMessage], continue_last: bool = False) -> str:
        if continue_last and messages and messages[-1].role == "assistant":
            head = self.template.render(messages[:-1], add_generation_prompt=True)
            return head + messages[-1].content
        return self.template.render(messages, add_generation_prompt=True)

    def _chat_add_bos(self, prompt_text: str) -> bool:
        llm = self._require_model()
        bos_text = self.template.bos_token
        if bos_text and prompt_text.startswith(bos_text):
            return False
        return bool(llm._model.add_bos_token())

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        text = self.render_chat(messages)
        return len(self.tokenize(text, add_bos=self._chat_add_bos(text)))

    # -------------------------------------------------------------------- chat

    def chat(self, request: ChatRequest, cancel: CancelCheck) -> Iterator[Event]:
        timer = _Timer()
        llm = self._require_model()
        self._check_sampling(request.sampling)
        messages = list(request.messages)
        if not messages:
            raise BadRequestError("A chat request needs at least one message.")
        restored = self._switch_session(request.session_id)
        limit = self._prompt_limit(request.sampling)
        dropped_messages = dropped_tokens = 0
        while True:
            prompt_text = self.render_chat(messages, request.continue_last)
            tokens = self._tokens_for(request.session_id, prompt_text)
            if len(tokens) <= limit:
                break
            if request.policy is not ContextPolicy.DROP_OLDEST:
                raise ContextOverflowError(len(tokens), limit)
            drop = _oldest_turn(messages)
            if drop is None:
                raise ContextOverflowError(len(tokens), limit)
            before = len(tokens)
            for index in reversed(drop):
                del messages[index]
            dropped_messages += len(drop)
            dropped_tokens += before - len(
                self.tokenize(self.render_chat(messages, request.continue_last))
            )
        if dropped_messages:
            yield ContextTrimmed(dropped_messages, dropped_tokens)
        del llm
        yield from self._run(request.session_id, prompt_text, tokens, request.sampling, cancel,
                             timer, dropped_messages, restored)

    def complete(self, request: CompletionRequest, cancel: CancelCheck) -> Iterator[Event]:
        timer = _Timer()
        self._require_model()
        self._check_sampling(request.sampling)
        restored = self._switch_session(request.session_id)
        tokens = self.tokenize(request.prompt, add_bos=request.add_bos, special=False)
        tokens += list(request.forced_prefix_tokens)
        if not tokens:
            raise BadRequestError("The prompt is empty.")
        limit = self._prompt_limit(request.sampling)
        if len(tokens) > limit:
            raise ContextOverflowError(len(tokens), limit)
        yield from self._run(request.session_id, request.prompt, tokens, request.sampling,
                             cancel, timer, 0, restored, history=False)

    def _check_sampling(self, sampling: SamplingParams) -> None:
        problems = sampling.validate()
        if problems:
            raise BadRequestError("Invalid sampling settings: " + "; ".join(problems) + ".")

    def _prompt_limit(self, sampling: SamplingParams) -> int:
        """Tokens a prompt may use: the context minus room for a reply (at most a quarter of
        the context is reserved, so a large max_tokens does not refuse ordinary prompts)."""
        n_ctx = self._require_model().n_ctx()
        return n_ctx - max(1, min(sampling.max_tokens, n_ctx // 4))

    def _tokens_for(self, session_id: str, prompt_text: str) -> list[int]:
        history = self._history.get(session_id)
        if history and history.text and prompt_text.startswith(history.text):
            rest = prompt_text[len(history.text):]
            return list(history.tokens) + self.tokenize(rest, add_bos=False)
        return self.tokenize(prompt_text, add_bos=self._chat_add_bos(prompt_text))

    # ---------------------------------------------------------------- sessions

    def _switch_session(self, session_id: str) -> bool:
        """Make ``session_id`` the sequence in the KV cache; True if restored from a snapshot."""
        import llama_cpp

        if session_id == self._session:
            return False
        llm = self._require_model()
        if self._session is not None and self._kv_tokens:
            size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
            buffer = (ctypes.c_uint8 * size)()
            written = llama_cpp.llama_state_seq_get_data(llm.ctx, buffer, size, 0)
            self.snapshots.put(self._session, Snapshot(
                kv_tokens=tuple(self._kv_tokens),
                state=bytes(buffer)[:written],
                history=self._history.get(self._session, SessionHistory()),
                kv_batched=self._kv_batched,
            ))
        self._clear_kv()
        self._session = session_id
        snapshot = self.snapshots.take(session_id)
        if snapshot is None:
            return False
        buffer = (ctypes.c_uint8 * len(snapshot.state)).from_buffer_copy(snapshot.state)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, buffer, len(snapshot.state), 0) == 0:
            log.warning("restoring the KV snapshot of %s failed; re-evaluating", session_id)
            self._clear_kv()
            return False
        self._kv_tokens = list(snapshot.kv_tokens)
        self._kv_batched = snapshot.kv_batched
        self._history[session_id] = snapshot.history
        return True

    def forget_session(self, session_id: str) -> None:
        self.snapshots.drop(session_id)
        self._history.pop(session_id, None)
        if session_id == self._session:
            self._clear_kv()
            self._session = None

    def _clear_kv(self) -> None:
        import llama_cpp

        llm = self._require_model()
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), 0, -1, -1)
        self._kv_tokens = []
        self._kv_batched = 0

    # ------------------------------------------------------------- evaluation

    def _evaluate(self, tokens: Sequence[int], cancel: CancelCheck,
                  progress: Callable[[int], None] | None = None) -> None:
        """Append ``tokens`` to the KV cache in batches; abortable mid-batch."""
        import llama_cpp

        llm = self._require_model()
        n_batch = llm.n_batch
        batch = llm._batch
        done = 0
        self._cancel = cancel
        self._set_abortable(True)
        try:
            while done < len(tokens):
                if cancel():
                    raise Cancelled
                chunk = tokens[done:done + n_batch]
                n_past = len(self._kv_tokens)
                batch.set_batch(batch=chunk, n_past=n_past, logits_all=False)
                rc = llama_cpp.llama_decode(llm.ctx, batch.batch)
                if rc == _LLAMA_DECODE_ABORTED:
                    self._truncate_kv(n_past)
                    raise Cancelled
                if rc != 0:
                    self._truncate_kv(n_past)
                    raise VersoError(f"llama_decode failed with code {rc} at position {n_past} "
                                     f"(the context may be full).", ErrorKind.INTERNAL)
                self._kv_tokens.extend(chunk)
                if len(chunk) > 1 and self._kv_batched == n_past:
                    self._kv_batched = len(self._kv_tokens)
                done += len(chunk)
                if progress:
                    progress(done)
        finally:
            self._set_abortable(False)

    def _decode_one(self, token: int) -> None:
        import llama_cpp

        llm = self._llama
        batch = llm._batch
        batch.set_batch(batch=[token], n_past=len(self._kv_tokens), logits_all=False)
        rc = llama_cpp.llama_decode(llm.ctx, batch.batch)
        if rc != 0:
            raise VersoError(f"llama_decode failed with code {rc} while generating.")
        self._kv_tokens.append(token)

    def _truncate_kv(self, n_keep: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._llama.ctx), 0, n_keep, -1)
        del self._kv_tokens[n_keep:]
        self._kv_batched = min(self._kv_batched, n_keep)

    def _prepare_prompt(self, tokens: list[int]) -> int:
        """Drop the KV entries that differ from ``tokens``; return how many were reused.

        llama.cpp's CPU kernels are not batch-invariant: an entry computed in a one-token
        batch (as generated tokens are) differs slightly from the same entry computed inside a
        prompt batch, and flash attention also depends on how a prompt is split. Greedy output
        can therefore differ at near-ties between a reused and a re-evaluated history. With
        ``batch_invariant`` (and flash attention off) generated tokens are re-evaluated with
        the next prompt and no batch has a single token, which makes reuse bit-exact."""
        if not self.reuse_kv:
            self._clear_kv()
            return 0
        common = 0
        for a, b in zip(self._kv_tokens, tokens, strict=False):
            if a != b:
                break
            common += 1
        # The last prompt token must be evaluated again to get fresh logits.
        common = min(common, len(tokens) - 1)
        if self.batch_invariant:
            common = min(common, self._kv_batched)
            if common and len(tokens) - common < 2:
                common = max(0, len(tokens) - 2)
        self._truncate_kv(common)
        return common

    # ------------------------------------------------------------- generation

    def _build_sampler(self, sampling: SamplingParams):
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        llm = self._llama
        seed = sampling.seed if sampling.seed >= 0 else random.randrange(2**31)
        sampler = LlamaSampler()
        if sampling.logit_bias:
            sampler.add_logit_bias(llm.n_vocab(), dict(sampling.logit_bias))
        if (sampling.repeat_penalty != 1.0 or sampling.presence_penalty
                or sampling.frequency_penalty):
            sampler.add_penalties(llm.n_vocab(), sampling.repeat_last_n, sampling.repeat_penalty,
                                  sampling.frequency_penalty, sampling.presence_penalty)
        if sampling.grammar:
            grammar_sampler = llama_cpp.llama_sampler_init_grammar(
                llm._model.vocab, sampling.grammar.encode("utf-8"), b"root")
            if not grammar_sampler:
                raise BadRequestError("The grammar is not valid GBNF (llama.cpp rejected it).")
            llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar_sampler)
        if sampling.temperature <= 0:
            sampler.add_greedy()
        elif sampling.mirostat == 1:
            sampler.add_temp(sampling.temperature)
            sampler.add_mirostat(llm.n_vocab(), seed, sampling.mirostat_tau,
                                 sampling.mirostat_eta, 100)
        elif sampling.mirostat == 2:
            sampler.add_temp(sampling.temperature)
            sampler.add_mirostat_v2(seed, sampling.mirostat_tau, sampling.mirostat_eta)
        else:
            if sampling.top_k > 0:
                sampler.add_top_k(sampling.top_k)
            if sampling.typical_p < 1.0:
                sampler.add_typical(sampling.typical_p, 1)
            if sampling.top_p < 1.0:
                sampler.add_top_p(sampling.top_p, 1)
            if sampling.min_p > 0.0:
                sampler.add_min_p(sampling.min_p, 1)
            sampler.add_temp(sampling.temperature)
            sampler.add_dist(seed)
        return sampler

    def _alternatives(self, token: int, n_probs: int) -> tuple[float, tuple[TokenAlternative, ...]]:
        import llama_cpp

        llm = self._llama
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                       shape=(llm.n_vocab(),))
        top = float(logits.max())
        logsum = top + math.log(float(np.exp(logits - top).sum()))
        chosen = float(logits[token]) - logsum
        best = np.argpartition(-logits, n_probs)[:n_probs]
        best = best[np.argsort(-logits[best])]
        alternatives = tuple(
            TokenAlternative(int(t), self._piece(int(t)).decode("utf-8", errors="replace"),
                             float(logits[t]) - logsum)
            for t in best
        )
        return chosen, alternatives

    def _piece(self, token: int) -> bytes:
        """The token's bytes. ``LlamaModel.token_to_piece`` returns its whole 32-byte buffer
        (NUL padded), so call llama.cpp directly and keep only the bytes it wrote."""
        import llama_cpp

        vocab = self._llama._model.vocab
        size = 32
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, False)
            if written >= 0:
                return buffer.raw[:written]
            size = -written

    def _run(self, session_id: str, prompt_text: str, tokens: list[int],
             sampling: SamplingParams, cancel: CancelCheck, timer: _Timer,
             dropped_messages: int, restored: bool, history: bool = True) -> Iterator[Event]:
        import llama_cpp

        llm = self._require_model()
        reused = self._prepare_prompt(tokens)
        to_eval = tokens[reused:]
        events: list[Event] = []

        def on_progress(done: int) -> None:
            events.append(Progress("prompt", done, len(to_eval)))

        prompt_start = time.perf_counter()
        stream = TextStream(sampling.stop)
        generated: list[int] = []
        token_ends: list[int] = []  # decoded characters after each generated token
        finish = FinishReason.LENGTH
        try:
            try:
                for start in range(0, len(to_eval), llm.n_batch):
                    self._evaluate(to_eval[start:start + llm.n_batch], cancel,
                                   lambda d, s=start: on_progress(s + d))
                    yield from events
                    events.clear()
            except Cancelled:
                yield Done(FinishReason.CANCELLED, "", self._stats(
                    tokens, reused, len(self._kv_tokens) - reused, 0, timer, prompt_start,
                    time.perf_counter(), dropped_messages))
                return
            prompt_end = time.perf_counter()
            sampler = self._build_sampler(sampling)
            vocab = llm._model.vocab
            n_ctx = llm.n_ctx()
            while True:
                if len(generated) >= sampling.max_tokens:
                    finish = FinishReason.LENGTH
                    break
                if cancel():
                    finish = FinishReason.CANCELLED
                    break
                token = sampler.sample(llm._ctx, -1)
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = FinishReason.STOP
                    break
                logprob, alternatives = (self._alternatives(token, sampling.n_probs)
                                         if sampling.n_probs else (None, ()))
                generated.append(token)
                text = stream.push(self._piece(token))
                token_ends.append(stream.decoded_chars)
                if text and timer.first_text is None:
                    timer.first_text = time.perf_counter()
                yield Token(token, text, logprob, alternatives)
                if stream.stopped:
                    finish = FinishReason.STOP
                    break
                if len(self._kv_tokens) + 1 >= n_ctx:
                    finish = FinishReason.LENGTH
                    break
                self._decode_one(token)
            tail = stream.flush()
            if tail:
                if timer.first_text is None:
                    timer.first_text = time.perf_counter()
                yield Token(-1, tail)
        finally:
            if history:
                self._remember(session_id, prompt_text, tokens, generated, token_ends, stream)
        stats = self._stats(tokens, reused, len(tokens) - reused, len(generated), timer,
                            prompt_start, prompt_end, dropped_messages, restored)
        yield Done(finish, stream.text, stats)

    def _remember(self, session_id: str, prompt_text: str, prompt_tokens: list[int],
                  generated: list[int], token_ends: list[int], stream: TextStream) -> None:
        """Record the session's text and tokens so the next turn extends them. Tokens whose
        text was cut by a stop string are left out: the next prompt re-tokenizes that text."""
        visible = stream.emitted_chars
        keep = 0
        while keep < len(generated) and token_ends[keep] <= visible:
            keep += 1
        reply_text = stream.text[: token_ends[keep - 1]] if keep else ""
        if keep == len(generated):
            reply_text = stream.text
        self._history[session_id] = SessionHistory(
            text=prompt_text + reply_text, tokens=tuple(prompt_tokens + generated[:keep])
        )

    def _stats(self, tokens: list[int], reused: int, evaluated: int, generated: int,
               timer: _Timer, prompt_start: float, prompt_end: float,
               dropped_messages: int, restored: bool = False) -> Stats:
        now = time.perf_counter()
        prompt_s = prompt_end - prompt_start
        gen_s = now - prompt_end
        return Stats(
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            evaluated_tokens=evaluated,
            generated_tokens=generated,
            ttft_s=(timer.first_text or now) - timer.start,
            prompt_s=prompt_s,
            generation_s=gen_s,
            prompt_tps=evaluated / prompt_s if prompt_s > 0 and evaluated else 0.0,
            generation_tps=generated / gen_s if gen_s > 0 and generated else 0.0,
            n_ctx=self._llama.n_ctx(),
            context_used=len(self._kv_tokens),
            dropped_messages=dropped_messages,
            restored_snapshot=restored,
        )


def _oldest_turn(messages: list[ChatMessage]) -> list[int] | None:
    """Indices of the oldest user turn and the replies that follow it, never the system
    prompt and never the final message."""
    first = next((i for i, m in enumerate(messages) if m.role != "system"), None)
    if first is None or first >= len(messages) - 1:
        return None
    end = first + 1
    while end < len(messages) - 1 and messages[end].role != "user":
        end += 1
    return list(range(first, end))


def error_event(exc: BaseException, partial_text: str = "") -> Error:
    if isinstance(exc, VersoError):
        return Error(exc.kind, exc.message, partial_text)
    return Error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", partial_text)

