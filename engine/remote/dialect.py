"""What every server kind's request and response code provides to ``RemoteEngine``.

A dialect turns one generation (``Prompt``) into the server's request and its streamed reply
into ``Piece``s (text with, where the server gives them, token ids and log-probabilities)
and one closing ``Finish``. It also says what the server is (``ServerInfo``) and which
optional features it has (``Capabilities``)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.api import Capabilities, Feature, unavailable_message
from engine.errors import UnsupportedError
from engine.events import FinishReason, RenderedChat, TokenAlternative
from engine.options import ChatMessage, SamplingParams
from engine.remote.endpoint import Endpoint, ServerKind
from engine.remote.http import Http


@dataclass(frozen=True, slots=True)
class RemoteModel:
    id: str
    n_ctx: int = 0  # 0: the server does not say
    n_ctx_train: int = 0
    n_vocab: int = 0
    size_bytes: int = 0
    details: str = ""  # e.g. Ollama's family, parameter size and quantization


@dataclass(frozen=True, slots=True)
class ServerInfo:
    kind: ServerKind
    version: str = ""
    models: tuple[RemoteModel, ...] = ()
    slots: int = 0  # requests the server decodes in parallel (0: it does not say)
    n_ctx: int = 0  # context per request (0: per model, or unknown)
    chat_template: bool = True  # a chat endpoint or template is there


@dataclass(frozen=True, slots=True)
class Prompt:
    """One generation: exactly one of ``tokens``, ``text`` or ``messages``."""

    sampling: SamplingParams
    tokens: tuple[int, ...] | None = None
    text: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    continue_last: bool = False  # messages: continue the final assistant message
    json_schema: str | None = None
    logprobs: bool = False  # the chosen token's log-probability even with n_probs 0
    min_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Piece:
    text: str
    token_id: int = -1  # -1: the server does not say
    logprob: float | None = None
    alternatives: tuple[TokenAlternative, ...] = ()


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    prompt_s: float = 0.0
    generation_s: float = 0.0
    slot: int | None = None


_LOGPROB_FEATURES = frozenset({Feature.TOKEN_PROBS})


@dataclass
class Dialect:
    http: Http
    endpoint: Endpoint
    kind: ServerKind = ServerKind.OPENAI
    info: ServerInfo = field(default_factory=lambda: ServerInfo(ServerKind.OPENAI))

    # ---------------------------------------------------------------- description

    @property
    def backend(self) -> str:
        from engine.remote.endpoint import KIND_NAMES

        return f"{KIND_NAMES[self.kind]} at {self.endpoint.label}"

    def probe(self) -> ServerInfo:
        raise NotImplementedError

    def features(self) -> frozenset[Feature]:
        raise NotImplementedError

    def sampling(self) -> frozenset[str]:
        raise NotImplementedError

    def capabilities(self) -> Capabilities:
        from engine.remote.endpoint import DEFAULT_CONCURRENCY

        slots = (self.endpoint.concurrency or self.info.slots or DEFAULT_CONCURRENCY)
        # The degeneration guard runs on this side, on the streamed text (remote.loop_cut).
        sampling = self.sampling() | {"loop_guard"}
        return Capabilities(self.backend, self.features(), sampling, max_parallel=slots)

    def model_n_ctx(self, model: str, wanted: int) -> int:
        """The context a request to ``model`` gets (``wanted``: the user's setting, 0 none)."""
        for m in self.info.models:
            if m.id == model and m.n_ctx:
                return m.n_ctx
        return self.info.n_ctx or wanted

    def load(self, model: str, n_ctx: int) -> None:
        """Get ``model`` ready (Ollama loads it into memory); most servers need nothing."""

    # ---------------------------------------------------------------- operations

    def generate(self, prompt: Prompt, model: str,
                 n_ctx: int) -> Generator[Piece | Finish, None, None]:
        raise NotImplementedError

    def _unsupported(self, feature: Feature) -> UnsupportedError:
        return UnsupportedError(unavailable_message(self.capabilities(), feature))

    def tokenize(self, text: str, add_special: bool, parse_special: bool,
                 model: str) -> list[int]:
        raise self._unsupported(Feature.EXACT_TOKENS)

    def detokenize(self, tokens: Sequence[int], model: str) -> str:
        raise self._unsupported(Feature.EXACT_TOKENS)

    def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool,
                    continue_last: bool, model: str) -> RenderedChat:
        raise self._unsupported(Feature.EXACT_TOKENS)

    def score(self, prompt: Sequence[int], continuations: Sequence[Sequence[int]],
              model: str) -> list[float]:
        raise self._unsupported(Feature.SCORE)

    def busy_slots(self) -> list[int] | None:
        """Slots still generating (None: the server cannot tell)."""
        return None


def merged(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The request body with the endpoint's extra parameters (they win: the user set them
    for this server on purpose), except the fields Verso's own protocol depends on."""
    protected = {"stream", "prompt", "messages", "model"}
    return {**body, **{k: v for k, v in extra.items() if k not in protected}}


def openai_sampling(s: SamplingParams) -> dict[str, Any]:
    """The OpenAI-standard sampling fields."""
    body: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p,
                            "max_tokens": s.max_tokens,
                            "presence_penalty": s.presence_penalty,
                            "frequency_penalty": s.frequency_penalty}
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed >= 0:
        body["seed"] = s.seed
    return body


def finish_reason(value: object) -> FinishReason:
    """OpenAI's, vLLM's and Ollama's finish reasons, and llama.cpp's stop types."""
    if value in ("length", "limit"):
        return FinishReason.LENGTH
    return FinishReason.STOP


def alternatives(entries: object, id_of: Any = None) -> tuple[TokenAlternative, ...]:
    """``[{"token": ..., "logprob": ..., "id"?: ...}, ...]`` as alternatives."""
    if not isinstance(entries, list):
        return ()
    out = []
    for entry in entries:
        if isinstance(entry, dict) and "logprob" in entry:
            token_id = entry.get("id", id_of(entry) if id_of else -1)
            out.append(TokenAlternative(int(token_id) if token_id is not None else -1,
                                        str(entry.get("token", "")), float(entry["logprob"])))
    return tuple(out)
