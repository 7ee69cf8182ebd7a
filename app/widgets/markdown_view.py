"""A message body rendered as Markdown, built incrementally while it streams.

Per token the new text is appended as plain text to the live area (constant cost). Only when
``BlockSplitter`` reports a finished block is Markdown rendered, and then only the current
text segment, which is capped in size: a new segment starts once it grows past
``SEGMENT_CHARS``. Code fences become ``CodeBlock`` widgets with a copy button."""

from __future__ import annotations

import math
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QFontDatabase,
    QGuiApplication,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextFrameFormat,
    QTextTable,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.display_text import CombiningLimiter, for_display
from app.markdown_stream import (
    Append,
    BlockSplitter,
    CloseCode,
    CommitBlock,
    OpenCode,
    line_pieces,
)
from app.widgets.safe_text import MARKDOWN_FEATURES, SafeTextBrowser

SEGMENT_CHARS = 4000
# The live tail is split into text blocks of at most this many characters: Qt lays out a
# whole block on every insert, so one unbroken streamed line would cost more per token as it
# grows (4.8 ms per append at 32K characters, 22 ms at 131K, measured before the split).
TAIL_BLOCK_CHARS = 1000
# A Markdown block longer than this, or a table of more cells, is kept as the plain text it
# streamed as, in a segment of its own, instead of being rendered: Qt lays a paragraph out as
# one unit (rendering one of 200,000 characters stalled the window for 855 ms, a 60K one for
# 120 ms; 8,000 characters take 8 ms) and a table cell by cell (0.12-0.17 ms a cell here:
# 250 cells 34-42 ms). No prose paragraph is this long; a degenerate reply is still readable.
LARGE_BLOCK_CHARS = 8000
TABLE_MAX_CELLS = 200
# A code block grows to show every line up to CODE_MAX_LINES; a longer one becomes a box of
# CODE_BOX_LINES that scrolls inside itself. QPlainTextEdit walks its lines from the top on
# every paint and resize, so a block 20,000 lines tall cost 20 ms per streamed append; and a
# box smaller than the window leaves room to scroll the conversation past it.
CODE_MAX_LINES = 1000
CODE_BOX_LINES = 30
_CONTINUATION = re.compile(r"^(\s|[-*+>|]|\d+[.)]\s)")
_DELIMITER_ROW = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


def table_cells(markdown: str) -> int:
    """How many cells the GitHub table in this block has (0 when it holds none)."""
    lines = markdown.split("\n")
    for index, line in enumerate(lines[1:], start=1):
        if "|" in line and "-" in line and _DELIMITER_ROW.match(line):
            columns = line.strip().strip("|").count("|") + 1
            return columns * (len(lines) - index)  # the header and the body rows
    return 0


_TAIL_CONTINUATION = QTextBlockFormat()
_TAIL_CONTINUATION.setTopMargin(0)
_TAIL_CONTINUATION.setBottomMargin(0)


def _tail_cut(text: str, room: int) -> int:
    """Where to end the current tail block: after the last space that fits, else at ``room``
    (a line without spaces is cut anywhere). A finished block is rendered without the cuts,
    except one too large to render, which keeps them."""
    space = text.rfind(" ", 0, room)
    return space + 1 if space >= room // 2 else room


def _insert_cut(cursor: QTextCursor, text: str) -> None:
    """Insert ``text`` at ``cursor``, starting a new block whenever one reaches
    TAIL_BLOCK_CHARS."""
    while text:
        room = TAIL_BLOCK_CHARS - (cursor.position() - cursor.block().position())
        if len(text) <= room:
            cursor.insertText(text, QTextCharFormat())
            return
        cut = _tail_cut(text, max(room, 0))
        if cut:
            cursor.insertText(text[:cut], QTextCharFormat())
        cursor.insertBlock(_TAIL_CONTINUATION, QTextCharFormat())
        text = text[cut:]


class TextSegment(SafeTextBrowser):
    """Rendered Markdown blocks followed by a plain-text tail (the block being written)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("markdownSegment")
        self.blocks: list[str] = []
        self.size_chars = 0
        self.frozen = False  # holds one large block as plain text; never rendered again
        self._tail_start: int | None = None
        self._tail: list[str] = []  # the text the tail shows, as appended
        self.tail_chars = 0
        self._line_starts: list[int] = []  # where each line after the tail's first begins

    def tail_text(self) -> str:
        return "".join(self._tail)

    def freeze(self, markdown: str) -> None:
        """Keep the plain tail on screen as the final display of the block ``markdown``."""
        if self._tail_start is None:
            self.append_tail(markdown)
        cursor = QTextCursor(self.document())
        lines = markdown.count("\n") + 1
        if len(self._line_starts) >= lines:
            # The tail also shows what followed the block (a blank line, a code fence's
            # opening line): drop it from the line break that ends the block's last line.
            cursor.setPosition(self._line_starts[lines - 1] - 1)
            cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        while cursor.block().text().strip() == "" and cursor.blockNumber() > 0:
            cursor.movePosition(QTextCursor.MoveOperation.PreviousBlock,
                                QTextCursor.MoveMode.KeepAnchor)
            cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock,
                                QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        self._tail_start = None
        self._tail = []
        self.tail_chars = 0
        self._line_starts = []
        self.add_block(markdown)
        self.frozen = True

    def append_tail(self, text: str) -> None:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if self._tail_start is None:
            if not self.document().isEmpty():
                cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
            self._tail_start = cursor.position()
        self._tail.append(text)
        self.tail_chars += len(text)
        for line in line_pieces(text):
            _insert_cut(cursor, line)
            if line.endswith("\n"):
                self._line_starts.append(cursor.position())

    def clear_tail(self) -> None:
        if self._tail_start is None:
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(max(self._tail_start - 1, 0))
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self._tail_start = None
        self._tail = []
        self.tail_chars = 0
        self._line_starts = []

    def add_block(self, markdown: str) -> None:
        self.blocks.append(markdown)
        self.size_chars += len(markdown)

    def render(self) -> None:  # type: ignore[override]  # shadows QWidget.render; a test patches it
        self._tail_start = None
        self._tail = []
        self.tail_chars = 0
        self._line_starts = []
        document = self.document()
        document.setMarkdown("\n\n".join(self.blocks), MARKDOWN_FEATURES)
        tables = [f for f in document.rootFrame().childFrames() if isinstance(f, QTextTable)]
        if tables:
            # One edit block, so the document is laid out once and not after every cell's
            # format (a 170-row table took 4.1 s to style cell by cell, 44 ms this way).
            cursor = QTextCursor(document)
            cursor.beginEditBlock()
            for table in tables:
                _style_table(table, self.palette().mid())
            cursor.endEditBlock()

    def markdown(self) -> str:
        return "\n\n".join(self.blocks)


def _style_table(table: QTextTable, brush: QBrush) -> None:
    table_format = table.format()
    table_format.setCellPadding(5)
    table_format.setCellSpacing(0)
    table_format.setBorder(1)
    table_format.setBorderCollapse(True)
    table_format.setBorderBrush(brush)
    table_format.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    table.setFormat(table_format)
    for row in range(table.rows()):
        for column in range(table.columns()):
            cell = table.cellAt(row, column)
            cell_format = cell.format().toTableCellFormat()
            cell_format.setBorder(1)
            cell_format.setBorderBrush(brush)
            cell_format.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
            cell.setFormat(cell_format)


class CodeBlock(QFrame):
    """A fenced code block: verbatim text, the language, and a copy button."""

    copied = Signal(str)

    def __init__(self, language: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("codeBlock")
        self.language = language
        self._appending = False
        header = QHBoxLayout()
        header.setContentsMargins(8, 2, 2, 0)
        label = QLabel(language or "code")
        label.setObjectName("codeLanguage")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("codeCopy")
        self.copy_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.copy_button.setToolTip("Copy this code to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        header.addWidget(label)
        header.addStretch(1)
        header.addWidget(self.copy_button)
        self.editor = QPlainTextEdit()
        self.editor.setObjectName("codeText")
        self.editor.setReadOnly(True)
        self.editor.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.editor.setFrameShape(QFrame.Shape.NoFrame)
        self.editor.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.editor.horizontalScrollBar().rangeChanged.connect(self._fit_height)
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.editor.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.editor.blockCountChanged.connect(self._fit_height)
        self.editor.wheelEvent = self._wheel  # type: ignore[method-assign]  # per instance
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(self.editor)
        self._fit_height()

    def append(self, text: str) -> None:
        cursor = QTextCursor(self.editor.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        bar = self.editor.verticalScrollBar()
        # A block that reaches the cap shows its newest lines, and keeps following them
        # unless the reader has scrolled up inside it.
        follow = not self.capped or bar.value() >= bar.maximum() - 1
        self._appending = True  # one fit per append, not one per new line
        try:
            cursor.insertText(text)
        finally:
            self._appending = False
        self._fit_height()
        if follow and self.capped:
            bar.setValue(bar.maximum())

    @property
    def capped(self) -> bool:
        return self.editor.document().blockCount() > CODE_MAX_LINES

    def scroll_to_top(self) -> None:
        self.editor.verticalScrollBar().setValue(0)

    def _wheel(self, event: QWheelEvent) -> None:
        """Scroll inside a capped block (no zoom); otherwise the conversation scrolls."""
        if self.capped and not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            QPlainTextEdit.wheelEvent(self.editor, event)
        else:
            event.ignore()

    def close_fence(self) -> None:
        """Remove the closing fence line (and the newline before it) from the display."""
        document = self.editor.document()
        cursor = QTextCursor(document)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if document.lastBlock().text() == "" and document.blockCount() > 1:
            cursor.deletePreviousChar()
        cursor.movePosition(QTextCursor.MoveOperation.StartOfBlock,
                            QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if document.blockCount() > 1:
            cursor.deletePreviousChar()

    def code(self) -> str:
        return self.editor.toPlainText()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.code())
        self.copied.emit(self.code())

    def _fit_height(self, *_: object) -> None:
        if self._appending:
            return
        capped = self.capped
        policy = (Qt.ScrollBarPolicy.ScrollBarAsNeeded if capped
                  else Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        if self.editor.verticalScrollBarPolicy() != policy:
            self.editor.setVerticalScrollBarPolicy(policy)
        lines = CODE_BOX_LINES if capped else max(self.editor.document().blockCount(), 1)
        metrics = self.editor.fontMetrics()
        bar = self.editor.horizontalScrollBar()
        scroll = bar.sizeHint().height() if bar.maximum() > 0 else 0
        margins = 2 * self.editor.document().documentMargin() + 2 * self.editor.frameWidth()
        height = math.ceil(lines * metrics.lineSpacing() + margins + scroll)
        if height != self.editor.height():
            self.editor.setFixedHeight(height)


class MarkdownBody(QWidget):
    """The body of one reply. ``set_text`` renders a finished message; ``begin_stream``,
    ``feed`` and ``finish`` build it as it streams, with the same rules and result."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._parts: list[str] = []
        self._splitter = BlockSplitter()
        self._marks = CombiningLimiter()
        self._segment: TextSegment | None = None
        self._code: CodeBlock | None = None
        self._defer = False
        self._dirty: list[TextSegment] = []

    def text(self) -> str:
        """The full source text, as received."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def segments(self) -> list[QWidget]:
        items = (self._layout.itemAt(i) for i in range(self._layout.count()))
        return [w for item in items if item is not None and (w := item.widget()) is not None]

    def code_blocks(self) -> list[CodeBlock]:
        return [w for w in self.segments() if isinstance(w, CodeBlock)]

    def set_text(self, text: str) -> None:
        self._reset()
        self._deferred(text, finish=True)

    def begin_stream(self, prefix: str = "") -> None:
        """Start a streamed body; ``prefix`` is text already there (continuing a reply)."""
        self._reset()
        self._deferred(prefix, finish=False)

    def _reset(self) -> None:
        while self._layout.count():
            item = self._layout.takeAt(0)
            assert item is not None  # count() > 0
            widget = item.widget()
            if widget is not None:
                widget.hide()
                widget.deleteLater()
        self._parts = []
        self._splitter = BlockSplitter()
        self._marks = CombiningLimiter()
        self._segment = self._code = None

    def _deferred(self, text: str, finish: bool) -> None:
        """Apply ``text`` rendering each touched segment once, at the end."""
        self._defer = True
        try:
            self.feed(text)
            if finish:
                self.finish()
        finally:
            self._defer = False
        for segment in self._dirty:
            segment.render()
            if not finish and segment is self._segment:
                self._restore_tail()
        self._dirty.clear()
        if finish:
            for block in self.code_blocks():
                block.scroll_to_top()  # a stored reply opens at its beginning

    def _restore_tail(self) -> None:
        """After a deferred render the live segment lost its plain tail: put it back."""
        assert self._segment is not None
        tail = self._splitter.pending_text()
        if tail:
            self._segment.append_tail(tail)

    def feed(self, text: str) -> None:
        if not text:
            return
        self._parts.append(text)
        self._apply(self._splitter.feed(self._marks.feed(for_display(text))))

    def finish(self) -> None:
        self._apply(self._splitter.finish())
        if self._segment is not None:
            self._segment.clear_tail()
        self._drop_empty_segment()

    def _drop_empty_segment(self) -> None:
        """A segment that only ever held blank lines or a fence line is not kept."""
        segment = self._segment
        if segment is not None and not segment.blocks:
            segment.clear_tail()
            self._layout.removeWidget(segment)
            segment.hide()
            segment.deleteLater()
            if segment in self._dirty:
                self._dirty.remove(segment)
            self._segment = None

    def _apply(self, ops: list) -> None:
        for op in ops:
            if isinstance(op, Append):
                if self._code is not None:
                    self._code.append(op.text)
                else:
                    self._append_tail(op.text)
            elif isinstance(op, CommitBlock):
                self._commit(op.markdown)
            elif isinstance(op, OpenCode):
                self._drop_empty_segment()
                self._code = CodeBlock(op.language)
                self._layout.addWidget(self._code)
                self._segment = None
            elif isinstance(op, CloseCode) and self._code is not None:
                self._code.close_fence()
                self._code = None

    def _text_segment(self) -> TextSegment:
        if self._segment is None:
            self._segment = TextSegment()
            self._layout.addWidget(self._segment)
        return self._segment

    def _append_tail(self, text: str) -> None:
        segment = self._text_segment()
        if segment.blocks and segment.tail_chars + len(text) > LARGE_BLOCK_CHARS:
            # The block being written will be too large to render: give it a segment of its
            # own now (moving at most LARGE_BLOCK_CHARS), so that it can stay as it streamed.
            text = segment.tail_text() + text
            segment.clear_tail()
            self._segment = None
            segment = self._text_segment()
        segment.append_tail(text)

    def _commit(self, markdown: str) -> None:
        if not markdown:
            if self._segment is not None:
                self._segment.clear_tail()
            return
        segment = self._text_segment()
        cells = table_cells(markdown)
        if len(markdown) > LARGE_BLOCK_CHARS or cells > TABLE_MAX_CELLS:
            if segment.blocks:
                segment.clear_tail()
                self._segment = None
                segment = self._text_segment()
            segment.freeze(markdown)
            if segment in self._dirty:
                self._dirty.remove(segment)
            self._segment = None
            return
        segment.clear_tail()
        if (cells and segment.blocks) or (segment.size_chars > SEGMENT_CHARS
                                          and not _CONTINUATION.match(markdown)):
            self._segment = None
            segment = self._text_segment()
        segment.add_block(markdown)
        if cells:
            self._segment = None  # a table is rendered alone: later blocks never re-lay it out
        if self._defer:
            if segment not in self._dirty:
                self._dirty.append(segment)
        else:
            segment.render()
