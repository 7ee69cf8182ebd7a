"""Incremental detokenization with stop strings.

Token pieces are bytes; a UTF-8 character may span several tokens, and a stop string may
span several tokens. ``TextStream`` holds back only what it must: the bytes of an unfinished
character and the longest tail that could still start a stop string. Work per token is
bounded by the longest stop string, so it does not grow with the length of the reply.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stop if s)
        self._pending = ""
        self._emitted: list[str] = []
        self.emitted_chars = 0
        self.decoded_chars = 0  # characters decoded so far, emitted or pending
        self.stopped = False

    @property
    def text(self) -> str:
        return "".join(self._emitted)

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that became visible."""
        if self.stopped:
            return ""
        new = self._decoder.decode(piece)
        self.decoded_chars += len(new)
        if not self._stops:
            return self._emit(new)
        pending = self._pending + new
        cut = self._find_stop(pending)
        if cut is not None:
            self.stopped = True
            self._pending = ""
            return self._emit(pending[:cut])
        keep = self._stop_prefix_len(pending)
        self._pending = pending[len(pending) - keep:] if keep else ""
        return self._emit(pending[: len(pending) - keep])

    def flush(self) -> str:
        """End of generation: release whatever is held back."""
        if self.stopped:
            return ""
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return self._emit(tail)

    def _emit(self, text: str) -> str:
        if text:
            self._emitted.append(text)
            self.emitted_chars += len(text)
        return text

    def _find_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        return min(hits) if hits else None

    def _stop_prefix_len(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        best = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:k]):
                    best = k
                    break
        return best
