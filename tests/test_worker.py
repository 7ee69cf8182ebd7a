"""The engine in its own process: streaming, cancel, crash recovery, bad files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.events import Done, Error, ErrorKind, FinishReason, ModelLoaded, Progress, Token
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.system import OPENMP_SPINCOUNT, configure_openmp
from engine.worker import EngineClient


@pytest.fixture(scope="module")
def client(smol_path):
    c = EngineClient()
    events = list(c.load(LoadSettings(path=str(smol_path), n_ctx=4096)))
    assert isinstance(events[-1], ModelLoaded)
    yield c
    c.close()


def ask(text: str, max_tokens: int = 32, session: str = "w") -> ChatRequest:
    return ChatRequest((ChatMessage("user", text),), replace(GREEDY, max_tokens=max_tokens),
                       session_id=session)


def test_chat_streams_from_a_child_process(client):
    assert client.pid and client.pid != os.getpid()
    events = list(client.chat(ask("Say hello.")))
    tokens = [e for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, Done) and tokens
    assert "".join(t.text for t in tokens) == done.text
    assert done.stats.generated_tokens == len([t for t in tokens if t.token_id >= 0])


def _cancel_after(client: EngineClient, predicate, events_out: list) -> float:
    """Iterate a request and cancel from another thread as soon as predicate(event) holds;
    return the seconds from cancel to the end of the stream."""
    cancelled_at: list[float] = []

    def cancel_soon():
        cancelled_at.append(time.perf_counter())
        client.cancel()

    for event in events_out[0]:
        events_out.append(event)
        if not cancelled_at and predicate(event):
            threading.Thread(target=cancel_soon).start()
    return time.perf_counter() - cancelled_at[0]


def test_cancel_during_generation_stops_within_a_second(client):
    stream = client.chat(ask("Write a very long essay about the history of Rome.", 2000,
                             session="cancel-gen"))
    collected: list = [stream]
    latency = _cancel_after(client, lambda e: isinstance(e, Token) and e.text, collected)
    done = collected[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.CANCELLED
    assert done.text  # the partial reply is kept
    assert latency < 1.0


def test_cancel_during_prompt_evaluation_stops_within_a_second(client):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 300  # ~3,000 tokens
    stream = client.chat(ask(long_prompt, 16, session="cancel-prompt"))
    collected: list = [stream]
    latency = _cancel_after(client, lambda e: isinstance(e, Progress) and e.stage == "prompt",
                            collected)
    done = collected[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.CANCELLED
    assert done.stats.generated_tokens == 0
    assert done.stats.evaluated_tokens < done.stats.prompt_tokens
    assert latency < 1.0
    # The engine is still usable and the cache consistent afterwards.
    after = list(client.chat(ask("Say hello.", 8, session="cancel-prompt")))
    # An Error event (not a Done) would be a failure; a Done must be a normal finish.
    assert isinstance(after[-1], Done)
    assert after[-1].finish_reason in (FinishReason.STOP, FinishReason.LENGTH)


def test_engine_killed_mid_stream_reports_and_recovers(client):
    events = []
    killed = False
    for event in client.chat(ask("Write a long poem about the moon.", 400, session="kill")):
        events.append(event)
        if not killed and sum(isinstance(e, Token) and bool(e.text) for e in events) == 5:
            os.kill(client.pid, signal.SIGKILL)
            killed = True
    error = events[-1]
    assert isinstance(error, Error) and error.kind is ErrorKind.ENGINE_CRASHED
    assert "SIGKILL" in error.message
    assert error.partial_text and error.partial_text == "".join(
        e.text for e in events if isinstance(e, Token))
    restarts = client.restarts
    recovered = list(client.chat(ask("Say hello.", 8, session="kill")))
    assert any(isinstance(e, ModelLoaded) for e in recovered)  # the model was reloaded
    assert isinstance(recovered[-1], Done) and recovered[-1].text
    assert client.restarts == restarts + 1


def test_bad_model_files_give_errors_and_keep_the_engine(tmp_path, smol_path):
    truncated = tmp_path / "half.gguf"
    data = smol_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "random.gguf"
    garbage.write_bytes(os.urandom(4096))
    with EngineClient() as c:
        for path, expected in ((truncated, "truncated"), (garbage, "not a GGUF file"),
                               (tmp_path / "missing.gguf", "no such file")):
            events = list(c.load(LoadSettings(path=str(path))))
            assert isinstance(events[-1], Error), events
            assert str(path) in events[-1].message
            assert expected in events[-1].message.lower() or expected in events[-1].message
            assert c.alive()
        loaded = list(c.load(LoadSettings(path=str(smol_path), n_ctx=512)))
        assert isinstance(loaded[-1], ModelLoaded)


def test_a_model_llama_cpp_refuses_says_why(tmp_path, smol_path):
    """llama.cpp tells only its log why a load failed; the error carries that reason."""
    from gguf import GGUFValueType

    from tests.trust.gguf_mutations import encode_value, spliced

    bad = tmp_path / "rope.gguf"
    spliced({"llama.rope.dimension_count": encode_value(GGUFValueType.UINT32, 2**31)})(
        smol_path, bad)
    with EngineClient() as c:
        events = list(c.load(LoadSettings(path=str(bad), n_ctx=512)))
    assert isinstance(events[-1], Error), events
    assert "invalid n_rot: 2147483648, expected 64" in events[-1].message
    assert str(bad) in events[-1].message and "\n" not in events[-1].message


def test_cancelling_a_load_ends_it(smol_path):
    with EngineClient() as c:
        stream = c.load(LoadSettings(path=str(smol_path)))
        first = next(stream)
        assert isinstance(first, Progress)
        c.cancel()
        rest = list(stream)
        assert isinstance(rest[-1], Done) and rest[-1].finish_reason is FinishReason.CANCELLED
        assert c.loaded is None


@pytest.mark.parametrize(("given", "expected"), [
    ({}, {"GOMP_SPINCOUNT": OPENMP_SPINCOUNT}),
    ({"OMP_WAIT_POLICY": "passive"}, {"OMP_WAIT_POLICY": "passive"}),
    ({"GOMP_SPINCOUNT": "5000"}, {"GOMP_SPINCOUNT": "5000"}),
])
def test_openmp_threads_spin_briefly_unless_the_user_chose(given, expected):
    environ = dict(given)
    configure_openmp(environ)
    assert environ == expected


def test_engine_process_sets_the_openmp_spin_before_llama_cpp_loads():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import sys; import engine.worker.child, os; "
            "print(os.environ.get('GOMP_SPINCOUNT'), list(sys.modules).index('llama_cpp') > "
            "list(sys.modules).index('engine.system'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out == [OPENMP_SPINCOUNT, "True"]
