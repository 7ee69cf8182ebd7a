"""The degeneration guard on a server's stream: a loop ends the output (taken back, finish
REPEATING, the stream closed early); text without a loop passes unchanged; the guard off
lets the loop through. A generic OpenAI-compatible fake on loopback streams the text; the
real-server case is in tests/test_remote_openai_server.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from engine.events import (
    Done,
    Error,
    ErrorKind,
    FinishReason,
    Rollback,
    SeqDone,
    SeqRollback,
    SeqToken,
    Token,
    fold_rollbacks,
)
from engine.model_ref import ModelRef
from engine.options import GREEDY, BatchItem, BatchRequest, CompletionRequest, LoadSettings
from engine.remote import Endpoint, RemoteEngine
from engine.remote.loop_cut import LoopCut
from tests.remote_servers import FakeServer

SENTENCE = "The keeper climbed the stairs every evening to light the lamp above the harbour. "
VARIED = ("The keeper climbed the stairs every evening. Ships passed the cliff at night. "
          "In winter the lamp burned longer, and the clockwork was wound twice. ")


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + ([words[-1]] if words[-1] else [])


def _routes(text_for: dict[str, str]) -> dict[tuple[str, str], Any]:
    def completions(body: dict[str, Any]) -> Any:
        chunks: list[Any] = [{"choices": [{"index": 0, "text": p, "finish_reason": None}]}
                             for p in _pieces(text_for[body["prompt"]])]
        chunks.append({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
        return ("sse", [*chunks, "data: [DONE]\n\n"])

    return {("GET", "/v1/models"): lambda b: {"object": "list",
                                              "data": [{"id": "m", "object": "model"}]},
            ("POST", "/v1/completions"): completions}


PROMPTS = {"loop": SENTENCE * 12, "varied": VARIED, "loop again": "Once more. " + SENTENCE * 6}


@pytest.fixture
def engine() -> Iterator[RemoteEngine]:
    server = FakeServer(_routes(PROMPTS)).start()
    remote = RemoteEngine(Endpoint(server.url, concurrency=2))
    list(remote.load(LoadSettings.remote(ModelRef.remote(server.url, "m"))))
    yield remote
    remote.close()
    server.stop()


def test_a_loop_from_the_server_is_taken_back_and_ends_the_output(engine: RemoteEngine):
    events = list(engine.complete(CompletionRequest("loop", GREEDY)))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.REPEATING
    assert done.stats.loops == 1
    assert done.text.count("keeper climbed") == 1, done.text
    rollbacks = [e for e in events if isinstance(e, Rollback)]
    assert len(rollbacks) == 1 and rollbacks[0].repeating
    assert "".join(t.text for t in fold_rollbacks(events)) == done.text
    streamed = sum(isinstance(e, Token) for e in events)
    assert streamed < len(_pieces(PROMPTS["loop"])) // 4  # the rest was never read


def test_without_a_loop_the_text_is_what_the_server_sent(engine: RemoteEngine):
    done = list(engine.complete(CompletionRequest("varied", GREEDY)))[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.LENGTH
    assert done.text == VARIED and done.stats.loops == 0


def test_with_the_guard_off_the_loop_comes_through(engine: RemoteEngine):
    done = list(engine.complete(CompletionRequest("loop", replace(GREEDY, loop_guard=False))))[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.LENGTH
    assert done.text == PROMPTS["loop"]


def test_batched_items_are_guarded_each_on_its_own(engine: RemoteEngine):
    request = BatchRequest((BatchItem((), text="loop"), BatchItem((), text="varied"),
                            BatchItem((), text="loop again")), GREEDY)
    events = list(engine.generate_batch(request))
    done = {e.index: e for e in events if isinstance(e, SeqDone)}
    assert done[0].finish_reason is FinishReason.REPEATING and done[0].loops == 1
    assert done[0].text.count("keeper climbed") == 1
    assert done[1].finish_reason is FinishReason.LENGTH and done[1].text == VARIED
    assert done[2].finish_reason is FinishReason.REPEATING
    assert done[2].text.startswith("Once more. ") and done[2].text.count("keeper climbed") == 1
    for index in (0, 2):
        streamed = "".join(e.text for e in events if isinstance(e, SeqToken) and e.index == index)
        cut = sum(e.n_chars for e in events if isinstance(e, SeqRollback) and e.index == index)
        assert streamed[:len(streamed) - cut] == done[index].text


def test_locked_pieces_are_never_taken_back():
    guard = LoopCut([SENTENCE])
    cut = None
    for piece in _pieces(SENTENCE):
        cut = cut or guard.push(piece)
    assert cut is not None and cut.n_chars == len(SENTENCE)


def test_required_texts_are_refused_rather_than_tacked_on(engine: RemoteEngine):
    request = BatchRequest((BatchItem((), ("Leuchtturm",), text="varied"),), GREEDY)
    events = list(engine.generate_batch(request))
    assert len(events) == 1 and isinstance(events[0], Error), events
    assert events[0].kind is ErrorKind.UNSUPPORTED
    assert "cannot be enforced by the OpenAI-compatible server at http" in events[0].message
