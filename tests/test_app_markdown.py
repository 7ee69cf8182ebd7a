"""Markdown rendering of replies: incremental streaming and safety against model output."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication, QTextFormat
from PySide6.QtWidgets import QMessageBox

from app.markdown_stream import Append, BlockSplitter, CloseCode, CommitBlock, OpenCode
from app.widgets import markdown_view, safe_text
from app.widgets.markdown_view import CodeBlock, MarkdownBody, TextSegment

SAMPLE = (
    "# Lists in Python\n\nA list holds **items** in order:\n\n- ordered\n- mutable\n\n"
    "| method | does |\n|---|---|\n| append | adds one |\n| pop | removes one |\n\n"
    "```python\nitems = [1, 2]\nitems.append(3)\n```\n\nThat is all.\n"
)


def _describe(body: MarkdownBody) -> list[tuple[str, str]]:
    parts = []
    for widget in body.segments():
        if isinstance(widget, CodeBlock):
            parts.append(("code", widget.code()))
        else:
            parts.append(("text", widget.document().toPlainText()))
    return parts


def test_splitter_reports_blocks_and_fences():
    splitter = BlockSplitter()
    ops = splitter.feed("Hello\n\n```py\nx = 1\n```\nBye")
    ops += splitter.finish()
    kinds = [type(op) for op in ops]
    assert CommitBlock in kinds and OpenCode in kinds and CloseCode in kinds
    assert [op.markdown for op in ops if isinstance(op, CommitBlock) and op.markdown] == \
        ["Hello", "Bye"]
    assert next(op for op in ops if isinstance(op, OpenCode)).language == "py"
    assert "".join(op.text for op in ops if isinstance(op, Append)) == \
        "Hello\n\n```py\nx = 1\n```\nBye"


def test_streamed_body_matches_one_shot_rendering(qtbot):
    streamed, whole = MarkdownBody(), MarkdownBody()
    qtbot.addWidget(streamed)
    qtbot.addWidget(whole)
    streamed.begin_stream()
    for index in range(0, len(SAMPLE), 3):
        streamed.feed(SAMPLE[index:index + 3])
    streamed.finish()
    whole.set_text(SAMPLE)
    assert _describe(streamed) == _describe(whole)
    parts = _describe(whole)
    assert [kind for kind, _ in parts] == ["text", "text", "code", "text"]  # the table alone
    assert " ".join(parts[1][1].split()) == "method does append adds one pop removes one"
    assert parts[2][1] == "items = [1, 2]\nitems.append(3)"
    assert "Lists in Python" in parts[0][1] and "**" not in parts[0][1]
    assert whole.text() == SAMPLE


def test_markdown_renders_only_at_block_boundaries(qtbot, monkeypatch):
    rendered: list[int] = []
    original = TextSegment.render

    def counting_render(self: TextSegment) -> None:
        rendered.append(len(self.markdown()))
        original(self)

    monkeypatch.setattr(TextSegment, "render", counting_render)
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.begin_stream()
    for word in ("word " * 300).split(" "):
        body.feed(word + " ")
    assert rendered == [], "Markdown was re-rendered while a paragraph streamed"
    assert "word word" in body.segments()[0].document().toPlainText()
    paragraphs = 40
    for _ in range(paragraphs):
        body.feed("\n\n" + "more text " * 60)
    assert len(rendered) == paragraphs
    assert max(rendered) <= markdown_view.SEGMENT_CHARS + 700, "a segment grew unbounded"
    assert len(body.segments()) > 1


def test_raw_html_and_images_are_never_loaded(qtbot):
    body = MarkdownBody()
    qtbot.addWidget(body)
    requested: list[QUrl] = []
    body.set_text('<img src="http://example.com/x.png"> <b>bold?</b>\n\n'
                  "![secret](file:///etc/passwd) and ![remote](https://example.com/y.png)\n\n"
                  "<script>alert(1)</script>\n")
    for segment in body.segments():
        segment.resource_requested.connect(requested.append)
    body.resize(600, 400)
    body.show()
    body.grab()
    text = "".join(s.document().toPlainText() for s in body.segments())
    assert '<img src="http://example.com/x.png">' in text
    assert "<script>" in text
    assert "Image: secret" in text
    for segment in body.segments():
        block = segment.document().begin()
        while block.isValid():
            for fragment_range in block.textFormats():
                assert fragment_range.format.objectType() != QTextFormat.ObjectTypes.ImageObject
                assert not fragment_range.format.isImageFormat()
            block = block.next()
    assert requested == []
    assert segment.loadResource(0, QUrl("http://example.com/x.png")) is None


@pytest.mark.parametrize("answer, opened", [
    (QMessageBox.StandardButton.Cancel, []),
    (QMessageBox.StandardButton.Open, ["https://example.com/a?b=1"]),
])
def test_links_open_only_after_confirmation(qtbot, monkeypatch, answer, opened):
    shown: list[str] = []
    calls: list[str] = []

    def question(parent, title, text, *args):  # type: ignore[no-untyped-def]
        shown.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    previous = safe_text.set_url_opener(lambda url: calls.append(url.toString()) or True)
    try:
        segment = TextSegment()
        qtbot.addWidget(segment)
        assert not segment.openLinks() and not segment.openExternalLinks()
        segment.anchorClicked.emit(QUrl("https://example.com/a?b=1"))
    finally:
        safe_text.set_url_opener(previous)
    assert calls == opened
    assert "https://example.com/a?b=1" in shown[0]


def test_local_file_links_are_refused(qtbot, monkeypatch):
    calls: list[str] = []
    informed: list[str] = []
    monkeypatch.setattr(QMessageBox, "information",
                        staticmethod(lambda parent, title, text: informed.append(text)))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda *a: pytest.fail("asked to open a file: link")))
    previous = safe_text.set_url_opener(lambda url: calls.append(url.toString()) or True)
    try:
        assert not safe_text.confirm_and_open(None, QUrl("file:///etc/passwd"))
    finally:
        safe_text.set_url_opener(previous)
    assert calls == [] and "file:///etc/passwd" in informed[0]


def test_code_block_copy_button_copies_the_code(qtbot):
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.set_text("Try:\n\n```bash\necho hi\nls -l\n```\n")
    (block,) = body.code_blocks()
    assert block.language == "bash"
    QGuiApplication.clipboard().clear()
    block.copy_button.click()
    assert QGuiApplication.clipboard().text() == "echo hi\nls -l"


def test_unclosed_fence_at_end_and_closing_without_newline(qtbot):
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.begin_stream()
    for chunk in ("```", "js\n", "let a", " = 1;\n", "```"):
        body.feed(chunk)
    body.finish()
    (block,) = body.code_blocks()
    assert block.code() == "let a = 1;"


@pytest.mark.parametrize("line", ["word " * 6000, "x" * 30000], ids=["spaces", "unbroken"])
def test_one_long_streamed_line_is_laid_out_in_bounded_blocks(qtbot, line):
    """Qt re-lays out a whole text block per insert: the live tail never grows one block
    without bound, and the finished reply is the text as streamed."""
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.begin_stream()
    for index in range(0, len(line), 7):
        body.feed(line[index:index + 7])
    segment = body.segments()[0]
    document = segment.document()
    lengths = [document.findBlockByNumber(i).length() for i in range(document.blockCount())]
    assert max(lengths) <= markdown_view.TAIL_BLOCK_CHARS + 1
    assert document.toPlainText().replace("\u2029", "").replace("\n", "") == line
    body.finish()
    assert body.text() == line
    (segment,) = body.segments()
    assert segment.frozen  # too large to render as Markdown: kept as it streamed
    shown = segment.document().toPlainText().replace("\u2029", "").replace("\n", "")
    assert shown == line


def test_a_large_block_gets_its_own_plain_segment_and_markdown_goes_on_after_it(qtbot):
    """A paragraph over LARGE_BLOCK_CHARS is never rendered (Qt lays it out as one unit: 855
    ms for 200,000 characters); the blocks around it still are."""
    big = "**not bold** " * (markdown_view.LARGE_BLOCK_CHARS // 13 + 100)
    text = f"# Title\n\nSome *intro*.\n\n{big}\n\nAfter **bold**.\n"
    for streamed in (True, False):
        body = MarkdownBody()
        qtbot.addWidget(body)
        if streamed:
            body.begin_stream()
            for index in range(0, len(text), 50):
                body.feed(text[index:index + 50])
            body.finish()
        else:
            body.set_text(text)
        first, large, after = body.segments()
        assert isinstance(first, markdown_view.TextSegment) and not first.frozen
        assert first.document().toPlainText() == "Title\nSome intro."
        assert large.frozen and "**not bold**" in large.document().toPlainText()
        assert large.document().toPlainText().replace("\n", "").strip() == big.strip()
        assert after.document().toPlainText() == "After bold."
        assert body.text() == text


def test_a_very_long_code_block_becomes_a_box_that_scrolls_inside(qtbot):
    """Past CODE_MAX_LINES a code block shrinks to a box of CODE_BOX_LINES that follows the
    new lines (a 20,000-line block cost 20 ms per append when it grew without end); a stored
    reply opens it at its first line."""
    lines = markdown_view.CODE_MAX_LINES + 500
    text = "```python\n" + "".join(f"print({i})\n" for i in range(lines)) + "```\n"
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.resize(700, 500)
    body.show()
    body.begin_stream()
    for index in range(0, len(text), 40):
        body.feed(text[index:index + 40])
    (block,) = body.code_blocks()
    assert block.capped
    line = block.editor.fontMetrics().lineSpacing()
    assert block.editor.height() < (markdown_view.CODE_BOX_LINES + 3) * line
    bar = block.editor.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    body.finish()
    assert block.code() == "\n".join(f"print({i})" for i in range(lines))
    body.set_text(text)
    (stored,) = body.code_blocks()
    assert stored.capped and stored.editor.verticalScrollBar().value() == 0


def test_a_large_block_followed_by_a_fence_keeps_no_fence_line(qtbot):
    """The fence line streams into the tail before the block is committed; a block kept as
    plain text must not keep it."""
    big = "x" * (markdown_view.LARGE_BLOCK_CHARS + 1)
    for text in (f"{big}\n```py\ncode\n```\n", f"{big}\n\n\nafter\n"):
        for chunk in (7, 1000, len(text)):
            body = MarkdownBody()
            qtbot.addWidget(body)
            body.begin_stream()
            for index in range(0, len(text), chunk):
                body.feed(text[index:index + chunk])
            body.finish()
            large = body.segments()[0]
            assert isinstance(large, TextSegment) and large.frozen
            assert large.document().toPlainText().replace("\n", "") == big, (text[-20:], chunk)


def test_tables_render_alone_and_huge_ones_stay_plain(qtbot):
    """Qt lays a table out cell by cell (0.12 ms a cell here): a table is rendered in a
    segment of its own, and one over TABLE_MAX_CELLS stays as the text it streamed as."""
    small = "|a|b|\n|-|-|\n" + "|x|y|\n" * 10
    rows = markdown_view.TABLE_MAX_CELLS // 2 + 1
    huge = "|a|b|\n|-|-|\n" + "|x|y|\n" * rows
    assert markdown_view.table_cells(small.strip()) == 22
    assert markdown_view.table_cells("a | b\n--|--\n1 | 2") == 4
    assert markdown_view.table_cells("Title\n---\ntext") == 0
    body = MarkdownBody()
    qtbot.addWidget(body)
    body.set_text(f"Intro.\n\n{small}\nMiddle.\n\n{huge}\nEnd.\n")
    intro, table, middle, plain, end = body.segments()
    assert intro.document().toPlainText() == "Intro."
    assert isinstance(table, TextSegment) and not table.frozen and len(table.blocks) == 1
    assert [f for f in table.document().rootFrame().childFrames()]  # a real QTextTable
    assert middle.document().toPlainText() == "Middle."
    assert isinstance(plain, TextSegment) and plain.frozen
    assert plain.document().toPlainText().startswith("|a|b|\n|-|-|\n|x|y|")
    assert end.document().toPlainText() == "End."
