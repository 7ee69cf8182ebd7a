"""Any other OpenAI-compatible server (LM Studio, llama-cpp-python's ``llama_cpp.server``,
hosted APIs): ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions``, streamed.

Nothing beyond the standard is assumed, so token probabilities, grammars, scoring and exact
tokenization are absent from its capabilities; sampler names differ between such servers
(``repeat_penalty`` vs ``repetition_penalty``), so the endpoint's extra parameters are merged
into every generation request for whatever the server takes."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from engine.api import Feature
from engine.events import FinishReason
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
from engine.remote.http import sse_events


def _context(entry: dict[str, Any]) -> int:
    meta = entry.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    for value in (entry.get("context_length"), entry.get("max_model_len"),
                  entry.get("context_window"), meta.get("n_ctx")):
        if isinstance(value, int) and value > 0:
            return value
    return 0


@dataclass
class OpenAICompatible(Dialect):
    kind: ServerKind = ServerKind.OPENAI

    def probe(self) -> ServerInfo:
        listing = self.http.get("/v1/models")
        models = tuple(RemoteModel(str(m.get("id", "")), _context(m),
                                   details=str(m.get("owned_by") or ""))
                       for m in listing.get("data") or () if isinstance(m, dict))
        self.info = ServerInfo(self.kind, "", models)
        return self.info

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.RAW_COMPLETION})

    def sampling(self) -> frozenset[str]:
        return frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty",
                          "seed", "max_tokens", "stop"})

    def generate(self, prompt: Prompt, model: str,
                 n_ctx: int) -> Generator[Piece | Finish, None, None]:
        body = openai_sampling(prompt.sampling)
        body.update({"model": model, "stream": True,
                     "stream_options": {"include_usage": True}})
        if prompt.messages is not None:
            path = "/v1/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content}
                                for m in prompt.messages]
        else:
            path = "/v1/completions"
            body["prompt"] = prompt.text or ""
        reason: FinishReason | None = None
        generated = 0
        usage: dict[str, Any] = {}
        with self.http.stream(path, merged(body, self.endpoint.extra)) as reply:
            for chunk in sse_events(reply, self.http.where):
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta")
                    text = (delta or {}).get("content") if delta is not None \
                        else choice.get("text")
                    if text:
                        generated += 1
                        yield Piece(str(text))
                    if choice.get("finish_reason"):
                        reason = finish_reason(choice["finish_reason"])
                usage = chunk.get("usage") or usage
        if reason is not None:
            prompt_n = int(usage.get("prompt_tokens") or 0)
            yield Finish(reason, prompt_n, 0, prompt_n,
                         int(usage.get("completion_tokens") or generated))
