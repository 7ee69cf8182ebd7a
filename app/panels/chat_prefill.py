"""Prefill while typing: the chat composer's draft is evaluated into the conversation's KV
cache before it is sent, so pressing Enter leaves only the last few tokens to evaluate.

``DraftPrefill`` watches the draft. ``PREFILL_DELAY_MS`` after typing pauses, and at least
every ``PREFILL_MAX_WAIT_MS`` while it goes on, it asks the bridge to prefill the
conversation plus the draft (``EngineBridge.prefill``: a job in the engine thread, which
runs only when no other job is queued). Nothing is asked while a reply streams, for a chat
that does not exist yet or uses another model, or with a backend without
``Feature.PREFILL``. Sending cancels a pending prefill; a prefill that another job
interrupted is asked again once that job has gone by.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer

from app.bridge import EngineBridge, JobHandle
from engine.api import Feature
from engine.events import Done, FinishReason
from engine.options import ChatRequest

PREFILL_DELAY_MS = 300
PREFILL_MAX_WAIT_MS = 1000
PREFILL_RETRY_MS = 50  # after a prefill was interrupted by another job

DraftRequest = Callable[[], ChatRequest | None]
"""The request sending the draft now would make (its last message the draft), or None when
there is nothing to prefill."""


class DraftPrefill(QObject):
    def __init__(self, bridge: EngineBridge, request: DraftRequest,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._request = request
        self.job: JobHandle | None = None
        self._done: ChatRequest | None = None  # the last request prefilled to its end
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(PREFILL_DELAY_MS)
        self._debounce.timeout.connect(self.run)
        self._max_wait = QTimer(self)
        self._max_wait.setSingleShot(True)
        self._max_wait.setInterval(PREFILL_MAX_WAIT_MS)
        self._max_wait.timeout.connect(self.run)

    @property
    def pending(self) -> bool:
        """A prefill is scheduled, queued or running."""
        return self._debounce.isActive() or self._max_wait.isActive() or self.job is not None

    def draft_changed(self) -> None:
        self._debounce.start()
        if not self._max_wait.isActive():
            self._max_wait.start()

    def run(self) -> None:
        """Prefill the draft now (if there is one and the engine is free)."""
        self._debounce.stop()
        self._max_wait.stop()
        if not self._bridge.has(Feature.PREFILL):
            return
        request = self._request()
        if request is None or request == self._done:
            return
        if self.job is not None:
            self.job.cancel()  # only the latest draft counts
        job = self._bridge.prefill(request)
        self.job = job
        if job is not None:
            job.finished.connect(lambda outcome: self._finished(job, request, outcome))
        elif not self._bridge.busy:
            self._debounce.start()  # only token counts are queued: try again after them

    def cancel(self) -> None:
        """Stop whatever is scheduled or running (the draft is being sent)."""
        self._debounce.stop()
        self._max_wait.stop()
        job, self.job = self.job, None
        if job is not None:
            job.cancel()

    def _finished(self, job: JobHandle, request: ChatRequest, outcome: object) -> None:
        if job is not self.job:
            return
        self.job = None
        if isinstance(outcome, Done) and outcome.finish_reason is FinishReason.CANCELLED:
            QTimer.singleShot(PREFILL_RETRY_MS, self._retry)
        elif isinstance(outcome, Done):
            self._done = request

    def _retry(self) -> None:
        if self.job is None and not self._debounce.isActive():
            self.run()
