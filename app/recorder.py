"""Writing a reply to the store while it streams (runs in the bridge's worker thread).

The text is saved at least every ``interval`` seconds and at the end, so a crash of the app
or the engine keeps the partial reply; the final write adds the status and the stats."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from engine.events import ContextTrimmed, Done, Error, FinishReason, Rollback, fold_text
from engine.store import ConversationStore, StoreError
from engine.store.models import Status

log = logging.getLogger(__name__)

# An Error event is saved as "error"; every other finish as "complete".
_STATUS: dict[FinishReason, Status] = {FinishReason.CANCELLED: "cancelled"}


def stats_record(done: Done, trimmed: ContextTrimmed | None = None) -> dict[str, Any]:
    record = asdict(done.stats)
    record["finish_reason"] = done.finish_reason.value
    if trimmed is not None:
        record["dropped_messages"] = trimmed.dropped_messages
        record["dropped_tokens"] = trimmed.dropped_tokens
    return record


class ReplyRecorder:
    def __init__(self, store: ConversationStore, message_id: str, prefix: str = "",
                 interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.message_id = message_id
        self._prefix = prefix
        self._chunks: list[str] = []
        self._interval = interval
        self._clock = clock
        self._last_save = clock()
        self._trimmed: ContextTrimmed | None = None
        self.saves = 0
        self.error: str | None = None  # the last save's failure; None once a save succeeds
        self._unsaved: tuple[str, Status | None, dict[str, Any] | None, str | None] | None = None

    def content(self) -> str:
        return self._prefix + "".join(self._chunks)

    def text(self, chunk: str) -> None:
        self._chunks.append(chunk)
        now = self._clock()
        if now - self._last_save >= self._interval:
            self._last_save = now
            self._save(self.content())

    def rollback(self, event: Rollback) -> None:
        """Banned-phrase enforcement undid the last characters streamed."""
        fold_text(self._chunks, event)

    def trimmed(self, event: ContextTrimmed) -> None:
        self._trimmed = event

    def done(self, event: Done) -> None:
        content = self._prefix + event.text if event.text or not self._chunks else self.content()
        self._save(content, _STATUS.get(event.finish_reason, "complete"),
                   stats_record(event, self._trimmed))

    def failed(self, event: Error) -> None:
        partial = event.partial_text or "".join(self._chunks)
        self._save(self._prefix + partial, "error", error=event.message)

    @property
    def unsaved(self) -> bool:
        """A save failed (disk full, I/O error) and has not been retried successfully."""
        return self._unsaved is not None

    @property
    def pending_text(self) -> str | None:
        """The reply's text as it waits to be saved, or None when nothing waits."""
        return self._unsaved[0] if self._unsaved is not None else None

    def retry(self) -> bool:
        """Save what the last failed save could not (the reply as it ended); True once the
        reply is stored."""
        if self._unsaved is None:
            return True
        self._save(*self._unsaved)
        return self._unsaved is None

    def _save(self, content: str, status: Status | None = None,
              stats: dict[str, Any] | None = None, error: str | None = None) -> None:
        try:
            self._store.update_message_content(self.message_id, content, status, stats, error)
            self.saves += 1
            self.error = None
            self._unsaved = None
        except KeyError:  # the message was deleted: nothing left to save it to
            self._unsaved = None
        except StoreError as exc:
            self.error = str(exc)
            self._unsaved = (content, status, stats, error)
            log.error("could not save reply %s: %s", self.message_id, exc)
