"""Exceptions the engine raises in-process. Across the process boundary they travel as
``events.Error`` with the same ``ErrorKind``; callers branch on the kind, never on text."""

from __future__ import annotations

from engine.events import ErrorKind


class VersoError(Exception):
    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class ModelFileError(VersoError):
    """A model file that cannot be used. The message names the file and the reason."""

    kind = ErrorKind.MODEL_INVALID

    def __init__(self, path: str, reason: str, kind: ErrorKind | None = None) -> None:
        super().__init__(f"{path}: {reason}", kind)
        self.path = path
        self.reason = reason


class InsufficientMemoryError(ModelFileError):
    kind = ErrorKind.OUT_OF_MEMORY


class ContextOverflowError(VersoError):
    """``remedy`` is what the user can do here: dropping turns is only offered for a chat
    that refuses overflow, and is no help once every older turn is gone or in completion."""

    kind = ErrorKind.CONTEXT_OVERFLOW
    CHAT_REMEDY = ("Shorten it, start a new conversation, raise the context size, or let "
                   "Verso drop the oldest turns.")
    NOTHING_LEFT_TO_DROP = ("Every older turn is already dropped: shorten the last message or "
                            "the system prompt, or raise the context size.")
    DEFAULT_REMEDY = "Shorten it or raise the context size."

    def __init__(self, prompt_tokens: int, limit: int, remedy: str = DEFAULT_REMEDY) -> None:
        over = prompt_tokens - limit
        super().__init__(
            f"The prompt needs {prompt_tokens} tokens but only {limit} fit in the context "
            f"({over} tokens over). {remedy}"
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.over = over


class BadRequestError(VersoError):
    kind = ErrorKind.BAD_REQUEST


class Cancelled(Exception):
    """The caller cancelled the operation (its cancel check returned True, or ``cancel`` was
    called). The one cancellation exception of the engine, its tasks and the app; steps a
    task already finished stay stored. Not a ``VersoError``: handlers of failures must not
    treat a cancel as one."""


class UnsupportedError(VersoError):
    """The request needs a capability the backend does not have; the message names both."""

    kind = ErrorKind.UNSUPPORTED
