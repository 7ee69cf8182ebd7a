"""Characters in model text that would lay out or read differently are shown plainly."""

from __future__ import annotations

from app.display_text import MAX_COMBINING, CombiningLimiter, for_display


def test_line_breaking_controls_become_newlines_or_go():
    assert for_display("a\r\nb\u2028c\u2029d\re") == "a\nb\nc\nde"


def test_invisible_controls_are_shown_as_control_pictures():
    assert for_display("x\x00y\x1bz\x7f\t\n") == "x\u2400y\u241bz\u2421\t\n"


def test_bidirectional_overrides_are_shown_not_applied():
    assert for_display("\u202eexe.txt\u202c \u2067a\u2069") == \
        "[U+202E]exe.txt[U+202C] [U+2067]a[U+2069]"


def test_ordinary_text_is_unchanged():
    text = "Hello, wörld! 你好 مرحبا 👋 **bold** `code`\n"
    assert for_display(text) == text


def test_the_view_keeps_the_text_as_written_for_copy(qtbot):
    from app.widgets.markdown_view import MarkdownBody

    body = MarkdownBody()
    qtbot.addWidget(body)
    body.begin_stream()
    body.feed("a\u2029b\x00")
    body.finish()
    assert body.text() == "a\u2029b\x00"
    shown = "".join(s.document().toPlainText() for s in body.segments())
    assert "\u2400" in shown and "\u2029" not in shown


def test_combining_marks_past_the_limit_are_not_shown_whatever_the_chunks():
    """One letter with 60,000 marks took 49 ms to paint; real scripts keep theirs."""
    real = "naïve café e\u0301 \u0915\u094d\u0937 \u1ea1\u0302 "
    text = real + "Z" + "\u0301\u0336\u0317" * 20_000 + " end"
    for size in (1, 7, 30, len(text)):
        limiter = CombiningLimiter()
        shown = "".join(limiter.feed(text[i:i + size]) for i in range(0, len(text), size))
        assert shown == real + "Z" + ("\u0301\u0336\u0317" * 6)[:MAX_COMBINING] + " end", size
