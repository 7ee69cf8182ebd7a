"""Ollama's native API (written from Ollama's API types and documentation; not run here,
tested against recorded-shape fakes).

``/api/chat`` and ``/api/generate`` (``raw`` for a raw completion) stream JSON lines. Its
``/v1`` endpoint is not used: it has no ``num_ctx`` (Ollama would run a model at its small
default context and cut long prompts silently) and no log-probabilities. Verso always sends
``options.num_ctx``, a JSON schema as ``format``, the endpoint's ``keep_alive``, and
``logprobs``/``top_logprobs`` (Ollama 0.12.11 and later). Ollama cannot tokenize, so counts
are estimates (``engine.token_estimate``) and prompts go as text or messages."""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from engine.api import Feature
from engine.events import ErrorKind, FinishReason
from engine.options import DEFAULT_CTX_CAP, SamplingParams
from engine.remote.dialect import (
    Dialect,
    Finish,
    Piece,
    Prompt,
    RemoteModel,
    ServerInfo,
    alternatives,
    finish_reason,
    merged,
)
from engine.remote.endpoint import ServerKind
from engine.remote.http import RemoteError, json_lines

_NS = 1e9


def options(s: SamplingParams, n_ctx: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "num_ctx": n_ctx, "num_predict": s.max_tokens, "temperature": s.temperature,
        "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p, "typical_p": s.typical_p,
        "repeat_penalty": s.repeat_penalty, "repeat_last_n": s.repeat_last_n,
        "presence_penalty": s.presence_penalty, "frequency_penalty": s.frequency_penalty,
        "mirostat": s.mirostat, "mirostat_tau": s.mirostat_tau, "mirostat_eta": s.mirostat_eta}
    if s.seed >= 0:
        out["seed"] = s.seed
    if s.stop:
        out["stop"] = list(s.stop)
    return out


@dataclass
class Ollama(Dialect):
    kind: ServerKind = ServerKind.OLLAMA

    def probe(self) -> ServerInfo:
        version = self.http.get("/api/version").get("version", "")
        models = []
        for entry in self.http.get("/api/tags").get("models") or ():
            details = entry.get("details") or {}
            text = " ".join(str(details[k]) for k in ("family", "parameter_size",
                                                      "quantization_level") if details.get(k))
            models.append(RemoteModel(str(entry.get("name") or entry.get("model", "")),
                                      size_bytes=int(entry.get("size") or 0), details=text))
        self.info = ServerInfo(self.kind, str(version), tuple(models))
        return self.info

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.JSON_SCHEMA, Feature.TOKEN_PROBS, Feature.RAW_COMPLETION})

    def sampling(self) -> frozenset[str]:
        return frozenset({"temperature", "top_k", "top_p", "min_p", "typical_p",
                          "repeat_penalty", "repeat_last_n", "presence_penalty",
                          "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta",
                          "seed", "max_tokens", "stop", "n_probs"})

    def trained_context(self, model: str) -> int:
        """The model's trained context from ``/api/show`` (``<arch>.context_length``)."""
        shown = self.http.post("/api/show", {"model": model}, idempotent=True)
        info = shown.get("model_info") or {}
        for key, value in info.items():
            if key.endswith(".context_length") and isinstance(value, int):
                return value
        return 0

    def model_n_ctx(self, model: str, wanted: int) -> int:
        return wanted or min(self.trained_context(model) or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)

    def load(self, model: str, n_ctx: int) -> None:
        """An empty chat loads the model into memory (and fails fast if it is not there)."""
        body: dict[str, Any] = {"model": model, "messages": [], "stream": False,
                                "options": {"num_ctx": n_ctx}}
        if self.endpoint.keep_alive:
            body["keep_alive"] = self.endpoint.keep_alive
        self.http.post("/api/chat", body)

    def generate(self, prompt: Prompt, model: str,
                 n_ctx: int) -> Generator[Piece | Finish, None, None]:
        s = prompt.sampling
        body: dict[str, Any] = {"model": model, "stream": True, "options": options(s, n_ctx)}
        if self.endpoint.keep_alive:
            body["keep_alive"] = self.endpoint.keep_alive
        if prompt.json_schema:
            body["format"] = json.loads(prompt.json_schema)
        if s.n_probs or prompt.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = s.n_probs
        if prompt.messages is not None:
            path, field = "/api/chat", "message"
            body["messages"] = [{"role": m.role, "content": m.content}
                                for m in prompt.messages]
        elif prompt.text is not None:
            path, field = "/api/generate", "response"
            body.update({"prompt": prompt.text, "raw": True})
        else:
            raise RemoteError("Ollama takes prompts as text or messages, not token ids.",
                              ErrorKind.BAD_REQUEST)
        with self.http.stream(path, merged(body, self.endpoint.extra)) as reply:
            for chunk in json_lines(reply, self.http.where):
                value = chunk.get(field)
                text = str(value.get("content", "") if isinstance(value, dict) else value or "")
                logprobs = chunk.get("logprobs") or []
                if logprobs:
                    for i, entry in enumerate(logprobs):
                        yield Piece(text if i == len(logprobs) - 1 else "", -1,
                                    float(entry["logprob"]) if "logprob" in entry else None,
                                    alternatives(entry.get("top_logprobs"))[:s.n_probs])
                elif text:
                    yield Piece(text)
                if chunk.get("done"):
                    yield _finish(chunk)
                    return


def _finish(chunk: dict[str, Any]) -> Finish:
    prompt_n = int(chunk.get("prompt_eval_count") or 0)
    reason = chunk.get("done_reason")
    return Finish(FinishReason.LENGTH if reason == "length" else finish_reason(reason),
                  prompt_n, 0, prompt_n, int(chunk.get("eval_count") or 0),
                  float(chunk.get("prompt_eval_duration") or 0) / _NS,
                  float(chunk.get("eval_duration") or 0) / _NS)
