"""The one owner of a loaded ``llama_cpp.Llama``.

It runs in the engine process (see ``engine.worker``); everything else reaches it through
``EngineClient``. Prompt evaluation and decoding are driven here directly rather than through
``Llama.generate``/``create_completion`` so that:

- the KV cache is reused from the longest common token prefix, and each session's token
  history is kept so a follow-up turn is a token-level extension of the last one;
- a long prompt can be aborted mid-evaluation (llama.cpp's abort callback);
- detokenization is incremental and stop strings are matched across tokens at constant cost;
- switching sessions saves and restores per-sequence KV state instead of re-prefilling;
- banned phrases are enforced while decoding: a phrase that appears is rolled back to the
  token where it began and resampled with that token banned there (``_generate``);
- loops are caught while decoding (``loop_guard``): a repeat is rolled back to where it
  began, decoding goes on with a penalty on continuing it, and a third loop ends the output;
- continuations can be scored (``score``) without sampling, for classification.
"""

from __future__ import annotations

import ctypes
import logging
import random
import re
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import native_log
from engine.catalog import validate_model_file
from engine.chat_template import ChatTemplate, RenderedPrompt
from engine.context_policy import oldest_turn
from engine.errors import BadRequestError, Cancelled, ContextOverflowError, VersoError
from engine.events import (
    AttentionMap,
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    Event,
    FinishReason,
    ModelLoaded,
    Progress,
    RenderedChat,
    Rollback,
    Stats,
    Token,
    TokenAlternative,
)
from engine.grammar_check import grammar_problems
from engine.loop_guard import LoopDetector, LoopPenalty
from engine.model_hash import model_sha256
from engine.model_ref import ModelRef
from engine.options import (
    DEFAULT_CTX_CAP,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    LoadSettings,
    SamplingParams,
    prompt_limit,
)
from engine.runtime.attention import AttentionCapture
from engine.runtime.disk_snapshots import DEFAULT_DISK_BUDGET, DiskSnapshots, SnapshotKey
from engine.runtime.llama_plumbing import (
    AbortSwitch,
    CancelCheck,
    common_prefix,
    decode_failure,
    ggml_kv_type,
    logits_row,
    logsumexp,
    thread_counts,
    token_piece,
)
from engine.runtime.phrase_guard import PhraseGuard, fold
from engine.runtime.sampling import TokenSampler
from engine.runtime.snapshots import (
    DEFAULT_SNAPSHOT_BUDGET,
    SessionHistory,
    Snapshot,
    SnapshotCache,
)
from engine.runtime.text_stream import TextStream

log = logging.getLogger(__name__)

# A banned token's logit. Finite on purpose: if a grammar allows only banned tokens, one of
# them is still sampled (the phrase check then rolls back further) instead of the sampler
# seeing all -inf, and it stays finite after division by a small temperature.
_BANNED_LOGIT = -1e30
# Rollbacks allowed per request: a base plus a few per requested token.
_ROLLBACK_BASE = 64
_ROLLBACKS_PER_TOKEN = 4
# Loops the degeneration guard rolls back and steers away from; the next one ends the output.
LOOP_RETRIES = 2

# Tokens a prefill evaluates per batch: small enough that an aborted batch loses little,
# large enough to run at full prompt speed on a CPU.
PREFILL_CHUNK = 32
# The draft's last word and the whitespace before it: the word may still grow, so prefill
# stops before it.
_LAST_WORD = re.compile(r"\s+\S*\Z")


@dataclass(frozen=True, slots=True)
class _Fitted:
    prompt: RenderedPrompt
    tokens: list[int]
    dropped_messages: int = 0
    dropped_tokens: int = 0


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``range(n)`` in ``[lo, hi)`` slices of ``size``, the last one never a lone token
    (merged into the one before it)."""
    lo = 0
    while lo < n:
        hi = min(lo + size, n)
        if n - hi == 1:
            hi = n
        yield lo, hi
        lo = hi


@dataclass
class _Timer:
    start: float = field(default_factory=time.perf_counter)
    first_text: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def saw(self, text: str) -> None:
        if text and self.first_text is None:
            self.first_text = time.perf_counter()


@dataclass
class _Output:
    """What one request has streamed: echoed forced tokens, then generated ones."""

    stops: Sequence[str]
    stream: TextStream = field(init=False)
    echoed: list[bytes] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    pieces: list[bytes] = field(default_factory=list)
    token_ends: list[int] = field(default_factory=list)  # decoded characters after each token
    rollbacks: int = 0
    loops: int = 0

    def __post_init__(self) -> None:
        self.stream = TextStream(self.stops)

    def echo(self, piece: bytes) -> str:
        self.echoed.append(piece)
        return self.stream.push(piece)

    def push(self, token: int, piece: bytes) -> str:
        self.generated.append(token)
        self.pieces.append(piece)
        text = self.stream.push(piece)
        self.token_ends.append(self.stream.decoded_chars)
        return text

    def truncate(self, n_tokens: int) -> int:
        """Keep the first ``n_tokens`` generated tokens; return how many streamed characters
        that takes back. The text stream is rebuilt by replaying what is kept."""
        emitted = self.stream.emitted_chars
        del self.generated[n_tokens:]
        del self.pieces[n_tokens:]
        del self.token_ends[n_tokens:]
        self.stream = TextStream(self.stops)
        for piece in self.echoed + self.pieces:
            self.stream.push(piece)
        return emitted - self.stream.emitted_chars


class Runtime:
    def __init__(self, snapshot_budget_bytes: int = DEFAULT_SNAPSHOT_BUDGET,
                 reuse_kv: bool = True, batch_invariant: bool = False,
                 snapshot_dir: Path | None = None,
                 disk_budget_bytes: int = DEFAULT_DISK_BUDGET) -> None:
        """``snapshot_dir``: keep conversations' KV snapshots there too, so they stay warm
        across restarts (``engine.runtime.disk_snapshots``)."""
        self._llama: Any = None  # llama_cpp.Llama; Any because its private
        # ctypes members (ctx, _batch, _model) are passed to raw llama.cpp calls unchecked
        self._settings: LoadSettings | None = None
        self._template: ChatTemplate | None = None
        self._loaded: ModelLoaded | None = None
        self.reuse_kv = reuse_kv
        self.batch_invariant = batch_invariant
        self._kv_batched = 0  # leading KV entries computed in batches of two or more tokens
        self.snapshots = SnapshotCache(snapshot_budget_bytes)
        self._snapshot_dir = snapshot_dir
        self._disk_budget = disk_budget_bytes
        self._disk: DiskSnapshots | None = None
        self._session: str | None = None
        self._kv_tokens: list[int] = []
        self._history: dict[str, SessionHistory] = {}
        self._abort: AbortSwitch | None = None  # the generation context's abort callback
        self._vocab_text: dict[bool, list[str]] = {}  # token texts, plain and case-folded
        self._always_banned: tuple[tuple[tuple[str, ...], bool], np.ndarray] | None = None
        self._attention: AttentionCapture | None = None

    # ------------------------------------------------------------------ loading

    @property
    def loaded(self) -> ModelLoaded | None:
        return self._loaded

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        import llama_cpp

        problems = settings.validate()
        if problems:
            raise BadRequestError("Invalid load settings: " + "; ".join(problems) + ".")
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
        threads, threads_batch = thread_counts(settings)
        kv = ggml_kv_type(settings.kv_type)
        native_log.clear_errors()
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(settings.path),
                n_ctx=n_ctx,
                n_batch=min(settings.n_batch, n_ctx),
                n_ubatch=min(settings.n_batch, n_ctx),
                n_threads=threads,
                n_threads_batch=threads_batch,
                flash_attn=settings.flash_attn,
                n_gpu_layers=settings.n_gpu_layers,
                type_k=kv,
                type_v=kv,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise VersoError(
                f"{settings.path}: llama.cpp could not load this model "
                f"({_load_failure(exc)}). The file may be corrupt or made for a newer "
                "llama.cpp.",
                ErrorKind.MODEL_INVALID,
            ) from exc
        llm = self._llama
        self._settings = settings
        self._abort = AbortSwitch()
        meta = llm.metadata
        eos = llm.token_eos()
        bos = llm.token_bos()
        self._template = ChatTemplate.from_model(
            meta.get("tokenizer.chat_template"),
            bos_token=llm._model.token_get_text(bos) if bos >= 0 else "",
            eos_token=llm._model.token_get_text(eos) if eos >= 0 else "",
        )
        self._loaded = ModelLoaded(
            ref=ModelRef.local(settings.path, model_sha256(settings.path)),
            name=info.name,
            n_ctx=llm.n_ctx(),
            n_ctx_train=llm._model.n_ctx_train(),
            n_vocab=llm.n_vocab(),
            has_chat_template=self._template.source == "model",
            gpu_layers=settings.n_gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0,
            load_seconds=time.perf_counter() - start,
            chat_template_problem=self._template.problem,
        )
        if self._template.problem:
            log.warning("%s: using ChatML instead of the model's chat template: %s",
                        settings.path, self._template.problem)
        if self._snapshot_dir is not None:
            self._disk = DiskSnapshots(self._snapshot_dir, self._snapshot_key(settings),
                                       self._disk_budget)
        yield Progress("load", 1, 1)
        yield self._loaded

    def _snapshot_key(self, settings: LoadSettings) -> SnapshotKey:
        from engine.build_info import build_info

        llm = self._require_model()
        info = build_info()
        assert self._loaded is not None
        return SnapshotKey(
            model_sha256=self._loaded.ref.sha256, n_ctx=llm.n_ctx(),
            kv_type=str(settings.kv_type), flash_attn=settings.flash_attn,
            n_gpu_layers=self._loaded.gpu_layers, n_batch=llm.n_batch,
            llama_build=f"{info.llama_cpp_python} {info.ggml_version} {info.ggml_commit}")

    def unload(self) -> None:
        if self._disk is not None:
            if self._llama is not None and self._session is not None and self._kv_tokens:
                self._disk.save(self._session, self._capture())
            self._disk.close()
            self._disk = None
        if self._attention is not None:  # its context lives on the model: free it first
            self._attention.close()
            self._attention = None
        if self._llama is not None:
            self._llama.close()
        self._llama = None
        self._loaded = None
        self._template = None
        self._session = None
        self._kv_tokens = []
        self._history.clear()
        self.snapshots.clear()
        self._vocab_text.clear()
        self._always_banned = None

    def _require_model(self) -> Any:  # llama_cpp.Llama
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

    def render_chat(self, messages: Sequence[ChatMessage],
                    continue_last: bool = False) -> RenderedPrompt:
        if continue_last and messages and messages[-1].role == "assistant":
            head = self.template.render_prompt(messages[:-1], add_generation_prompt=True)
            return head + messages[-1].content
        return self.template.render_prompt(messages, add_generation_prompt=True)

    def tokenize_prompt(self, prompt: RenderedPrompt, start: int = 0,
                        add_bos: bool | None = None) -> list[int]:
        """Tokens of ``prompt.text[start:]``: the template's markers may be control tokens,
        the messages' text never is (``RenderedPrompt``). ``add_bos`` None: as the model
        wants for a whole prompt."""
        if add_bos is None:
            add_bos = start == 0 and self._chat_add_bos(prompt.text)
        pieces = prompt.pieces(start)
        if not any(is_content and self.tokenize(piece, special=True)
                   != self.tokenize(piece, special=False) for piece, is_content in pieces):
            # No message holds control-token text: the prompt is tokenized whole, exactly
            # as llama.cpp would (piece by piece, SentencePiece models that add a leading
            # space would get one at every boundary).
            return self.tokenize(prompt.text[start:], add_bos=add_bos)
        tokens = [self._require_model().token_bos()] if add_bos else []
        for piece, is_content in pieces:
            tokens += self.tokenize(piece, special=not is_content)
        return tokens

    def _chat_add_bos(self, prompt_text: str) -> bool:
        llm = self._require_model()
        bos_text = self.template.bos_token
        if bos_text and prompt_text.startswith(bos_text):
            return False
        return bool(llm._model.add_bos_token())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, add_bos=False, special=False))

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenize_prompt(self.render_chat(messages)))

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        """The conversation as the model sees it: template text and prompt tokens."""
        prompt = self.template.render_prompt(messages, add_generation_prompt)
        return RenderedChat(prompt.text, tuple(self.tokenize_prompt(prompt)))

    def validate_grammar(self, text: str) -> list[str]:
        """Problems with a GBNF grammar (see ``engine.grammar_check``); token references
        are resolved against the loaded model's vocabulary when there is one."""
        vocab = self._llama._model.vocab if self._llama is not None else None
        return grammar_problems(text, vocab)

    def attention(self, tokens: Sequence[int], query_position: int,
                  cancel: CancelCheck = lambda: False) -> AttentionMap:
        """Attention weights of the token at ``query_position`` over ``tokens[:query_position
        + 1]``, every layer and head (see ``engine.runtime.attention``). Runs in a second
        context with flash attention off, kept for the next capture; the generation context
        and its KV cache are not touched. Raises ``Cancelled`` when cancelled."""
        llm = self._require_model()
        self._check_token_ids(tokens, "attention token")
        if self._attention is None:
            threads, threads_batch = thread_counts(self._settings)
            self._attention = AttentionCapture(llm._model.model, threads, threads_batch,
                                               limit=llm.n_ctx())
        return self._attention.capture(tokens, query_position, cancel)

    # -------------------------------------------------------------------- chat

    def chat(self, request: ChatRequest, cancel: CancelCheck) -> Iterator[Event]:
        timer = _Timer()
        self._require_model()
        self._check_sampling(request.sampling)
        if not request.messages:
            raise BadRequestError("A chat request needs at least one message.")
        restored = self._switch_session(request.session_id)
        fitted = self._fit(request)
        if fitted.dropped_messages:
            yield ContextTrimmed(fitted.dropped_messages, fitted.dropped_tokens)
        yield from self._run(request.session_id, fitted.prompt.text, fitted.tokens,
                             request.sampling, cancel, timer, fitted.dropped_messages, restored)

    def _fit(self, request: ChatRequest) -> _Fitted:
        """The request's prompt and tokens, with the oldest turns dropped to fit if its
        policy allows; raises ``ContextOverflowError`` otherwise."""
        messages = list(request.messages)
        limit = self._prompt_limit(request.sampling)
        dropped_messages = dropped_tokens = 0
        while True:
            prompt = self.render_chat(messages, request.continue_last)
            tokens = self._tokens_for(request.session_id, prompt)
            if len(tokens) <= limit:
                return _Fitted(prompt, tokens, dropped_messages, dropped_tokens)
            if request.policy is not ContextPolicy.DROP_OLDEST:
                raise ContextOverflowError(len(tokens), limit, ContextOverflowError.CHAT_REMEDY)
            drop = oldest_turn(messages)
            if drop is None:
                raise ContextOverflowError(len(tokens), limit,
                                           ContextOverflowError.NOTHING_LEFT_TO_DROP)
            before = len(tokens)
            for index in reversed(drop):
                del messages[index]
            dropped_messages += len(drop)
            dropped_tokens += before - len(
                self.tokenize_prompt(self.render_chat(messages, request.continue_last))
            )

    # ----------------------------------------------------------------- prefill

    def prefill(self, request: ChatRequest, cancel: CancelCheck) -> Iterator[Event]:
        """Extend the session's KV cache with ``request``'s prompt as far as the user's
        message (its last one, still being typed) is known to stay: the conversation, the
        user turn's opening and the draft up to its last word boundary; never the end of
        the turn or the generation prompt. Sending the finished message then evaluates only
        what is left (``_prepare_prompt`` keeps the common prefix, so text edited or deleted
        after it was prefilled is evaluated again, never reused).

        Evaluates in chunks of ``PREFILL_CHUNK`` tokens with the abort callback armed, so a
        ``cancel`` (the engine process: any request waiting) stops it within a graph node;
        what was evaluated before stays cached. Yields ``Progress("prefill", ...)`` per
        chunk, then ``Done`` (``STOP``, or ``CANCELLED``) whose stats count the target
        (``prompt_tokens``), the tokens already cached and those evaluated. A draft that
        would not fit the context prefills nothing."""
        started = time.perf_counter()
        self._require_model()
        self._check_sampling(request.sampling)
        if not request.messages or request.messages[-1].role != "user" or \
                request.continue_last:
            raise BadRequestError("Prefill needs a conversation that ends with the user's "
                                  "message being written.")
        restored = self._switch_session(request.session_id)
        try:
            fitted = self._fit(request)
        except ContextOverflowError:
            yield Done(FinishReason.STOP, "", Stats(n_ctx=self._llama.n_ctx(),
                                                    context_used=len(self._kv_tokens)))
            return
        target = self._stable_draft_prefix(request.session_id, fitted.prompt, fitted.tokens)
        common = common_prefix(self._kv_tokens, target)
        if self.batch_invariant:
            common = min(common, self._kv_batched)
        rest = target[common:]
        if self.batch_invariant and len(rest) < 2:
            rest = []  # a one-token batch would not be batch-invariant (see _prepare_prompt)
        if rest:
            self._truncate_kv(common)
        evaluated = 0
        finish = FinishReason.STOP
        try:
            for lo, hi in _chunks(len(rest), PREFILL_CHUNK):
                self._evaluate(rest[lo:hi], cancel)
                evaluated = hi
                yield Progress("prefill", evaluated, len(rest))
        except Cancelled:
            finish = FinishReason.CANCELLED
        elapsed = time.perf_counter() - started
        yield Done(finish, "", Stats(
            prompt_tokens=len(target), reused_tokens=common, evaluated_tokens=evaluated,
            prompt_s=elapsed, prompt_tps=evaluated / elapsed if evaluated and elapsed else 0.0,
            n_ctx=self._llama.n_ctx(), context_used=len(self._kv_tokens),
            dropped_messages=fitted.dropped_messages, restored_snapshot=restored))

    def _stable_draft_prefix(self, session_id: str, prompt: RenderedPrompt,
                             tokens: list[int]) -> list[int]:
        """The leading ``tokens`` (the prompt as sent now) that the finished message will
        still start with: up to the last whitespace before the draft's unfinished word (BPE
        merges across that boundary could change once more is typed), and only as far as
        tokenizing that text alone agrees with ``tokens``."""
        if not prompt.content_spans:
            return []
        lo, hi = prompt.content_spans[-1]
        word = _LAST_WORD.search(prompt.text, lo, hi)
        cut = word.start() if word else lo
        head = RenderedPrompt(prompt.text[:cut],
                              tuple((a, min(b, cut)) for a, b in prompt.content_spans if a < cut))
        head_tokens = self._tokens_for(session_id, head)
        return head_tokens[:common_prefix(head_tokens, tokens)]

    def complete(self, request: CompletionRequest, cancel: CancelCheck) -> Iterator[Event]:
        timer = _Timer()
        self._require_model()
        self._check_sampling(request.sampling)
        restored = self._switch_session(request.session_id)
        tokens = self.tokenize(request.prompt, add_bos=request.add_bos, special=False)
        forced = list(request.forced_prefix_tokens)
        self._check_token_ids(forced, "forced token")
        tokens += forced
        if not tokens:
            raise BadRequestError("The prompt is empty.")
        limit = self._prompt_limit(request.sampling)
        if len(tokens) > limit:
            raise ContextOverflowError(len(tokens), limit)
        yield from self._run(request.session_id, request.prompt, tokens, request.sampling,
                             cancel, timer, 0, restored, history=False, forced=len(forced),
                             echo_forced=request.echo_forced)

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              cancel: CancelCheck = lambda: False, session_id: str = "score") -> list[float]:
        """Log-probability of each continuation after the prompt: the sum of its tokens'
        log-probabilities, each read from the model's logits at that step (no sampling).

        The prompt is evaluated once (reusing the KV prefix of the previous request in
        ``session_id``); each continuation is evaluated in one batch after it and removed
        again, so only the prompt stays cached. Raises ``Cancelled`` when cancelled."""
        llm = self._require_model()
        prompt = list(prompt_tokens)
        options = [list(c) for c in continuations]
        if not prompt:
            raise BadRequestError("Scoring needs a prompt of at least one token.")
        if not options or any(not c for c in options):
            raise BadRequestError("Scoring needs continuations of at least one token each.")
        self._check_token_ids(prompt + [t for c in options for t in c], "scored token")
        needed = len(prompt) + max(len(c) for c in options)
        if needed > llm.n_ctx():
            raise ContextOverflowError(needed, llm.n_ctx())
        self._switch_session(session_id)
        reused = self._prepare_prompt(prompt)
        self._evaluate(prompt[reused:], cancel)
        first = self._logits().copy()
        first_logsum = logsumexp(first)
        results = []
        for option in options:
            if cancel():
                raise Cancelled
            total = float(first[option[0]]) - first_logsum
            for step, logits in enumerate(self._decode_with_logits(option[:-1]), start=1):
                total += float(logits[option[step]]) - logsumexp(logits)
            self._truncate_kv(len(prompt))
            results.append(total)
        return results

    def _decode_with_logits(self, tokens: Sequence[int]) -> Iterator[np.ndarray]:
        """Append ``tokens`` to the KV cache, yielding the logits after each one."""
        import llama_cpp

        llm = self._llama
        n_vocab = llm.n_vocab()
        for start in range(0, len(tokens), llm.n_batch):
            chunk = list(tokens[start:start + llm.n_batch])
            n_past = len(self._kv_tokens)
            llm._batch.set_batch(batch=chunk, n_past=n_past, logits_all=True)
            rc = llama_cpp.llama_decode(llm.ctx, llm._batch.batch)
            if rc != 0:
                self._truncate_kv(n_past)
                raise decode_failure(rc, "while scoring")
            self._kv_tokens.extend(chunk)
            for i in range(len(chunk)):
                yield logits_row(llm.ctx, i, n_vocab)

    def _check_sampling(self, sampling: SamplingParams) -> None:
        problems = sampling.validate()
        if problems:
            raise BadRequestError("Invalid sampling settings: " + "; ".join(problems) + ".")
        self._check_token_ids([t for t, _ in sampling.logit_bias], "logit-bias token")
        if sampling.grammar:
            problems = self.validate_grammar(sampling.grammar)
            if problems:
                raise BadRequestError("The grammar is not valid: " + "; ".join(problems) + ".")

    def _check_token_ids(self, tokens: Sequence[int], what: str) -> None:
        n_vocab = self._require_model().n_vocab()
        bad = [t for t in tokens if not 0 <= t < n_vocab]
        if bad:
            raise BadRequestError(f"The {what} id {bad[0]} is not in the model's vocabulary "
                                  f"(0 to {n_vocab - 1}).")

    def _prompt_limit(self, sampling: SamplingParams) -> int:
        return prompt_limit(self._require_model().n_ctx(), sampling.max_tokens)

    def _tokens_for(self, session_id: str, prompt: RenderedPrompt) -> list[int]:
        history = self._history.get(session_id)
        if history and history.text and prompt.text.startswith(history.text):
            rest = self.tokenize_prompt(prompt, start=len(history.text), add_bos=False)
            return list(history.tokens) + rest
        return self.tokenize_prompt(prompt)

    # ---------------------------------------------------------------- sessions

    def _switch_session(self, session_id: str) -> bool:
        """Make ``session_id`` the sequence in the KV cache; True if restored from a snapshot."""
        import llama_cpp

        if session_id == self._session:
            return False
        llm = self._require_model()
        if self._session is not None and self._kv_tokens:
            outgoing = self._capture()
            self.snapshots.put(self._session, outgoing)
            if self._disk is not None:
                self._disk.save(self._session, outgoing)
        self._clear_kv()
        self._session = session_id
        snapshot = self.snapshots.take(session_id)
        if snapshot is None and self._disk is not None:
            snapshot = self._disk.load(session_id)
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

    def _capture(self) -> Snapshot:
        """The current session's KV state and what is known to be in it."""
        import llama_cpp

        llm = self._require_model()
        size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llm.ctx, buffer, size, 0)
        assert self._session is not None
        return Snapshot(
            kv_tokens=tuple(self._kv_tokens),
            state=bytes(buffer)[:written],
            history=self._history.get(self._session, SessionHistory()),
            kv_batched=self._kv_batched,
        )

    def forget_session(self, session_id: str) -> None:
        self.snapshots.drop(session_id)
        if self._disk is not None:
            self._disk.drop(session_id)
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
        assert self._abort is not None, "set by load() with the model"
        with self._abort.armed_on(llm.ctx, cancel):
            while done < len(tokens):
                if cancel():
                    raise Cancelled
                chunk = tokens[done:done + n_batch]
                n_past = len(self._kv_tokens)
                batch.set_batch(batch=chunk, n_past=n_past, logits_all=False)
                rc = llama_cpp.llama_decode(llm.ctx, batch.batch)
                if rc != 0:  # aborted: Cancelled
                    self._truncate_kv(n_past)
                    raise decode_failure(rc, f"at position {n_past} (the context may be full)")
                self._kv_tokens.extend(chunk)
                if len(chunk) > 1 and self._kv_batched == n_past:
                    self._kv_batched = len(self._kv_tokens)
                done += len(chunk)
                if progress:
                    progress(done)

    def _decode_one(self, token: int) -> None:
        import llama_cpp

        llm = self._llama
        batch = llm._batch
        batch.set_batch(batch=[token], n_past=len(self._kv_tokens), logits_all=False)
        rc = llama_cpp.llama_decode(llm.ctx, batch.batch)
        if rc != 0:
            raise decode_failure(rc, "while generating")
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
        common = common_prefix(self._kv_tokens, tokens)
        # The last prompt token must be evaluated again to get fresh logits.
        common = min(common, len(tokens) - 1)
        if self.batch_invariant:
            common = min(common, self._kv_batched)
            if common and len(tokens) - common < 2:
                common = max(0, len(tokens) - 2)
        self._truncate_kv(common)
        return common

    # ------------------------------------------------------------- generation

    def _build_sampler(self, sampling: SamplingParams, seed: int,
                       forced: Sequence[int] = (), generated: Sequence[int] = ()
                       ) -> TokenSampler:
        """A sampler in the state after ``forced`` then ``generated`` tokens (the grammar's
        position, the penalties' window). Forced tokens come from the caller, so each is
        checked against the grammar first."""
        llm = self._llama
        sampler = TokenSampler(sampling, seed, llm._model.vocab, llm.n_vocab(), llm.n_ctx())
        for i, token in enumerate(forced):
            if not sampler.allows(token):
                sampler.close()
                raise BadRequestError(f"Forced token {i} (id {token}) is not allowed by the "
                                      "grammar at that point.")
            sampler.accept(token)
        for token in generated:
            sampler.accept(token)
        return sampler

    def _logits(self) -> np.ndarray:
        """The last decoded position's logits: a writable view of llama.cpp's buffer."""
        return logits_row(self._llama.ctx, -1, self._llama.n_vocab())

    def _alternatives(self, logits: np.ndarray, token: int, n_probs: int
                      ) -> tuple[float, tuple[TokenAlternative, ...]]:
        """Log-probabilities under the model's own distribution (before any sampler or ban)."""
        logsum = logsumexp(logits)
        chosen = float(logits[token]) - logsum
        best = np.argpartition(-logits, n_probs)[:n_probs]
        best = best[np.argsort(-logits[best], kind="stable")]
        alternatives = tuple(
            TokenAlternative(int(t), self._piece(int(t)).decode("utf-8", errors="replace"),
                             float(logits[t]) - logsum)
            for t in best
        )
        return chosen, alternatives

    def _tokens_containing(self, guard: PhraseGuard) -> np.ndarray:
        """Tokens whose own text contains a banned phrase: banned at every position. The
        vocabulary's texts are built once per model, the last answer is kept."""
        key = (guard.phrases, guard.any_case)
        if self._always_banned is not None and self._always_banned[0] == key:
            return self._always_banned[1]
        texts = self._vocab_text.get(guard.any_case)
        if texts is None:
            plain = self._vocab_text.get(False)
            if plain is None:
                plain = [self._piece(t).decode("utf-8", errors="ignore")
                         for t in range(self._llama.n_vocab())]
                self._vocab_text[False] = plain
            texts = [fold(t) for t in plain] if guard.any_case else plain
            self._vocab_text[guard.any_case] = texts
        phrases = guard.phrases
        banned = np.fromiter((i for i, t in enumerate(texts) if any(p in t for p in phrases)),
                             dtype=np.int64)
        self._always_banned = (key, banned)
        return banned

    def _piece(self, token: int) -> bytes:
        """The token's bytes as generated text shows them (``special`` off)."""
        return token_piece(self._llama._model.vocab, token)

    def _run(self, session_id: str, prompt_text: str, tokens: list[int],
             sampling: SamplingParams, cancel: CancelCheck, timer: _Timer,
             dropped_messages: int, restored: bool, history: bool = True,
             forced: int = 0, echo_forced: bool = False) -> Iterator[Event]:
        """Evaluate ``tokens`` and generate. The last ``forced`` of them were chosen by the
        caller rather than the prompt: the sampler state starts after them, and with
        ``echo_forced`` they are streamed as output first."""
        llm = self._require_model()
        forced_tokens = tokens[len(tokens) - forced:] if forced else []
        seed = sampling.seed if sampling.seed >= 0 else random.randrange(2**31)
        sampler = self._build_sampler(sampling, seed, forced_tokens)
        reused = self._prepare_prompt(tokens)
        to_eval = tokens[reused:]
        events: list[Event] = []

        def on_progress(done: int) -> None:
            events.append(Progress("prompt", done, len(to_eval)))

        prompt_start = time.perf_counter()
        out = _Output(sampling.stop)
        finish = FinishReason.LENGTH
        try:
            try:
                for start in range(0, len(to_eval), llm.n_batch):
                    def progress(done: int, offset: int = start) -> None:
                        on_progress(offset + done)

                    self._evaluate(to_eval[start:start + llm.n_batch], cancel, progress)
                    yield from events
                    events.clear()
            except Cancelled:
                yield Done(FinishReason.CANCELLED, "", self._stats(
                    tokens, reused, len(self._kv_tokens) - reused, 0, timer, prompt_start,
                    time.perf_counter(), dropped_messages))
                return
            prompt_end = time.perf_counter()
            if echo_forced:
                for token in forced_tokens:
                    text = out.echo(self._piece(token))
                    timer.saw(text)
                    yield Token(token, text)
            if out.stream.stopped:
                finish = FinishReason.STOP
            else:
                finish = yield from self._generate(out, tokens, forced_tokens, sampling, seed,
                                                   sampler, cancel, timer)
            tail = out.stream.flush()
            if tail:
                timer.saw(tail)
                yield Token(-1, tail)
        finally:
            if history:
                self._remember(session_id, prompt_text, tokens, out.generated, out.token_ends,
                               out.stream)
        stats = self._stats(tokens, reused, len(tokens) - reused, len(out.generated), timer,
                            prompt_start, prompt_end, dropped_messages, restored, out.rollbacks,
                            out.loops)
        yield Done(finish, out.stream.text, stats)

    def _generate(self, out: _Output, tokens: list[int], forced: list[int],
                  sampling: SamplingParams, seed: int, sampler: TokenSampler,
                  cancel: CancelCheck, timer: _Timer) -> Generator[Event, None, FinishReason]:
        """The token loop. Each new token is checked before it is streamed:

        - with banned phrases, on a hit generation goes back to the token where the phrase
          began, bans that token at that position and resamples (``Rollback`` retracts what
          was already streamed); tokens whose own text contains a phrase are banned
          everywhere;
        - with ``loop_guard``, a loop (``LoopDetector``) is rolled back the same way to where
          the repeat began, its first token banned there and the rest of it penalised from
          then on (``LoopPenalty``); the loop after ``LOOP_RETRIES`` is rolled back and ends
          the output (``FinishReason.REPEATING``)."""
        import llama_cpp

        llm = self._llama
        vocab = llm._model.vocab
        n_ctx = llm.n_ctx()
        guard: PhraseGuard | None = None
        always_banned = np.empty(0, dtype=np.int64)
        if any(sampling.ban_phrases):
            guard = PhraseGuard(sampling.ban_phrases, sampling.ban_any_case)
            for token in forced:
                guard.push(self._piece(token))
            guard.locked = len(guard)
            always_banned = self._tokens_containing(guard)
        loops = LoopDetector() if sampling.loop_guard else None
        if loops is not None:
            for token in forced:
                loops.push(self._piece(token))
            loops.locked = len(loops)
        penalty = LoopPenalty()
        bans: dict[int, set[int]] = {}  # generated-token position -> tokens banned there
        budget = _ROLLBACK_BASE + _ROLLBACKS_PER_TOKEN * sampling.max_tokens
        while True:
            if len(out.generated) >= sampling.max_tokens:
                return FinishReason.LENGTH
            if cancel():
                return FinishReason.CANCELLED
            position = len(out.generated)
            logits = raw = self._logits()
            if guard is not None or penalty or position in bans:
                raw = logits.copy()
                logits[always_banned] = _BANNED_LOGIT
                penalty.apply(logits)
                if position in bans:
                    logits[list(bans[position])] = _BANNED_LOGIT
            token = sampler.sample(logits)
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                return FinishReason.STOP
            piece = self._piece(token)
            hit = guard.push(piece) if guard is not None else None
            loop = loops.push(piece) if loops is not None and hit is None else None
            if hit is not None or loop is not None:
                if hit is not None:
                    if out.rollbacks >= budget:
                        return FinishReason.BANNED
                    out.rollbacks += 1
                    at = hit.token_index - len(forced)
                else:
                    assert loop is not None
                    out.loops += 1
                    at = loop.token_index - len(forced)
                    if out.loops <= LOOP_RETRIES:
                        penalty.add_loop([*out.generated, token][at:])
                bans = {p: b for p, b in bans.items() if p <= at}
                bans.setdefault(at, set()).add(out.generated[at] if at < position else token)
                for g in (guard, loops):
                    if g is not None:
                        g.truncate(len(forced) + at)
                ending = loop is not None and out.loops > LOOP_RETRIES
                if at == position and not ending:
                    logits[:] = raw
                    continue
                if at < position:
                    n_chars = out.truncate(at)
                    yield Rollback(position - at, n_chars,
                                   hit.phrase if hit is not None else loop.text if loop else "",
                                   repeating=hit is None)
                    kept = tokens + out.generated
                    if ending:
                        self._truncate_kv(len(kept))
                        return FinishReason.REPEATING
                    self._truncate_kv(len(kept) - 1)
                    self._decode_one(kept[-1])  # fresh logits for the position rolled back to
                elif ending:
                    return FinishReason.REPEATING
                penalty.reset(out.generated)
                sampler.close()
                sampler = self._build_sampler(sampling, (seed + out.rollbacks + out.loops)
                                              % 2**31, forced, out.generated)
                continue
            sampler.accept(token)
            if penalty:
                penalty.accept(token)
            logprob, alternatives = (self._alternatives(raw, token, sampling.n_probs)
                                     if sampling.n_probs else (None, ()))
            text = out.push(token, piece)
            timer.saw(text)
            yield Token(token, text, logprob, alternatives)
            if out.stream.stopped:
                return FinishReason.STOP
            if len(self._kv_tokens) + 1 >= n_ctx:
                return FinishReason.LENGTH
            self._decode_one(token)

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
               dropped_messages: int, restored: bool = False, rollbacks: int = 0,
               loops: int = 0) -> Stats:
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
            rollbacks=rollbacks,
            loops=loops,
        )


def _load_failure(exc: BaseException) -> str:
    """llama.cpp's own reason for a failed load ("error loading model vocabulary: ..."),
    read from its log lines; llama-cpp-python's exception only says that it failed."""
    reasons = [line.split("error loading model", 1)[-1].lstrip(": ")
               for line in native_log.recent_errors() if "error loading model" in line]
    return reasons[-1] if reasons else str(exc)


def error_event(exc: BaseException, partial_text: str = "") -> Error:
    if isinstance(exc, VersoError):
        return Error(exc.kind, exc.message, partial_text)
    return Error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", partial_text)

