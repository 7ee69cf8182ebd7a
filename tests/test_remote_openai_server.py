"""The remote engine against llama-cpp-python's ``llama_cpp.server`` on loopback: a server
Verso knows only as "OpenAI-compatible", so prompts travel as text and messages, counts are
estimates, and what the standard lacks is refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.api import Feature
from engine.documents import load_document
from engine.errors import UnsupportedError
from engine.events import Done, Error, ErrorKind, FinishReason, Token
from engine.model_ref import ModelRef
from engine.options import GREEDY, ChatMessage, ChatRequest, CompletionRequest, LoadSettings
from engine.remote import Endpoint, RemoteEngine, ServerKind
from engine.tasks.classify import classify
from engine.tasks.summarize import SummarizeSettings, summarize
from engine.token_estimate import estimate_tokens
from tests.remote_servers import check_a_loop_is_cut, start_llama_cpp_python_server

GREEDY_32 = replace(GREEDY, max_tokens=32)


@pytest.fixture(scope="module")
def engine(smol_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteEngine]:
    server = start_llama_cpp_python_server(smol_path, tmp_path_factory.mktemp("lcp-server"))
    # llama_cpp.server interrupts a streaming request when the next one arrives
    # (interrupt_requests), so it is driven one request at a time.
    remote = RemoteEngine(Endpoint(server.url, concurrency=1))
    events = list(remote.load(LoadSettings.remote(ModelRef.remote(server.url, "smol"),
                                                  n_ctx=2048)))
    assert isinstance(events[-1], type(remote.loaded)), events
    yield remote
    remote.close()
    server.stop()


def test_detected_as_a_generic_server_with_only_standard_features(engine: RemoteEngine):
    assert engine.dialect.kind is ServerKind.OPENAI
    caps = engine.capabilities
    assert caps.has(Feature.RAW_COMPLETION)
    for feature in (Feature.SCORE, Feature.TOKEN_PROBS, Feature.GRAMMAR, Feature.EXACT_TOKENS):
        assert not caps.has(feature)
    assert engine.loaded is not None and engine.loaded.ref.model_id == "smol"
    assert engine.loaded.n_ctx == 2048


def test_chat_and_raw_completion_stream(engine: RemoteEngine):
    events = list(engine.chat(ChatRequest((ChatMessage("user", "Name a river."),), GREEDY_32)))
    tokens = [e for e in events if isinstance(e, Token)]
    assert tokens and isinstance(events[-1], Done)
    assert events[-1].text == "".join(t.text for t in tokens) and events[-1].text.strip()
    raw = list(engine.complete(CompletionRequest("The capital of France is", GREEDY_32)))
    assert isinstance(raw[-1], Done) and raw[-1].finish_reason in (FinishReason.LENGTH,
                                                                   FinishReason.STOP)
    assert "Paris" in raw[-1].text


def test_counts_are_estimates_and_missing_features_are_named(engine: RemoteEngine):
    text = "A sentence of plain English words."
    assert engine.count_tokens(text) == estimate_tokens(text)
    with pytest.raises(UnsupportedError, match="Exact tokenization is not available with the "
                                               "OpenAI-compatible server at http"):
        engine.tokenize(text)
    with pytest.raises(UnsupportedError, match="Scoring continuations"):
        classify(engine, "I loved it", ["positive", "negative"])
    events = list(engine.chat(ChatRequest((ChatMessage("user", "Hi"),),
                                          replace(GREEDY_32, n_probs=2))))
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.UNSUPPORTED
    assert "n_probs" in events[-1].message


def test_summary_sends_messages_and_counts_with_the_estimator(engine: RemoteEngine,
                                                              tmp_path: Path):
    import importlib.metadata as md

    dist = md.distribution("httpx")
    license_file = next(f for f in dist.files or () if "LICENSE" in f.name.upper())
    document = tmp_path / "httpx-license.txt"
    document.write_text(Path(str(dist.locate_file(license_file))).read_text())
    result = list(summarize(engine, [load_document(document)],
                            SummarizeSettings(length=3, chunk_tokens=512)))[-1]
    assert len(result.chunks) >= 2
    text = result.to_text().lower()
    assert any(word in text for word in ("software", "copyright", "license", "redistribut"))


def test_a_loop_from_the_server_ends_the_output_without_the_repeat(engine: RemoteEngine):
    check_a_loop_is_cut(engine)  # greedy SmolLM2 on llama_cpp.server loops; Verso cuts it
