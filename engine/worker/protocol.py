"""Messages between ``EngineClient`` and the engine process. Plain picklable dataclasses;
each request is sent as ``(request_id, command)`` and answered by events tagged with the same
id, closed by ``Finished``."""

from __future__ import annotations

from dataclasses import dataclass

from engine.events import Event
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
)


@dataclass(frozen=True, slots=True)
class Load:
    settings: LoadSettings


@dataclass(frozen=True, slots=True)
class Unload:
    pass


@dataclass(frozen=True, slots=True)
class Chat:
    request: ChatRequest


@dataclass(frozen=True, slots=True)
class Prefill:
    """Evaluate a conversation and the user's unfinished message ahead of the request
    (``Runtime.prefill``); the engine stops it as soon as another command arrives."""

    request: ChatRequest


@dataclass(frozen=True, slots=True)
class Complete:
    request: CompletionRequest


@dataclass(frozen=True, slots=True)
class Tokenize:
    text: str
    add_bos: bool = False
    special: bool = True


@dataclass(frozen=True, slots=True)
class Detokenize:
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CountChat:
    messages: tuple[ChatMessage, ...]


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    messages: tuple[ChatMessage, ...]
    add_generation_prompt: bool = True


@dataclass(frozen=True, slots=True)
class Score:
    prompt_tokens: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    session_id: str = "score"


@dataclass(frozen=True, slots=True)
class ValidateGrammar:
    text: str


@dataclass(frozen=True, slots=True)
class Attention:
    """Capture attention weights (``Runtime.attention``); answered by an ``AttentionMap``."""

    tokens: tuple[int, ...]
    query_position: int


@dataclass(frozen=True, slots=True)
class ForgetSession:
    session_id: str


@dataclass(frozen=True, slots=True)
class Cancel:
    request_id: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


@dataclass(frozen=True, slots=True)
class Finished:
    """Closes the event stream of one request."""


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Unloaded:
    """A failed load had already unloaded the previous model: none is loaded now."""


@dataclass(frozen=True, slots=True)
class Problems:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GenerateBatch:
    """Several prompts decoded together (``engine.runtime.batch``)."""

    request: BatchRequest


Command = (Load | Unload | Chat | Prefill | Complete | Tokenize | Detokenize | CountChat
           | ChatPrompt | Score | ValidateGrammar | ForgetSession | GenerateBatch | Attention)

Reply = Event | Text | Unloaded | Problems | Finished
"""What the engine process sends back: engine events, and the protocol's own answers."""
