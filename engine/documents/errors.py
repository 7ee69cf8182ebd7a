from __future__ import annotations

from enum import StrEnum

from engine.errors import VersoError
from engine.events import ErrorKind


class DocumentProblem(StrEnum):
    """Why a document could not be read; callers branch on this, never on the message."""

    NOT_FOUND = "not_found"
    UNREADABLE = "unreadable"  # permissions or an I/O error
    UNSUPPORTED = "unsupported"  # a file type Verso does not read
    ENCRYPTED = "encrypted"
    NO_TEXT_LAYER = "no_text_layer"  # a scanned PDF
    CORRUPT = "corrupt"
    NOT_TEXT = "not_text"  # binary data in a text file
    TOO_LARGE = "too_large"  # over a byte, page or character limit
    ARCHIVE_BOMB = "archive_bomb"  # a .docx that would decompress to far more than it is
    EMPTY = "empty"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"  # the caller asked to stop


class DocumentError(VersoError):
    """A document that cannot be used. The message names the document and says why in
    words a user can act on; ``problem`` says the same for code."""

    kind = ErrorKind.DOCUMENT_INVALID

    def __init__(self, name: str, problem: DocumentProblem, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.problem = problem
        self.reason = reason

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, DocumentProblem, str]]:
        return (type(self), (self.name, self.problem, self.reason))
