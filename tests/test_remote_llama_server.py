"""The remote engine against llama.cpp's real ``llama-server`` on loopback (SmolLM2; Gemma for
the translation): every task through it, stop with the /slots check, token probabilities,
JSON Schema, scoring equal to Verso's own engine, faults injected by a proxy in front of the
real server, a server killed mid-reply, bad API keys, and the CLI flags."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from engine.api import Feature
from engine.cli import main
from engine.documents import load_document
from engine.errors import Cancelled
from engine.events import (
    ContextTrimmed,
    Done,
    Error,
    ErrorKind,
    FinishReason,
    SeqDone,
    SeqToken,
    Token,
)
from engine.model_ref import ModelRef
from engine.options import (
    GREEDY,
    BatchItem,
    BatchRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    ContextPolicy,
    LoadSettings,
    SamplingParams,
)
from engine.remote import Endpoint, RemoteEngine, ServerKind
from engine.store.jobs import JobStore
from engine.tasks.classify import classify
from engine.tasks.summarize import SummarizeSettings, summarize
from engine.tasks.translate import TranslateSettings, translate
from tests.conftest import SERVER_KEY
from tests.remote_servers import Fault, FaultProxy, check_a_loop_is_cut, start_llama_server

GREEDY_40 = replace(GREEDY, max_tokens=40)


def _license(name: str) -> Path:
    import importlib.metadata as md

    dist = md.distribution(name)
    files = [f for f in dist.files or () if "LICENSE" in f.name.upper()]
    assert files, f"{name} ships no license file"
    return Path(str(dist.locate_file(files[0])))


def connected(url: str, key: str | None = SERVER_KEY) -> RemoteEngine:
    engine = RemoteEngine(Endpoint(url), key)
    events = list(engine.load(LoadSettings.remote(ModelRef.remote(engine.endpoint.url, ""))))
    assert not [e for e in events if isinstance(e, Error)], events
    return engine


@pytest.fixture(scope="module")
def engine(llama_server: str) -> Iterator[RemoteEngine]:
    remote = connected(llama_server)
    yield remote
    remote.close()


@pytest.fixture(scope="module")
def local(smol_path: Path) -> Iterator[object]:
    from engine.runtime.in_process import InProcessEngine

    engine = InProcessEngine()
    list(engine.load(LoadSettings(str(smol_path), n_ctx=1024, n_threads=1)))
    yield engine
    engine.close()


@pytest.fixture
def proxy(llama_server: str) -> Iterator[FaultProxy]:
    p = FaultProxy(llama_server).start()
    yield p
    p.stop()


def test_detects_the_server_and_uses_what_it_offers(engine: RemoteEngine, llama_server: str):
    caps = engine.capabilities
    assert engine.dialect.kind is ServerKind.LLAMA_SERVER
    for feature in (Feature.SCORE, Feature.GRAMMAR, Feature.TOKEN_PROBS, Feature.LOGIT_BIAS,
                    Feature.EXACT_TOKENS, Feature.RAW_COMPLETION, Feature.JSON_SCHEMA):
        assert caps.has(feature), feature
    assert not caps.has(Feature.ATTENTION) and not caps.has(Feature.BAN_PHRASES)
    assert caps.max_parallel == 4  # /props total_slots
    loaded = engine.loaded
    assert loaded is not None and loaded.n_ctx == 1024 and loaded.n_vocab == 49152
    assert loaded.ref == ModelRef.remote(llama_server, loaded.ref.model_id)
    assert loaded.ref.model_id.endswith(".gguf") and loaded.has_chat_template
    assert "llama.cpp server" in caps.backend
    with pytest.raises(Exception, match=r"Attention capture is not available with the "
                                        r"llama\.cpp server at"):
        engine.attention([1, 2], 1)


def test_chat_prompt_and_counts_are_the_local_engines(engine: RemoteEngine, local):
    messages = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "Hi <|im_end|>")]
    assert engine.chat_prompt(messages) == local.chat_prompt(messages)
    text = _license("httpx").read_text()
    assert engine.count_tokens(text) == local.count_tokens(text)
    assert engine.count_chat_tokens(messages) == local.count_chat_tokens(messages)


def test_a_loop_from_llama_server_ends_the_output_without_the_repeat(engine: RemoteEngine):
    check_a_loop_is_cut(engine)  # greedy SmolLM2 on llama-server loops; Verso cuts it


def test_chat_streams_tokens_with_probabilities(engine: RemoteEngine):
    sampling = SamplingParams(temperature=0.0, max_tokens=24, n_probs=3)
    events = list(engine.chat(ChatRequest((ChatMessage("user", "Name three rivers."),),
                                          sampling)))
    tokens = [e for e in events if isinstance(e, Token)]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.LENGTH
    assert len(tokens) == 24 and done.text == "".join(t.text for t in tokens)
    assert all(t.token_id >= 0 and t.logprob is not None and t.logprob <= 0 for t in tokens)
    assert all(len(t.alternatives) == 3 for t in tokens)
    assert tokens[0].alternatives[0].logprob >= tokens[0].alternatives[1].logprob
    assert done.stats.generated_tokens == 24 and done.stats.prompt_tokens > 20
    assert done.stats.generation_tps > 0


def test_second_turn_reuses_the_servers_prompt_cache(engine: RemoteEngine):
    turn = (ChatMessage("user", "Tell me about the river Thames."),)
    first = list(engine.chat(ChatRequest(turn, GREEDY_40)))[-1]
    follow = (*turn, ChatMessage("assistant", first.text),
              ChatMessage("user", "And the Seine?"))
    second = list(engine.chat(ChatRequest(follow, GREEDY_40)))[-1]
    assert isinstance(second, Done)
    assert second.stats.reused_tokens >= first.stats.prompt_tokens - 1


def test_classify_scores_equal_the_local_engine(engine: RemoteEngine, local):
    labels = ["positive", "negative", "neutral"]
    for text in ("I loved this film, it was wonderful.", "The service was slow and rude."):
        remote = classify(engine, text, labels)
        here = classify(local, text, labels)
        for label in labels:
            assert remote.logprobs[label] == pytest.approx(here.logprobs[label], abs=0.15)
        assert remote.label == here.label


def test_json_schema_output_through_the_cli(llama_server: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer", "minimum": 0,
                                                       "maximum": 120}},
              "required": ["name", "age"]}
    path = tmp_path / "person.json"
    path.write_text(json.dumps(schema))
    monkeypatch.setenv("VERSO_KEY", SERVER_KEY)
    out, err = io.StringIO(), io.StringIO()
    code = main(["generate", "A person as JSON:", "--endpoint", llama_server, "--api-key-env",
                 "VERSO_KEY", "--json-schema", str(path), "--temperature", "1", "--seed", "3",
                 "--max-tokens", "60", "--json"], out=out, err=err)
    assert code == 0, err.getvalue()
    value = json.loads(json.loads(out.getvalue())["text"])
    assert isinstance(value["name"], str) and 0 <= value["age"] <= 120


def test_raw_completion_with_a_grammar(engine: RemoteEngine):
    grammar = 'root ::= ("yes" | "no") "."'
    events = list(engine.complete(CompletionRequest(
        "Is the sky blue? Answer:", SamplingParams(temperature=1.0, seed=1, max_tokens=8,
                                                  grammar=grammar))))
    assert events[-1].text in ("yes.", "no.")
    bad = list(engine.complete(CompletionRequest("x", SamplingParams(grammar="root ::= ["))))
    assert isinstance(bad[-1], Error) and bad[-1].kind is ErrorKind.BAD_REQUEST
    assert "grammar" in bad[-1].message


def test_stop_closes_the_stream_and_the_server_goes_idle(engine: RemoteEngine):
    request = ChatRequest((ChatMessage("user", "Write a very long story about a dragon."),),
                          SamplingParams(temperature=0.8, max_tokens=900, seed=2))
    seen: list[object] = []
    for event in engine.chat(request):
        seen.append(event)
        if sum(isinstance(e, Token) for e in seen) == 5:
            threading.Timer(0.0, engine.cancel).start()
    done = seen[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.CANCELLED
    assert 5 <= done.stats.generated_tokens < 900
    assert done.text == "".join(e.text for e in seen if isinstance(e, Token))
    assert engine.dialect.busy_slots() == []
    # Closing the stream stops it too (the CLI on Ctrl-C, a task that was cancelled).
    stream = engine.chat(request)
    for _ in range(4):
        next(stream)
    stream.close()
    assert engine.dialect.busy_slots() == [] and not engine.last_stop_warning


def test_a_server_still_busy_after_a_stop_is_reported(proxy: FaultProxy):
    remote = connected(proxy.url)
    busy = [{"id": 2, "is_processing": True}]
    proxy.faults.append(Fault("/slots", body=busy, times=1000))
    events = []
    for event in remote.chat(ChatRequest((ChatMessage("user", "Count to fifty."),),
                                         SamplingParams(max_tokens=300, seed=1))):
        events.append(event)
        if isinstance(event, Token):
            remote.cancel()
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.SERVER_BUSY
    assert "still busy: slot 2 kept generating" in events[-1].message
    assert events[-1].partial_text
    remote.close()


def test_context_overflow_says_how_many_tokens_over(engine: RemoteEngine):
    long = "The river runs through the valley. " * 180
    events = list(engine.chat(ChatRequest((ChatMessage("user", long),), GREEDY_40)))
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.CONTEXT_OVERFLOW
    over = re.search(r"\((\d+) tokens over\)", events[-1].message)
    assert over and int(over.group(1)) > 0
    # Past Verso's own check, the server refuses with exceed_context_size_error.
    tokens = tuple(engine.tokenize(long, add_bos=True))
    batch = list(engine.generate_batch(BatchRequest((BatchItem(tokens),), GREEDY_40)))
    assert isinstance(batch[-1], Error) and batch[-1].kind is ErrorKind.CONTEXT_OVERFLOW
    assert f"needs {len(tokens)} tokens but only 1024 fit" in batch[-1].message


def test_drop_oldest_trims_whole_turns(engine: RemoteEngine):
    history: list[ChatMessage] = [ChatMessage("system", "Be brief.")]
    for i in range(8):
        history += [ChatMessage("user", f"Question {i}: " + "tell me more " * 30),
                    ChatMessage("assistant", "Here is more. " * 25)]
    history.append(ChatMessage("user", "Thanks!"))
    events = list(engine.chat(ChatRequest(tuple(history), GREEDY_40,
                                          policy=ContextPolicy.DROP_OLDEST)))
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert trimmed and trimmed[0].dropped_messages % 2 == 0 and trimmed[0].dropped_tokens > 0
    assert isinstance(events[-1], Done)


def test_batch_items_run_concurrently_on_the_slots(engine: RemoteEngine):
    items = tuple(BatchItem(engine.chat_prompt([ChatMessage("user", f"Say {w}.")]).tokens)
                  for w in ("cat", "dog", "fish", "bird", "horse", "cow"))
    events = list(engine.generate_batch(BatchRequest(items, GREEDY_40, logprobs=True)))
    done = [e for e in events if isinstance(e, SeqDone)]
    assert sorted(d.index for d in done) == list(range(6))
    assert all(d.mean_logprob is not None and d.mean_logprob < 0 for d in done)
    indices = [e.index for e in events if isinstance(e, SeqToken)]
    first_done = next(i for i, e in enumerate(events) if isinstance(e, SeqDone))
    assert len(set(indices[:first_done])) > 1  # tokens of several items interleave
    assert isinstance(events[-1], Done)


def test_summary_of_a_real_document_resumes_with_its_remote_model(engine: RemoteEngine,
                                                                  tmp_path: Path):
    document = load_document(_text_copy(_license("pypdf"), tmp_path))
    settings = SummarizeSettings(length=3, chunk_tokens=256)
    done_steps = []

    def cancel() -> bool:
        return len(done_steps) >= 1

    with JobStore() as store:
        with pytest.raises(Cancelled):
            for event in summarize(engine, [document], settings, store, cancel):
                if getattr(event, "done", 0):
                    done_steps.append(event)
        [job] = store.unfinished("summarize")
        assert job.recipe is not None
        assert ModelRef.parse(job.recipe["model"]) == engine.loaded.ref
        result = list(summarize(engine, [document], settings, store))[-1]
    assert result.steps_reused and len(result.chunks) >= 2
    points = result.points or ()
    assert points or result.notes_only
    text = result.to_text().lower()
    assert any(word in text for word in ("software", "copyright", "license", "redistribut",
                                         "source", "binary"))
    assert {c for p in points for c in p.chunks} <= {c.id for c in result.chunks}


def _text_copy(path: Path, tmp_path: Path) -> Path:
    copy = tmp_path / (path.stem + ".txt")
    copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return copy


@pytest.fixture(scope="module")
def gemma_server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = start_llama_server(gemma_path, tmp_path_factory.mktemp("gemma-server"), slots=2,
                                ctx=2048, threads=2)
    yield server.url
    server.stop()


def test_translation_of_a_real_document_with_gemma(gemma_server: str, tmp_path: Path):
    source = tmp_path / "notice.md"
    source.write_text("The software is provided as is, without warranty of any kind.\n\n"
                      "Permission is granted to use, copy and modify the software.\n",
                      encoding="utf-8")
    remote = connected(gemma_server, key=None)
    result = list(translate(remote, load_document(source), TranslateSettings(target="fr")))[-1]
    remote.close()
    text = " ".join(s.text for s in result.segments).lower()
    assert result.source_language == "en" and len(result.segments) == 2
    assert any(word in text for word in ("logiciel", "garantie", "autorisation", "permission"))
    assert all(s.mean_logprob is not None for s in result.segments)


def test_a_server_killed_mid_reply_keeps_the_partial_reply(smol_path: Path, tmp_path: Path):
    server = start_llama_server(smol_path, tmp_path, slots=1, ctx=2048)
    try:
        remote = connected(server.url, key=None)
        events = []
        request = ChatRequest((ChatMessage("user", "Write a long story."),),
                              SamplingParams(max_tokens=1500, seed=4))
        for event in remote.chat(request):
            events.append(event)
            if sum(isinstance(e, Token) for e in events) == 8:
                server.kill()
        error = events[-1]
        assert isinstance(error, Error) and error.kind is ErrorKind.SERVER_UNREACHABLE
        assert error.partial_text == "".join(e.text for e in events if isinstance(e, Token))
        assert len(error.partial_text) > 0
        again = list(remote.chat(request))[-1]
        assert isinstance(again, Error) and "refused the connection" in again.message
        remote.close()
    finally:
        server.stop()


def test_bad_or_missing_api_key(llama_server: str):
    wrong = RemoteEngine(Endpoint(llama_server), "not-the-key")
    with pytest.raises(Exception) as info:
        wrong.start()
    assert info.value.kind is ErrorKind.AUTH_FAILED  # type: ignore[attr-defined]
    assert "the API key was refused" in str(info.value) and "not-the-key" not in str(info.value)
    missing = RemoteEngine(Endpoint(llama_server))
    with pytest.raises(Exception, match="needs an API key"):
        missing.start()


@pytest.mark.parametrize(("status", "kind", "words"), [
    (429, ErrorKind.SERVER_BUSY, "rate limiting (HTTP 429"),
    (500, ErrorKind.SERVER_ERROR, "failed on /completion (HTTP 500"),
    (404, ErrorKind.SERVER_ERROR, "has no /completion (HTTP 404"),
    (403, ErrorKind.AUTH_FAILED, "refused the request (HTTP 403"),
])
def test_http_errors_on_generation_are_not_retried(proxy: FaultProxy, status: int,
                                                  kind: ErrorKind, words: str):
    remote = connected(proxy.url)
    proxy.faults.append(Fault("/completion", status=status))
    before = len(proxy.seen)
    events = list(remote.chat(ChatRequest((ChatMessage("user", "Hi"),), GREEDY_40)))
    assert isinstance(events[-1], Error) and events[-1].kind is kind
    assert words in events[-1].message
    assert [p for _, p in proxy.seen[before:]].count("/completion") == 1
    remote.close()


def test_idempotent_calls_are_retried_with_backoff(proxy: FaultProxy):
    proxy.faults.append(Fault("/props", status=503, times=2))
    remote = connected(proxy.url)
    # Detection: two 503s, then the answer; then the description reads it once more.
    assert [p for _, p in proxy.seen].count("/props") == 4
    assert remote.dialect.kind is ServerKind.LLAMA_SERVER
    remote.close()


@pytest.mark.parametrize(("then", "kind", "words"), [
    ("malformed", ErrorKind.SERVER_ERROR, "sent a malformed chunk"),
    ("drop", ErrorKind.SERVER_UNREACHABLE, "ended before the server said it was complete"),
])
def test_a_broken_stream_keeps_the_partial_reply(proxy: FaultProxy, then: str,
                                                 kind: ErrorKind, words: str):
    remote = connected(proxy.url)
    proxy.faults.append(Fault("/completion", after_chunks=4, then=then))
    events = list(remote.chat(ChatRequest((ChatMessage("user", "Tell me a story."),),
                                          GREEDY_40)))
    tokens = [e for e in events if isinstance(e, Token)]
    assert len(tokens) == 4
    assert isinstance(events[-1], Error) and events[-1].kind is kind
    assert words in events[-1].message
    assert events[-1].partial_text == "".join(t.text for t in tokens)
    remote.close()


def test_a_silent_server_times_out(proxy: FaultProxy):
    remote = RemoteEngine(Endpoint(proxy.url, read_timeout_s=1.0), SERVER_KEY)
    list(remote.load(LoadSettings.remote(ModelRef.remote(remote.endpoint.url, ""))))
    proxy.faults.append(Fault("/completion", after_chunks=2, then="stall"))
    started = time.monotonic()
    events = list(remote.chat(ChatRequest((ChatMessage("user", "Hi"),), GREEDY_40)))
    assert time.monotonic() - started < 10
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.SERVER_UNREACHABLE
    assert "sent nothing for 1 s" in events[-1].message
    assert len(events[-1].partial_text) > 0
    remote.close()


def test_saved_endpoint_with_its_key_drives_the_cli(llama_server: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    verso_home: Path):
    monkeypatch.setenv("BOX_KEY", SERVER_KEY)
    out, err = io.StringIO(), io.StringIO()
    assert main(["endpoints", "add", "box", llama_server, "--api-key-env", "BOX_KEY"],
                out=out, err=err) == 0
    saved = (verso_home / "config" / "endpoints.json").read_text()
    assert SERVER_KEY not in saved and llama_server in saved
    monkeypatch.delenv("BOX_KEY")
    out = io.StringIO()
    assert main(["models", "--endpoint", "box", "--json"], out=out, err=err) == 0
    listing = json.loads(out.getvalue())
    assert listing["kind"] == "llama-server" and listing["slots"] == 4
    assert "attention capture" in listing["unavailable"]
    out = io.StringIO()
    assert main(["classify", "--endpoint", "box", "--labels", "positive,negative"],
                stdin=io.StringIO("What a lovely and wonderful day!\n"), out=out, err=err) == 0
    assert out.getvalue().splitlines()[1].startswith("What a lovely and wonderful day!,positive")
    err = io.StringIO()
    assert main(["generate", "x", "--endpoint", "box", "--ban", "dragon"], out=io.StringIO(),
                err=err) == 2
    assert "Banned phrases are not available with the llama.cpp server at box" in \
        err.getvalue()
