"""``Engine`` over a ``Runtime`` in the caller's process: for tests and benchmarks that need
llama.cpp without the engine process. The app and the CLI use ``engine.worker.EngineClient``,
which keeps llama.cpp out of their process."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from engine import native_log
from engine.api import LOCAL_CAPABILITIES, Capabilities
from engine.events import AttentionMap, Event, ModelLoaded, RenderedChat
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
)
from engine.runtime.batch import generate_batch
from engine.runtime.runtime import Runtime


class InProcessEngine:
    def __init__(self, runtime: Runtime | None = None) -> None:
        native_log.route()
        self.runtime = runtime or Runtime()
        self._cancel = threading.Event()

    @property
    def capabilities(self) -> Capabilities:
        return LOCAL_CAPABILITIES

    @property
    def loaded(self) -> ModelLoaded | None:
        return self.runtime.loaded

    def _cancelled(self) -> bool:
        return self._cancel.is_set()

    def _fresh(self) -> None:
        self._cancel.clear()

    def start(self) -> None:
        pass

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        return self.runtime.load(settings)

    def unload(self) -> None:
        self.runtime.unload()

    def chat(self, request: ChatRequest) -> Iterator[Event]:
        self._fresh()
        return self.runtime.chat(request, self._cancelled)

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        self._fresh()
        return self.runtime.prefill(request, self._cancelled)

    def complete(self, request: CompletionRequest) -> Iterator[Event]:
        self._fresh()
        return self.runtime.complete(request, self._cancelled)

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        self._fresh()
        return generate_batch(self.runtime, request, self._cancelled)

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        return self.runtime.chat_prompt(messages, add_generation_prompt)

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.runtime.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.runtime.detokenize(tokens)

    def count_tokens(self, text: str) -> int:
        return self.runtime.count_tokens(text)

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.runtime.count_chat_tokens(messages)

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.runtime.unload()

    def kill(self) -> None:
        self.runtime.unload()

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        self._fresh()
        return self.runtime.score(prompt_tokens, continuations, self._cancelled, session_id)

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        self._fresh()
        return self.runtime.attention(tokens, query_position, self._cancelled)

    def validate_grammar(self, text: str) -> list[str]:
        return self.runtime.validate_grammar(text)

    def forget_session(self, session_id: str) -> None:
        self.runtime.forget_session(session_id)
