"""Downloads in the Models panel: one row per model with its progress, speed and ETA,
Pause/Resume and Cancel. The transfer runs on its own thread through the hub service (Verso's
resumable downloader): Pause stops it with the ``.part`` kept, Resume (also after a restart
of Verso) continues from it, Cancel stops it and deletes the part."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from app.background import Background
from app.hub_service import HubService, PullHandle
from engine.errors import Cancelled
from engine.library.download import DownloadProgress, DownloadState
from engine.units import format_bytes

log = logging.getLogger(__name__)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "time left unknown"
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds} s left"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s left"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min left"


def progress_text(event: DownloadProgress) -> str:
    done = f"{format_bytes(event.bytes_done)} of {format_bytes(event.total)}"
    if event.state is DownloadState.DOWNLOADING:
        speed = f"{format_bytes(int(event.speed))}/s" if event.speed else "starting"
        text = f"{done} · {speed} · {format_eta(event.eta)}"
    elif event.state is DownloadState.CHECKING:
        text = f"checking what is already downloaded ({done})"
    elif event.state is DownloadState.VERIFYING:
        text = "verifying the SHA-256…"
    elif event.state is DownloadState.RETRYING:
        text = f"{done} · retrying (attempt {event.attempt})"
    elif event.state is DownloadState.CONNECTING:
        text = f"{done} · connecting…"
    else:
        text = done
    return f"{text} — {event.message}" if event.message else text


class _Relay(QObject):
    progress = Signal(object)  # DownloadProgress
    ended = Signal(str, object)  # "done" | "paused" | "failed", Path | str


class DownloadRow(QWidget):
    """One model being downloaded (or paused, or failed)."""

    finished = Signal(object, object)  # self, the installed Path
    removed = Signal(object)  # self: cancelled and cleaned up

    def __init__(self, hub: HubService, f: Any, background: Background,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("downloadRow")
        self.hub, self.file, self.background = hub, f, background
        self.state = "idle"  # running | paused | failed | done | cancelling
        self._handle: PullHandle | None = None
        self._thread: threading.Thread | None = None
        self._discard_after_stop = False
        self.title = QLabel(f"{f.repo_id} · {f.name}")
        self.title.setObjectName("sectionTitle")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(180)
        self.status = QLabel("waiting…")
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self.toggle)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.bar)
        layout.addWidget(self.status, 1)
        layout.addWidget(self.pause_button)
        layout.addWidget(self.cancel_button)
        self._relay = _Relay(self)
        self._relay.progress.connect(self._progress)
        self._relay.ended.connect(self._ended)

    def show_paused(self, bytes_done: int, size: int) -> None:
        self.state = "paused"
        self.bar.setValue(int(bytes_done * 1000 / size) if size else 0)
        self.status.setText(f"paused at {format_bytes(bytes_done)} of {format_bytes(size)}")
        self.pause_button.setText("Resume")

    def start(self) -> None:
        if self.state == "running":
            return
        self.state = "running"
        self.pause_button.setText("Pause")
        self.status.setText("starting…")
        self.status.setObjectName("hint")
        self._refresh_style()
        relay = self._relay
        try:
            handle = self.hub.start_pull(self.file)
        except Exception as exc:
            self._ended("failed", getattr(exc, "message", None) or str(exc))
            return
        self._handle = handle

        def run() -> None:
            outcome: tuple[str, object] = ("failed", "the download ended without a result")
            try:
                for event in handle.events:
                    if event.state is DownloadState.DONE:
                        outcome = ("done", event.path)
                    else:
                        with contextlib.suppress(RuntimeError):
                            relay.progress.emit(event)
            except Cancelled:
                outcome = ("paused", "")
            except Exception as exc:  # HubError / DownloadError carry the user's message
                message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
                if not hasattr(exc, "kind"):
                    log.exception("download of %s failed", self.file.name)
                outcome = ("failed", message)
            with contextlib.suppress(RuntimeError):
                relay.ended.emit(*outcome)

        self._thread = threading.Thread(target=run, name="verso-download", daemon=True)
        self._thread.start()

    def toggle(self) -> None:
        if self.state == "running":
            self.pause()
        elif self.state in ("paused", "failed", "idle"):
            self.start()

    def pause(self) -> None:
        if self.state == "running" and self._handle is not None:
            self.status.setText("pausing…")
            self._handle.cancel()

    def cancel(self) -> None:
        """Stop and delete what was downloaded."""
        if self.state == "running" and self._handle is not None:
            self._discard_after_stop = True
            self.state = "cancelling"
            self.status.setText("cancelling…")
            self._handle.cancel()
            return
        self._discard()

    def _discard(self) -> None:
        self.state = "cancelling"
        self.pause_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        self.background.run(lambda: self.hub.discard(self.file),
                            lambda _none: self.removed.emit(self),
                            lambda exc: self._ended("failed", f"could not delete the "
                                                              f"partial download: {exc}"))

    def _progress(self, event: DownloadProgress) -> None:
        if self.state not in ("running", "cancelling"):
            return
        self.bar.setValue(int(event.fraction * 1000))
        if self.state == "running":
            self.status.setText(progress_text(event))

    def _ended(self, outcome: str, value: object) -> None:
        self._handle = None
        if self._discard_after_stop:
            self._discard_after_stop = False
            self._discard()
            return
        if outcome == "done":
            self.state = "done"
            self.bar.setValue(1000)
            self.status.setText(f"downloaded and verified: {value}")
            self.pause_button.hide()
            self.cancel_button.hide()
            self.finished.emit(self, Path(str(value)) if value else None)
        elif outcome == "paused":
            self.state = "paused"
            self.pause_button.setText("Resume")
            self.status.setText("paused; Resume continues from what is downloaded")
        else:
            self.state = "failed"
            self.pause_button.setText("Retry")
            self.status.setObjectName("documentError")
            self._refresh_style()
            self.status.setText(str(value))

    def _refresh_style(self) -> None:
        style = self.status.style()
        style.unpolish(self.status)
        style.polish(self.status)

    def stop(self, wait_s: float = 5.0) -> None:
        """Pause (for closing the window): the part stays for the next run."""
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(wait_s)

