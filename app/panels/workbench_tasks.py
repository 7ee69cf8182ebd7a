"""What the Workbench asks of the engine, as task functions for ``EngineBridge.run_task``.

Each function runs in the bridge's engine thread and yields small records the panel
understands. Token events are batched by the bridge's ``coalesce`` (at most ~60 batches a
second) so the GUI repaints at screen rate however fast tokens come."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from app.bridge import TaskFn, coalesce
from engine.api import Feature
from engine.errors import Cancelled
from engine.events import Done, Error
from engine.options import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    SamplingParams,
)
from engine.tasks.branch import branch_request
from engine.tasks.constraints import Constraints, client_tokenizer

SESSION = "workbench"


@dataclass(frozen=True)
class RunSpec:
    mode: str  # "raw": ``prompt`` is continued; "chat": ``prompt`` is the user's message
    prompt: str
    sampling: SamplingParams
    constraints: Constraints
    system: str = ""


@dataclass(frozen=True)
class Started:
    tag: str
    request: CompletionRequest | ChatRequest
    prompt_tokens: tuple[int, ...]
    prefix: str = ""  # chat branches: the kept text, as the model continues it


@dataclass(frozen=True)
class Batch:
    tag: str
    events: tuple[object, ...]


@dataclass(frozen=True)
class GrammarChecked:
    text: str
    problems: tuple[str, ...]


def stream(tag: str, events: Iterable[object]) -> Iterator[Batch]:
    for batch in coalesce(events, final=lambda event: isinstance(event, Done | Error)):
        yield Batch(tag, tuple(batch))


def check_grammar(text: str) -> TaskFn:
    def run(client, cancelled) -> Iterator[object]:
        yield GrammarChecked(text, tuple(client.validate_grammar(text)))
    return run


def messages_for(spec: RunSpec) -> tuple[ChatMessage, ...]:
    system = (ChatMessage("system", spec.system),) if spec.system.strip() else ()
    return (*system, ChatMessage("user", spec.prompt))


def generate(specs: Sequence[tuple[str, RunSpec]]) -> TaskFn:
    """Run each spec in turn (one for a run, two for a comparison), tagged."""
    def run(client, cancelled) -> Iterator[object]:
        for tag, spec in specs:
            if cancelled():
                raise Cancelled
            grammar = spec.constraints.grammar
            if grammar and client.capabilities.has(Feature.GRAMMAR_CHECK):
                problems = tuple(client.validate_grammar(grammar))
                if problems:
                    yield GrammarChecked(grammar, problems)
                    return
            sampling = spec.constraints.apply(spec.sampling, client_tokenizer(client))
            if spec.mode == "chat":
                messages = messages_for(spec)
                request: CompletionRequest | ChatRequest = ChatRequest(
                    messages, sampling, session_id=SESSION, policy=ContextPolicy.REFUSE)
                prompt_tokens = client.chat_prompt(messages).tokens
                events = client.chat(request)
            else:
                request = CompletionRequest(spec.prompt, sampling, session_id=SESSION)
                prompt_tokens = tuple(client.tokenize(spec.prompt, add_bos=True,
                                                      special=False))
                events = client.complete(request)
            yield Started(tag, request, tuple(prompt_tokens))
            yield from stream(tag, events)
    return run


def branch(tag: str, request: CompletionRequest | ChatRequest, output: Sequence[int],
           prompt_tokens: Sequence[int], position: int, token_id: int) -> TaskFn:
    """Regenerate from ``output[position]`` with ``token_id`` there, keeping what came before.

    Raw completions force the kept tokens and the new one (exact tokens, the KV cache reused
    up to the branch). A chat reply is continued from its kept text plus the new token's
    text (``continue_last``): the model re-reads the same text, tokenized afresh."""
    def run(client, cancelled) -> Iterator[object]:
        if isinstance(request, CompletionRequest):
            new = branch_request(request, output, position, token_id)
            yield Started(tag, new, tuple(prompt_tokens))
            yield from stream(tag, client.complete(new))
            return
        kept = client.detokenize(list(output[:position])) if position else ""
        prefix = kept + client.detokenize([token_id])
        messages = (*request.messages, ChatMessage("assistant", prefix))
        new_chat = replace(request, messages=messages, continue_last=True)
        yield Started(tag, new_chat, tuple(prompt_tokens), prefix=kept)
        yield from stream(tag, client.chat(new_chat))
    return run


def attention(tokens: Sequence[int], query_position: int) -> TaskFn:
    def run(client, cancelled) -> Iterator[object]:
        yield client.attention(list(tokens), query_position)
    return run
