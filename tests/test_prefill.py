"""Prefill while typing with SmolLM2 through the engine process (``EngineClient.prefill``):
the reply after a prefilled draft is the reply a cold run gives, edited text is evaluated
again, and a real request does not wait for a long prefill."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from engine.events import Done, FinishReason, Progress, Token
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.worker import EngineClient
from engine.worker import protocol as p

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
QUESTION = ChatMessage("user", "What is the capital of France?")
MESSAGE = ("Can you tell me more about its history, its old bridges and the famous "
           "buildings along the river?")
SAMPLING = replace(GREEDY, max_tokens=24)


@pytest.fixture(scope="module")
def client(smol_path):
    c = EngineClient()
    list(c.load(LoadSettings(path=str(smol_path), n_ctx=2048, n_threads=2)))
    yield c
    c.close()


def _chat(client: EngineClient, messages, session: str) -> Done:
    events = list(client.chat(ChatRequest(tuple(messages), SAMPLING, session_id=session)))
    done = events[-1]
    assert isinstance(done, Done), done
    return done


def _prefill(client: EngineClient, messages, session: str) -> Done:
    events = list(client.prefill(ChatRequest(tuple(messages), SAMPLING, session_id=session)))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.STOP, events
    return done


def _conversation(client: EngineClient, session: str) -> list[ChatMessage]:
    first = _chat(client, [SYSTEM, QUESTION], session)
    return [SYSTEM, QUESTION, ChatMessage("assistant", first.text)]


def _typed(client: EngineClient, history, text: str, session: str, step: int = 9) -> int:
    """Prefill ``text`` as if typed ``step`` characters at a time; the tokens it left cached."""
    cached = 0
    for end in range(step, len(text) + step, step):
        done = _prefill(client, [*history, ChatMessage("user", text[:end])], session)
        cached = done.stats.reused_tokens + done.stats.evaluated_tokens
    return cached


def test_the_reply_after_a_prefilled_draft_is_the_cold_reply(client):
    history = _conversation(client, "cold")
    cold = _chat(client, [*history, ChatMessage("user", MESSAGE)], "cold-again")
    assert cold.stats.reused_tokens == 0

    warm_history = _conversation(client, "warm")
    assert warm_history == history
    cached = _typed(client, history, MESSAGE, "warm")
    warm = _chat(client, [*history, ChatMessage("user", MESSAGE)], "warm")
    assert warm.text == cold.text
    assert warm.stats.reused_tokens >= cached > cold.stats.prompt_tokens - 12
    assert warm.stats.evaluated_tokens <= 12  # the last word, the turn's end, the reply's start
    assert cold.stats.evaluated_tokens == cold.stats.prompt_tokens


def test_editing_prefilled_text_rolls_the_cache_back(client):
    history = _conversation(client, "edit")
    first_draft = "Tell me about the history of its cathedral and the old kings who were crowned"
    edited = "Tell me about the food of Paris"
    before = _typed(client, history, first_draft, "edit")
    after_edit = _prefill(client, [*history, ChatMessage("user", edited)], "edit")
    assert after_edit.stats.reused_tokens < before  # the changed words were dropped
    deleted = _prefill(client, [*history, ChatMessage("user", "Tell me")], "edit")
    assert deleted.stats.evaluated_tokens == 0
    warm = _chat(client, [*history, ChatMessage("user", edited)], "edit")
    cold = _chat(client, [*history, ChatMessage("user", edited)], "edit-cold")
    assert cold.stats.reused_tokens == 0 and warm.stats.reused_tokens > 0
    assert warm.text == cold.text


def test_sending_after_deleting_prefilled_text_matches_a_cold_run(client):
    history = _conversation(client, "delete")
    _typed(client, history, MESSAGE, "delete")
    shorter = MESSAGE[: MESSAGE.index(", its old")] + "?"
    warm = _chat(client, [*history, ChatMessage("user", shorter)], "delete")
    cold = _chat(client, [*history, ChatMessage("user", shorter)], "delete-cold")
    assert warm.stats.reused_tokens > len(history)
    assert warm.text == cold.text


LONG_DRAFT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 60)


def _long_prefill_in_background(client: EngineClient, session: str):  # type: ignore[no-untyped-def]
    events: list = []
    started = threading.Event()

    def run() -> None:
        request = ChatRequest((ChatMessage("user", LONG_DRAFT),), SAMPLING, session_id=session)
        for event in client.prefill(request):
            events.append(event)
            started.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(30), "the prefill did not start"
    return thread, events


def test_a_request_during_a_long_prefill_starts_at_once(client):
    short = [ChatMessage("user", "Say hello.")]
    _chat(client, short, "idle")  # warm, for the reference time below
    reference = _chat(client, short, "idle-2").stats.ttft_s
    thread, events = _long_prefill_in_background(client, "long")
    asked = time.perf_counter()
    first = None
    for event in client.chat(ChatRequest(tuple(short), SAMPLING, session_id="busy")):
        if isinstance(event, Token) and event.text and first is None:
            first = time.perf_counter() - asked
    thread.join(30)
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.CANCELLED
    total = done.stats.prompt_tokens
    assert total > 600 and done.stats.evaluated_tokens < total / 2
    assert first is not None and first < reference + 0.6, (first, reference)


def test_the_engine_process_stops_a_prefill_when_any_command_arrives(client):
    """Below the client: the engine process itself checks for waiting commands between
    (and inside) batches, so even a request sent without a cancel is not queued behind a
    prefill."""
    client.tokenize("warm up")
    commands, events = client._commands, client._events
    assert commands is not None and events is not None
    prefill = ChatRequest((ChatMessage("user", LONG_DRAFT),), SAMPLING, session_id="raw")
    with client._busy:
        commands.send((9001, p.Prefill(prefill)))
        replies = [events.recv()]
        assert replies[0][0] == 9001 and isinstance(replies[0][1], Progress)
        sent = time.perf_counter()
        commands.send((9002, p.Tokenize("hello")))
        answered = None
        while True:
            rid, reply = events.recv()
            replies.append((rid, reply))
            if rid == 9002 and answered is None:
                answered = time.perf_counter() - sent
            if rid == 9002 and isinstance(reply, p.Finished):
                break
    done = next(r for rid, r in replies if rid == 9001 and isinstance(r, Done))
    assert done.finish_reason is FinishReason.CANCELLED
    assert answered is not None and answered < 0.5


def test_prefill_does_nothing_while_another_request_runs(client):
    stream = client.chat(ChatRequest((ChatMessage("user", "Count to twenty."),), SAMPLING,
                                     session_id="gen"))
    next(stream)
    assert list(client.prefill(ChatRequest((ChatMessage("user", "Hello there"),), SAMPLING,
                                           session_id="gen"))) == []
    assert isinstance(list(stream)[-1], Done)


def test_prefill_stops_before_the_word_being_typed(client):
    """BPE merges at the edge of a half-typed word change as it grows: that word is left
    for later."""
    history = [SYSTEM, QUESTION]
    typing = _prefill(client, [*history, ChatMessage("user", "Tell me about the old bridg")],
                      "word-a")
    spaced = _prefill(client, [*history, ChatMessage("user", "Tell me about the old ")],
                      "word-b")
    assert typing.stats.prompt_tokens == spaced.stats.prompt_tokens
    before = len(client.chat_prompt(history, add_generation_prompt=False).tokens)
    assert typing.stats.prompt_tokens >= before + 5  # the user turn's opening and 4 words
