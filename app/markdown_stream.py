"""Splitting streamed Markdown into blocks, without Qt.

A reply arrives a few characters at a time. ``BlockSplitter.feed`` turns each chunk into
operations for a view: append the visible text as it is (constant cost per token), and, at
block boundaries only (a blank line, a code fence opening or closing), commit a finished
Markdown block to be rendered. Code fences are never rendered as Markdown: their text is
shown verbatim in a code block.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_IMAGE = re.compile(r"(?<!\\)!\[")


@dataclass(frozen=True, slots=True)
class Append:
    """Visible text to add to the live area (the text tail, or the open code block)."""

    text: str


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """A finished Markdown block; the live text tail is cleared (the block replaces it)."""

    markdown: str


@dataclass(frozen=True, slots=True)
class OpenCode:
    language: str


@dataclass(frozen=True, slots=True)
class CloseCode:
    """The code block is complete; its last displayed line (the closing fence) is removed."""


Op = Append | CommitBlock | OpenCode | CloseCode


class BlockSplitter:
    def __init__(self) -> None:
        self._line: list[str] = []  # pieces of the incomplete last line
        self._block: list[str] = []  # lines of the Markdown block being written
        self._fence: str | None = None  # the opening fence while inside a code block

    @property
    def in_code(self) -> bool:
        return self._fence is not None

    def pending_text(self) -> str:
        """The text after the last committed block (what the live tail shows)."""
        if self._fence is not None:
            return ""
        return "".join(line + "\n" for line in self._block) + "".join(self._line)

    def feed(self, text: str) -> list[Op]:
        ops: list[Op] = []
        for piece in line_pieces(text):
            _append(ops, piece)
            if not piece.endswith("\n"):
                self._line.append(piece)
                break
            line = "".join(self._line) + piece[:-1]
            self._line = []
            self._complete(line, ops)
        return ops

    def finish(self) -> list[Op]:
        """End of the stream: commit whatever is left."""
        ops: list[Op] = []
        last = "".join(self._line)
        if self._fence is None:
            lines = [*self._block, last] if last else self._block
            if any(line.strip() for line in lines):
                ops.append(CommitBlock(safe_markdown("\n".join(lines))))
        elif self._closes_fence(last):
            self._fence = None
            ops.append(CloseCode())
        self._block, self._line = [], []
        return ops

    def _closes_fence(self, line: str) -> bool:
        stripped = line.strip()
        return (self._fence is not None and len(stripped) >= len(self._fence)
                and set(stripped) == {self._fence[0]})

    def _complete(self, line: str, ops: list[Op]) -> None:
        if self._fence is not None:
            if self._closes_fence(line):
                self._fence = None
                ops.append(CloseCode())
            return
        fence = _FENCE.match(line)
        if fence:
            self._commit(ops)
            self._fence = fence.group(1)
            ops.append(OpenCode(fence.group(2)))
        elif not line.strip():
            self._commit(ops)
        else:
            self._block.append(line)

    def _commit(self, ops: list[Op]) -> None:
        if self._block:
            ops.append(CommitBlock(safe_markdown("\n".join(self._block))))
            self._block = []
        else:
            ops.append(CommitBlock(""))


def line_pieces(text: str) -> Iterator[str]:
    """``text`` cut after each newline (the last piece ends without one if ``text`` does)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        piece = text[start:] if end < 0 else text[start:end + 1]
        start += len(piece)
        yield piece


def _append(ops: list[Op], text: str) -> None:
    if ops and isinstance(ops[-1], Append):
        ops[-1] = Append(ops[-1].text + text)
    else:
        ops.append(Append(text))


def safe_markdown(markdown: str) -> str:
    """Images become links (``![a](u)`` -> ``[Image: a](u)``) so nothing is ever fetched to
    display them; text inside code spans is left alone. Raw HTML is disabled at render time
    (``MarkdownNoHTML``)."""
    out: list[str] = []
    last = 0
    for span in _CODE_SPAN.finditer(markdown):
        out.append(_IMAGE.sub("[Image: ", markdown[last:span.start()]))
        out.append(span.group(0))
        last = span.end()
    out.append(_IMAGE.sub("[Image: ", markdown[last:]))
    return "".join(out)
