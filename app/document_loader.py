"""Reading documents for the document panels without blocking the GUI thread.

Files are parsed by ``engine.documents.load_document`` (itself a child process with limits);
the wait for it happens on a pool thread. Token counts come from the engine, through the
bridge (``EngineBridge.count_tokens``, queued on the engine thread): the GUI process never
opens a model. Results come back as signals. Shutting down kills any parser still running."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Signal

from app.bridge import JobHandle, TokenCount
from engine.documents import Document, document_from_text, load_document
from engine.errors import VersoError

log = logging.getLogger(__name__)

Counter = Callable[[Document], "JobHandle | None"]
"""Starts counting a document's tokens; None when nothing can count them (no model)."""


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    document: Document
    tokens: int | None  # with the current model's vocabulary; None: unknown (or not yet)
    pasted: str | None = None  # the text as pasted or dropped (kept so a job can be resumed)


def engine_counter(bridge) -> Counter:
    """Counts with ``bridge``'s engine while it has a model."""
    def count(document: Document) -> JobHandle | None:
        if bridge.loaded is None:
            return None
        return bridge.count_tokens(document.to_markdown)
    return count


class DocumentLoader(QObject):
    """Every request gets a number; ``loaded``/``failed``/``counted`` answer with it. A read
    document is announced by ``loaded`` at once (tokens unknown); ``count`` asks the engine."""

    loaded = Signal(int, object)  # request, LoadedDocument
    failed = Signal(int, str, str)  # request, document name, the engine's message
    counted = Signal(int, object)  # request, int | None

    def __init__(self, counter: Counter | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._counter = counter
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._counts: dict[int, JobHandle] = {}

    def load_file(self, path: str | Path) -> int:
        number = next(self._numbers)
        name = Path(path).name

        def work() -> None:
            try:
                document = load_document(path, cancel=self._stop.is_set)
                self._emit(self.loaded, number, LoadedDocument(document, None))
            except VersoError as exc:
                self._emit(self.failed, number, name, str(exc))
            except Exception as exc:  # a bug must reach the panel as a message, not a hang
                log.exception("reading %s failed", path)
                self._emit(self.failed, number, name, f"{name}: could not be read ({exc})")

        QThreadPool.globalInstance().start(work)
        return number

    def load_text(self, text: str, name: str = "Pasted text") -> int:
        number = next(self._numbers)

        def work() -> None:
            try:
                document = document_from_text(text, name=name, markdown=True)
                self._emit(self.loaded, number, LoadedDocument(document, None, pasted=text))
            except VersoError as exc:
                self._emit(self.failed, number, name, str(exc))

        QThreadPool.globalInstance().start(work)
        return number

    def count(self, document: Document) -> int | None:
        """Ask the engine for ``document``'s tokens; ``counted`` answers with the returned
        number. None (and no signal) when nothing can count them now."""
        job = self._counter(document) if self._counter is not None else None
        if job is None:
            return None
        number = next(self._numbers)
        self._counts[number] = job

        def answer(event: object) -> None:
            if isinstance(event, TokenCount) and self._counts.pop(number, None) is not None:
                self._emit(self.counted, number, event.tokens)

        def ended(_outcome: object) -> None:
            if self._counts.pop(number, None) is not None:
                self._emit(self.counted, number, None)  # cancelled or failed: unknown

        job.yielded.connect(answer)
        job.finished.connect(ended)
        return number

    def shutdown(self) -> None:
        self._stop.set()
        for job in self._counts.values():
            job.cancel()
        self._counts.clear()

    def _emit(self, signal, *args: object) -> None:
        if self._stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the panel was deleted first
            signal.emit(*args)
