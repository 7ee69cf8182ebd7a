"""Cutting a document into chunks that fit a model's token budget.

The document becomes a flat run of pieces (sentences; lines of code; slices of a sentence
too long for the budget), each marked with how good a place it is to cut before it:
before a heading is best, then before a block, then before a sentence, then inside a
sentence; right after a heading is worst. Chunks are filled greedily; when the next piece
does not fit, the chunk ends at the best cut in its second half. Every chunk's text is
counted again as a whole, and shrunk if it is over the budget, since tokens of joined
text need not add up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from engine.documents.model import Block, BlockKind, Document, markdown_separator
from engine.documents.sentences import sentence_cuts
from engine.documents.token_split import split_to_budget

CountTokens = Callable[[str], int]
Progress = Callable[[float], None]
"""Called with the fraction of a document segmented so far, 0 to 1."""
# Counting the tokens of each sentence (and cutting long ones) takes about 85 % of the time
# of ``segment`` (measured on 1 MB of text without sentence breaks); fitting chunks the rest.
_PIECES_SHARE = 0.85

MIN_MAX_TOKENS = 16  # room for Markdown markers plus some text
MIN_FILL = 0.5  # a chunk ends at a better cut only if it is at least this full

_AFTER_HEADING, _IN_SENTENCE, _SENTENCE, _BLOCK, _HEADING = -1, 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class BlockSpan:
    """``document.blocks[block].text[start:end]``."""

    block: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str  # Markdown; starts with the overlap, if any
    token_count: int  # count_tokens(text)
    spans: tuple[BlockSpan, ...]  # the text this chunk adds, in order (overlap excluded)
    first_paragraph: int
    last_paragraph: int
    heading_path: tuple[str, ...]  # of the chunk's first block
    first_page: int | None = None
    last_page: int | None = None
    overlap_chars: int = 0  # text[:overlap_chars] repeats the end of the previous chunk

    @property
    def body(self) -> str:
        return self.text[self.overlap_chars:]


@dataclass(frozen=True, slots=True)
class _Piece:
    block: int
    start: int
    end: int
    cut: int  # how good a place it is to cut before this piece
    tokens: int


def _units(block: Block) -> list[tuple[int, int]]:
    """Sentence (or, in code, line) ranges of a block, covering all its text."""
    text = block.text
    if block.kind is BlockKind.CODE:
        cuts = [i + 1 for i, c in enumerate(text) if c == "\n"]
    elif block.kind is BlockKind.TABLE_ROW:
        cuts = []
    else:
        cuts = sentence_cuts(text)
    bounds = [0, *cuts, len(text)]
    units = []
    for start, end in pairwise(bounds):
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip()) if block.kind is not BlockKind.CODE else 0
            units.append((start + lead, end - (len(piece) - len(piece.rstrip()))))
    return units


def _joined_tokens(block: Block, start: int, end: int, alone: int, count: CountTokens) -> int:
    """Tokens a piece adds after the previous piece of its block: fences, quote marks and
    cell bars are paid once per block, not once per piece."""
    if start == 0 or block.kind not in (BlockKind.CODE, BlockKind.QUOTE, BlockKind.TABLE_ROW):
        return alone
    return count(block.text[start:end]) + 1


def _pieces(blocks: Sequence[Block], count: CountTokens, max_tokens: int,
            progress: Progress | None = None) -> list[_Piece]:
    pieces: list[_Piece] = []
    previous: Block | None = None
    total = sum(len(b.text) for b in blocks) or 1
    before = 0

    def at(offset: int) -> None:
        if progress is not None:
            progress(_PIECES_SHARE * min(1.0, (before + offset) / total))

    for index, block in enumerate(blocks):
        if index:
            before += len(blocks[index - 1].text)
        if block.kind is BlockKind.PAGE_BREAK:
            continue
        if previous is not None and previous.kind is BlockKind.HEADING:
            block_cut = _AFTER_HEADING
        else:
            block_cut = _HEADING if block.kind is BlockKind.HEADING else _BLOCK
        previous = block
        for n, (start, end) in enumerate(_units(block)):
            unit_cut = block_cut if n == 0 else _SENTENCE
            alone = count(block.markdown(start, end))  # as it would start a chunk
            if alone <= max_tokens:
                pieces.append(_Piece(index, start, end, unit_cut, _joined_tokens(
                    block, start, end, alone, count)))
                at(end)
                continue
            slices = split_to_budget(block, start, end, count, max_tokens, at)
            for k, (s, e, t) in enumerate(slices):
                pieces.append(_Piece(index, s, e, unit_cut if k == 0 else _IN_SENTENCE, t))
    return pieces


def _render(blocks: Sequence[Block], pieces: Sequence[_Piece]) -> str:
    parts: list[str] = []
    k = 0
    previous: Block | None = None
    while k < len(pieces):
        first = last = pieces[k]
        while k + 1 < len(pieces) and pieces[k + 1].block == first.block:
            k += 1
            last = pieces[k]
        block = blocks[first.block]
        if previous is not None:
            parts.append(markdown_separator(previous, block))
        parts.append(block.markdown(first.start, last.end))
        previous = block
        k += 1
    return "".join(parts)


def _estimate(pieces: Sequence[_Piece]) -> int:
    """Tokens of the pieces joined: their own counts plus one per block separator."""
    blocks = len({p.block for p in pieces})
    return sum(p.tokens for p in pieces) + max(0, blocks - 1)


class _Segmenter:
    def __init__(
        self, document: Document, count: CountTokens, max_tokens: int, overlap_tokens: int,
        progress: Progress | None = None,
    ) -> None:
        self.blocks = document.blocks
        self.count = count
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.progress = progress
        self.pieces = _pieces(self.blocks, count, max_tokens, progress)

    def run(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        start = 0
        previous: tuple[int, int] | None = None
        while start < len(self.pieces):
            overlap = self._overlap(*previous) if previous else []
            budget = self.max_tokens - (_estimate(overlap) + 1 if overlap else 0)
            end = self._fill(start, budget)
            if end < len(self.pieces):
                end = self._best_cut(start, end)
            chunk, end = self._fit(len(chunks), overlap, start, end)
            chunks.append(chunk)
            previous = (start, end)
            start = end
            if self.progress is not None:
                self.progress(_PIECES_SHARE + (1 - _PIECES_SHARE) * end / len(self.pieces))
        return chunks

    def _fill(self, start: int, budget: int) -> int:
        end, used, last_block = start, 0, -1
        while end < len(self.pieces):
            piece = self.pieces[end]
            cost = piece.tokens + (1 if last_block >= 0 and piece.block != last_block else 0)
            if used + cost > budget and end > start:
                break
            used += cost
            last_block = piece.block
            end += 1
        return end

    def _best_cut(self, start: int, end: int) -> int:
        """Where to end a chunk of pieces[start:end] given that pieces[end] does not fit."""
        fill = self.max_tokens * MIN_FILL
        totals = [0]
        for piece in self.pieces[start:end]:
            totals.append(totals[-1] + piece.tokens)
        for strength in (_HEADING, _BLOCK, _SENTENCE):
            for cut in range(end, start, -1):
                if self.pieces[cut].cut >= strength and totals[cut - start] >= fill:
                    return cut
        if self.pieces[end].cut == _AFTER_HEADING:  # do not leave a heading at the end
            for cut in range(end - 1, start, -1):
                if self.pieces[cut].cut >= _IN_SENTENCE:
                    return cut
        return end

    def _overlap(self, start: int, end: int) -> list[_Piece]:
        """The last whole sentences of pieces[start:end] within the overlap budget."""
        if not self.overlap_tokens:
            return []
        best: list[_Piece] = []
        for first in range(end - 1, start, -1):
            candidate = self.pieces[first:end]
            if _estimate(candidate) > self.overlap_tokens:
                break
            if self.pieces[first].cut >= _SENTENCE:
                best = list(candidate)
        return best

    def _fit(
        self, index: int, overlap: list[_Piece], start: int, end: int
    ) -> tuple[Chunk, int]:
        while True:
            body = self.pieces[start:end]
            text, overlap_chars = self._join(overlap, body)
            tokens = self.count(text)
            if tokens <= self.max_tokens:
                return self._chunk(index, text, tokens, body, overlap_chars), end
            if overlap:  # drop the first overlapping sentence
                overlap = overlap[1:]
                while overlap and overlap[0].cut < _SENTENCE:
                    overlap = overlap[1:]
            elif end - start > 1:
                end -= 1
            else:  # a single piece was counted alone and fit; joined text is identical
                raise AssertionError("a single piece exceeded the budget")

    def _join(self, overlap: list[_Piece], body: Sequence[_Piece]) -> tuple[str, int]:
        text = _render(self.blocks, body)
        if not overlap:
            return text, 0
        head = _render(self.blocks, overlap)
        last, first = overlap[-1], body[0]
        same_block = last.block == first.block and self.blocks[first.block].kind not in (
            BlockKind.CODE, BlockKind.QUOTE,
        )
        separator = (
            self.blocks[first.block].text[last.end:first.start] or " "
            if same_block else markdown_separator(self.blocks[last.block], self.blocks[first.block])
        )
        prefix = head + separator
        return prefix + text, len(prefix)

    def _chunk(
        self, index: int, text: str, tokens: int, body: Sequence[_Piece], overlap_chars: int
    ) -> Chunk:
        spans: list[BlockSpan] = []
        for piece in body:
            if spans and spans[-1].block == piece.block:
                spans[-1] = BlockSpan(piece.block, spans[-1].start, piece.end)
            else:
                spans.append(BlockSpan(piece.block, piece.start, piece.end))
        first = self.blocks[spans[0].block].location
        last = self.blocks[spans[-1].block].location
        return Chunk(
            index=index,
            text=text,
            token_count=tokens,
            spans=tuple(spans),
            first_paragraph=first.paragraph,
            last_paragraph=last.paragraph,
            heading_path=first.heading_path,
            first_page=first.page,
            last_page=last.page,
            overlap_chars=overlap_chars,
        )


def segment(
    document: Document,
    count_tokens: CountTokens,
    max_tokens: int,
    overlap_tokens: int = 0,
    progress: Progress | None = None,
) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` tokens (as ``count_tokens`` counts them, overlap
    included) that together cover the document in order. ``overlap_tokens`` repeats up to
    that many tokens of whole sentences from the end of the previous chunk."""
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError("overlap_tokens must be between 0 and half of max_tokens")
    return _Segmenter(document, count_tokens, max_tokens, overlap_tokens, progress).run()
