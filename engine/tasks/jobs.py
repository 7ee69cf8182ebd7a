"""What the document tasks share: the engine interface they need, progress with an ETA, and
driving a batched generation with cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.errors import VersoError
from engine.events import Error, ModelLoaded, RenderedChat
from engine.options import ChatMessage
from engine.runtime.batch import BatchItem, BatchRequest, SeqDone, generate_batch
from engine.runtime.runtime import Runtime

CancelCheck = Callable[[], bool]


class TaskCancelled(Exception):
    """The caller's cancel check returned True; finished steps are already stored."""


@dataclass(frozen=True, slots=True)
class TaskProgress:
    stage: str  # "map", "reduce 1", "translate", ...
    done: int
    total: int
    eta_s: float | None = None  # None until one step has finished


class DocumentClient(Protocol):
    """What the document tasks need; ``EngineClient`` and ``InProcessClient`` both fit."""

    @property
    def loaded(self) -> ModelLoaded | None: ...

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]: ...

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat: ...

    def generate_batch(self, request: BatchRequest) -> Iterator[object]: ...


class InProcessClient:
    """A ``DocumentClient`` over a ``Runtime`` in this process (tests, benchmarks)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def loaded(self) -> ModelLoaded | None:
        return self.runtime.loaded

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return self.runtime.tokenize(text, add_bos=add_bos, special=special)

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        return self.runtime.chat_prompt(messages, add_generation_prompt)

    def generate_batch(self, request: BatchRequest) -> Iterator[object]:
        return generate_batch(self.runtime, request)


def prompt_tokens(client: DocumentClient, text: str, chat: bool) -> tuple[int, ...]:
    """The prompt as one user message in the chat template, or as plain text after BOS."""
    if chat:
        return client.chat_prompt([ChatMessage("user", text)]).tokens
    return tuple(client.tokenize(text, add_bos=True, special=False))


def model_has_chat(client: DocumentClient) -> bool:
    return bool(client.loaded and client.loaded.has_chat_template)


class Eta:
    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done, self._start_done = total, done, done
        self._start = time.perf_counter()

    def step(self, n: int = 1) -> float | None:
        self.done += n
        fresh = self.done - self._start_done
        if fresh <= 0:
            return None
        rate = (time.perf_counter() - self._start) / fresh
        return rate * (self.total - self.done)


def run_batch(client: DocumentClient, request: BatchRequest, stage: str,
              on_done: Callable[[SeqDone], None], cancel: CancelCheck,
              done_before: int = 0, total: int | None = None) -> Iterator[TaskProgress]:
    """Run ``request`` and call ``on_done`` for each finished item (the caller stores it at
    once). Raises ``TaskCancelled`` when ``cancel`` turns True; the engine stops at its next
    step because the event stream is closed."""
    total = total if total is not None else done_before + len(request.items)
    eta = Eta(total, done_before)
    yield TaskProgress(stage, done_before, total)
    events = client.generate_batch(request)
    try:
        for event in events:
            if cancel():
                raise TaskCancelled
            if isinstance(event, Error):
                raise VersoError(event.message, event.kind)
            if isinstance(event, SeqDone):
                if event.finish_reason == "cancelled":
                    raise TaskCancelled
                on_done(event)
                yield TaskProgress(stage, eta.done + 1, total, eta.step())
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def batch_items(prompts: Sequence[tuple[int, ...]],
                required: Sequence[tuple[str, ...]] | None = None) -> tuple[BatchItem, ...]:
    return tuple(BatchItem(p, required[i] if required else ()) for i, p in enumerate(prompts))
