"""The degeneration guard: notice a loop in generated text while it is decoded, and steer the
model away from re-entering it.

``LoopDetector`` reads an output token by token (its text decoded incrementally, UTF-8 safe)
and reports a ``LoopHit`` when

- a sentence (or a line) of at least ``min_sentence_words`` words repeats one written earlier
  in the same output, compared by its words case-folded (punctuation, numbering and spacing
  ignored); or
- the last ``ngram_words`` words repeat a run of words written earlier in the output (the
  loops without a sentence end: "in Berlin, Berlin, in der ... in Berlin, Berlin, ...").

Inside a fenced code block (```) sentences are not compared and a repeated run must be
``code_ngram_words`` long: code repeats short lines and phrases legitimately. The defaults
were tuned on texts people wrote (license texts, package READMEs and the Python reference
shipped with the interpreter; see the README's "Degeneration guard"): they repeat phrases,
but rarely a whole sentence or twelve words in a row within the length of one reply.

The hit says where the repeat began (the token where its first word starts), so the caller
can roll back to just before the copy. Each push handles only the new characters; work per
token does not grow with the output. ``truncate`` replays the kept tokens (rollbacks are
rare, a few per output at most).

``LoopPenalty`` remembers the token sequences that were rolled back and, while decoding goes
on, lowers the logit of the token that would continue one of them, more the longer the
output's tail already matches it (a KMP automaton per loop): the model may still use the
same words, but not the same sequence again.
"""

from __future__ import annotations

import bisect
import codecs
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_SENTENCE_WORDS = 10
TANDEM_WORDS = 8
CODE_TANDEM_WORDS = 32
_TERMINATORS = frozenset(".!?…。！？")
_CLOSERS = frozenset("\"')]}”’»")  # may follow a terminator before the space
_SEEN_PER_SEED = 8  # earlier occurrences of a seed that are followed


@dataclass(frozen=True, slots=True)
class LoopHit:
    token_index: int  # the token where the repeat begins (never a locked one)
    text: str  # the repeated words (shortened)
    kind: str  # "sentence" | "tandem"


@dataclass(frozen=True, slots=True)
class Limits:
    """When a repeat counts as a loop, in words (a symbol counts as a word)."""

    sentence: int = MIN_SENTENCE_WORDS  # a sentence of this many words (letters, digits)
    # repeats one written earlier in the output
    tandem: int = TANDEM_WORDS  # the text written since some point, at least this long,
    # is written again straight after it (a symbol run counts as a word)
    code: int = CODE_TANDEM_WORDS  # the same in a fenced code block


@dataclass(slots=True)
class _Repeat:
    """The newest words copy the words from ``original`` on, ``length`` words so far."""

    original: int
    copy: int
    length: int


class _Scan:
    """The character-level state: words, the sentence being read, repeats being followed."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.seed = min(limits.tandem, limits.code)
        self.offset = 0  # characters read
        self.word: list[str] = []  # a word being read: letters and digits, or symbols
        self.word_start = 0
        self.word_alnum = True
        self.words: list[str] = []  # case-folded words and runs of symbols
        self.starts: list[int] = []  # character offset of each word
        self.sentence: list[str] = []  # the current sentence's words (letters and digits)
        self.sentence_start = -1  # index into words of its first word or symbol
        self.sentences: set[tuple[str, ...]] = set()
        self.seeds: dict[tuple[str, ...], list[int]] = {}  # n-gram -> where it began
        self.repeats: list[_Repeat] = []
        self.pending_end = False  # a terminator was read: a space ends the sentence
        self.newline = False  # a line ended: the next line's first character decides
        self.line: list[str] = []  # the current line's first characters (fence detection)
        self.in_code = False

    def feed(self, text: str) -> tuple[int, str] | None:
        """Read ``text``; the first loop found as (first word index of the copy, kind)."""
        hit = None
        for ch in text:
            found = self._char(ch)
            self.offset += 1
            if found is not None and hit is None:
                hit = found
        return hit

    def _char(self, ch: str) -> tuple[int, str] | None:
        hit = None
        if self.newline and not ch.isspace():
            # A line break ends a sentence unless the next line goes on in lower case
            # (text wrapped at a fixed width).
            self.newline = False
            if not ch.islower():
                hit = self._end_sentence()
        alnum = ch.isalnum()
        if self.word and (ch.isspace() or alnum != self.word_alnum):
            hit = self._add_word("".join(self.word), self.word_start, self.word_alnum)
            self.word = []
        if not ch.isspace():
            if not self.word:
                self.word_start, self.word_alnum = self.offset, alnum
            self.word.append(ch.casefold())
        if alnum:
            self.pending_end = False
        else:
            if ch in _TERMINATORS:
                self.pending_end = True
            elif ch == "\n":
                if self.pending_end or self.newline:  # after a terminator, or a blank line
                    hit = self._end_sentence() or hit
                else:
                    self.newline = True
                self._end_line()
            elif ch.isspace():
                if self.pending_end:
                    hit = self._end_sentence() or hit
            elif ch not in _CLOSERS:
                self.pending_end = False
        if ch != "\n" and len(self.line) < 8:
            self.line.append(ch)
        return hit

    def _end_line(self) -> None:
        if "".join(self.line).lstrip().startswith(("```", "~~~")):
            self.in_code = not self.in_code
            self.repeats = []
        self.line = []

    def _add_word(self, word: str, start: int, alnum: bool) -> tuple[int, str] | None:
        n = len(self.words)
        self.words.append(word)
        self.starts.append(start)
        if self.sentence_start < 0:
            self.sentence_start = n
        if alnum:
            self.sentence.append(word)
        hit = None
        kept = []
        for r in self.repeats:
            if self.words[r.original + r.length] != word:
                continue
            r.length += 1
            kept.append(r)
            if hit is None:
                hit = self._loop(r)
        self.repeats = kept
        n += 1
        if n >= self.seed:
            key = tuple(self.words[n - self.seed:])
            seen = self.seeds.setdefault(key, [])
            following = {r.original - r.copy for r in self.repeats}
            copy = n - self.seed
            for original in seen[-_SEEN_PER_SEED:]:
                if original - copy not in following:
                    r = _Repeat(original, copy, self.seed)
                    self.repeats.append(r)
                    if hit is None:
                        hit = self._loop(r)
            seen.append(copy)
        return hit

    def _loop(self, r: _Repeat) -> tuple[int, str] | None:
        limit = self.limits.code if self.in_code else self.limits.tandem
        if r.length >= max(limit, r.copy - r.original):
            return r.copy, "tandem"
        return None

    def _end_sentence(self) -> tuple[int, str] | None:
        self.pending_end = self.newline = False
        words, self.sentence = tuple(self.sentence), []
        first, self.sentence_start = self.sentence_start, -1
        if self.in_code or len(words) < self.limits.sentence:
            return None
        if words in self.sentences:
            return first, "sentence"
        self.sentences.add(words)
        return None


class LoopDetector:
    def __init__(self, limits: Limits = Limits()) -> None:
        self._limits = limits
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._scan = _Scan(self._limits)
        self._text: list[str] = []
        self._pieces: list[bytes] = []
        self._ends: list[int] = []  # characters decoded after each token
        self.locked = 0  # tokens before this index are fixed (forced) and never rolled back

    def __len__(self) -> int:
        return len(self._pieces)

    def push(self, piece: bytes) -> LoopHit | None:
        """Add one token's bytes; report a repeat that completes in them."""
        new = self._decoder.decode(piece)
        self._pieces.append(piece)
        self._text.append(new)
        found = self._scan.feed(new) if new else None
        self._ends.append(self._scan.offset)
        if found is None:
            return None
        copy, kind = found
        start = self._scan.starts[copy]
        index = bisect.bisect_right(self._ends, start)
        # A character split over tokens began in the tokens that decoded to nothing.
        while index > self.locked and not self._text[index - 1]:
            index -= 1
        shown = " ".join("".join(self._text)[start:].split())
        return LoopHit(max(index, self.locked), shown[:80] + ("…" if len(shown) > 80 else ""),
                       kind)

    def truncate(self, n_tokens: int) -> None:
        """Forget every token from ``n_tokens`` on (replays the ones kept)."""
        kept = self._pieces[:n_tokens]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._scan = _Scan(self._limits)
        self._pieces, self._text, self._ends = [], [], []
        for piece in kept:
            new = self._decoder.decode(piece)
            self._pieces.append(piece)
            self._text.append(new)
            self._scan.feed(new)
            self._ends.append(self._scan.offset)


class LoopPenalty:
    """Lower the logit of the token that would continue a rolled-back loop: by ``strength``
    times the number of the loop's tokens the output already ends with."""

    def __init__(self, strength: float = 1.5, longest: int = 64) -> None:
        self.strength = strength
        self.longest = longest
        self._loops: list[tuple[list[int], list[int]]] = []  # tokens, KMP failure table
        self._states: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._loops)

    def add_loop(self, tokens: Sequence[int]) -> None:
        """Target ``tokens`` (a loop that was rolled back), and the same without its first
        token (the model may start the same words with another token, "The" for " The").
        Call ``reset`` with the output kept next."""
        for loop in (list(tokens[: self.longest]), list(tokens[1: self.longest])):
            if len(loop) > 1:
                self._loops.append((loop, _failure(loop)))
                self._states.append(0)

    def reset(self, history: Sequence[int]) -> None:
        """Recompute the match states for an output that now holds ``history``."""
        self._states = [0] * len(self._loops)
        for token in history:
            self.accept(token)

    def accept(self, token: int) -> None:
        for i, (loop, fail) in enumerate(self._loops):
            m = self._states[i]
            if m == len(loop):
                m = fail[m - 1]
            while m and loop[m] != token:
                m = fail[m - 1]
            if loop[m] == token:
                m += 1
            self._states[i] = m

    def apply(self, logits: np.ndarray) -> None:
        """Penalise, in place, each loop's next token after the matched part."""
        for (loop, fail), m in zip(self._loops, self._states, strict=True):
            if m == len(loop):
                m = fail[m - 1]
            if m:
                logits[loop[m]] -= self.strength * m


def _failure(seq: Sequence[int]) -> list[int]:
    """KMP failure table: for each prefix, the longest proper prefix that is also a suffix."""
    fail = [0] * len(seq)
    k = 0
    for i in range(1, len(seq)):
        while k and seq[i] != seq[k]:
            k = fail[k - 1]
        if seq[i] == seq[k]:
            k += 1
        fail[i] = k
    return fail
