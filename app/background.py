"""Run blocking work (disk, network, a child process) off the GUI thread and get the result
back in it.

``Background.run(fn, on_result, on_error)`` calls ``fn()`` on one of the instance's own pool
threads (not the global pool, so a slow disk or hub never holds up document loading) and
then ``on_result(value)`` or ``on_error(exception)`` in the GUI thread. After ``shutdown``
nothing is delivered."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)


class Background(QObject):
    _deliver = Signal(object, object)  # callback, value

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._deliver.connect(self._call)
        self._closed = False

    def run(self, fn: Callable[[], Any], on_result: Callable[[Any], None],
            on_error: Callable[[Exception], None] | None = None) -> None:
        def work() -> None:
            callback: Callable[[Any], None]
            try:
                value: Any = fn()
                callback = on_result
            except Exception as exc:  # reported to the caller, never lost
                if on_error is None:
                    log.exception("background work failed")
                    return
                value, callback = exc, on_error
            if not self._closed:
                with contextlib.suppress(RuntimeError):  # the owner was deleted first
                    self._deliver.emit(callback, value)

        self._pool.start(work)

    def post(self, callback: Callable[[Any], None], value: Any) -> None:
        """Call ``callback(value)`` in the GUI thread; safe from any thread."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):
                self._deliver.emit(callback, value)

    @Slot(object, object)
    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        if not self._closed:
            callback(value)

    def wait(self, msecs: int = 10_000) -> bool:
        return self._pool.waitForDone(msecs)

    def shutdown(self) -> None:
        self._closed = True
        self._pool.clear()
