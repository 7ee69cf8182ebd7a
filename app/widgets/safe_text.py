"""Text views that never load anything named by model output.

Model text is untrusted: it can contain image references, HTML, or links to local files.
``SafeTextBrowser`` renders Markdown with raw HTML disabled, refuses every resource request,
never follows a link by itself, and opens web links only after the user confirms the full
URL."""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QTextDocument, QWheelEvent
from PySide6.QtWidgets import QFrame, QMessageBox, QSizePolicy, QTextBrowser, QWidget

MARKDOWN_FEATURES = (QTextDocument.MarkdownFeature.MarkdownDialectGitHub
                     | QTextDocument.MarkdownFeature.MarkdownNoHTML)
OPENABLE_SCHEMES = ("http", "https", "mailto")

UrlOpener = Callable[[QUrl], bool]
_opener: UrlOpener = QDesktopServices.openUrl


def set_url_opener(opener: UrlOpener) -> UrlOpener:
    """Replace how confirmed links are opened (tests); returns the previous opener."""
    global _opener
    previous, _opener = _opener, opener
    return previous


def confirm_and_open(parent: QWidget | None, url: QUrl) -> bool:
    """Ask before opening a link, showing the whole URL; only web and mail links open."""
    full = url.toString(QUrl.ComponentFormattingOption.FullyEncoded)
    if url.scheme().lower() not in OPENABLE_SCHEMES:
        QMessageBox.information(parent, "Link not opened",
                                f"Verso only opens web and mail links. This link was not "
                                f"opened:\n\n{full}")
        return False
    answer = QMessageBox.question(
        parent, "Open link?",
        f"Open this link in your browser?\n\n{full}\n\nIt comes from the model's reply: "
        "check the address before you continue.",
        QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel)
    if answer != QMessageBox.StandardButton.Open:
        return False
    return bool(_opener(url))


class SafeDocument(QTextDocument):
    def loadResource(self, kind: int, url: QUrl | str) -> None:
        return None


class SafeTextBrowser(QTextBrowser):
    """A read-only, self-sizing text view for one message part."""

    resource_requested = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocument(SafeDocument(self))
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().setDocumentMargin(2)
        self.anchorClicked.connect(lambda url: confirm_and_open(self, url))
        self._fit_height()

    def loadResource(self, kind: int, url: QUrl | str) -> None:
        self.resource_requested.emit(url)
        return None

    def setDocument(self, document: QTextDocument) -> None:
        super().setDocument(document)
        document.documentLayout().documentSizeChanged.connect(self._fit_height)

    def _fit_height(self, *_: object) -> None:
        height = math.ceil(self.document().size().height()) + 2 * self.frameWidth()
        if height != self.height():
            self.setFixedHeight(max(height, 1))

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # let the conversation's scroll area scroll
