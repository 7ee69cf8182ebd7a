"""Entry point of the engine process. It owns the ``Runtime``; a reader thread takes
commands off the pipe so that a ``Cancel`` is seen while the main thread is busy in
llama.cpp. A ``Prefill`` is work done ahead of time: any command that arrives while it runs
stops it (it is never what a later request waits for)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

from engine import native_log, paths
from engine.errors import Cancelled
from engine.events import Done, FinishReason, Scores, Tokenized, fold_text
from engine.runtime.batch import generate_batch
from engine.runtime.runtime import Runtime, error_event
from engine.worker import protocol as p

log = logging.getLogger(__name__)


def dispatch(runtime: Runtime, command: p.Command,
             cancel: Callable[[], bool]) -> Iterator[p.Reply]:
    match command:
        case p.Load(settings):
            try:
                yield from runtime.load(settings)
            except BaseException:
                if runtime.loaded is None:
                    yield p.Unloaded()
                raise
        case p.Unload():
            runtime.unload()
        case p.Chat(request):
            yield from runtime.chat(request, cancel)
        case p.Prefill(request):
            yield from runtime.prefill(request, cancel)
        case p.Complete(request):
            yield from runtime.complete(request, cancel)
        case p.Tokenize(text, add_bos, special):
            yield Tokenized(tuple(runtime.tokenize(text, add_bos=add_bos, special=special)))
        case p.Detokenize(tokens):
            yield p.Text(runtime.detokenize(tokens))
        case p.CountChat(messages):
            yield Tokenized((runtime.count_chat_tokens(messages),))
        case p.ChatPrompt(messages, add_generation_prompt):
            yield runtime.chat_prompt(messages, add_generation_prompt)
        case p.Score(prompt_tokens, continuations, session_id):
            try:
                yield Scores(tuple(runtime.score(prompt_tokens, continuations, cancel,
                                                 session_id)))
            except Cancelled:
                yield Done(FinishReason.CANCELLED)
        case p.ValidateGrammar(text):
            yield p.Problems(tuple(runtime.validate_grammar(text)))
        case p.Attention(tokens, query_position):
            try:
                yield runtime.attention(tokens, query_position, cancel)
            except Cancelled:
                yield Done(FinishReason.CANCELLED)
        case p.ForgetSession(session_id):
            runtime.forget_session(session_id)
        case p.GenerateBatch(request):
            yield from generate_batch(runtime, request, cancel)


def serve(requests: Connection, events: Connection, snapshot_budget_bytes: int,
          reuse_kv: bool, batch_invariant: bool = False, persist_sessions: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING, format="verso-engine %(levelname)s %(message)s")
    native_log.route()
    runtime = Runtime(snapshot_budget_bytes=snapshot_budget_bytes, reuse_kv=reuse_kv,
                      batch_invariant=batch_invariant,
                      snapshot_dir=paths.kv_snapshot_dir() if persist_sessions else None)
    cancelled: set[int] = set()
    work: queue.Queue[tuple[int, p.Command] | None] = queue.Queue()

    def read_commands() -> None:
        while True:
            try:
                request_id, command = requests.recv()
            except (EOFError, OSError):
                work.put(None)
                return
            if isinstance(command, p.Cancel):
                cancelled.add(command.request_id)
            elif isinstance(command, p.Shutdown):
                work.put(None)
                return
            else:
                work.put((request_id, command))

    threading.Thread(target=read_commands, name="verso-commands", daemon=True).start()
    while (item := work.get()) is not None:
        request_id, command = item
        partial: list[str] = []
        try:
            def is_cancelled(rid: int = request_id) -> bool:
                return rid in cancelled

            def is_preempted(rid: int = request_id) -> bool:
                return rid in cancelled or not work.empty()

            check = is_preempted if isinstance(command, p.Prefill) else is_cancelled

            for event in dispatch(runtime, command, check):
                fold_text(partial, event)
                events.send((request_id, event))
        except Exception as exc:  # every failure reaches the caller as an Error event
            log.debug("request %s failed", request_id, exc_info=True)
            events.send((request_id, error_event(exc, "".join(partial))))
        events.send((request_id, p.Finished()))
        cancelled.discard(request_id)
    runtime.unload()
