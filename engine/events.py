"""Typed events streamed by the engine.

Every engine operation is a generator of these dataclasses. They are plain data (picklable),
so the same objects cross the pipe from the engine process and reach the GUI and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from engine.model_ref import ModelRef

if TYPE_CHECKING:
    import numpy as np


class FinishReason(StrEnum):
    STOP = "stop"  # end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens reached or the context is full
    CANCELLED = "cancelled"
    BANNED = "banned"  # every continuation the model tried contained a banned phrase
    REPEATING = "repeating"  # the degeneration guard ended an output that kept looping


_FINISH_NOTES = {FinishReason.REPEATING: "stopped: the model was repeating itself",
                 FinishReason.BANNED: "stopped: every continuation held a banned phrase"}


def finish_note(reason: FinishReason | str) -> str | None:
    """What to tell the user about how an output ended, when that is unusual (a loop that
    was cut off, ...); None for an ordinary end."""
    try:
        return _FINISH_NOTES.get(FinishReason(reason))
    except ValueError:
        return None


def finish_sentence(reason: FinishReason | str) -> str | None:
    """``finish_note`` as a sentence, the way the chat view and the document panels show it
    ("Stopped: the model was repeating itself.")."""
    note = finish_note(reason)
    return note[0].upper() + note[1:] + "." if note else None


class ErrorKind(StrEnum):
    MODEL_INVALID = "model_invalid"  # the file is not a usable GGUF model
    MODEL_NOT_FOUND = "model_not_found"
    OUT_OF_MEMORY = "out_of_memory"  # the estimate does not fit in available memory
    NO_MODEL = "no_model"  # a request arrived before any model was loaded
    CONTEXT_OVERFLOW = "context_overflow"  # the prompt does not fit and the policy refuses
    ENGINE_CRASHED = "engine_crashed"  # the engine process died
    BAD_REQUEST = "bad_request"  # invalid parameters (e.g. a malformed grammar)
    DOCUMENT_INVALID = "document_invalid"  # a document that cannot be read (see DocumentError)
    UNSUPPORTED = "unsupported"  # the backend lacks a capability the request needs
    SERVER_UNREACHABLE = "server_unreachable"  # no answer: refused, DNS, TLS, timeout, dropped
    AUTH_FAILED = "auth_failed"  # the server refused the API key (HTTP 401/403)
    SERVER_BUSY = "server_busy"  # HTTP 429, or still generating after a stop
    SERVER_ERROR = "server_error"  # HTTP 404/5xx, or a reply that is not what the API says
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class TokenAlternative:
    token_id: int
    text: str
    logprob: float


@dataclass(frozen=True, slots=True)
class Token:
    """One generated token. ``text`` is the newly visible text (may be empty while a
    multi-byte character or a possible stop string is held back)."""

    token_id: int
    text: str
    logprob: float | None = None
    alternatives: tuple[TokenAlternative, ...] = ()


@dataclass(frozen=True, slots=True)
class Rollback:
    """Banned-phrase enforcement or the degeneration guard undid the last ``n_tokens``
    ``Token`` events, whose text adds up to the last ``n_chars`` characters streamed so far:
    drop them from the display. Generation then resumes from that point with the offending
    token banned there, so the ``Token`` events that follow replace what was dropped (or the
    output ends, ``FinishReason.REPEATING``). ``Done.text`` never contains dropped text.
    Only requests with ``SamplingParams.ban_phrases`` or ``loop_guard`` produce this event."""

    n_tokens: int
    n_chars: int
    phrase: str  # the banned phrase that appeared, or the words that were repeated
    repeating: bool = False  # the degeneration guard undid a loop


@dataclass(frozen=True, slots=True)
class Progress:
    stage: str  # "load" | "prompt"
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    ref: ModelRef
    name: str
    n_ctx: int
    n_ctx_train: int
    n_vocab: int
    has_chat_template: bool
    gpu_layers: int
    load_seconds: float
    chat_template_problem: str = ""  # why the model's own chat template is not used

    @property
    def local_path(self) -> str | None:
        """The GGUF file, for a model Verso runs itself; None for a remote model."""
        return self.ref.local_path


@dataclass(frozen=True, slots=True)
class ContextTrimmed:
    """The prompt did not fit; the oldest turns were dropped (policy ``drop_oldest``)."""

    dropped_messages: int
    dropped_tokens: int


@dataclass(frozen=True, slots=True)
class Stats:
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens taken from the KV cache
    evaluated_tokens: int = 0  # prompt tokens actually evaluated
    generated_tokens: int = 0
    ttft_s: float = 0.0  # request to first visible character
    prompt_s: float = 0.0
    generation_s: float = 0.0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    n_ctx: int = 0
    context_used: int = 0  # tokens in the context after this request
    dropped_messages: int = 0
    restored_snapshot: bool = False  # the session's KV state came from the snapshot cache
    rollbacks: int = 0  # times banned-phrase enforcement went back and resampled
    loops: int = 0  # loops the degeneration guard rolled back (the last may have ended it)


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: FinishReason
    text: str = ""
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True, slots=True)
class Error:
    kind: ErrorKind
    message: str
    partial_text: str = ""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Tokenized:
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RenderedChat:
    """A conversation rendered with the model's chat template, and its prompt tokens."""

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scores:
    """Log-probability of each continuation after a prompt (sum over its tokens)."""

    logprobs: tuple[float, ...]


@dataclass(frozen=True, slots=True, eq=False)
class AttentionMap:
    """Attention of one query token over the tokens before it, captured from llama.cpp
    (``engine.runtime.attention``). ``weights[i, h, k]`` is how much head ``h`` of layer
    ``layers[i]`` at ``query_position`` attends to position ``k`` (0..query_position); each
    row is a probability distribution (non-negative, sums to 1). It is computed when the
    query token is evaluated, so the row that *predicted* token ``t`` is query ``t - 1``.
    Compared by identity (it holds a numpy array)."""

    query_position: int
    weights: np.ndarray  # float32, (n_layers, n_heads, query_position + 1)
    pieces: tuple[str, ...]  # text of each key token, special tokens by name
    tokens: tuple[int, ...]  # the key token ids (tokens[:query_position + 1])
    layers: tuple[int, ...]  # model layer index of each row of ``weights``
    n_heads: int  # query heads per layer
    n_kv_heads: int  # key/value heads (fewer with grouped-query attention)

    @property
    def n_layers(self) -> int:
        return int(self.weights.shape[0])

    def row(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """Weights over the context for one layer index into ``weights`` (or the mean over
        layers when None) and one head (or the mean over heads when None); still sums to 1."""
        w = self.weights if layer is None else self.weights[layer:layer + 1]
        w = w if head is None else w[:, head:head + 1]
        return w.mean(axis=(0, 1))


@dataclass(frozen=True, slots=True)
class SeqToken:
    """A token of one item of a batched request (``options.BatchRequest``)."""

    index: int  # into BatchRequest.items
    token_id: int
    text: str
    logprob: float | None = None
    forced: bool = False


@dataclass(frozen=True, slots=True)
class SeqRollback:
    """The degeneration guard undid the last ``n_tokens`` ``SeqToken`` events of item
    ``index`` (their text: the last ``n_chars`` characters streamed for it); see
    ``Rollback``. ``SeqDone.text`` never contains dropped text."""

    index: int
    n_tokens: int
    n_chars: int
    phrase: str  # the words that were repeated


@dataclass(frozen=True, slots=True)
class SeqDone:
    """One item of a batched request has finished."""

    index: int
    finish_reason: FinishReason
    text: str
    n_tokens: int
    mean_logprob: float | None = None
    forced_tokens: int = 0
    loops: int = 0  # loops the degeneration guard rolled back


def fold_rollbacks(events: Iterable[object]) -> list[Token]:
    """The ``Token`` events of an output as its ``Rollback`` events leave it."""
    kept: list[Token] = []
    for event in events:
        if isinstance(event, Token):
            kept.append(event)
        elif isinstance(event, Rollback) and event.n_tokens:
            del kept[len(kept) - event.n_tokens:]
    return kept


def fold_text(parts: list[str], event: object) -> None:
    """Keep ``parts`` equal to the text streamed so far: append a ``Token``'s text, drop
    what a ``Rollback`` retracted."""
    if isinstance(event, Token):
        parts.append(event.text)
    elif isinstance(event, Rollback) and event.n_chars:
        text = "".join(parts)
        parts[:] = [text[: len(text) - event.n_chars]]


Event = (Token | Rollback | Progress | ModelLoaded | ContextTrimmed | Stats | Done | Error
         | Tokenized | RenderedChat | Scores | AttentionMap | SeqToken | SeqRollback | SeqDone)
