"""``EngineRouter``: the one engine the app drives, running each model where it lives.

Loading a local GGUF file goes to Verso's own engine process; loading a model on a saved
server goes to a ``RemoteEngine`` for that endpoint (its API key from the keyring). Every
other call goes to whichever backend holds the loaded model, and ``capabilities`` are that
backend's, so the panels mark what the current server lacks. Switching to a server unloads
the local model (its memory is freed); the engine process itself stays up for the next local
model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from engine.api import Capabilities, Engine
from engine.events import AttentionMap, Event, ModelLoaded, RenderedChat
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
)
from engine.remote.endpoint import Endpoint
from engine.remote.engine import RemoteEngine

EndpointLookup = Callable[[str], Endpoint]
"""The saved endpoint for a server URL (``engine.remote.saved.find_endpoint``)."""


def _default_lookup(url: str) -> Endpoint:
    from engine.remote.saved import find_endpoint

    return find_endpoint(url)


def _remote_for(endpoint: Endpoint) -> Engine:
    from engine.secrets import get_secret

    return RemoteEngine(endpoint, get_secret(endpoint.secret_name))


class EngineRouter:
    def __init__(self, local_factory: Callable[[], Engine],
                 lookup: EndpointLookup = _default_lookup,
                 remote_factory: Callable[[Endpoint], Engine] = _remote_for) -> None:
        self._local = local_factory()
        self._lookup = lookup
        self._remote_factory = remote_factory
        self._remotes: dict[str, Engine] = {}
        self._active: Engine = self._local
        self._lock = threading.Lock()

    @property
    def active(self) -> Engine:
        return self._active

    @property
    def local(self) -> Engine:
        return self._local

    def forget_endpoint(self, url: str) -> None:
        """Drop the connection to a server whose settings or key changed."""
        with self._lock:
            engine = self._remotes.pop(url.rstrip("/"), None)
        if engine is not None and engine is not self._active:
            engine.close()

    # ---------------------------------------------------------------- routing

    def _backend_for(self, settings: LoadSettings) -> Engine:
        ref = settings.model
        if ref is None or ref.is_local:
            return self._local
        with self._lock:
            engine = self._remotes.get(ref.location)
            if engine is None:
                engine = self._remote_factory(self._lookup(ref.location))
                self._remotes[ref.location] = engine
            return engine

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        target = self._backend_for(settings)
        if target is not self._active and self._active.loaded is not None:
            self._active.unload()  # one model at a time: free the previous one's memory
        self._active = target
        return target.load(settings)

    @property
    def capabilities(self) -> Capabilities:
        return self._active.capabilities

    @property
    def loaded(self) -> ModelLoaded | None:
        return self._active.loaded

    def start(self) -> None:
        self._local.start()

    def unload(self) -> None:
        self._active.unload()

    def chat(self, request: ChatRequest) -> Iterator[Event]:
        return self._active.chat(request)

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        return self._active.prefill(request)

    def complete(self, request: CompletionRequest) -> Iterator[Event]:
        return self._active.complete(request)

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        return self._active.generate_batch(request)

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        return self._active.chat_prompt(messages, add_generation_prompt)

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return self._active.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._active.detokenize(tokens)

    def count_tokens(self, text: str) -> int:
        return self._active.count_tokens(text)

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._active.count_chat_tokens(messages)

    def cancel(self) -> None:
        self._active.cancel()

    def close(self) -> None:
        with self._lock:
            engines = [self._local, *self._remotes.values()]
            self._remotes.clear()
        for engine in engines:
            engine.close()

    def kill(self) -> None:
        self._active.kill()

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        return self._active.score(prompt_tokens, continuations, session_id)

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        return self._active.attention(tokens, query_position)

    def validate_grammar(self, text: str) -> list[str]:
        return self._active.validate_grammar(text)

    def forget_session(self, session_id: str) -> None:
        self._active.forget_session(session_id)
