"""Engine events -> Qt signals, one handle per job.

``EngineBridge`` lives in the GUI thread and owns one ``engine.api.Engine`` (by default the
engine process's ``EngineClient``; tests pass a factory returning a ``FakeEngine``). Every
engine call runs in ``_EngineWorker`` on a dedicated ``QThread``, one at a time in the order
asked; the GUI thread only queues jobs and receives signals, so it never waits on the engine.

Every job (a model load, a chat reply, a panel's task, a token count) is a *task function*
``run(engine, cancelled)`` that yields what its panel wants to hear about and may ``return``
its outcome. Submitting one returns a ``JobHandle`` whose signals carry only that job's
events:

- ``text(str)``: streamed text, for every ``str`` the task yields, coalesced to at most one
  emission per screen refresh (``Coalescer``, the one token-coalescing implementation);
- ``yielded(object)``: anything else the task yields;
- ``finished(object)``: the outcome, once: what the task returned (a chat reply's ``Done`` or
  ``Error``, a load's ``ModelLoaded``), else None; ``Done(CANCELLED)`` when it was cancelled,
  ``Error`` when it raised.

``JobHandle.cancel()`` stops that job alone (queued: it is skipped; running: the engine is
told). A prefill job (``prefill``: work ahead of a message being typed) runs only when no
other job is queued, and submitting any other job cancels it. The bridge's own signals are
kept for global state: a model loaded, a load failed or was cancelled, busy changed, the
engine started.

A chat job carries a ``ReplySink`` that its task calls as the reply streams, in the worker
thread, so the reply is persisted before the GUI hears that it finished (and a crash keeps
the partial reply).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.api import CancelCheck, Capabilities, Engine, Feature, unavailable_message
from engine.errors import Cancelled, VersoError
from engine.events import (
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    FinishReason,
    ModelLoaded,
    Progress,
    Rollback,
    Token,
)
from engine.options import ChatMessage, ChatRequest, LoadSettings

log = logging.getLogger(__name__)

TOKEN_FLUSH_S = 1 / 60  # coalesce tokens arriving faster than the screen refreshes

TaskFn = Callable[[Engine, CancelCheck], Iterator[object]]
"""Runs in the engine thread; yields records for the panel (``str``: streamed text) and may
``return`` the job's outcome."""

T = TypeVar("T")


# ---------------------------------------------------------------------- coalescing

class Coalescer(Generic[T]):
    """Groups items that arrive faster than ``flush_s`` apart: ``add`` hands back the pending
    batch when it is due (the first item at once), ``flush`` whatever is left."""

    def __init__(self, flush_s: float = TOKEN_FLUSH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._flush_s = flush_s
        self._clock = clock
        self._pending: list[T] = []
        self._last = -math.inf

    def add(self, item: T, force: bool = False) -> list[T] | None:
        self._pending.append(item)
        now = self._clock()
        if force or now - self._last >= self._flush_s:
            self._last = now
            return self.flush()
        return None

    def flush(self) -> list[T]:
        out, self._pending = self._pending, []
        return out


def coalesce(items: Iterable[T], final: Callable[[T], bool] = lambda _item: False,
             flush_s: float = TOKEN_FLUSH_S,
             clock: Callable[[], float] = time.monotonic) -> Iterator[list[T]]:
    """``items`` in batches (see ``Coalescer``); an item for which ``final`` is true ends its
    batch at once."""
    coalescer: Coalescer[T] = Coalescer(flush_s, clock)
    for item in items:
        batch = coalescer.add(item, force=final(item))
        if batch:
            yield batch
    rest = coalescer.flush()
    if rest:
        yield rest


# ---------------------------------------------------------------------- tasks

class ReplySink(Protocol):
    """Receives a reply as it streams, in the worker thread."""

    def text(self, chunk: str) -> None: ...

    def rollback(self, event: Rollback) -> None: ...

    def trimmed(self, event: ContextTrimmed) -> None: ...

    def done(self, event: Done) -> None: ...

    def failed(self, event: Error) -> None: ...


@dataclass(frozen=True, slots=True)
class TokenCount:
    """What a count job yields: the tokens, or None when they cannot be counted now."""

    tokens: int | None


def chat_task(request: ChatRequest, sink: ReplySink | None = None) -> TaskFn:
    """A chat reply: streams its text (``str``), yields ``ContextTrimmed``/``Progress``/
    ``Rollback`` and returns the final ``Done`` or ``Error``, which ``sink`` has stored by
    then."""

    def run(engine: Engine, cancelled: CancelCheck) -> Generator[object, None, object]:
        end: Done | Error | None = None
        try:
            for event in engine.chat(request):
                if isinstance(event, Token):
                    if event.text:
                        if sink is not None:
                            sink.text(event.text)
                        yield event.text
                elif isinstance(event, Done | Error):
                    end = event  # keep iterating: the stream ends by itself
                else:
                    if sink is not None and isinstance(event, ContextTrimmed):
                        sink.trimmed(event)
                    elif sink is not None and isinstance(event, Rollback):
                        sink.rollback(event)
                    yield event
        except VersoError as exc:
            end = Error(exc.kind, str(exc))
        except Exception as exc:  # a bug must reach the user as an error, not a hang
            log.exception("chat request failed")
            end = Error(ErrorKind.INTERNAL, f"The request failed: {exc}")
        if end is None:
            end = Error(ErrorKind.INTERNAL, "The engine ended the reply without a result.")
        if sink is not None:
            try:
                if isinstance(end, Done):
                    sink.done(end)
                else:
                    sink.failed(end)
            except Exception:
                log.exception("saving the reply failed")
        return end

    return run


def load_task(settings: LoadSettings) -> TaskFn:
    """Loading a model: its progress and ``ModelLoaded`` go to the bridge's global signals;
    returns the ``ModelLoaded``, the ``Error`` or ``Done(CANCELLED)``."""

    def run(engine: Engine, cancelled: CancelCheck) -> Generator[object, None, object]:
        outcome: object = None
        try:
            for event in engine.load(settings):
                if isinstance(event, Error | Done):
                    outcome = event
                else:
                    if isinstance(event, ModelLoaded):
                        outcome = event
                    yield event
        except VersoError as exc:
            outcome = Error(exc.kind, str(exc))
        except Exception as exc:
            log.exception("model load failed")
            outcome = Error(ErrorKind.INTERNAL, f"Loading failed: {exc}")
        if outcome is None:
            outcome = Done(FinishReason.CANCELLED) if cancelled() else Error(
                ErrorKind.INTERNAL, "The engine ended the load without a result.")
        return outcome

    return run


def prefill_task(request: ChatRequest) -> TaskFn:
    """Prefill the draft (``Engine.prefill``); returns its ``Done``, or None when the engine
    did not run it. Failures are logged, never shown: the reply itself will report them."""

    def run(engine: Engine, cancelled: CancelCheck) -> Generator[object, None, object]:
        outcome: object = None
        if cancelled():
            return Done(FinishReason.CANCELLED)
        try:
            for event in engine.prefill(request):
                if isinstance(event, Done | Error):
                    outcome = event
                elif cancelled():
                    engine.cancel()  # a cancel that came before the engine had the request
        except VersoError as exc:
            log.info("prefill failed: %s", exc)
        if isinstance(outcome, Error):
            log.info("prefill failed: %s", outcome.message)
            outcome = None
        yield from ()
        return outcome

    return run


def _count_task(count: Callable[[Engine], int]) -> TaskFn:
    def run(engine: Engine, cancelled: CancelCheck) -> Iterator[object]:
        try:
            tokens: int | None = count(engine)
        except VersoError as exc:
            log.info("token count failed: %s", exc)
            tokens = None
        yield TokenCount(tokens)

    return run


# ---------------------------------------------------------------------- handles

class JobHandle(QObject):
    """One submitted job. Its signals carry only this job's events (in the GUI thread)."""

    text = Signal(str)  # streamed text, coalesced
    yielded = Signal(object)  # whatever else the task yielded (not "event": QObject.event)
    finished = Signal(object)  # the outcome (see the module's docstring); emitted once

    def __init__(self, bridge: EngineBridge, job_id: str, kind: str, fn: TaskFn,
                 busy: bool = True, cancels_engine: bool = True,
                 on_skip: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.on_skip = on_skip  # called in the worker thread when cancelled before it ran
        self.id = job_id
        self.kind = kind
        self.fn = fn
        self.busy = busy  # counts towards ``EngineBridge.busy``
        self.cancels_engine = cancels_engine  # cancel() interrupts the engine when running
        self.outcome: object = None
        self.done = False
        self._bridge = bridge
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop this job (skipped if still queued); safe to call any time, any number of
        times. ``finished`` still comes, with ``Done(CANCELLED)`` unless it ended first."""
        if self.done or self._cancelled.is_set():
            return
        self._cancelled.set()
        self._bridge._cancel_running(self)

    def __repr__(self) -> str:
        return f"JobHandle({self.id!r})"


# ---------------------------------------------------------------------- worker

class _EngineWorker(QObject):
    started = Signal()
    load_event = Signal(object)
    job_text = Signal(object, str)
    job_event = Signal(object, object)
    job_finished = Signal(object, object)

    def __init__(self, engine: Engine, shared: _Shared) -> None:
        super().__init__()
        self._engine = engine
        self._shared = shared

    @Slot()
    def run_start(self) -> None:
        """Start the engine ahead of the first request (the engine process's imports take a
        while) and wait until it answers, so loading a model later costs only the load."""
        try:
            self._engine.start()
            self._engine.unload()
        except Exception as exc:
            log.warning("starting the engine failed: %s", exc)
        self.started.emit()

    @Slot(object)
    def run_job(self, job: JobHandle) -> None:
        if job.cancelled:
            if job.on_skip is not None:
                try:
                    job.on_skip()
                except Exception:
                    log.exception("job %s: recording its cancel failed", job.id)
            self.job_finished.emit(job, Done(FinishReason.CANCELLED))
            return
        with self._shared.lock:
            self._shared.current = job
        text: Coalescer[str] = Coalescer()
        outcome: object = None
        cancel_sent = False
        saw_loaded = False
        before = self._engine.loaded
        try:
            steps = job.fn(self._engine, lambda: job.cancelled)
            while True:
                try:
                    item = next(steps)
                except StopIteration as stop:
                    outcome = stop.value
                    break
                if job.cancelled and not cancel_sent and job.cancels_engine:
                    self._engine.cancel()  # the cancel may have come before the request
                    cancel_sent = True
                if isinstance(item, str):
                    batch = text.add(item)
                    if batch:
                        self.job_text.emit(job, "".join(batch))
                    continue
                pending = text.flush()
                if pending:
                    self.job_text.emit(job, "".join(pending))
                if isinstance(item, ModelLoaded) or (isinstance(item, Progress)
                                                     and item.stage == "load"):
                    saw_loaded = saw_loaded or isinstance(item, ModelLoaded)
                    self.load_event.emit(item)
                    continue
                self.job_event.emit(job, item)
        except Cancelled:
            outcome = Done(FinishReason.CANCELLED)
        except VersoError as exc:
            outcome = Error(exc.kind, str(exc))
        except Exception as exc:  # a bug must reach the panel as an error, not a hang
            log.exception("job %s failed", job.id)
            outcome = Error(ErrorKind.INTERNAL, f"The task failed: {exc}")
        finally:
            pending = text.flush()
            if pending:
                self.job_text.emit(job, "".join(pending))
            with self._shared.lock:
                self._shared.current = None
        if outcome is None and job.cancelled:
            outcome = Done(FinishReason.CANCELLED)
        after = self._engine.loaded
        if not saw_loaded and after is not None and after is not before:
            self.load_event.emit(after)  # the engine had stopped; the job restarted it
        self.job_finished.emit(job, outcome)


class _Shared:
    """State the GUI thread and the worker thread both touch, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: JobHandle | None = None


# ---------------------------------------------------------------------- the bridge

class EngineBridge(QObject):
    """The GUI's handle on the engine. All methods are called from the GUI thread."""

    load_progress = Signal(object)  # Progress (stage "load")
    model_loaded = Signal(object)  # ModelLoaded (also after the engine restarted it)
    load_failed = Signal(object)  # Error
    load_cancelled = Signal()
    busy_changed = Signal(bool)
    engine_started = Signal()

    _do_start = Signal()
    _do_job = Signal(object)

    def __init__(self, engine_factory: Callable[[], Engine] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        if engine_factory is None:
            from engine.remote.router import EngineRouter
            from engine.worker import EngineClient

            def engine_factory() -> Engine:
                return EngineRouter(lambda: EngineClient(persist_sessions=True))
        self.engine: Engine = engine_factory()
        self.loaded: ModelLoaded | None = None
        self.loading: LoadSettings | None = None
        self._load_job: JobHandle | None = None
        self._shared = _Shared()
        self._jobs: list[JobHandle] = []  # submitted, not finished
        self._seq = 0
        self._thread = QThread()
        self._thread.setObjectName("verso-engine-bridge")
        self._worker = _EngineWorker(self.engine, self._shared)
        self._worker.moveToThread(self._thread)
        self._do_start.connect(self._worker.run_start)
        self._do_job.connect(self._worker.run_job)
        self._worker.started.connect(self._on_started)
        self._worker.load_event.connect(self._on_load_event)
        self._worker.job_text.connect(self._on_job_text)
        self._worker.job_event.connect(self._on_job_event)
        self._worker.job_finished.connect(self._on_job_finished)
        self._closed = False
        self._thread.start()

    # ------------------------------------------------------------------ state

    @property
    def capabilities(self) -> Capabilities:
        return self.engine.capabilities

    def has(self, feature: Feature) -> bool:
        return self.engine.capabilities.has(feature)

    def unavailable(self, feature: Feature) -> str:
        """Why ``feature`` cannot be used with this backend ("" when it can), in the words
        ``engine.api.require`` uses."""
        caps = self.engine.capabilities
        return "" if caps.has(feature) else unavailable_message(caps, feature)

    @property
    def busy(self) -> bool:
        return any(job.busy for job in self._jobs) or self.loading is not None

    def jobs(self) -> list[JobHandle]:
        """Jobs submitted and not finished, oldest first."""
        return list(self._jobs)

    # ------------------------------------------------------------------ jobs

    def submit(self, kind: str, fn: TaskFn, busy: bool = True, cancels_engine: bool = True,
               on_skip: Callable[[], None] | None = None) -> JobHandle:
        """Queue ``fn`` for the engine thread; the returned handle answers. ``on_skip`` runs
        there instead of ``fn`` when the job is cancelled before it starts."""
        for waiting in self._jobs:
            if waiting.kind == "prefill":
                waiting.cancel()  # work ahead of time never delays real work
        self._seq += 1
        job = JobHandle(self, f"{kind}-{self._seq}", kind, fn, busy, cancels_engine, on_skip)
        self._jobs.append(job)
        if busy:
            self.busy_changed.emit(True)
        self._do_job.emit(job)
        return job

    def run_task(self, kind: str, fn: TaskFn) -> JobHandle:
        """A panel's task (summarize, translate, workbench, classify …)."""
        return self.submit(kind, fn)

    def chat(self, request: ChatRequest, sink: ReplySink | None = None) -> JobHandle:
        """A chat reply, an ordinary task (``chat_task``): ``text`` streams it, ``yielded``
        carries ``ContextTrimmed``/``Progress``/``Rollback``, ``finished`` its ``Done`` or
        ``Error`` after ``sink`` stored it."""
        skipped = None if sink is None else (lambda: sink.done(Done(FinishReason.CANCELLED)))
        return self.submit("chat", chat_task(request, sink), on_skip=skipped)

    def prefill(self, request: ChatRequest) -> JobHandle | None:
        """Prefill a draft message (``Engine.prefill``) while nothing else is queued or
        running; None when the backend cannot or the engine is busy. Any job submitted
        after it cancels it (queued: skipped; running: the engine stops it at once), and
        ``finished`` carries its ``Done`` (``CANCELLED`` then), or None if it did not run."""
        if self.loaded is None or self.loading is not None or \
                not self.has(Feature.PREFILL) or \
                any(job.kind != "prefill" for job in self._jobs):
            return None
        return self.submit("prefill", prefill_task(request), busy=False)

    def load(self, settings: LoadSettings) -> JobHandle:
        """Load a model; ``model_loaded``/``load_failed``/``load_cancelled`` say how it went
        (the handle's ``finished`` too)."""
        self.loading = settings
        job = self.submit("load", load_task(settings), busy=False)
        self._load_job = job
        self.busy_changed.emit(True)
        return job

    def cancel_load(self) -> None:
        if self.loading is not None and self._load_job is not None:
            self._load_job.cancel()

    def count_chat_tokens(self, messages: Sequence[ChatMessage]) -> JobHandle:
        """The prompt size of ``messages``: the handle's ``yielded`` carries a ``TokenCount``."""
        messages = tuple(messages)
        return self.submit("count", _count_task(lambda e: e.count_chat_tokens(messages)),
                           busy=False, cancels_engine=False)

    def count_tokens(self, text: str | Callable[[], str]) -> JobHandle:
        """Tokens of a text (a document), counted by the engine: ``yielded`` carries a
        ``TokenCount``. ``text`` may be a function, called in the engine thread."""
        get = text if callable(text) else (lambda: text)
        return self.submit("count", _count_task(lambda e: e.count_tokens(get())),
                           busy=False, cancels_engine=False)

    def forget_session(self, session_id: str) -> JobHandle:
        def run(engine: Engine, cancelled: CancelCheck) -> Iterator[object]:
            yield from ()
            try:
                engine.forget_session(session_id)
            except VersoError as exc:
                log.info("forgetting session %s failed: %s", session_id, exc)

        return self.submit("forget", run, busy=False, cancels_engine=False)

    def _cancel_running(self, job: JobHandle) -> None:
        with self._shared.lock:
            running = self._shared.current is job
        if running and job.cancels_engine:
            self.engine.cancel()

    # ------------------------------------------------------------------ lifecycle

    def start_engine(self) -> None:
        """Start the engine in the background; ``engine_started`` says when."""
        self._do_start.emit()

    def kill_engine(self) -> None:
        """End the engine abruptly now (tests, and a last resort); the next request restarts
        it and reloads the model."""
        self.engine.kill()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for job in list(self._jobs):
            job.cancel()
        self._thread.quit()
        if not self._thread.wait(10_000):
            self.engine.kill()
            self._thread.wait(5_000)
        self.engine.close()

    # -------------------------------------------------------------- worker events

    @Slot()
    def _on_started(self) -> None:
        if not self._closed:
            self.engine_started.emit()

    @Slot(object, str)
    def _on_job_text(self, job: JobHandle, text: str) -> None:
        if not self._closed:
            job.text.emit(text)

    @Slot(object, object)
    def _on_job_event(self, job: JobHandle, event: object) -> None:
        if not self._closed:
            job.yielded.emit(event)

    @Slot(object, object)
    def _on_job_finished(self, job: JobHandle, outcome: object) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        job.done, job.outcome = True, outcome
        if self._closed:
            return
        if job.kind == "load":
            self._load_finished(job, outcome)
        job.finished.emit(outcome)
        if job.busy or job.kind == "load":
            self.busy_changed.emit(self.busy)

    def _load_finished(self, job: JobHandle, outcome: object) -> None:
        latest = job is self._load_job  # else a later load was asked while it was queued
        if latest:
            self._load_job = None
            self.loading = None  # (model_loaded was sent as the model arrived)
        if isinstance(outcome, Error):
            if self.engine.loaded is None:  # the engine had unloaded the previous model
                self.loaded = None
            self.load_failed.emit(outcome)
        elif not isinstance(outcome, ModelLoaded) and latest:
            self.load_cancelled.emit()

    @Slot(object)
    def _on_load_event(self, event: object) -> None:
        if self._closed:
            return
        if isinstance(event, Progress):
            self.load_progress.emit(event)
        elif isinstance(event, ModelLoaded):
            self.loaded = event
            if self.loading is not None and self.loading.path == event.local_path:
                self.loading = None
            self.model_loaded.emit(event)
            self.busy_changed.emit(self.busy)
