"""The reply recorder: what reaches the history database while a reply streams."""

from app.recorder import ReplyRecorder
from engine.events import Done, FinishReason, Rollback
from engine.store import ConversationStore


def _recorder(tmp_path, interval=0.0):
    store = ConversationStore(tmp_path / "h.sqlite3")
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "hi")
    reply = store.add_message(conversation.id, "assistant", "", status="streaming")
    return store, reply.id, ReplyRecorder(store, reply.id, interval=interval)


def test_partial_reply_is_saved_while_streaming(tmp_path):
    store, message_id, recorder = _recorder(tmp_path)
    recorder.text("Hello")
    recorder.text(" world")
    saved = store.get_message(message_id)
    assert saved.content == "Hello world" and saved.status == "streaming"


def test_rollback_removes_retracted_text_from_what_is_saved(tmp_path):
    store, message_id, recorder = _recorder(tmp_path)
    recorder.text("The capital is Par")
    rollback = Rollback(n_tokens=1, n_chars=3, phrase="Par")
    recorder.rollback(rollback)
    recorder.text("Rome")
    assert store.get_message(message_id).content == "The capital is Rome"
    recorder.done(Done(FinishReason.STOP, "The capital is Rome"))
    assert store.get_message(message_id).status == "complete"
