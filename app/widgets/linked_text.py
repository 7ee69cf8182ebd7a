"""A scrollable, read-only view of HTML that Verso built itself from escaped text, with
internal links (``cite:…``, ``quote:…``) reported as signals. Like ``SafeTextBrowser`` it
loads no resource of any kind and opens other links only after confirmation."""

from __future__ import annotations

from PySide6.QtCore import QUrl, Signal
from PySide6.QtWidgets import QTextBrowser, QWidget

from app.widgets.safe_text import SafeDocument, confirm_and_open

INTERNAL_SCHEMES = ("cite", "quote")


class LinkedTextView(QTextBrowser):
    link_clicked = Signal(str, str)  # scheme, the rest of the link

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocument(SafeDocument(self))
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self._clicked)

    def loadResource(self, kind: int, url: QUrl | str) -> None:
        return None

    def _clicked(self, url: QUrl) -> None:
        if url.scheme() in INTERNAL_SCHEMES:
            self.link_clicked.emit(url.scheme(), url.path())
        else:
            confirm_and_open(self, url)
