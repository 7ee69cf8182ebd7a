"""The engine interface: what the bridge, the CLI and every task are typed against.

A backend (Verso's own llama.cpp engine process, an in-process ``Runtime`` for tests and
benchmarks, a scripted fake, a remote server) implements ``Engine``. Operations every
backend has are plain methods; the optional ones (scoring, attention capture, grammar
validation, per-session KV snapshots) and the sampling and constraint options a backend
honours are declared by its ``Capabilities``. Callers read the capabilities instead of
probing for methods, and ``require``/``check_sampling`` refuse a request that needs a missing
capability with a message that names the feature and the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from engine.errors import UnsupportedError
from engine.events import AttentionMap, Event, ModelLoaded, RenderedChat
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
    SamplingParams,
)

CancelCheck = Callable[[], bool]
"""True once the caller wants an operation stopped (checked between steps)."""


class Feature(StrEnum):
    """Optional operations and options; the value is the name the user reads."""

    SCORE = "scoring continuations (classification)"
    ATTENTION = "attention capture"
    GRAMMAR = "grammar constraints (GBNF)"
    GRAMMAR_CHECK = "grammar checking against the model"
    TOKEN_PROBS = "token probabilities"
    LOGIT_BIAS = "logit bias"
    BAN_PHRASES = "banned phrases"
    SESSIONS = "per-conversation KV snapshots"
    FORCED_TOKENS = "forced tokens (branching)"
    EXACT_TOKENS = "exact tokenization"
    RAW_COMPLETION = "raw completion"
    JSON_SCHEMA = "JSON Schema output"
    PREFILL = "prefill while typing"


# SamplingParams fields that need a feature when set to a non-default value.
_SAMPLING_FEATURES: dict[str, Feature] = {
    "grammar": Feature.GRAMMAR,
    "n_probs": Feature.TOKEN_PROBS,
    "logit_bias": Feature.LOGIT_BIAS,
    "ban_phrases": Feature.BAN_PHRASES,
    "ban_any_case": Feature.BAN_PHRASES,
}

ALL_SAMPLING = frozenset(f.name for f in fields(SamplingParams))


@dataclass(frozen=True, slots=True)
class Capabilities:
    backend: str  # who runs the model, as the user reads it ("Verso's llama.cpp engine")
    features: frozenset[Feature] = frozenset(Feature)
    sampling: frozenset[str] = ALL_SAMPLING  # SamplingParams fields the backend honours
    max_parallel: int = 8  # sequences generate_batch decodes at once

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    def missing_sampling(self, sampling: SamplingParams) -> list[str]:
        """Options of ``sampling`` set away from their defaults that this backend would
        ignore or cannot do."""
        default = SamplingParams()
        out = []
        for f in fields(SamplingParams):
            value = getattr(sampling, f.name)
            if value == getattr(default, f.name):
                continue
            feature = _SAMPLING_FEATURES.get(f.name)
            if f.name not in self.sampling or (feature is not None and feature
                                                not in self.features):
                out.append(f.name)
        return out


LOCAL_CAPABILITIES = Capabilities("Verso's llama.cpp engine")


_PLURAL = frozenset({Feature.GRAMMAR, Feature.TOKEN_PROBS, Feature.BAN_PHRASES,
                     Feature.SESSIONS, Feature.FORCED_TOKENS})


def unavailable_message(capabilities: Capabilities, feature: Feature) -> str:
    """"Token probabilities are not available with <backend>." (for the user)."""
    verb = "are" if feature in _PLURAL else "is"
    return (f"{feature.value[0].upper()}{feature.value[1:]} {verb} not available with "
            f"{capabilities.backend}.")


def require(capabilities: Capabilities, feature: Feature) -> None:
    """Raise ``UnsupportedError`` naming the feature and the backend if it is missing."""
    if not capabilities.has(feature):
        raise UnsupportedError(unavailable_message(capabilities, feature))


def check_sampling(capabilities: Capabilities, sampling: SamplingParams) -> None:
    """Refuse sampling options the backend cannot honour (never ignore them silently)."""
    missing = capabilities.missing_sampling(sampling)
    if missing:
        raise UnsupportedError(f"{capabilities.backend} does not support the option"
                               f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}.")


_DRY = ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
        "dry_sequence_breakers")
_XTC = ("xtc_probability", "xtc_threshold")


def without_missing_aids(capabilities: Capabilities, sampling: SamplingParams) -> SamplingParams:
    """``sampling`` with DRY and XTC switched off where the backend lacks them. The document
    tasks turn DRY on by default against loops; on a server without it they run without it
    (their own output checks still apply) rather than fail."""
    default = SamplingParams()
    off: dict[str, Any] = {}
    for group in (_DRY, _XTC):
        if any(name not in capabilities.sampling for name in group):
            off.update({name: getattr(default, name) for name in group})
    return replace(sampling, **off) if off else sampling


@runtime_checkable
class Engine(Protocol):
    """One owner of one loaded model. Generators stream typed events (``engine.events``);
    stop iterating one to cancel it. ``cancel`` may be called from any thread."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def loaded(self) -> ModelLoaded | None: ...

    def start(self) -> None:
        """Get ready ahead of the first request (start a process, connect)."""

    def load(self, settings: LoadSettings) -> Iterator[Event]: ...

    def unload(self) -> None: ...

    def chat(self, request: ChatRequest) -> Iterator[Event]: ...

    def complete(self, request: CompletionRequest) -> Iterator[Event]: ...

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]: ...

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat: ...

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as plain text (no BOS, special-token text not parsed)."""

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...

    def kill(self) -> None:
        """End the backend abruptly (a last resort, and tests); the next request recovers."""

    # Optional operations: call only when ``capabilities`` has the feature.

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        """Log-probability of each continuation after the prompt (``Feature.SCORE``)."""

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        """Attention of one token over the context (``Feature.ATTENTION``)."""

    def validate_grammar(self, text: str) -> list[str]:
        """Problems with a GBNF grammar against the model (``Feature.GRAMMAR_CHECK``)."""

    def forget_session(self, session_id: str) -> None:
        """Drop a conversation's KV snapshot (``Feature.SESSIONS``; a no-op without it)."""

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        """Work ahead of a chat request whose last message, the user's, is still being
        written: extend the session's KV cache with the conversation and that message as
        far as it is stable, so sending it evaluates only the rest (``Feature.PREFILL``;
        without it, yields nothing). Opportunistic: it does not run while another request
        does, and any other request stops it at once. Yields ``Progress("prefill")`` and a
        ``Done`` with what was evaluated, or nothing when it did not run."""
