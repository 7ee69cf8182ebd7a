"""What the document tasks share: progress with an ETA, prompts in the model's format, and
driving a batched generation with cancellation. The tasks talk to any ``engine.api.Engine``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.api import CancelCheck, Engine, Feature
from engine.errors import Cancelled, VersoError
from engine.events import Error, SeqDone
from engine.model_ref import ModelRef
from engine.options import BatchItem, BatchRequest, ChatMessage
from engine.tasks.resume import JobRecipe


@dataclass(frozen=True, slots=True)
class TaskProgress:
    stage: str  # "map", "reduce 1", "translate", ...
    done: int
    total: int
    eta_s: float | None = None  # None until one step has finished


def prompt_tokens(client: Engine, text: str, chat: bool) -> tuple[int, ...]:
    """The prompt as one user message in the chat template, or as plain text after BOS."""
    if chat:
        return client.chat_prompt([ChatMessage("user", text)]).tokens
    return tuple(client.tokenize(text, add_bos=True, special=False))


def prompt_item(client: Engine, text: str, chat: bool,
                required: tuple[str, ...] = ()) -> BatchItem:
    """One batch prompt (``prompt_tokens``); for a backend without exact tokenization, the
    prompt itself, as a user message or raw text, for the backend to send as it is."""
    if client.capabilities.has(Feature.EXACT_TOKENS):
        return BatchItem(prompt_tokens(client, text, chat), required)
    if chat:
        return BatchItem((), required, messages=(ChatMessage("user", text),))
    return BatchItem((), required, text=text)


def job_model(client: Engine, recipe: JobRecipe | None) -> ModelRef:
    """The model a job is recorded with (part of its id). A resumed job keeps its recipe's
    reference when that names the loaded model, so a job recorded before references held
    content hashes (its model known by path) keeps its id and its stored steps."""
    if client.loaded is None:
        raise VersoError("Load a model first.")
    loaded = client.loaded.ref
    if recipe is not None and recipe.model is not None and recipe.model.same_model(loaded):
        return recipe.model
    return loaded


def model_has_chat(client: Engine) -> bool:
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


def run_batch(client: Engine, request: BatchRequest, stage: str,
              on_done: Callable[[SeqDone], None], cancel: CancelCheck,
              done_before: int = 0, total: int | None = None) -> Iterator[TaskProgress]:
    """Run ``request`` and call ``on_done`` for each finished item (the caller stores it at
    once). Raises ``Cancelled`` when ``cancel`` turns True; the engine stops at its next
    step because the event stream is closed."""
    total = total if total is not None else done_before + len(request.items)
    eta = Eta(total, done_before)
    yield TaskProgress(stage, done_before, total)
    events = client.generate_batch(request)
    try:
        for event in events:
            if cancel():
                raise Cancelled
            if isinstance(event, Error):
                raise VersoError(event.message, event.kind)
            if isinstance(event, SeqDone):
                if event.finish_reason == "cancelled":
                    raise Cancelled
                on_done(event)
                yield TaskProgress(stage, eta.done + 1, total, eta.step())
    finally:
        close = getattr(events, "close", None)  # a generator; a plain iterator has none
        if close is not None:
            close()


