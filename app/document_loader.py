"""Reading documents for the document panels without blocking the GUI thread.

Files are parsed by ``engine.documents.load_document`` (itself a child process with limits);
the wait for it, and the token count with the model's own vocabulary, happen on a pool
thread. Results come back as signals. Shutting down kills any parser still running."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QThreadPool, Signal

from engine.documents import Document, document_from_text, load_document, vocab_token_counter
from engine.errors import VersoError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    document: Document
    tokens: int | None  # with the current model's vocabulary; None without a model
    pasted: str | None = None  # the text as pasted or dropped (kept so a job can be resumed)


def count_tokens(document: Document, model_path: str | None) -> int | None:
    if not model_path:
        return None
    try:
        return vocab_token_counter(model_path)(document.to_markdown())
    except VersoError as exc:
        log.info("token count failed: %s", exc)
        return None


class DocumentLoader(QObject):
    """Every request gets a number; ``loaded``/``failed``/``counted`` answer with it."""

    loaded = Signal(int, object)  # request, LoadedDocument
    failed = Signal(int, str, str)  # request, document name, the engine's message
    counted = Signal(int, object)  # request, int | None

    def __init__(self, model_path: Callable[[], str | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._model_path = model_path
        self._numbers = itertools.count(1)
        self._stop = threading.Event()

    def load_file(self, path: str | Path) -> int:
        number = next(self._numbers)
        model = self._model_path()
        name = Path(path).name

        def work() -> None:
            try:
                document = load_document(path, cancel=self._stop.is_set)
                self._emit(self.loaded, number, LoadedDocument(document,
                                                               count_tokens(document, model)))
            except VersoError as exc:
                self._emit(self.failed, number, name, str(exc))
            except Exception as exc:  # a bug must reach the panel as a message, not a hang
                log.exception("reading %s failed", path)
                self._emit(self.failed, number, name, f"{name}: could not be read ({exc})")

        QThreadPool.globalInstance().start(work)
        return number

    def load_text(self, text: str, name: str = "Pasted text") -> int:
        number = next(self._numbers)
        model = self._model_path()

        def work() -> None:
            try:
                document = document_from_text(text, name=name, markdown=True)
                self._emit(self.loaded, number, LoadedDocument(
                    document, count_tokens(document, model), pasted=text))
            except VersoError as exc:
                self._emit(self.failed, number, name, str(exc))

        QThreadPool.globalInstance().start(work)
        return number

    def count(self, document: Document) -> int:
        """Count again, e.g. after another model was loaded."""
        number = next(self._numbers)
        model = self._model_path()
        QThreadPool.globalInstance().start(
            lambda: self._emit(self.counted, number, count_tokens(document, model)))
        return number

    def shutdown(self) -> None:
        self._stop.set()

    def _emit(self, signal, *args: object) -> None:  # type: ignore[no-untyped-def]
        if self._stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the panel was deleted first
            signal.emit(*args)
