"""The bridge's job queue, against the real engine process and model."""

from __future__ import annotations

import pytest

from app.bridge import EngineBridge
from engine.events import Done, Error, ErrorKind, FinishReason, Token
from engine.options import CompletionRequest, LoadSettings, SamplingParams
from engine.tasks.jobs import Cancelled

TIMEOUT_MS = 60_000


@pytest.fixture
def bridge(qtbot, smol_path):
    bridge = EngineBridge()
    with qtbot.waitSignal(bridge.model_loaded, timeout=TIMEOUT_MS):
        bridge.load(LoadSettings(path=str(smol_path), n_ctx=512, n_threads=1))
    yield bridge
    bridge.shutdown()


def _complete(client, cancelled):
    request = CompletionRequest(prompt="The capital of France is",
                                sampling=SamplingParams(temperature=0.0, top_k=1, max_tokens=8))
    for event in client.complete(request):
        if isinstance(event, Token):
            yield event.text


def test_a_task_streams_what_it_yields_then_finishes(qtbot, bridge):
    texts: list[str] = []
    job = bridge.run_task("t", _complete)
    job.text.connect(texts.append)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    assert blocker.args == [None] and job.done
    assert "".join(texts).strip()
    assert not bridge.busy


def test_cancel_and_errors_end_a_task_with_a_reason(qtbot, bridge):
    def waits_for_cancel(client, cancelled):
        while not cancelled():
            yield "tick"
        raise Cancelled

    def fails(client, cancelled):
        yield from ()
        client.tokenize("x" * 10)
        raise ValueError("boom")

    loop = bridge.run_task("loop", waits_for_cancel)
    with qtbot.waitSignal(loop.text, timeout=TIMEOUT_MS):
        pass
    with qtbot.waitSignal(loop.finished, timeout=TIMEOUT_MS) as blocker:
        loop.cancel()
    assert isinstance(blocker.args[0], Done)
    assert blocker.args[0].finish_reason is FinishReason.CANCELLED

    bad = bridge.run_task("bad", fails)
    with qtbot.waitSignal(bad.finished, timeout=TIMEOUT_MS) as blocker:
        pass
    outcome = blocker.args[0]
    assert isinstance(outcome, Error) and outcome.kind is ErrorKind.INTERNAL
    assert "boom" in outcome.message


def test_a_load_that_fails_inside_llama_cpp_leaves_no_stale_model(qtbot, bridge, smol_path,
                                                                   tmp_path):
    """The header passes validation (one more layer than the file has), llama.cpp refuses it
    after the previous model was unloaded: nothing may still claim to be loaded."""
    import struct

    data = bytearray(smol_path.read_bytes())
    at = data.find(b"llama.block_count") + len(b"llama.block_count")
    assert struct.unpack_from("<I", data, at)[0] == 4  # uint32
    struct.pack_into("<I", data, at + 4, struct.unpack_from("<I", data, at + 4)[0] + 1)
    broken = tmp_path / "one-layer-short.gguf"
    broken.write_bytes(bytes(data))

    assert bridge.loaded is not None
    with qtbot.waitSignal(bridge.load_failed, timeout=TIMEOUT_MS) as blocker:
        bridge.load(LoadSettings(path=str(broken), n_ctx=512, n_threads=1))
    assert blocker.args[0].kind is ErrorKind.MODEL_INVALID
    assert bridge.loaded is None and bridge.engine.loaded is None

    def ask(client, cancelled):
        yield from client.complete(CompletionRequest(prompt="Hello"))

    seen: list[object] = []
    job = bridge.run_task("after", ask)
    job.yielded.connect(seen.append)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT_MS):
        pass
    errors = [e for e in seen if isinstance(e, Error)]
    assert errors and errors[0].kind is ErrorKind.NO_MODEL
