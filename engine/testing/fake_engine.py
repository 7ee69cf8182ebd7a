"""A scripted engine for fast tests of the logic around the engine (bridge, panels, tasks,
CLI): replies, errors, crashes, delays and capabilities are set by the test. It never
replaces the real-model tests as proof that a feature works.

Its tokenizer maps each word with its leading space (and each run of whitespace) to a
stable id, so counts, prompts and detokenization behave like a real vocabulary's.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.api import Capabilities, Feature, check_sampling, require
from engine.errors import BadRequestError, ContextOverflowError
from engine.events import (
    AttentionMap,
    Done,
    Error,
    ErrorKind,
    Event,
    FinishReason,
    ModelLoaded,
    Progress,
    RenderedChat,
    SeqDone,
    SeqToken,
    Stats,
    Token,
)
from engine.model_ref import ModelRef
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    LoadSettings,
    prompt_limit,
)

FAKE_CAPABILITIES = Capabilities("the fake engine")
_PIECE = re.compile(r"\s*\S+|\s+")
Responder = Callable[[str], str]
"""Prompt text -> reply text."""
Scorer = Callable[[str, str], float]
"""(prompt text, continuation text) -> the continuation's log-probability."""
Finisher = Callable[[str], FinishReason | None]
"""Prompt text -> the finish reason of its reply (None: the ordinary one)."""


@dataclass
class Failure:
    """Make the next generating request fail: ``after_tokens`` tokens are streamed first; a
    crash also unloads the model (the next request reloads it, as the engine process does)."""

    kind: ErrorKind
    message: str
    after_tokens: int = 0


@dataclass
class Call:
    op: str
    request: object = None


@dataclass
class FakeEngine:
    replies: Sequence[str] = ("Hello! How can I help?",)
    capabilities: Capabilities = FAKE_CAPABILITIES
    respond: Responder | None = None  # overrides ``replies`` when set
    scorer: Scorer | None = None  # ``score`` by text; default -1 per continuation token
    # How the output for a prompt ends when it runs to the end of its reply (None: "stop");
    # e.g. REPEATING, as if the degeneration guard had cut the reply short.
    finisher: Finisher | None = None
    token_delay_s: float = 0.0
    n_ctx: int = 2048
    has_chat_template: bool = True
    model_name: str = "Fake model"
    load_delay_s: float = 0.0
    prefill_delay_s: float = 0.0  # how long a prefill runs (cancel stops it)
    loaded: ModelLoaded | None = None
    calls: list[Call] = field(default_factory=list)
    restarts: int = 0
    _vocab: dict[str, int] = field(default_factory=dict)
    _pieces: list[str] = field(default_factory=list)
    _reply_index: int = 0
    _failures: list[Failure] = field(default_factory=list)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _wanted: LoadSettings | None = None
    _sessions: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------ scripting

    def fail_next(self, kind: ErrorKind, message: str, after_tokens: int = 0) -> None:
        self._failures.append(Failure(kind, message, after_tokens))

    def crash_next(self, after_tokens: int = 0) -> None:
        self.fail_next(ErrorKind.ENGINE_CRASHED, "The engine process crashed inside llama.cpp "
                       "(SIGSEGV). The partial output is kept; the next request starts a fresh "
                       "engine and reloads the model.", after_tokens)

    def ops(self) -> list[str]:
        return [c.op for c in self.calls]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.calls.append(Call("start"))

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        self.calls.append(Call("load", settings))
        self._cancel.clear()
        yield Progress("load", 0, 1)
        if self.load_delay_s:
            deadline = time.monotonic() + self.load_delay_s
            while time.monotonic() < deadline:
                if self._cancel.is_set():
                    yield Done(FinishReason.CANCELLED)
                    return
                time.sleep(0.005)
        if not Path(settings.path).name:
            yield Error(ErrorKind.MODEL_NOT_FOUND, f"{settings.path}: the file does not exist")
            return
        self._wanted = settings
        self.loaded = ModelLoaded(
            ref=ModelRef.local(settings.path, sha256="f" * 64), name=self.model_name,
            n_ctx=settings.n_ctx or self.n_ctx, n_ctx_train=self.n_ctx, n_vocab=32000,
            has_chat_template=self.has_chat_template, gpu_layers=0, load_seconds=0.0)
        yield Progress("load", 1, 1)
        yield self.loaded

    def unload(self) -> None:
        self.calls.append(Call("unload"))
        self.loaded = None
        self._wanted = None

    def close(self) -> None:
        self.calls.append(Call("close"))

    def kill(self) -> None:
        self.calls.append(Call("kill"))
        self.loaded = None
        self._cancel.set()

    def cancel(self) -> None:
        self._cancel.set()

    # ------------------------------------------------------------ tokens

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        out = [0] if add_bos else []
        for piece in _PIECE.findall(text):
            if piece not in self._vocab:
                self._vocab[piece] = len(self._pieces) + 1
                self._pieces.append(piece)
            out.append(self._vocab[piece])
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(self._pieces[t - 1] for t in tokens if 0 < t <= len(self._pieces))

    def count_tokens(self, text: str) -> int:
        return len(_PIECE.findall(text))

    def _render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool) -> str:
        text = "".join(f"<{m.role}> {m.content}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        self._need_model()
        text = self._render(messages, add_generation_prompt)
        return RenderedChat(text, tuple(self.tokenize(text, add_bos=True)))

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        self._need_model()
        return 1 + self.count_tokens(self._render(messages, True))

    # ------------------------------------------------------------ generation

    def _need_model(self) -> ModelLoaded:
        if self.loaded is None:
            raise BadRequestError("No model is loaded.")
        return self.loaded

    def _recover(self) -> Iterator[Event]:
        """After a crash, reload the model the way the engine process's client does."""
        if self.loaded is None and self._wanted is not None:
            self.restarts += 1
            yield from self.load(self._wanted)

    def _reply(self, prompt: str) -> str:
        if self.respond is not None:
            return self.respond(prompt)
        reply = self.replies[self._reply_index % len(self.replies)]
        self._reply_index += 1
        return reply

    def _stream(self, prompt_text: str, max_tokens: int, reused: int = 0) -> Iterator[Event]:
        start = time.perf_counter()
        failure = self._failures.pop(0) if self._failures else None
        pieces = _PIECE.findall(self._reply(prompt_text))
        prompt_n = self.count_tokens(prompt_text)
        shown: list[str] = []
        finish = FinishReason.STOP
        ttft = 0.0
        logprob = -0.1 if self.capabilities.has(Feature.TOKEN_PROBS) else None
        for i, piece in enumerate(pieces):
            if failure is not None and i >= failure.after_tokens:
                break
            if len(shown) >= max_tokens:
                finish = FinishReason.LENGTH
                break
            if self._cancel.is_set():
                finish = FinishReason.CANCELLED
                break
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            shown.append(piece)
            ttft = ttft or time.perf_counter() - start
            yield Token(self.tokenize(piece)[0], piece, logprob)
        text = "".join(shown)
        if finish is FinishReason.STOP and self.finisher is not None:
            finish = self.finisher(prompt_text) or finish
        if failure is not None:
            if failure.kind is ErrorKind.ENGINE_CRASHED:
                self.loaded = None
            yield Error(failure.kind, failure.message, text)
            return
        elapsed = time.perf_counter() - start
        yield Done(finish, text, Stats(
            prompt_tokens=prompt_n, reused_tokens=reused, evaluated_tokens=prompt_n - reused,
            generated_tokens=len(shown), ttft_s=ttft, generation_s=elapsed,
            generation_tps=len(shown) / elapsed if elapsed > 0 else 0.0, n_ctx=self.n_ctx,
            context_used=prompt_n + len(shown)))

    def chat(self, request: ChatRequest) -> Iterator[Event]:
        self.calls.append(Call("chat", request))
        self._cancel.clear()
        yield from self._recover()
        loaded = self._need_model()
        check_sampling(self.capabilities, request.sampling)
        if not request.messages:
            raise BadRequestError("A chat request needs at least one message.")
        prompt = self._render(request.messages, True)
        needed = 1 + self.count_tokens(prompt)
        limit = prompt_limit(loaded.n_ctx, request.sampling.max_tokens)
        if needed > limit:
            raise ContextOverflowError(needed, limit, ContextOverflowError.CHAT_REMEDY
                                       if request.policy is ContextPolicy.REFUSE
                                       else ContextOverflowError.NOTHING_LEFT_TO_DROP)
        reused = self._sessions.get(request.session_id, 0)
        self._sessions[request.session_id] = needed
        yield from self._stream(prompt, request.sampling.max_tokens, min(reused, needed))

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        """Records the call; after ``prefill_delay_s`` (unless cancelled) the session counts
        the draft's tokens as cached, so the next chat reports them reused."""
        self.calls.append(Call("prefill", request))
        self._cancel.clear()
        if self.loaded is None or not self.capabilities.has(Feature.PREFILL):
            return
        deadline = time.monotonic() + self.prefill_delay_s
        while time.monotonic() < deadline:
            if self._cancel.is_set():
                yield Done(FinishReason.CANCELLED)
                return
            time.sleep(0.005)
        cached = 1 + self.count_tokens(self._render(request.messages, False))
        reused = min(self._sessions.get(request.session_id, 0), cached)
        self._sessions[request.session_id] = cached
        yield Done(FinishReason.STOP, "", Stats(prompt_tokens=cached, reused_tokens=reused,
                                                evaluated_tokens=cached - reused,
                                                n_ctx=self.n_ctx, context_used=cached))

    def complete(self, request: CompletionRequest) -> Iterator[Event]:
        self.calls.append(Call("complete", request))
        self._cancel.clear()
        yield from self._recover()
        self._need_model()
        check_sampling(self.capabilities, request.sampling)
        if request.forced_prefix_tokens:
            require(self.capabilities, Feature.FORCED_TOKENS)
        yield from self._stream(request.prompt, request.sampling.max_tokens)

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        self.calls.append(Call("generate_batch", request))
        self._cancel.clear()
        yield from self._recover()
        self._need_model()
        check_sampling(self.capabilities, request.sampling)
        if not request.items:
            raise BadRequestError("A batched request needs prompts of at least one token each.")
        total = 0
        for index, item in enumerate(request.items):
            prompt = self.detokenize(item.tokens)
            pieces: list[str] = []
            for event in self._stream(prompt, request.sampling.max_tokens):
                if isinstance(event, Token):
                    pieces.append(event.text)
                    yield SeqToken(index, event.token_id, event.text, event.logprob)
                elif isinstance(event, Error):
                    yield event
                    return
                elif isinstance(event, Done):
                    if event.finish_reason is FinishReason.CANCELLED:
                        yield SeqDone(index, FinishReason.CANCELLED, event.text, len(pieces))
                        return
                    text = event.text
                    missing = [t for t in item.required if t not in text]
                    if missing:
                        text = (text + " " + " ".join(missing)).strip()
                    total += len(pieces)
                    yield SeqDone(index, event.finish_reason, text, len(pieces),
                                  -0.1 if request.logprobs else None, len(missing))
        yield Done(FinishReason.STOP, "", Stats(generated_tokens=total))

    # ------------------------------------------------------------ optional operations

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        """``scorer`` on the detokenized texts when set, else shorter continuations score
        higher: -1 per token."""
        self.calls.append(Call("score", (tuple(prompt_tokens), tuple(map(tuple, continuations)))))
        require(self.capabilities, Feature.SCORE)
        if self.scorer is not None:
            prompt = self.detokenize(prompt_tokens)
            return [self.scorer(prompt, self.detokenize(c)) for c in continuations]
        return [-float(len(c)) for c in continuations]

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        require(self.capabilities, Feature.ATTENTION)
        if not 0 <= query_position < len(tokens):
            raise BadRequestError(f"Position {query_position} is outside the tokens.")
        n = query_position + 1
        weights = np.full((2, 2, n), 1.0 / n, dtype=np.float32)
        return AttentionMap(query_position, weights, tuple(self.detokenize([t]) for t in
                                                            tokens[:n]),
                            tuple(tokens[:n]), (0, 1), 2, 1)

    def validate_grammar(self, text: str) -> list[str]:
        require(self.capabilities, Feature.GRAMMAR_CHECK)
        return [] if "root" in text else ["the grammar has no 'root' rule"]

    def forget_session(self, session_id: str) -> None:
        self.calls.append(Call("forget_session", session_id))
        self._sessions.pop(session_id, None)
