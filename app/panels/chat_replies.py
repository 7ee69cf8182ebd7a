"""Generating replies for the chat panel: send, stop, regenerate, edit and resend, continue,
retry; streaming into the message view; and the context meter before sending."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, QTimer, Signal

from app.bridge import EngineBridge, JobHandle, TokenCount
from app.conversation import (
    build_request,
    chat_messages,
    conversation_sampling,
    trimmed_notice,
    versions,
)
from app.panels.chat_prefill import DraftPrefill
from app.recorder import ReplyRecorder
from app.settings import AppSettings
from app.widgets.composer import Composer
from app.widgets.message_view import MessageView
from engine.events import ContextTrimmed, Done, Error, ErrorKind, Progress, Rollback, fold_text
from engine.model_ref import ModelRef
from engine.options import ChatMessage, ChatRequest, prompt_limit
from engine.store import Conversation, ConversationStore, Message, StoreError

COUNT_DELAY_MS = 350
SAVE_RETRY_MS = 5000  # a reply that could not be saved is retried this often


@dataclass
class ActiveReply:
    conversation_id: str
    message_id: str
    prefix: str = ""
    chunks: list[str] = field(default_factory=list)
    job: JobHandle | None = None
    recorder: ReplyRecorder | None = None

    def text(self) -> str:
        return self.prefix + "".join(self.chunks)


class ReplyController(QObject):
    busy_changed = Signal(bool)
    notice = Signal(str)
    store_error = Signal(str)  # the history could not be written: the window shows a dialog
    model_needed = Signal(object)  # ModelRef of the conversation's model
    reply_started = Signal(str, object)  # message id, its JobHandle
    reply_finished = Signal(str, object)  # message id, Done | Error
    speed = Signal(float, float)  # ttft_s, tok/s
    context_counted = Signal(int, int)  # tokens, n_ctx

    def __init__(self, store: ConversationStore, bridge: EngineBridge, view: MessageView,
                 composer: Composer, settings: Callable[[], AppSettings],
                 shown: Callable[[], str | None],
                 model_name: Callable[[str], str]) -> None:
        super().__init__(composer)
        self._store = store
        self._bridge = bridge
        self._unsaved: set[ReplyRecorder] = set()  # replies whose save is being retried
        self._view = view
        self._composer = composer
        self._settings = settings
        self._shown = shown
        self._model_name = model_name
        self.active: ActiveReply | None = None
        self._count_job: JobHandle | None = None
        self._count_sampling: dict = {}
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DELAY_MS)
        self._count_timer.timeout.connect(self.count_now)
        composer.edit.textChanged.connect(self._count_timer.start)
        self.prefill = DraftPrefill(bridge, self._draft_request, self)
        composer.edit.textChanged.connect(self.prefill.draft_changed)
        composer.stop_requested.connect(self.stop)
        bridge.model_loaded.connect(lambda _loaded: self.count_now())

    @property
    def busy(self) -> bool:
        return self.active is not None

    def shutdown(self) -> None:
        self._count_timer.stop()
        self._composer.edit.textChanged.disconnect(self._count_timer.start)
        self._composer.edit.textChanged.disconnect(self.prefill.draft_changed)
        self.prefill.cancel()

    # ------------------------------------------------------------ starting

    def _ready(self) -> bool:
        if self.active is not None:
            self.notice.emit("Wait for the current reply to finish, or stop it (Esc).")
            return False
        if self._bridge.loaded is None and self._bridge.loading is None:
            self.notice.emit("No model is loaded: choose one in the toolbar first.")
            return False
        return True

    def send(self, conversation: Conversation, text: str) -> Message | None:
        """Add ``text`` as the user's message at the end of the visible thread and reply.
        None when it could not be sent (the composer keeps the text)."""
        if not self._ready():
            return None
        try:
            user = self._store.add_message(conversation.id, "user", text)
        except StoreError as exc:
            self.store_failed(exc, "Your message was not sent, and it is still in the box.")
            return None
        self._view.append(user)
        self._start(conversation, user)
        return user

    def store_failed(self, exc: StoreError, what: str) -> None:
        """The history could not be written (disk full, I/O error, read-only): say so, in
        the status bar and a dialog, instead of a traceback."""
        message = f"{exc.message.split(' (')[0]} {what}"
        self.notice.emit(message)
        self.store_error.emit(message)

    def regenerate(self, conversation: Conversation, reply_id: str) -> None:
        """A new version of a reply; the old one stays reachable (1/2, 2/2)."""
        reply = self._store.get_message(reply_id)
        if reply is None or reply.parent_id is None or not self._ready():
            return
        parent = self._store.get_message(reply.parent_id)
        if parent is None:
            return
        self._view.remove_from(reply_id)
        self._start(conversation, parent)

    def edit(self, conversation: Conversation, user_id: str, text: str) -> None:
        """Send an edited user message as a sibling of the original (kept as a version)."""
        original = self._store.get_message(user_id)
        if original is None or not self._ready():
            return
        try:
            user = self._store.add_message(conversation.id, "user", text,
                                           parent_id=original.parent_id)
        except StoreError as exc:
            self.store_failed(exc, "The edited message was not sent.")
            return
        self._view.remove_from(user_id)
        self._view.append(user)
        self._start(conversation, user)

    def continue_reply(self, conversation: Conversation, reply_id: str) -> None:
        reply = self._store.get_message(reply_id)
        if reply is None or not self._ready():
            return
        thread = self._store.thread(conversation.id)
        ids = [m.id for m in thread]
        if reply_id not in ids:
            return
        upto = thread[: ids.index(reply_id) + 1]
        request = build_request(self._settings(), conversation, upto, continue_last=True)
        try:
            self._store.update_message_content(reply_id, reply.content, "streaming")
        except StoreError as exc:
            self.store_failed(exc, "The reply was not continued.")
            return
        self._launch(conversation, reply_id, request, prefix=reply.content)

    def _start(self, conversation: Conversation, parent: Message) -> None:
        thread = self._store.thread(conversation.id)
        ids = [m.id for m in thread]
        if parent.id in ids:
            thread = thread[: ids.index(parent.id) + 1]
        request = build_request(self._settings(), conversation, thread)
        try:
            reply = self._store.add_message(conversation.id, "assistant", "",
                                            parent_id=parent.id, status="streaming",
                                            model=self._model_for(conversation))
        except StoreError as exc:
            self.store_failed(exc, "No reply was started.")
            return
        self._view.append(reply)
        self._launch(conversation, reply.id, request)

    def _model_for(self, conversation: Conversation) -> str | None:
        """The name of the model that will write the reply."""
        wanted = conversation.model
        if wanted and not wanted.same_model(self._current_model()):
            return self._model_name(wanted.location) if wanted.is_local else wanted.label
        if self._bridge.loading is not None:
            return self._model_name(self._bridge.loading.path)
        return self._bridge.loaded.name if self._bridge.loaded else None

    def _current_model(self) -> ModelRef | None:
        """The model being loaded, else the loaded one."""
        if self._bridge.loading is not None:
            return ModelRef.local(self._bridge.loading.path)
        return self._bridge.loaded.ref if self._bridge.loaded else None

    def _launch(self, conversation: Conversation, message_id: str, request,
                prefix: str = "") -> None:
        self.prefill.cancel()
        wanted = conversation.model
        if wanted and not wanted.same_model(self._current_model()):
            self.model_needed.emit(wanted)
        self.active = ActiveReply(conversation.id, message_id, prefix)
        bubble = self._view.bubble(message_id)
        if bubble is not None:
            bubble.start_stream(prefix)
        self._view.scroll_to_bottom()
        self._composer.set_busy(True)
        self.busy_changed.emit(True)
        recorder = ReplyRecorder(self._store, message_id, prefix)
        job = self._bridge.chat(request, recorder)
        self.active.job = job
        self.active.recorder = recorder
        active = self.active
        job.text.connect(lambda text: self._on_text(active, text))
        job.yielded.connect(lambda event: self._on_event(active, event))
        job.finished.connect(lambda outcome: self._on_end(active, outcome))
        self.reply_started.emit(message_id, job)

    def stop(self) -> None:
        if self.active is not None and self.active.job is not None:
            self.active.job.cancel()

    # ------------------------------------------------------------ streaming

    def attach(self, conversation_id: str) -> None:
        """The view now shows ``conversation_id``: resume live display of its reply."""
        active = self.active
        if active is None or active.conversation_id != conversation_id:
            return
        bubble = self._view.bubble(active.message_id)
        if bubble is not None:
            bubble.start_stream(active.text())

    def _on_text(self, active: ActiveReply, text: str) -> None:
        if self.active is not active:
            return
        active.chunks.append(text)
        bubble = self._visible_for(active)
        if bubble is not None:
            bubble.append(text)

    def _on_event(self, active: ActiveReply, event: object) -> None:
        if self.active is not active:
            return
        bubble = self._visible_for(active)
        if isinstance(event, Rollback):
            fold_text(active.chunks, event)
            if bubble is not None:  # rare: re-render the streamed text without the phrase
                bubble.start_stream(active.text())
        elif isinstance(event, ContextTrimmed):
            text = trimmed_notice(event.dropped_messages, event.dropped_tokens)
            self.notice.emit(text)
            if bubble is not None:
                bubble.show_notice(text)
        elif isinstance(event, Progress) and bubble is not None and event.total:
            bubble.show_notice(f"Reading the prompt… {event.done * 100 // event.total} %")

    def _on_end(self, active: ActiveReply, event: object) -> None:
        if self.active is not active:
            return
        self.active = None
        job_id = active.message_id
        if not isinstance(event, Done | Error):  # a chat job always ends with one of them
            event = Error(ErrorKind.INTERNAL, "The reply ended without a result.")
        message = self._store.get_message(job_id)
        recorder = active.recorder
        if message is not None and recorder is not None and recorder.unsaved:
            # The reply streamed but could not be stored: show what streamed, not the stored
            # row, and store it as soon as the disk allows.
            message = replace(message, content=active.text(),
                              status="error" if isinstance(event, Error) else "complete")
            self._keep_saving(recorder)
        bubble = self._visible_for(active)
        if message is not None and bubble is not None:
            all_versions = versions(self._store.messages(active.conversation_id))
            bubble.finish_stream(message, all_versions.get(job_id))
            self.refresh_versions(all_versions)
        self._composer.set_busy(False)
        self.busy_changed.emit(False)
        if isinstance(event, Done):
            self.speed.emit(event.stats.ttft_s, event.stats.generation_tps)
        elif event.kind == ErrorKind.ENGINE_CRASHED:
            self.notice.emit("The engine stopped during the reply. Its partial text is kept; "
                             "press Retry, or send a message (the engine restarts).")
        else:
            self.notice.emit(event.message)
        self.reply_finished.emit(job_id, event)
        self.count_now()
        self.prefill.draft_changed()  # what was typed while the reply streamed

    def _keep_saving(self, recorder: ReplyRecorder) -> None:
        """Retry a reply's failed save every few seconds until it is stored (or the app
        closes; then the status bar says at the next start that the text was cut short)."""
        self.store_failed(StoreError(recorder.error or "The reply could not be saved."),
                           "The reply stays on screen; Verso saves it as soon as there is "
                           "space again.")
        timer = QTimer(self)
        timer.setInterval(SAVE_RETRY_MS)

        def attempt() -> None:
            if recorder.retry():
                timer.stop()
                timer.deleteLater()
                self._unsaved.discard(recorder)
                self.notice.emit("The reply that could not be saved is now saved.")

        timer.timeout.connect(attempt)
        self._unsaved.add(recorder)
        timer.start()

    def unsaved_texts(self) -> list[str]:
        """Each reply still waiting for disk space to be saved (what closing would lose)."""
        return [text for r in self._unsaved if (text := r.pending_text) is not None]

    def retry_unsaved(self) -> None:
        for recorder in list(self._unsaved):
            if recorder.retry():
                self._unsaved.discard(recorder)

    def _visible_for(self, active: ActiveReply):
        if self._shown() != active.conversation_id:
            return None
        return self._view.bubble(active.message_id)

    def refresh_versions(self, all_versions) -> None:
        for bubble in self._view.bubbles():
            if not bubble.streaming and bubble.message_id in all_versions:
                bubble.update_message(bubble.message, all_versions[bubble.message_id],
                                      render=False)

    # ------------------------------------------------------------- prefill

    def _draft_request(self) -> ChatRequest | None:
        """The request sending the draft now would make, for ``DraftPrefill``; None while a
        reply streams, with no model, in a chat not created yet or one that uses another
        model, or with an empty draft."""
        loaded = self._bridge.loaded
        conversation_id = self._shown()
        draft = self._composer.text()
        if self.active is not None or loaded is None or conversation_id is None or \
                not draft.strip() or self._bridge.loading is not None:
            return None
        try:
            conversation = self._store.get_conversation(conversation_id)
            if conversation is None or conversation.deleted or (
                    conversation.model and not conversation.model.same_model(loaded.ref)):
                return None
            request = build_request(self._settings(), conversation,
                                    self._store.thread(conversation.id))
        except StoreError:
            return None
        return replace(request, messages=(*request.messages, ChatMessage("user", draft)))

    # ------------------------------------------------------------- context meter

    def count_now(self) -> None:
        """Count the prompt the draft would make (in the worker; answered asynchronously)."""
        self._count_timer.stop()
        loaded = self._bridge.loaded
        if loaded is None:
            self._composer.set_meter(None, None)
            return
        conversation_id = self._shown()
        conversation = self._store.get_conversation(conversation_id) if conversation_id \
            else None
        self._count_sampling = conversation_sampling(conversation)
        messages: list[ChatMessage] = []
        if conversation is not None:
            messages = chat_messages(conversation, self._store.thread(conversation.id))
        draft = self._composer.text()
        if draft.strip():
            messages.append(ChatMessage("user", draft))
        if not messages:
            self._composer.set_meter(0, loaded.n_ctx)
            self.context_counted.emit(0, loaded.n_ctx)
            return
        if self._count_job is not None:
            self._count_job.cancel()  # still queued behind a reply: only the latest counts
        job = self._count_job = self._bridge.count_chat_tokens(messages)
        job.yielded.connect(lambda event: self._on_counted(job, event))

    def _on_counted(self, job: JobHandle, event: object) -> None:
        loaded = self._bridge.loaded
        if job is not self._count_job or not isinstance(event, TokenCount):
            return
        self._count_job = None
        if loaded is None:
            return
        tokens = event.tokens
        if tokens is None:
            self._composer.set_meter(None, loaded.n_ctx)
            return
        settings = self._settings()
        max_tokens = settings.sampling_params(self._count_sampling).max_tokens
        limit = prompt_limit(loaded.n_ctx, max_tokens)
        self._composer.set_meter(tokens, loaded.n_ctx, limit, settings.context_policy)
        self.context_counted.emit(tokens, loaded.n_ctx)
