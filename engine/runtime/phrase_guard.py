"""Find banned phrases in generated text as it grows, token by token.

The guard keeps its own decoded text (UTF-8 safe) with the character offset where each token
ends, so an occurrence can be traced back to the token where it began. Each push searches
only the new text plus the longest phrase's length of what came before, so the cost per
token does not grow with the length of the output. Truncating restores the decoder state
saved after that token, so rolling back is cheap too.
"""

from __future__ import annotations

import bisect
import codecs
from collections.abc import Sequence
from dataclasses import dataclass


def fold(text: str) -> str:
    """Case-fold character by character: the result maps back to the original positions."""
    return "".join(ch.casefold() for ch in text)


@dataclass(frozen=True, slots=True)
class Hit:
    token_index: int  # the token where the occurrence begins (never a locked one)
    phrase: str


class PhraseGuard:
    def __init__(self, phrases: Sequence[str], any_case: bool = False) -> None:
        originals = [p for p in dict.fromkeys(phrases) if p]
        if not originals:
            raise ValueError("PhraseGuard needs at least one non-empty phrase")
        self.any_case = any_case
        self._phrases = [(fold(p) if any_case else p, p) for p in originals]
        self._longest = max(len(p) for p, _ in self._phrases)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._initial_state = self._decoder.getstate()
        self._chunks: list[str] = []
        self._ends: list[int] = []  # characters decoded after each token
        self._states: list[tuple[bytes, int]] = []
        self.locked = 0  # tokens before this index are fixed (forced) and never rolled back

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def phrases(self) -> tuple[str, ...]:
        """The phrases as matched (case-folded when ``any_case``)."""
        return tuple(p for p, _ in self._phrases)

    def push(self, piece: bytes) -> Hit | None:
        """Add one token's bytes; report the earliest banned occurrence that ends in them."""
        new = self._decoder.decode(piece)
        before = self._ends[-1] if self._ends else 0
        self._chunks.append(new)
        self._ends.append(before + len(new))
        self._states.append(self._decoder.getstate())
        if not new:
            return None
        tail = self._tail(self._longest - 1)
        window = tail + new
        if self.any_case:
            folded, origin = self._fold_with_origin(window)
            folded_tail = sum(len(ch.casefold()) for ch in tail)
        else:
            folded, origin, folded_tail = window, None, len(tail)
        best: tuple[int, str] | None = None
        for phrase, original in self._phrases:
            # Only occurrences that end in the new text: older ones were already handled.
            at = folded.find(phrase, max(0, folded_tail - len(phrase) + 1))
            if at < 0:
                continue
            start = (origin[at] if origin is not None else at) + before - len(tail)
            if best is None or start < best[0]:
                best = (start, original)
        if best is None:
            return None
        index = bisect.bisect_right(self._ends, best[0])
        # A character split over tokens began in the tokens that decoded to nothing.
        while index > self.locked and not self._chunks[index - 1]:
            index -= 1
        return Hit(max(index, self.locked), best[1])

    def truncate(self, n_tokens: int) -> None:
        del self._chunks[n_tokens:]
        del self._ends[n_tokens:]
        del self._states[n_tokens:]
        self._decoder.setstate(self._states[-1] if self._states else self._initial_state)

    def _tail(self, n_chars: int) -> str:
        """The last ``n_chars`` characters before the newest token."""
        if n_chars <= 0:
            return ""
        parts: list[str] = []
        have = 0
        i = len(self._chunks) - 2
        while i >= 0 and have < n_chars:
            parts.append(self._chunks[i])
            have += len(self._chunks[i])
            i -= 1
        return "".join(reversed(parts))[-n_chars:]

    @staticmethod
    def _fold_with_origin(text: str) -> tuple[str, list[int]]:
        parts: list[str] = []
        origin: list[int] = []
        for i, ch in enumerate(text):
            folded = ch.casefold()
            parts.append(folded)
            origin.extend([i] * len(folded))
        return "".join(parts), origin
