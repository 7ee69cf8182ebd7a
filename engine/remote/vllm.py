"""vLLM's OpenAI-compatible server, with its extensions (written from vLLM's protocol
definitions and documentation; not run here, tested against recorded-shape fakes).

- ``/tokenize`` (text, or messages through the model's chat template) and ``/detokenize``,
  so prompts go to ``/v1/completions`` as token ids, like llama.cpp's server.
- ``structured_outputs`` (``{"grammar": ...}`` or ``{"json": schema}``; the ``guided_*``
  fields were removed in v0.12), ``logprobs`` with ``return_tokens_as_token_ids`` (so every
  token and alternative comes with its id), ``min_tokens``, ``top_k``, ``min_p``,
  ``repetition_penalty``.
- ``prompt_logprobs`` scores a continuation in one request (classification).
- Its automatic prefix caching reuses a batch's shared instruction prefix by itself.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from engine.api import Feature
from engine.errors import ContextOverflowError
from engine.events import ErrorKind, FinishReason, RenderedChat, TokenAlternative
from engine.options import ChatMessage
from engine.remote.dialect import (
    Dialect,
    Finish,
    Piece,
    Prompt,
    RemoteModel,
    ServerInfo,
    finish_reason,
    merged,
    openai_sampling,
)
from engine.remote.endpoint import ServerKind
from engine.remote.http import RemoteError, sse_events

_TOKEN_ID = "token_id:"


def _token_id(text: str) -> int:
    return int(text[len(_TOKEN_ID):]) if text.startswith(_TOKEN_ID) else -1


@dataclass
class Vllm(Dialect):
    kind: ServerKind = ServerKind.VLLM

    def probe(self) -> ServerInfo:
        version = self.http.get("/version").get("version", "")
        listing = self.http.get("/v1/models")
        models = tuple(RemoteModel(str(m.get("id", "")), int(m.get("max_model_len") or 0),
                                   int(m.get("max_model_len") or 0),
                                   details=str(m.get("root") or ""))
                       for m in listing.get("data") or ())
        self.info = ServerInfo(self.kind, str(version), models)
        return self.info

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.SCORE, Feature.GRAMMAR, Feature.JSON_SCHEMA,
                          Feature.TOKEN_PROBS, Feature.LOGIT_BIAS, Feature.FORCED_TOKENS,
                          Feature.EXACT_TOKENS, Feature.RAW_COMPLETION})

    def sampling(self) -> frozenset[str]:
        return frozenset({"temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                          "presence_penalty", "frequency_penalty", "seed", "max_tokens",
                          "stop", "n_probs", "grammar", "logit_bias"})

    def tokenize(self, text: str, add_special: bool, parse_special: bool,
                 model: str) -> list[int]:
        reply = self.http.post("/tokenize", {"model": model, "prompt": text,
                                             "add_special_tokens": add_special},
                               idempotent=True)
        return [int(t) for t in reply.get("tokens", ())]

    def detokenize(self, tokens: Sequence[int], model: str) -> str:
        reply = self.http.post("/detokenize", {"model": model, "tokens": list(tokens)},
                               idempotent=True)
        return str(reply.get("prompt", ""))

    def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool,
                    continue_last: bool, model: str) -> RenderedChat:
        reply = self.http.post("/tokenize", {
            "model": model, "messages": [{"role": m.role, "content": m.content}
                                         for m in messages],
            "add_generation_prompt": add_generation_prompt and not continue_last,
            "continue_final_message": continue_last}, idempotent=True)
        tokens = tuple(int(t) for t in reply.get("tokens", ()))
        return RenderedChat(self.detokenize(tokens, model), tokens)

    def _body(self, prompt: Prompt, model: str) -> dict[str, Any]:
        s = prompt.sampling
        body = openai_sampling(s)
        body.update({"model": model, "top_k": s.top_k if s.top_k > 0 else -1,
                     "min_p": s.min_p, "repetition_penalty": s.repeat_penalty,
                     "stream": True, "stream_options": {"include_usage": True}})
        if prompt.min_tokens:
            body["min_tokens"] = prompt.min_tokens
        if s.n_probs or prompt.logprobs:
            body["logprobs"] = s.n_probs
            body["return_tokens_as_token_ids"] = True
        if prompt.json_schema:
            import json

            body["structured_outputs"] = {"json": json.loads(prompt.json_schema)}
        elif s.grammar:
            body["structured_outputs"] = {"grammar": s.grammar}
        if s.logit_bias:
            body["logit_bias"] = {str(t): b for t, b in s.logit_bias}
        return body

    def generate(self, prompt: Prompt, model: str,
                 n_ctx: int) -> Generator[Piece | Finish, None, None]:
        tokens = prompt.tokens
        if tokens is None and prompt.messages is not None:
            tokens = self.render_chat(prompt.messages, True, prompt.continue_last,
                                      model).tokens
        body = self._body(prompt, model)
        body["prompt"] = list(tokens) if tokens is not None else (prompt.text or "")
        if n_ctx and tokens is not None and len(tokens) >= n_ctx:
            raise RemoteError(ContextOverflowError(len(tokens), n_ctx - 1).message,
                              ErrorKind.CONTEXT_OVERFLOW)
        reason: FinishReason | None = None
        generated = 0
        with self.http.stream("/v1/completions", merged(body, self.endpoint.extra)) as reply:
            for chunk in sse_events(reply, self.http.where):
                for choice in chunk.get("choices") or ():
                    for piece in _pieces(choice):
                        generated += 1
                        yield piece
                    if choice.get("finish_reason"):
                        reason = finish_reason(choice["finish_reason"])
                usage = chunk.get("usage")
                if usage and reason is not None:
                    details = usage.get("prompt_tokens_details") or {}
                    prompt_n = int(usage.get("prompt_tokens") or 0)
                    cached = int(details.get("cached_tokens") or 0)
                    yield Finish(reason, prompt_n, cached, prompt_n - cached,
                                 int(usage.get("completion_tokens") or generated))
                    return
        if reason is not None:
            yield Finish(reason, len(tokens or ()), 0, len(tokens or ()), generated)

    def score(self, prompt: Sequence[int], continuations: Sequence[Sequence[int]],
              model: str) -> list[float]:
        totals = []
        for continuation in continuations:
            tokens = list(prompt) + list(continuation)
            reply = self.http.post("/v1/completions", {
                "model": model, "prompt": tokens, "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": 0})
            choices = reply.get("choices") or [{}]
            rows = choices[0].get("prompt_logprobs") or []
            total = 0.0
            for position in range(len(prompt), len(tokens)):
                row = rows[position] if position < len(rows) else None
                entry = (row or {}).get(str(tokens[position]))
                if not isinstance(entry, dict) or "logprob" not in entry:
                    raise RemoteError(f"{self.http.where} returned no prompt log-probability "
                                      f"for token {tokens[position]}.", ErrorKind.SERVER_ERROR)
                total += float(entry["logprob"])
            totals.append(total)
        return totals


def _pieces(choice: dict[str, Any]) -> Iterator[Piece]:
    """A streamed choice's text, one piece per token when log-probabilities came with it
    (the legacy completions shape: parallel ``tokens``/``token_logprobs``/``top_logprobs``)."""
    text = str(choice.get("text") or "")
    logprobs = choice.get("logprobs") or {}
    tokens = logprobs.get("tokens") or []
    if not tokens:
        if text:
            yield Piece(text)
        return
    values = logprobs.get("token_logprobs") or []
    tops = logprobs.get("top_logprobs") or []
    for i, token in enumerate(tokens):
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        alternatives = tuple(sorted((TokenAlternative(_token_id(k), "", float(v))
                                     for k, v in top.items()), key=lambda a: -a.logprob))
        value = values[i] if i < len(values) else None
        yield Piece(text if i == len(tokens) - 1 else "", _token_id(str(token)),
                    float(value) if value is not None else None, alternatives)
