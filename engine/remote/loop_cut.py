"""The degeneration guard for text streamed from a server.

The local engine undoes a loop and steers its own sampler away from it (``LoopPenalty``); a
server's sampler cannot be steered, so here the first loop ends the output: the stream is
closed (the server stops generating when the connection goes), the repeat is taken back
(``Rollback``/``SeqRollback``) and the output finishes as ``FinishReason.REPEATING``, which
the tasks and panels already report as "stopped for repeating". Detection is the local
engine's own (``LoopDetector``), fed each streamed piece's UTF-8 bytes."""

from __future__ import annotations

from dataclasses import dataclass

from engine.loop_guard import LoopDetector


@dataclass(frozen=True, slots=True)
class Cut:
    """Drop the last ``n_pieces`` pieces (``n_chars`` characters) streamed: they repeat
    ``phrase``."""

    n_pieces: int
    n_chars: int
    phrase: str


class LoopCut:
    def __init__(self, locked: list[str] | None = None) -> None:
        """``locked``: pieces already in the output that are never taken back (echoed
        forced tokens)."""
        self._detector = LoopDetector()
        self._pieces: list[str] = []
        for piece in locked or ():
            self._detector.push(piece.encode("utf-8"))
            self._pieces.append(piece)
        self._detector.locked = len(self._pieces)

    def push(self, piece: str) -> Cut | None:
        """Add one streamed piece; a ``Cut`` when a loop completes in it."""
        self._pieces.append(piece)
        hit = self._detector.push(piece.encode("utf-8"))
        if hit is None:
            return None
        dropped = self._pieces[hit.token_index:]
        return Cut(len(dropped), sum(len(p) for p in dropped), hit.text)
