"""llama.cpp's ``llama-server``: its native API, which gives everything Verso's own engine
does except banned-phrase rollback and attention.

Prompts go to ``/completion`` as token ids (rendered with ``/apply-template`` and tokenized
with ``/tokenize``, so counts, context checks and the shared prefix of a batch are exact and
its prompt cache reuses them), with ``n_probs``, ``grammar``, ``logit_bias`` and
``cache_prompt``. ``/props`` gives the context per slot and the slot count; ``/slots``
says whether a stopped request really stopped. A prompt too long for a slot is refused by
the server with ``exceed_context_size_error`` (prompt tokens and context), which becomes a
context-overflow error saying how many tokens over it is.

Scoring (classification) has no endpoint of its own: each continuation token is forced by a
large logit bias with ``n_probs`` on, and the server reports that token's probability under
the model's raw logits (before any sampler), which is the log-probability Verso's engine
computes. One request per token; the prompt cache makes each cost about one token."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.api import ALL_SAMPLING, Feature
from engine.chat_template import ChatTemplate, RenderedPrompt
from engine.errors import ContextOverflowError
from engine.events import ErrorKind, RenderedChat
from engine.options import ChatMessage, SamplingParams
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
from engine.remote.http import RemoteError, sse_events

_FORCE_BIAS = 1000.0
# What llama-server reports as its template for a model without one (common/chat.cpp).
SERVER_CHATML_FALLBACK = (
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}")


def native_sampling(s: SamplingParams, n_ctx: int) -> dict[str, Any]:
    """llama.cpp's sampling fields (the names Verso's own options use). The server refuses
    llama.cpp's -1 ("the whole context") for ``dry_penalty_last_n``: it gets ``n_ctx``."""
    body: dict[str, Any] = {
        "temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p,
        "typical_p": s.typical_p, "repeat_penalty": s.repeat_penalty,
        "repeat_last_n": s.repeat_last_n, "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty, "mirostat": s.mirostat,
        "mirostat_tau": s.mirostat_tau, "mirostat_eta": s.mirostat_eta,
        "n_predict": s.max_tokens, "stop": list(s.stop)}
    if s.dry_multiplier:
        body.update(dry_multiplier=s.dry_multiplier, dry_base=s.dry_base,
                    dry_allowed_length=s.dry_allowed_length,
                    dry_penalty_last_n=(n_ctx or 4096) if s.dry_penalty_last_n < 0 else
                    s.dry_penalty_last_n,
                    dry_sequence_breakers=list(s.dry_sequence_breakers))
    if s.xtc_probability:
        body.update(xtc_probability=s.xtc_probability, xtc_threshold=s.xtc_threshold)
    if s.seed >= 0:
        body["seed"] = s.seed
    if s.n_probs:
        body["n_probs"] = s.n_probs
    if s.grammar:
        body["grammar"] = s.grammar
    if s.logit_bias:
        body["logit_bias"] = [[t, b] for t, b in s.logit_bias]
    return body


def context_error(error: RemoteError) -> ContextOverflowError | None:
    """The server's ``exceed_context_size_error`` as Verso's context-overflow error."""
    body = error.body
    if body.get("type") != "exceed_context_size_error":
        return None
    try:
        return ContextOverflowError(int(body["n_prompt_tokens"]), int(body["n_ctx"]))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class LlamaServer(Dialect):
    kind: ServerKind = ServerKind.LLAMA_SERVER
    _bos: list[int] | None = field(default=None, repr=False)
    _template: ChatTemplate | None = field(default=None, repr=False)
    _slots_endpoint: bool = True

    def probe(self) -> ServerInfo:
        props = self.http.get("/props")
        slot = props.get("default_generation_settings") or {}
        listing = self.http.get("/v1/models")
        models = []
        for entry in listing.get("data") or ():
            meta = entry.get("meta") or {}
            models.append(RemoteModel(
                str(entry.get("id", "")), int(meta.get("n_ctx") or slot.get("n_ctx") or 0),
                int(meta.get("n_ctx_train") or 0), int(meta.get("n_vocab") or 0),
                int(meta.get("size") or 0), str(meta.get("ftype") or "")))
        # A model without a template of its own is prompted as Verso's engine prompts it:
        # raw prompts for the tasks, Verso's ChatML fallback for chat.
        template = props.get("chat_template") or None
        own = template is not None and template != SERVER_CHATML_FALLBACK
        self.info = ServerInfo(self.kind, str(props.get("build_info", "")), tuple(models),
                               int(props.get("total_slots") or 1),
                               int(slot.get("n_ctx") or 0), own)
        self._slots_endpoint = bool(props.get("endpoint_slots", True))
        self._template = ChatTemplate.from_model(template if own else None,
                                                 str(props.get("bos_token") or ""),
                                                 str(props.get("eos_token") or ""))
        return self.info

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.SCORE, Feature.GRAMMAR, Feature.TOKEN_PROBS,
                          Feature.LOGIT_BIAS, Feature.FORCED_TOKENS, Feature.EXACT_TOKENS,
                          Feature.RAW_COMPLETION, Feature.JSON_SCHEMA})

    def sampling(self) -> frozenset[str]:
        return ALL_SAMPLING - {"ban_phrases", "ban_any_case"}

    # ---------------------------------------------------------------- tokens

    def tokenize(self, text: str, add_special: bool, parse_special: bool,
                 model: str) -> list[int]:
        reply = self.http.post("/tokenize", {"content": text, "add_special": add_special,
                                             "parse_special": parse_special}, idempotent=True)
        return [int(t) for t in reply.get("tokens", ())]

    def detokenize(self, tokens: Sequence[int], model: str) -> str:
        reply = self.http.post("/detokenize", {"tokens": list(tokens)}, idempotent=True)
        return str(reply.get("content", ""))

    def bos(self, model: str) -> list[int]:
        """The tokens the model puts before a prompt (none for SmolLM2, <bos> for Gemma)."""
        if self._bos is None:
            self._bos = self.tokenize("", True, False, model)
        return self._bos

    def prompt_tokens(self, prompt: RenderedPrompt, model: str) -> list[int]:
        """A rendered chat prompt's tokens as Verso's engine makes them: the template's
        markers may be control tokens, the messages' text never is; BOS once (a template
        that writes the BOS text itself, as Gemma's does, gets no second one)."""
        pieces = prompt.pieces()
        if any(is_content and self.tokenize(piece, False, True, model)
               != self.tokenize(piece, False, False, model) for piece, is_content in pieces):
            tokens = [t for piece, is_content in pieces
                      for t in self.tokenize(piece, False, not is_content, model)]
        else:
            tokens = self.tokenize(prompt.text, False, True, model)
        bos = self.bos(model)
        return tokens if not bos or tokens[:len(bos)] == bos else bos + tokens

    def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool,
                    continue_last: bool, model: str) -> RenderedChat:
        """The conversation in the model's template (from ``/props``, rendered here in the
        same sandbox as a local model's); ``/apply-template`` for a server without one. The
        server's own rendering cannot close a final assistant turn (it always continues
        it), which scoring a label as a whole reply needs."""
        template = self._template
        if template is None:
            body = {"messages": [{"role": m.role, "content": m.content} for m in messages]}
            text = str(self.http.post("/apply-template", body, idempotent=True)
                       .get("prompt", ""))
            prompt = RenderedPrompt(text)
        elif continue_last and messages and messages[-1].role == "assistant":
            prompt = template.render_prompt(messages[:-1], True) + messages[-1].content
        else:
            prompt = template.render_prompt(messages, add_generation_prompt)
        return RenderedChat(prompt.text, tuple(self.prompt_tokens(prompt, model)))

    # ---------------------------------------------------------------- generation

    def generate(self, prompt: Prompt, model: str,
                 n_ctx: int) -> Generator[Piece | Finish, None, None]:
        if prompt.tokens is not None:
            content: Any = list(prompt.tokens)
        elif prompt.messages is not None:
            content = list(self.render_chat(prompt.messages, True, prompt.continue_last,
                                            model).tokens)
        else:
            content = prompt.text or ""
        body = native_sampling(prompt.sampling, n_ctx)
        if prompt.logprobs and not prompt.sampling.n_probs:
            body["n_probs"] = 1
        body.update({"prompt": content, "stream": True, "cache_prompt": True})
        try:
            with self.http.stream("/completion", merged(body, self.endpoint.extra)) as reply:
                for chunk in sse_events(reply, self.http.where):
                    yield from _pieces(chunk, prompt.sampling.n_probs)
                    if chunk.get("stop"):
                        yield _finish(chunk)
                        return
        except RemoteError as exc:
            overflow = context_error(exc)
            if overflow is not None:
                raise RemoteError(overflow.message, ErrorKind.CONTEXT_OVERFLOW, exc.status,
                                  exc.body) from None
            raise

    def score(self, prompt: Sequence[int], continuations: Sequence[Sequence[int]],
              model: str) -> list[float]:
        jobs = [(c, list(prompt) + list(cont[:i]), token)
                for c, cont in enumerate(continuations) for i, token in enumerate(cont)]
        with ThreadPoolExecutor(max(1, min(self.info.slots, len(jobs) or 1))) as pool:
            logprobs = list(pool.map(lambda job: self._forced_logprob(job[1], job[2]), jobs))
        totals = [0.0] * len(continuations)
        for (c, _, _), logprob in zip(jobs, logprobs, strict=True):
            totals[c] += logprob
        return totals

    def _forced_logprob(self, prefix: list[int], token: int) -> float:
        reply = self.http.post("/completion", {
            "prompt": prefix, "n_predict": 1, "n_probs": 1, "temperature": 0.0,
            "cache_prompt": True, "logit_bias": [[token, _FORCE_BIAS]]})
        probs = reply.get("completion_probabilities") or []
        if not probs or int(probs[0].get("id", -1)) != token:
            raise RemoteError(f"{self.http.where} did not score token {token} as asked.",
                              ErrorKind.SERVER_ERROR)
        logprob = float(probs[0].get("logprob", -math.inf))
        return logprob

    def busy_slots(self) -> list[int] | None:
        if not self._slots_endpoint:
            return None
        try:
            slots = self.http.get("/slots")
        except RemoteError:
            return None
        return [int(s.get("id", -1)) for s in slots if isinstance(s, dict)
                and s.get("is_processing")]


def _pieces(chunk: dict[str, Any], n_probs: int) -> Iterator[Piece]:
    """One streamed chunk's tokens. A chunk carries its text and usually one token; a
    multi-byte character split across tokens arrives as chunks with empty text."""
    text = str(chunk.get("content", ""))
    tokens = [int(t) for t in chunk.get("tokens") or ()]
    probs = chunk.get("completion_probabilities") or []
    if not tokens and not text:
        return
    if len(tokens) <= 1:
        prob = probs[0] if probs else {}
        yield Piece(text, tokens[0] if tokens else -1, _logprob(prob),
                    alternatives(prob.get("top_logprobs"))[:n_probs] if n_probs else ())
        return
    for i, token in enumerate(tokens):
        prob = probs[i] if i < len(probs) else {}
        yield Piece(text if i == len(tokens) - 1 else "", token, _logprob(prob),
                    alternatives(prob.get("top_logprobs"))[:n_probs] if n_probs else ())


def _logprob(prob: dict[str, Any]) -> float | None:
    value = prob.get("logprob")
    return float(value) if value is not None else None


def _finish(chunk: dict[str, Any]) -> Finish:
    timings = chunk.get("timings") or {}
    prompt_total = int(chunk.get("tokens_evaluated") or 0)
    cached = int(timings.get("cache_n") or 0)
    return Finish(finish_reason(chunk.get("stop_type")), prompt_total, cached,
                  int(timings.get("prompt_n") or max(0, prompt_total - cached)),
                  int(timings.get("predicted_n") or chunk.get("tokens_predicted") or 0),
                  float(timings.get("prompt_ms") or 0.0) / 1000,
                  float(timings.get("predicted_ms") or 0.0) / 1000,
                  chunk.get("id_slot"))
