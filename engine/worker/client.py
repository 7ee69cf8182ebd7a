"""The caller's side of the engine process.

``EngineClient`` starts the engine in a child process (``spawn`` on every OS: it is the only
method on Windows and macOS, and forking a process that runs Qt threads is unsafe), sends it
commands and yields its typed events. If the child dies, the stream ends with an
``ENGINE_CRASHED`` error that keeps the partial output, and the next request starts a fresh
engine and reloads the model that was loaded.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing as mp
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import TypeVar

from engine.api import LOCAL_CAPABILITIES, Capabilities
from engine.errors import BadRequestError, Cancelled, VersoError
from engine.events import (
    AttentionMap,
    Done,
    Error,
    ErrorKind,
    Event,
    FinishReason,
    ModelLoaded,
    RenderedChat,
    Scores,
    Tokenized,
    fold_text,
)
from engine.options import (
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    LoadSettings,
)
from engine.runtime.runtime import DEFAULT_SNAPSHOT_BUDGET
from engine.worker import protocol as p

_R = TypeVar("_R")
_POLL_S = 0.05
_DRAIN_S = 5.0


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start the engine without re-running the caller's ``__main__`` in it.

    ``spawn`` imports the parent's main script in the child before anything else; for the
    app that means Qt, and any C extension loaded before llama_cpp can break a GPU build
    (see ``engine.worker.child``). The engine's entry point lives in its own module, so the
    child does not need the parent's main."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved: dict[str, object] = {name: main.__dict__[name] for name in ("__spec__", "__file__")
                                if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if -code == getattr(signal, "SIGKILL", 9):
            return f"was killed ({name}); the system may have run out of memory"
        if -code in (getattr(signal, "SIGSEGV", 11), getattr(signal, "SIGBUS", 7)):
            return f"crashed inside llama.cpp ({name})"
        return f"was stopped by {name}"
    return f"exited with code {code}"


def _exception(error: Error) -> VersoError:
    """The exception an in-process ``Runtime`` would have raised for this error."""
    if error.kind is ErrorKind.BAD_REQUEST:
        return BadRequestError(error.message)
    return VersoError(error.message, error.kind)


class EngineClient:
    """One engine process, one request at a time. Thread-safe: ``cancel`` may be called from
    any thread while another thread iterates a request's events."""

    def __init__(self, snapshot_budget_bytes: int = DEFAULT_SNAPSHOT_BUDGET,
                 reuse_kv: bool = True, batch_invariant: bool = False,
                 persist_sessions: bool = False) -> None:
        """``persist_sessions``: conversations' KV snapshots also go to disk and stay warm
        across restarts (the app; not one-shot CLI runs)."""
        self._persist_sessions = persist_sessions
        self._snapshot_budget = snapshot_budget_bytes
        self._reuse_kv = reuse_kv
        self._batch_invariant = batch_invariant
        self._mp = mp.get_context("spawn")
        self._proc: mp.process.BaseProcess | None = None
        self._commands: Connection | None = None
        self._events: Connection | None = None
        self._ids = itertools.count(1)
        self._busy = threading.Lock()
        self._send_lock = threading.Lock()
        self._current: tuple[int, p.Command] | None = None
        self._waiting = 0  # requests waiting for ``_busy`` (a prefill does not start then)
        self._killed_for_cancel = False
        self._wanted: LoadSettings | None = None
        self.loaded: ModelLoaded | None = None
        self.restarts = 0
        _live_clients.add(self)

    @property
    def capabilities(self) -> Capabilities:
        return LOCAL_CAPABILITIES

    # ------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> None:
        if self.alive():
            return
        self._discard_process()
        cmd_r, cmd_w = self._mp.Pipe(duplex=False)
        evt_r, evt_w = self._mp.Pipe(duplex=False)
        from engine.worker.child import serve

        self._proc = self._mp.Process(
            target=serve,
            args=(cmd_r, evt_w, self._snapshot_budget, self._reuse_kv, self._batch_invariant,
                  self._persist_sessions),
            name="verso-engine", daemon=True,
        )
        with _main_module_hidden():
            self._proc.start()
        cmd_r.close()
        evt_w.close()
        self._commands, self._events = cmd_w, evt_r

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            with self._send_lock:
                if self._commands is not None:
                    self._commands.send((0, p.Shutdown()))
        except (OSError, ValueError):
            pass
        self._proc.join(timeout=3)
        self._discard_process()

    def kill(self) -> None:
        """Kill the engine process (used to cancel a model load, and by tests)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()

    def _discard_process(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(timeout=3)
        for conn in (self._commands, self._events):
            if conn is not None:
                conn.close()
        self._proc = self._commands = self._events = None
        self.loaded = None

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- requests

    def load(self, settings: LoadSettings) -> Iterator[Event]:
        for event in self._run(p.Load(settings), recover=False):
            if isinstance(event, p.Unloaded):
                self._wanted = None
                self.loaded = None
                continue
            if isinstance(event, ModelLoaded):
                self._wanted = settings
                self.loaded = event
            if isinstance(event, Event):
                yield event

    def unload(self) -> None:
        self._wanted = None
        self.loaded = None
        if self.alive():
            self._collect(p.Unload())

    def chat(self, request: ChatRequest) -> Iterator[Event]:
        return self._stream(p.Chat(request))

    def prefill(self, request: ChatRequest) -> Iterator[Event]:
        """Evaluate the conversation and the unfinished message ahead of time (see
        ``Runtime.prefill``). Only when idle: with no model, no engine process, another
        request running or one waiting, it yields nothing; any request made meanwhile, from
        any thread, stops it at once and runs (what was evaluated stays cached)."""
        if self.loaded is None or not self.alive() or not self._busy.acquire(blocking=False):
            return
        try:
            for reply in self._exchange(p.Prefill(request)):
                if isinstance(reply, Event):
                    yield reply
        finally:
            self._busy.release()

    def complete(self, request: CompletionRequest) -> Iterator[Event]:
        return self._stream(p.Complete(request))

    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        return list(self._collect(p.Tokenize(text, add_bos, special)).tokens)

    def detokenize(self, tokens: Sequence[int]) -> str:
        for event in self._run(p.Detokenize(tuple(tokens))):
            if isinstance(event, Error):
                raise VersoError(event.message, event.kind)
            if isinstance(event, p.Text):
                return event.text
        raise VersoError("The engine returned no text.")

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize(text, add_bos=False, special=False)) if text else 0

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self._collect(p.CountChat(tuple(messages))).tokens[0]

    def chat_prompt(self, messages: Sequence[ChatMessage],
                    add_generation_prompt: bool = True) -> RenderedChat:
        """The conversation rendered with the model's chat template, and its tokens."""
        return self._result(p.ChatPrompt(tuple(messages), add_generation_prompt), RenderedChat)

    def score(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]],
              session_id: str = "score") -> list[float]:
        """Log-probability of each continuation after the prompt (see ``Runtime.score``).
        Raises ``Cancelled`` if ``cancel`` stopped it."""
        command = p.Score(tuple(prompt_tokens), tuple(tuple(c) for c in continuations),
                          session_id)
        return list(self._result(command, Scores).logprobs)

    def validate_grammar(self, text: str) -> list[str]:
        """Problems with a GBNF grammar, checked against the loaded model's vocabulary."""
        return list(self._result(p.ValidateGrammar(text), p.Problems).items)

    def attention(self, tokens: Sequence[int], query_position: int) -> AttentionMap:
        """Attention of the token at ``query_position`` over ``tokens[:query_position + 1]``,
        every layer and head (see ``Runtime.attention``). Raises ``VersoError`` (no model,
        position out of range, too many tokens) or ``Cancelled``."""
        return self._result(p.Attention(tuple(int(t) for t in tokens), int(query_position)),
                            AttentionMap)

    def generate_batch(self, request: BatchRequest) -> Iterator[Event]:
        """Decode several prompts together (see ``engine.runtime.batch``); stop iterating to
        cancel."""
        return self._stream(p.GenerateBatch(request))

    def forget_session(self, session_id: str) -> None:
        if self.alive():
            self._collect(p.ForgetSession(session_id))

    def cancel(self) -> None:
        """Stop the request in flight: between tokens while generating, within a graph node
        while evaluating a prompt; a model load is stopped by ending the engine process."""
        current = self._current
        if current is None or not self.alive():
            return
        request_id, command = current
        if isinstance(command, p.Load):
            self._killed_for_cancel = True
            self.kill()
            return
        try:
            with self._send_lock:
                if self._commands is not None:
                    self._commands.send((0, p.Cancel(request_id)))
        except (OSError, ValueError):
            pass

    # -------------------------------------------------------------- plumbing

    def _collect(self, command: p.Command) -> Tokenized:
        result = Tokenized(())
        for event in self._run(command):
            if isinstance(event, Error):
                raise _exception(event)
            if isinstance(event, Tokenized):
                result = event
        return result

    def _result(self, command: p.Command, kind: type[_R]) -> _R:
        for event in self._run(command):
            if isinstance(event, Error):
                raise _exception(event)
            if isinstance(event, Done) and event.finish_reason is FinishReason.CANCELLED:
                raise Cancelled
            if isinstance(event, kind):
                return event
        raise VersoError(f"The engine returned no {kind.__name__}.")

    def _stream(self, command: p.Command) -> Iterator[Event]:
        """The engine events of a generating request (it sends no protocol answers)."""
        for reply in self._run(command):
            if isinstance(reply, Event):
                yield reply

    def _preempt_prefill(self) -> None:
        """A request is about to wait for the engine: stop a prefill that holds it, and keep
        one from starting until this request has run."""
        with self._send_lock:
            self._waiting += 1
            current = self._current
            if current is None or not isinstance(current[1], p.Prefill) or \
                    self._commands is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self._commands.send((0, p.Cancel(current[0])))

    def _run(self, command: p.Command, recover: bool = True) -> Iterator[p.Reply]:
        self._preempt_prefill()
        try:
            self._busy.acquire()
        finally:
            with self._send_lock:
                self._waiting -= 1
        try:
            if not self.alive():
                if self._proc is not None:
                    self._discard_process()
                    self.restarts += 1
                self.start()
                if recover and self._wanted is not None:
                    for event in self._exchange(p.Load(self._wanted)):
                        if isinstance(event, ModelLoaded):
                            self.loaded = event
                        yield event
                        if isinstance(event, Error):
                            return
            yield from self._exchange(command)
        finally:
            self._busy.release()

    def _exchange(self, command: p.Command) -> Iterator[p.Reply]:
        assert self._proc is not None and self._commands is not None and \
            self._events is not None, "start() runs before every exchange"
        proc, commands, events = self._proc, self._commands, self._events
        request_id = next(self._ids)
        self._killed_for_cancel = False
        partial: list[str] = []
        finished = False
        try:
            with self._send_lock:
                if isinstance(command, p.Prefill) and self._waiting:
                    finished = True
                    return
                self._current = (request_id, command)
                commands.send((request_id, command))
            while True:
                if not events.poll(_POLL_S):
                    if proc.is_alive():
                        continue
                    if not events.poll(0):
                        raise EOFError
                rid, event = events.recv()
                if rid != request_id:
                    continue
                if isinstance(event, p.Finished):
                    finished = True
                    return
                fold_text(partial, event)
                yield event
        except (EOFError, OSError, BrokenPipeError):
            finished = True
            proc.join(timeout=3)
            code = proc.exitcode
            self.loaded = None
            if self._killed_for_cancel:
                yield Done(FinishReason.CANCELLED, "".join(partial))
            else:
                yield Error(ErrorKind.ENGINE_CRASHED,
                            f"The engine process {describe_exit(code)}. The partial output is "
                            "kept; the next request starts a fresh engine and reloads the model.",
                            "".join(partial))
        finally:
            self._current = None
            if not finished:
                self._abandon(request_id)

    def _abandon(self, request_id: int) -> None:
        """The caller stopped iterating early: cancel the request and drain its events so the
        next request starts clean."""
        proc, commands, events = self._proc, self._commands, self._events
        if proc is None or commands is None or events is None:
            return
        try:
            with self._send_lock:
                commands.send((0, p.Cancel(request_id)))
            deadline = time.monotonic() + _DRAIN_S
            while time.monotonic() < deadline:
                if events.poll(_POLL_S):
                    rid, event = events.recv()
                    if rid == request_id and isinstance(event, p.Finished):
                        return
                elif not proc.is_alive():
                    break
        except (EOFError, OSError):
            pass
        self.kill()


_live_clients: weakref.WeakSet[EngineClient] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for client in list(_live_clients):
        client.close()
