"""``RemoteEngine``: the ``Engine`` protocol over a model server's HTTP API.

The server kind (``engine.remote.detect``) decides the dialect and the ``Capabilities``:
whatever the server can do is used (exact tokens, grammars, token probabilities, scoring),
and what it cannot is absent, so callers say "X is not available with the Ollama server at
..." instead of failing obscurely. Without a tokenize endpoint, counts are estimates
(``engine.token_estimate``) and prompts travel as text or messages.

Faults end a stream with an ``Error`` event whose message says what happened; the tokens
already streamed stay (``partial_text``). ``cancel`` (any thread) closes the open streams at
once; where the server has ``/slots`` the engine then checks that it really stopped and
reports "still busy" instead of hiding it. A batch (``generate_batch``) is sent as
concurrent requests, as many as the server has slots (or the endpoint's concurrency)."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import PurePath

import httpx

from engine.api import Capabilities, Feature, check_sampling, require, unavailable_message
from engine.context_policy import oldest_turn
from engine.errors import ContextOverflowError, UnsupportedError, VersoError
from engine.events import (
    AttentionMap,
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    Event,
    FinishReason,
    ModelLoaded,
    Progress,
    RenderedChat,
    Rollback,
    SeqDone,
    SeqRollback,
    SeqToken,
    Stats,
    Token,
)
from engine.model_ref import ModelRef
from engine.options import (
    BatchItem,
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    LoadSettings,
    SamplingParams,
    prompt_limit,
)
from engine.remote.detect import connect
from engine.remote.dialect import Dialect, Finish, Piece, Prompt
from engine.remote.endpoint import KIND_NAMES, Endpoint
from engine.remote.http import Http, RemoteError
from engine.remote.loop_cut import LoopCut
from engine.token_estimate import estimate_tokens

log = logging.getLogger(__name__)

_STOP_CHECK_S = 3.0  # how long a stopped request may take to leave the server's slots
_COUNT_CACHE = 4096
_MESSAGE_OVERHEAD = 4  # estimated template tokens around each message


# Sampler settings that turn the sampler off, and those greedy decoding ignores.
_OFF = {"repeat_penalty": 1.0, "typical_p": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
        "mirostat": 0}
_MOOT_WHEN_GREEDY = ("top_k", "top_p", "min_p", "typical_p", "seed")


class _Cancelled(Exception):
    """A batch worker saw the cancel."""


class RemoteEngine:
    """One model on one server. Thread-safe as ``EngineClient`` is: ``cancel`` may be
    called from any thread while another iterates a request."""

    def __init__(self, endpoint: Endpoint, api_key: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = endpoint
        self._http = Http(endpoint.url, api_key, endpoint.connect_timeout_s,
                          endpoint.read_timeout_s,
                          max_connections=max(32, 2 * endpoint.concurrency),
                          transport=transport)
        self._dialect: Dialect | None = None
        self._model = ""
        self._n_ctx = 0
        self._cancel = threading.Event()
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._counts_lock = threading.Lock()
        self.loaded: ModelLoaded | None = None
        self.last_stop_warning = ""  # set when a stopped request kept the server busy
        self.restarts = 0

    # ------------------------------------------------------------ description

    @property
    def capabilities(self) -> Capabilities:
        if self._dialect is None:  # not connected yet: nothing optional is known to work
            return Capabilities(f"{KIND_NAMES[self.endpoint.kind]} at {self.endpoint.label}",
                                frozenset(), frozenset({"max_tokens", "temperature"}),
                                max_parallel=self.endpoint.concurrency or 1)
        return self._dialect.capabilities()

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            self.start()
        assert self._dialect is not None
        return self._dialect

    def start(self) -> None:
        """Connect: detect the server kind and read what it offers. Raises ``RemoteError``
        (unreachable, refused key, not a model server)."""
        if self._dialect is None:
            self._dialect = connect(self.endpoint, self._http)

    # ------------------------------------------------------------ lifecycle

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        started = time.perf_counter()
        yield Progress("load", 0, 1)
        ref = settings.model
        if ref is None or ref.is_local:
            yield Error(ErrorKind.BAD_REQUEST, f"{self.endpoint.label} runs models on a "
                        "server: name one of its models, not a local file.")
            return
        try:
            self.start()
            dialect = self.dialect
            ids = [m.id for m in dialect.info.models]
            model_id = ref.model_id or (ids[0] if ids else "")
            if not model_id:
                yield Error(ErrorKind.MODEL_NOT_FOUND,
                            f"{dialect.backend} lists no models; name one with --model.")
                return
            if ids and model_id not in ids:
                yield Error(ErrorKind.MODEL_NOT_FOUND,
                            f"{dialect.backend} has no model {model_id!r}; it offers: "
                            f"{', '.join(ids)}.")
                return
            n_ctx = dialect.model_n_ctx(model_id, settings.n_ctx)
            dialect.load(model_id, n_ctx)
        except VersoError as exc:
            yield Error(exc.kind, exc.message)
            return
        info = next((m for m in dialect.info.models if m.id == model_id), None)
        self._model, self._n_ctx = model_id, n_ctx
        with self._counts_lock:
            self._counts.clear()
        name = PurePath(model_id).name if model_id.endswith(".gguf") else model_id
        self.loaded = ModelLoaded(
            ref=ModelRef.remote(self.endpoint.url, model_id), name=name, n_ctx=n_ctx,
            n_ctx_train=(info.n_ctx_train if info else 0) or n_ctx,
            n_vocab=info.n_vocab if info else 0, has_chat_template=dialect.info.chat_template,
            gpu_layers=0, load_seconds=time.perf_counter() - started)
        yield Progress("load", 1, 1)
        yield self.loaded

    def unload(self) -> None:
        self.loaded = None
        self._model = ""

    def close(self) -> None:
        self.loaded = None
        self._http.abort()
        self._http.close()

    def kill(self) -> None:
        """Close every open stream (the server keeps running)."""
        self._cancel.set()
        self._http.abort()

    def cancel(self) -> None:
        self._cancel.set()
        self._http.abort()

    def forget_session(self, session_id: str) -> None:
        pass

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        """Nothing: a server's KV cache is not Verso's to fill ahead (``Feature.PREFILL``
        is absent)."""
        return iter(())

    # ------------------------------------------------------------ tokens

    def _exact(self) -> bool:
        return self.dialect.capabilities().has(Feature.EXACT_TOKENS)

    def _need_model(self) -> str:
        if self.loaded is None:
            raise VersoError("No model is loaded.", ErrorKind.NO_MODEL)
        return self._model

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        model = self._need_model()
        if not self._exact():
            raise UnsupportedError(unavailable_message(self.capabilities, Feature.EXACT_TOKENS))
        if add_bos:
            return self.dialect.tokenize(text, True, special, model)
        return self.dialect.tokenize(text, False, special, model)

    def detokenize(self, tokens: Sequence[int]) -> str:
        model = self._need_model()
        if not self._exact():
            raise UnsupportedError(unavailable_message(self.capabilities, Feature.EXACT_TOKENS))
        return self.dialect.detokenize(tokens, model)

    def count_tokens(self, text: str) -> int:
        """Exact where the server tokenizes (cached: segmentation asks often), else the
        conservative estimate."""
        if not text:
            return 0
        if not self._exact():
            return estimate_tokens(text)
        with self._counts_lock:
            if text in self._counts:
                self._counts.move_to_end(text)
                return self._counts[text]
        count = len(self.tokenize(text, add_bos=False, special=False))
        with self._counts_lock:
            self._counts[text] = count
            if len(self._counts) > _COUNT_CACHE:
                self._counts.popitem(last=False)
        return count

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        model = self._need_model()
        if self._exact():
            return len(self.dialect.render_chat(messages, True, False, model).tokens)
        return sum(estimate_tokens(m.content) + _MESSAGE_OVERHEAD for m in messages) + 3

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        model = self._need_model()
        if not self._exact():
            raise UnsupportedError(unavailable_message(self.capabilities, Feature.EXACT_TOKENS))
        return self.dialect.render_chat(messages, add_generation_prompt, False, model)

    # ------------------------------------------------------------ generation

    def _check(self, sampling: SamplingParams, json_schema: str | None = None) -> None:
        """Refuse options the server cannot honour. Values that switch a sampler off
        (``repeat_penalty`` 1, ``top_k`` 0, ...), and the filters greedy decoding makes
        moot, are honoured by any server; a grammar compiled from a JSON schema is
        satisfied by a server that takes the schema itself."""
        caps = self.capabilities
        default = SamplingParams()
        moot = {name: getattr(default, name) for name, off in _OFF.items()
                if getattr(sampling, name) == off}
        if sampling.temperature == 0:
            moot.update({name: getattr(default, name) for name in _MOOT_WHEN_GREEDY})
        if json_schema and caps.has(Feature.JSON_SCHEMA):
            moot["grammar"] = None
        check_sampling(caps, replace(sampling, **moot))

    def chat(self, request: ChatRequest) -> Iterator[Event]:
        self._cancel.clear()
        try:
            model = self._need_model()
            self._check(request.sampling, request.json_schema)
            messages = list(request.messages)
            if not messages:
                raise VersoError("A chat request needs at least one message.",
                                 ErrorKind.BAD_REQUEST)
            exact = self._exact()
            limit = prompt_limit(self._n_ctx, request.sampling.max_tokens) if self._n_ctx \
                else None
            dropped = dropped_tokens = 0
            while True:
                rendered = (self.dialect.render_chat(messages, True, request.continue_last,
                                                     model) if exact else None)
                count = len(rendered.tokens) if rendered else self.count_chat_tokens(messages)
                if limit is None or count <= limit:
                    break
                drop = oldest_turn(messages)
                if request.policy is not ContextPolicy.DROP_OLDEST or drop is None:
                    raise ContextOverflowError(count, limit)
                for index in reversed(drop):
                    del messages[index]
                dropped += len(drop)
                dropped_tokens += count - self.count_chat_tokens(messages)
        except VersoError as exc:
            yield Error(exc.kind, exc.message)
            return
        if dropped:
            yield ContextTrimmed(dropped, dropped_tokens)
        prompt = (Prompt(request.sampling, tokens=rendered.tokens,
                         json_schema=request.json_schema) if rendered is not None else
                  Prompt(request.sampling, messages=tuple(messages),
                         continue_last=request.continue_last, json_schema=request.json_schema))
        yield from self._stream(prompt, count)

    def complete(self, request: CompletionRequest) -> Iterator[Event]:
        self._cancel.clear()
        forced = list(request.forced_prefix_tokens)
        try:
            self._need_model()
            require(self.capabilities, Feature.RAW_COMPLETION)
            if forced:
                require(self.capabilities, Feature.FORCED_TOKENS)
            self._check(request.sampling, request.json_schema)
            if self._exact():
                tokens = self.tokenize(request.prompt, add_bos=request.add_bos,
                                       special=False) + forced
                if not tokens:
                    raise VersoError("The prompt is empty.", ErrorKind.BAD_REQUEST)
                limit = prompt_limit(self._n_ctx, request.sampling.max_tokens)
                if self._n_ctx and len(tokens) > limit:
                    raise ContextOverflowError(len(tokens), limit)
                prompt = Prompt(request.sampling, tokens=tuple(tokens),
                                json_schema=request.json_schema)
                count = len(tokens)
            else:
                prompt = Prompt(request.sampling, text=request.prompt,
                                json_schema=request.json_schema)
                count = self.count_tokens(request.prompt)
            echoed = ([Token(t, self.detokenize([t])) for t in forced]
                      if request.echo_forced else [])
        except VersoError as exc:
            yield Error(exc.kind, exc.message)
            return
        yield from self._stream(prompt, count, echoed)

    def _stream(self, prompt: Prompt, prompt_count: int,
                echoed: Sequence[Token] = ()) -> Iterator[Event]:
        start = time.perf_counter()
        parts: list[str] = [t.text for t in echoed]
        yield from echoed
        generated = 0
        ttft = 0.0
        finish: Finish | None = None
        guard = LoopCut(parts) if prompt.sampling.loop_guard else None
        loops = 0
        stream = self.dialect.generate(prompt, self._model, self._n_ctx)
        try:
            for item in stream:
                if self._cancel.is_set():
                    break
                if isinstance(item, Finish):
                    finish = item
                    break
                generated += 1
                if item.text and not ttft:
                    ttft = time.perf_counter() - start
                parts.append(item.text)
                yield Token(item.token_id, item.text, item.logprob, item.alternatives)
                cut = guard.push(item.text) if guard is not None else None
                if cut is not None:
                    del parts[len(parts) - cut.n_pieces:]
                    loops = 1
                    yield Rollback(cut.n_pieces, cut.n_chars, cut.phrase, repeating=True)
                    finish = Finish(FinishReason.REPEATING)
                    break
        except GeneratorExit:
            stream.close()
            self._check_stopped()
            raise
        except Exception as exc:
            if not self._cancel.is_set():
                if not isinstance(exc, RemoteError):
                    raise
                yield Error(exc.kind, exc.message, "".join(parts))
                return
        finally:
            stream.close()
        text = "".join(parts)
        elapsed = time.perf_counter() - start
        if finish is None and self._cancel.is_set():
            busy = self._check_stopped()
            if busy:
                yield Error(ErrorKind.SERVER_BUSY, busy, text)
                return
            yield Done(FinishReason.CANCELLED, text, self._stats(
                Finish(FinishReason.CANCELLED), prompt_count, generated, ttft, elapsed))
            return
        if finish is None:
            yield Error(ErrorKind.SERVER_UNREACHABLE,
                        f"The reply from {self.endpoint.label} ended before the server said it "
                        "was complete (it stopped or crashed?). The partial reply is kept.",
                        text)
            return
        stats = self._stats(finish, prompt_count, generated, ttft, elapsed)
        yield Done(finish.reason, text, replace(stats, loops=loops) if loops else stats)

    def _stats(self, finish: Finish, prompt_count: int, generated: int, ttft: float,
               elapsed: float) -> Stats:
        prompt_n = finish.prompt_tokens or prompt_count
        evaluated = finish.evaluated_tokens or max(0, prompt_n - finish.cached_tokens)
        n_gen = finish.generated_tokens or generated
        gen_s = finish.generation_s or max(0.0, elapsed - ttft)
        return Stats(prompt_tokens=prompt_n, reused_tokens=finish.cached_tokens,
                     evaluated_tokens=evaluated, generated_tokens=n_gen, ttft_s=ttft,
                     prompt_s=finish.prompt_s or ttft, generation_s=gen_s,
                     prompt_tps=evaluated / finish.prompt_s if finish.prompt_s else 0.0,
                     generation_tps=n_gen / gen_s if gen_s > 0 else 0.0, n_ctx=self._n_ctx,
                     context_used=prompt_n + n_gen)

    def _check_stopped(self) -> str:
        """After a stop: "" once the server has no slot generating, else what to tell the
        user. Servers without ``/slots`` cannot be checked."""
        deadline = time.monotonic() + _STOP_CHECK_S
        busy = self.dialect.busy_slots()
        while busy and time.monotonic() < deadline:
            time.sleep(0.1)
            busy = self.dialect.busy_slots()
        if not busy:
            return ""
        message = (f"Stopped, but {self.dialect.backend} is still busy: slot"
                   f"{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} kept generating "
                   f"{_STOP_CHECK_S:g} s after the stop, so the server may stay slow until it "
                   "finishes. The partial reply is kept.")
        self.last_stop_warning = message
        log.warning("%s", message)
        return message

    # ------------------------------------------------------------ batches

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        """Every item as its own request, as many at once as the server has slots. Required
        texts (``BatchItem.required``) are refused: a server offers no way to force them
        while decoding, and tacking them onto the end makes junk (the translation task
        places glossary terms after decoding instead, ``engine.tasks.term_placement``)."""
        self._cancel.clear()
        try:
            self._need_model()
            self._check(request.sampling)
            if not request.items:
                raise VersoError("A batched request needs at least one prompt.",
                                 ErrorKind.BAD_REQUEST)
            if any(item.required for item in request.items):
                raise UnsupportedError(
                    f"Texts an output must contain cannot be enforced by {self.dialect.backend} "
                    "(only Verso's own engine forces them while decoding).")
        except VersoError as exc:
            yield Error(exc.kind, exc.message)
            return
        events: queue.Queue[Event | BaseException] = queue.Queue()
        stop = threading.Event()
        workers = max(1, min(len(request.items), self.capabilities.max_parallel))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="verso-remote")
        for index, item in enumerate(request.items):
            pool.submit(self._run_item, index, item, request, events, stop)
        remaining = len(request.items)
        total_tokens = 0
        started = time.perf_counter()
        try:
            while remaining:
                try:
                    event = events.get(timeout=0.1)
                except queue.Empty:
                    event = None
                if self._cancel.is_set() or isinstance(event, _Cancelled):
                    stop.set()
                    busy = self._check_stopped()
                    if busy:
                        yield Error(ErrorKind.SERVER_BUSY, busy)
                        return
                    yield SeqDone(0, FinishReason.CANCELLED, "", 0)
                    return
                if event is None:
                    continue
                if isinstance(event, BaseException):
                    stop.set()
                    yield (Error(event.kind, event.message) if isinstance(event, VersoError)
                           else Error(ErrorKind.INTERNAL, f"{type(event).__name__}: {event}"))
                    return
                if isinstance(event, SeqDone):
                    remaining -= 1
                    total_tokens += event.n_tokens
                yield event
        finally:
            stop.set()
            if remaining:
                self._http.abort()
            pool.shutdown(wait=True, cancel_futures=True)
        elapsed = time.perf_counter() - started
        yield Done(FinishReason.STOP, "", Stats(
            generated_tokens=total_tokens, generation_s=elapsed,
            generation_tps=total_tokens / elapsed if elapsed > 0 else 0.0, n_ctx=self._n_ctx))

    def _run_item(self, index: int, item: BatchItem, request: BatchRequest,
                  events: queue.Queue[Event | BaseException], stop: threading.Event) -> None:
        if stop.is_set():
            return
        if item.tokens:
            prompt = Prompt(request.sampling, tokens=item.tokens, logprobs=request.logprobs,
                            min_tokens=request.min_tokens)
        elif item.messages:
            prompt = Prompt(request.sampling, messages=item.messages,
                            logprobs=request.logprobs, min_tokens=request.min_tokens)
        else:
            prompt = Prompt(request.sampling, text=item.text, logprobs=request.logprobs,
                            min_tokens=request.min_tokens)
        parts: list[str] = []
        logprobs: list[float | None] = []
        n_tokens = 0
        finish: Finish | None = None
        guard = LoopCut() if request.sampling.loop_guard else None
        stream = self.dialect.generate(prompt, self._model, self._n_ctx)
        try:
            for piece in stream:
                if stop.is_set() or self._cancel.is_set():
                    events.put(_Cancelled())
                    return
                if isinstance(piece, Finish):
                    finish = piece
                    break
                assert isinstance(piece, Piece)
                n_tokens += 1
                parts.append(piece.text)
                logprobs.append(piece.logprob)
                events.put(SeqToken(index, piece.token_id, piece.text, piece.logprob))
                cut = guard.push(piece.text) if guard is not None else None
                if cut is not None:
                    del parts[len(parts) - cut.n_pieces:]
                    del logprobs[len(logprobs) - cut.n_pieces:]
                    events.put(SeqRollback(index, cut.n_pieces, cut.n_chars, cut.phrase))
                    finish = Finish(FinishReason.REPEATING)
                    break
        except Exception as exc:
            events.put(_Cancelled() if stop.is_set() or self._cancel.is_set() else exc)
            return
        finally:
            stream.close()
        if finish is None:
            events.put(RemoteError(f"A reply from {self.endpoint.label} ended before the server "
                                   "said it was complete (it stopped or crashed?).",
                                   ErrorKind.SERVER_UNREACHABLE))
            return
        kept = [lp for lp in logprobs if lp is not None and math.isfinite(lp)]
        events.put(SeqDone(index, finish.reason, "".join(parts), n_tokens,
                           sum(kept) / len(kept) if kept else None, 0,
                           int(finish.reason is FinishReason.REPEATING)))

    # ------------------------------------------------------------ optional operations

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        model = self._need_model()
        require(self.capabilities, Feature.SCORE)
        if not prompt_tokens:
            raise VersoError("Scoring needs a prompt of at least one token.",
                             ErrorKind.BAD_REQUEST)
        return self.dialect.score(prompt_tokens, continuations, model)

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        raise UnsupportedError(unavailable_message(self.capabilities, Feature.ATTENTION))

    def validate_grammar(self, text: str) -> list[str]:
        raise UnsupportedError(unavailable_message(self.capabilities, Feature.GRAMMAR_CHECK))
