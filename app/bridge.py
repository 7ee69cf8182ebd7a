"""Engine events -> Qt signals.

``EngineBridge`` lives in the GUI thread and owns one ``EngineClient``. Every engine call
(load, chat, token counting, forgetting a session) runs in ``_EngineWorker`` on a dedicated
``QThread``, one at a time in the order asked; the GUI thread only emits requests and receives
signals, so it never waits on the engine. ``cancel`` calls ``EngineClient.cancel()`` directly
from the GUI thread (it is thread-safe).

A chat job may carry a ``ReplySink`` that the worker calls as the reply streams, so the reply
is persisted from the worker thread before the GUI hears that it finished.

Panels other than chat (summarize, translate, workbench) submit a ``TaskJob``: a function of
the engine client and a cancel check that yields events. It runs in the same worker thread,
queued behind everything asked before it; ``task_event`` carries what it yields and
``task_finished`` ends it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

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
from engine.worker import EngineClient

log = logging.getLogger(__name__)

TOKEN_FLUSH_S = 1 / 60  # coalesce tokens arriving faster than the screen refreshes


class ReplySink(Protocol):
    """Receives a reply as it streams, in the worker thread."""

    def text(self, chunk: str) -> None: ...

    def trimmed(self, event: ContextTrimmed) -> None: ...

    def done(self, event: Done) -> None: ...

    def failed(self, event: Error) -> None: ...


@dataclass(frozen=True)
class ChatJob:
    id: str
    request: ChatRequest
    sink: ReplySink | None = None


CancelCheck = Callable[[], bool]
TaskFn = Callable[[EngineClient, CancelCheck], Iterator[object]]


@dataclass(frozen=True)
class TaskJob:
    """Work for the engine thread. ``run`` is called there with the client and a cancel check
    (True once the user cancelled) and yields whatever the panel wants to hear about."""

    id: str
    run: TaskFn


class _Shared:
    """State the GUI thread and the worker thread both touch, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled: set[str] = set()
        self.current: str | None = None
        self.pending_count: tuple[int, tuple[ChatMessage, ...]] | None = None

    def take_cancelled(self, job_id: str) -> bool:
        with self.lock:
            if job_id in self.cancelled:
                self.cancelled.discard(job_id)
                return True
            return False


class _EngineWorker(QObject):
    started = Signal()
    load_event = Signal(object)
    chat_event = Signal(str, object)
    chat_text = Signal(str, str)
    counted = Signal(int, int)
    task_event = Signal(str, object)
    task_finished = Signal(str, object)

    def __init__(self, client: EngineClient, shared: _Shared) -> None:
        super().__init__()
        self._client = client
        self._shared = shared
        self._has_model = False

    @Slot()
    def run_start(self) -> None:
        """Start the engine process ahead of the first request (its imports take a while)
        and wait until it answers, so loading a model later costs only the load."""
        try:
            self._client.start()
            self._client.unload()
        except Exception as exc:
            log.warning("starting the engine failed: %s", exc)
        self.started.emit()

    @Slot(str, object)
    def run_load(self, job_id: str, settings: LoadSettings) -> None:
        if self._shared.take_cancelled(job_id):
            self.load_event.emit(Done(FinishReason.CANCELLED))
            return
        with self._shared.lock:
            self._shared.current = job_id
        cancel_sent = False
        try:
            for event in self._client.load(settings):
                if not cancel_sent and job_id in self._shared.cancelled:
                    self._client.cancel()
                    cancel_sent = True
                if isinstance(event, ModelLoaded):
                    self._has_model = True
                elif isinstance(event, Error) and self._client.loaded is None:
                    self._has_model = False
                self.load_event.emit(event)
        except Exception as exc:  # a bug must reach the user as an error, not a hang
            log.exception("model load failed")
            self.load_event.emit(Error(ErrorKind.INTERNAL, f"Loading failed: {exc}"))
        finally:
            with self._shared.lock:
                self._shared.current = None
                self._shared.cancelled.discard(job_id)

    @Slot(object)
    def run_chat(self, job: ChatJob) -> None:
        if self._shared.take_cancelled(job.id):
            self._finish(job, Done(FinishReason.CANCELLED))
            return
        with self._shared.lock:
            self._shared.current = job.id
        pending: list[str] = []
        last_flush = 0.0
        cancel_sent = False
        ended = False
        try:
            for event in self._client.chat(job.request):
                if not cancel_sent and job.id in self._shared.cancelled:
                    self._client.cancel()
                    cancel_sent = True
                if isinstance(event, Token):
                    if not event.text:
                        continue
                    pending.append(event.text)
                    if job.sink is not None:
                        job.sink.text(event.text)
                    now = time.monotonic()
                    if now - last_flush >= TOKEN_FLUSH_S:
                        self.chat_text.emit(job.id, "".join(pending))
                        pending.clear()
                        last_flush = now
                    continue
                if pending:
                    self.chat_text.emit(job.id, "".join(pending))
                    pending.clear()
                if isinstance(event, Done | Error):
                    ended = True
                    self._finish(job, event)
                elif isinstance(event, ModelLoaded):
                    self._has_model = True
                    self.load_event.emit(event)
                elif isinstance(event, Progress) and event.stage == "load":
                    self.load_event.emit(event)
                else:
                    if isinstance(event, ContextTrimmed) and job.sink is not None:
                        job.sink.trimmed(event)
                    if isinstance(event, Rollback) and job.sink is not None:
                        job.sink.retract(event.n_chars)
                    self.chat_event.emit(job.id, event)
        except Exception as exc:
            log.exception("chat request failed")
            if not ended:
                ended = True
                self._finish(job, Error(ErrorKind.INTERNAL, f"The request failed: {exc}"))
        finally:
            with self._shared.lock:
                self._shared.current = None
                self._shared.cancelled.discard(job.id)
        if not ended:
            self._finish(job, Error(ErrorKind.INTERNAL, "The engine ended the reply without "
                                                        "a result."))

    def _finish(self, job: ChatJob, event: Done | Error) -> None:
        if job.sink is not None:
            try:
                if isinstance(event, Done):
                    job.sink.done(event)
                else:
                    job.sink.failed(event)
            except Exception:
                log.exception("saving the reply failed")
        self.chat_event.emit(job.id, event)

    @Slot(object)
    def run_task(self, job: TaskJob) -> None:
        if self._shared.take_cancelled(job.id):
            self.task_finished.emit(job.id, Done(FinishReason.CANCELLED))
            return
        with self._shared.lock:
            self._shared.current = job.id

        def cancelled() -> bool:
            with self._shared.lock:
                return job.id in self._shared.cancelled

        outcome: object = None
        before = self._client.loaded
        try:
            for event in job.run(self._client, cancelled):
                if isinstance(event, ModelLoaded) or (isinstance(event, Progress)
                                                      and event.stage == "load"):
                    self.load_event.emit(event)
                    continue
                self.task_event.emit(job.id, event)
        except Cancelled:
            outcome = Done(FinishReason.CANCELLED)
        except VersoError as exc:
            outcome = Error(exc.kind, str(exc))
        except Exception as exc:
            log.exception("task %s failed", job.id)
            outcome = Error(ErrorKind.INTERNAL, f"The task failed: {exc}")
        finally:
            with self._shared.lock:
                self._shared.current = None
                was_cancelled = job.id in self._shared.cancelled
                self._shared.cancelled.discard(job.id)
        if outcome is None and was_cancelled:
            outcome = Done(FinishReason.CANCELLED)
        after = self._client.loaded
        if after is not None and after is not before:
            self._has_model = True
            self.load_event.emit(after)  # the engine had stopped; the task restarted it
        self.task_finished.emit(job.id, outcome)

    @Slot()
    def run_count(self) -> None:
        with self._shared.lock:
            item, self._shared.pending_count = self._shared.pending_count, None
        if item is None:
            return
        seq, messages = item
        if not self._has_model:
            self.counted.emit(seq, -1)
            return
        before = self._client.loaded
        try:
            tokens = self._client.count_chat_tokens(messages)
        except VersoError as exc:
            log.info("token count failed: %s", exc)
            tokens = -1
        after = self._client.loaded
        if after is not None and after is not before:
            self.load_event.emit(after)  # the engine had stopped; counting restarted it
        self.counted.emit(seq, tokens)

    @Slot(str)
    def run_forget(self, session_id: str) -> None:
        try:
            self._client.forget_session(session_id)
        except VersoError as exc:
            log.info("forgetting session %s failed: %s", session_id, exc)


class EngineBridge(QObject):
    """The GUI's handle on the engine. All methods are called from the GUI thread."""

    load_progress = Signal(object)  # Progress (stage "load")
    model_loaded = Signal(object)  # ModelLoaded
    load_failed = Signal(object)  # Error
    load_cancelled = Signal()
    reply_text = Signal(str, str)  # job id, new text
    reply_event = Signal(str, object)  # job id, Progress | ContextTrimmed
    reply_done = Signal(str, object)  # job id, Done
    reply_failed = Signal(str, object)  # job id, Error
    tokens_counted = Signal(int, int)  # request number, tokens (-1: unknown)
    task_event = Signal(str, object)  # job id, whatever the task yielded
    task_finished = Signal(str, object)  # job id, None (finished) | Done (cancelled) | Error
    busy_changed = Signal(bool)
    engine_started = Signal()

    _do_start = Signal()
    _do_load = Signal(str, object)
    _do_chat = Signal(object)
    _do_count = Signal()
    _do_forget = Signal(str)
    _do_task = Signal(object)

    def __init__(self, client_factory: Callable[[], EngineClient] = EngineClient,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client_factory()
        self.loaded: ModelLoaded | None = None
        self.loading: LoadSettings | None = None
        self._shared = _Shared()
        self._count_seq = 0
        self._jobs: set[str] = set()
        self._load_seq = 0
        self._thread = QThread()
        self._thread.setObjectName("verso-engine-bridge")
        self._worker = _EngineWorker(self.client, self._shared)
        self._worker.moveToThread(self._thread)
        self._do_start.connect(self._worker.run_start)
        self._do_load.connect(self._worker.run_load)
        self._do_chat.connect(self._worker.run_chat)
        self._do_count.connect(self._worker.run_count)
        self._do_forget.connect(self._worker.run_forget)
        self._do_task.connect(self._worker.run_task)
        self._worker.started.connect(self._on_started)
        self._worker.load_event.connect(self._on_load_event)
        self._worker.chat_event.connect(self._on_chat_event)
        self._worker.chat_text.connect(self._on_chat_text)
        self._worker.counted.connect(self._on_counted)
        self._worker.task_event.connect(self._on_task_event)
        self._worker.task_finished.connect(self._on_task_finished)
        self._closed = False
        self._thread.start()

    @property
    def busy(self) -> bool:
        return bool(self._jobs) or self.loading is not None

    def start_engine(self) -> None:
        """Start the engine process in the background; ``engine_started`` says when."""
        self._do_start.emit()

    def load(self, settings: LoadSettings) -> None:
        self._load_seq += 1
        self.loading = settings
        self.busy_changed.emit(True)
        self._do_load.emit(f"load-{self._load_seq}", settings)

    def cancel_load(self) -> None:
        if self.loading is None:
            return
        with self._shared.lock:
            job = f"load-{self._load_seq}"
            self._shared.cancelled.add(job)
            running = self._shared.current == job
        if running:
            self.client.cancel()

    def chat(self, job: ChatJob) -> None:
        self._jobs.add(job.id)
        self.busy_changed.emit(True)
        self._do_chat.emit(job)

    def run_task(self, job: TaskJob) -> None:
        """Queue ``job`` for the engine thread; ``task_event``/``task_finished`` answer."""
        self._jobs.add(job.id)
        self.busy_changed.emit(True)
        self._do_task.emit(job)

    def cancel(self, job_id: str | None = None) -> None:
        """Stop a reply (the running one when ``job_id`` is None); safe to call any time."""
        with self._shared.lock:
            target = job_id or self._shared.current
            if target is None or (target not in self._jobs):
                return
            self._shared.cancelled.add(target)
            running = self._shared.current == target
        if running:
            self.client.cancel()

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Ask for the prompt size of ``messages``; answered by ``tokens_counted`` with the
        returned number. Requests made while the engine is busy collapse into the latest."""
        self._count_seq += 1
        with self._shared.lock:
            queued = self._shared.pending_count is not None
            self._shared.pending_count = (self._count_seq, tuple(messages))
        if not queued:
            self._do_count.emit()
        return self._count_seq

    def forget_session(self, session_id: str) -> None:
        self._do_forget.emit(session_id)

    def kill_engine(self) -> None:
        """End the engine process now (tests, and a last resort); the next request restarts
        it and reloads the model."""
        self.client.kill()

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._shared.lock:
            self._shared.cancelled.update(self._jobs)
            current = self._shared.current
        if current is not None:
            self.client.cancel()
        self._thread.quit()
        if not self._thread.wait(10_000):
            self.client.kill()
            self._thread.wait(5_000)
        self.client.close()

    # -------------------------------------------------------------- worker events

    @Slot()
    def _on_started(self) -> None:
        if not self._closed:
            self.engine_started.emit()

    @Slot(str, str)
    def _on_chat_text(self, job_id: str, text: str) -> None:
        if not self._closed:
            self.reply_text.emit(job_id, text)

    @Slot(int, int)
    def _on_counted(self, seq: int, tokens: int) -> None:
        if not self._closed:
            self.tokens_counted.emit(seq, tokens)

    @Slot(str, object)
    def _on_task_event(self, job_id: str, event: object) -> None:
        if not self._closed:
            self.task_event.emit(job_id, event)

    @Slot(str, object)
    def _on_task_finished(self, job_id: str, outcome: object) -> None:
        if self._closed:
            return
        self._jobs.discard(job_id)
        self.task_finished.emit(job_id, outcome)
        self.busy_changed.emit(self.busy)

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
        elif isinstance(event, Error):
            self.loading = None
            if self.client.loaded is None:  # the engine had unloaded the previous model
                self.loaded = None
            self.load_failed.emit(event)
            self.busy_changed.emit(self.busy)
        elif isinstance(event, Done):
            self.loading = None
            self.load_cancelled.emit()
            self.busy_changed.emit(self.busy)

    @Slot(str, object)
    def _on_chat_event(self, job_id: str, event: object) -> None:
        if self._closed:
            return
        if isinstance(event, Done | Error):
            self._jobs.discard(job_id)
            if isinstance(event, Done):
                self.reply_done.emit(job_id, event)
            else:
                self.reply_failed.emit(job_id, event)
            self.busy_changed.emit(self.busy)
        else:
            self.reply_event.emit(job_id, event)
