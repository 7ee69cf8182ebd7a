"""The engine interface: capabilities refuse what a backend cannot do, every backend fits the
protocol, models are identified by reference, and the document tasks run on any engine (here
the scripted fake engine: fast logic tests; the real-model tests prove the features)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from engine.api import Capabilities, Engine, Feature, check_sampling, require
from engine.documents import document_from_text
from engine.errors import Cancelled, UnsupportedError
from engine.events import Done, ErrorKind, SeqDone, SeqToken, Token
from engine.model_hash import model_sha256
from engine.model_ref import ModelKind, ModelRef
from engine.options import (
    GREEDY,
    BatchItem,
    BatchRequest,
    ChatMessage,
    ChatRequest,
    LoadSettings,
    SamplingParams,
)
from engine.store import ConversationStore, db
from engine.store.jobs import JobStore
from engine.tasks.jobs import job_model
from engine.tasks.resume import JobRecipe, interrupted_jobs
from engine.tasks.summarize import SummarizeSettings, SummaryResult, summarize
from engine.tasks.translate import TranslateSettings, Translation, translate
from engine.testing.fake_engine import FakeEngine

TEXT = ("The river floods every spring. Farmers plant rice after the water recedes.\n\n"
        "The town built a dam in 1962. Since then the floods are smaller.\n\n"
        "Fishermen say the dam changed the fish. Salmon no longer swim upstream.")


def loaded_fake(**kwargs) -> FakeEngine:
    engine = FakeEngine(**kwargs)
    list(engine.load(LoadSettings(path="/models/fake.gguf")))
    return engine


# ------------------------------------------------------------------ capabilities


def test_a_missing_feature_is_refused_naming_the_feature_and_the_backend():
    caps = Capabilities("llama-server at http://127.0.0.1:8080",
                        features=frozenset({Feature.SCORE}))
    require(caps, Feature.SCORE)
    with pytest.raises(UnsupportedError) as info:
        require(caps, Feature.ATTENTION)
    assert str(info.value) == ("Attention capture is not available with llama-server at "
                               "http://127.0.0.1:8080.")
    assert info.value.kind is ErrorKind.UNSUPPORTED


def test_sampling_options_a_backend_cannot_honour_are_refused_not_ignored():
    caps = Capabilities("Ollama", features=frozenset(),
                        sampling=frozenset({"temperature", "top_p", "max_tokens", "seed"}))
    check_sampling(caps, SamplingParams(temperature=0.2, top_k=40, top_p=0.95, min_p=0.05,
                                        repeat_penalty=1.1))  # defaults are never refused
    with pytest.raises(UnsupportedError, match=r"Ollama does not support the options "
                                               r"n_probs, grammar\."):
        check_sampling(caps, SamplingParams(grammar='root ::= "a"', n_probs=3))
    assert caps.missing_sampling(SamplingParams(top_k=7)) == ["top_k"]


def test_every_backend_fits_the_protocol():
    from engine.runtime.in_process import InProcessEngine
    from engine.worker import EngineClient

    client = EngineClient()  # not started: constructing it starts no process
    try:
        for backend in (FakeEngine(), InProcessEngine(), client):
            assert isinstance(backend, Engine)
            assert isinstance(backend.capabilities, Capabilities)
    finally:
        client.close()
    assert client.capabilities.has(Feature.ATTENTION)


def test_the_fake_engine_refuses_what_its_capabilities_lack():
    engine = loaded_fake(capabilities=Capabilities("a test server", features=frozenset()))
    with pytest.raises(UnsupportedError, match="Scoring continuations"):
        engine.score([1, 2], [[3]])
    with pytest.raises(UnsupportedError, match="n_probs"):
        list(engine.chat(ChatRequest((ChatMessage("user", "hi"),), SamplingParams(n_probs=2))))


# ------------------------------------------------------------------ model references


def test_model_references_identify_files_by_content_and_servers_by_model():
    a = ModelRef.local("/models/a.gguf", "1" * 64)
    moved = ModelRef.local("/elsewhere/renamed.gguf", "1" * 64)
    other = ModelRef.local("/models/a.gguf", "2" * 64)
    path_only = ModelRef.local("/models/a.gguf")
    assert a.same_model(moved) and a.identity() == moved.identity() == "sha256:" + "1" * 64
    assert not a.same_model(other)
    assert path_only.same_model(a) and path_only.identity() == str(Path("/models/a.gguf"))
    remote = ModelRef.remote("http://gpu-box:8000/v1/", "qwen2.5-7b")
    assert remote.kind is ModelKind.REMOTE and remote.local_path is None
    assert remote.identity() == "remote:http://gpu-box:8000/v1#qwen2.5-7b"
    assert not remote.same_model(ModelRef.remote("http://gpu-box:8000/v1", "llama"))
    assert ModelRef.parse(remote.dumps()) == remote
    assert ModelRef.parse("/models/a.gguf") == path_only  # rows from before references
    assert ModelRef.parse(None) is None


def test_a_model_file_is_hashed_once_until_it_changes(tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 1000)
    first = model_sha256(model)
    cache = json.loads((Path(os.environ["VERSO_HOME"]) / "data" /
                        "model-hashes.json").read_text())
    assert cache[str(model)]["sha256"] == first
    cache[str(model)]["sha256"] = "cached"  # proves the second call reads the cache
    (Path(os.environ["VERSO_HOME"]) / "data" / "model-hashes.json").write_text(
        json.dumps(cache))
    assert model_sha256(model) == "cached"
    model.write_bytes(b"GGUF" + b"\1" * 1000)
    os.utime(model, ns=(1, 1))
    assert model_sha256(model) not in ("cached", first)


def test_databases_from_before_model_references_migrate(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    conn = db.connect(path)
    assert db.migrate(conn, db.MIGRATIONS[:4]) == 4
    conn.execute("INSERT INTO conversations (id, title, created_at, updated_at, model) "
                 "VALUES ('c1', 'Old chat', 1, 1, '/models/smol.gguf')")
    conn.execute("INSERT INTO messages (id, conversation_id, role, content, model, created_at, "
                 "updated_at) VALUES ('m1', 'c1', 'assistant', 'Hi', 'Smol 135M', 1, 1)")
    recipe = {"version": 1, "title": "Summary of a.txt", "model": "/models/smol.gguf",
              "settings": {}, "sources": []}
    conn.execute("INSERT INTO jobs (id, kind, inputs_hash, settings_json, status, created_at, "
                 "updated_at, title, recipe_json) VALUES ('j1', 'summarize', 'h', '{}', "
                 "'cancelled', 1, 1, 't', ?)", (json.dumps(recipe),))
    conn.close()
    with ConversationStore(path) as store:
        conversation = store.get_conversation("c1")
        assert conversation is not None
        assert conversation.model == ModelRef.local("/models/smol.gguf")
        assert store.get_message("m1").model == "Smol 135M"  # a display name, unchanged
    with JobStore(path) as jobs:
        [job] = interrupted_jobs(jobs, "summarize")
    assert job.recipe is not None and job.recipe.model == ModelRef.local("/models/smol.gguf")
    with sqlite3.connect(path) as raw:
        stored = raw.execute("SELECT model FROM conversations").fetchone()[0]
    assert json.loads(stored)["kind"] == "local"


def test_a_resumed_job_keeps_the_model_identity_it_was_recorded_with():
    engine = loaded_fake()
    assert engine.loaded is not None
    recorded = JobRecipe("t", (), {}, ModelRef.local(engine.loaded.ref.location))  # path only
    assert job_model(engine, recorded) is recorded.model
    stranger = JobRecipe("t", (), {}, ModelRef.local("/models/other.gguf"))
    assert job_model(engine, stranger) == engine.loaded.ref
    assert job_model(engine, None) == engine.loaded.ref


# ------------------------------------------------------------------ tasks on any engine


def _summary_reply(prompt: str) -> str:
    if "numbered notes" in prompt:
        return "- The dam made the spring floods smaller [2]\n- Salmon left the river [3]"
    if "dam in 1962" in prompt:
        return "A dam built in 1962 reduced the floods."
    if "Salmon" in prompt:
        return "The dam changed the fish."
    return "The river floods each spring."


def test_summarize_runs_on_any_engine_and_counts_tokens_through_it():
    engine = loaded_fake(respond=_summary_reply)
    settings = SummarizeSettings(chunk_tokens=24, length=2, sampling=GREEDY)
    events = list(summarize(engine, [document_from_text(TEXT, name="river.txt")], settings))
    result = events[-1]
    assert isinstance(result, SummaryResult)
    assert [(p.text, p.chunks) for p in result.points] == [
        ("The dam made the spring floods smaller", (2,)), ("Salmon left the river", (3,))]
    assert len(result.chunks) == 3
    assert "generate_batch" in engine.ops()


def test_a_cancelled_summary_resumes_from_its_stored_steps():
    engine = loaded_fake(respond=_summary_reply)
    settings = SummarizeSettings(chunk_tokens=24, length=2, n_parallel=1)
    document = document_from_text(TEXT, name="river.txt")
    with JobStore() as store:
        seen = 0

        def cancel_after_one_step() -> bool:
            return seen >= 2

        with pytest.raises(Cancelled):
            for _event in summarize(engine, [document], settings, store,
                                   cancel=cancel_after_one_step):
                seen += 1
        result = list(summarize(engine, [document], settings, store))[-1]
    assert isinstance(result, SummaryResult)
    assert result.steps_reused and "map:1" in result.steps_reused
    assert result.points


def test_translate_runs_on_any_engine_with_glossary_terms_placed():
    from engine.tasks.glossary import Glossary, GlossaryEntry

    def respond(prompt: str) -> str:  # the term alone, else a sentence using its rendering
        segment = any(word in prompt for word in ("river", "1962", "Fishermen"))
        return "Der Damm veränderte den Fluss." if segment else "Damm"

    engine = loaded_fake(respond=respond)
    settings = TranslateSettings(target="de", source="en",
                                 glossary=Glossary((GlossaryEntry("dam", "Staudamm"),)))
    events = list(translate(engine, document_from_text(TEXT, name="river.txt"), settings))
    translation = events[-1]
    assert isinstance(translation, Translation)
    assert translation.target_language == "de"
    assert translation.renderings == (("dam", "Damm"),)
    dam = [s for s in translation.segments if "dam" in s.source]
    assert dam and all(s.text == "Der Staudamm veränderte den Fluss." for s in dam)
    assert all(s.required == ("Staudamm",) and s.terms[0].placed == 1 for s in dam)
    requests = [c.request for c in engine.calls if c.op == "generate_batch"]
    assert all(isinstance(r, BatchRequest) for r in requests) and len(requests) == 2


def test_the_fake_engine_scripts_crashes_and_recovers_like_the_engine_process():
    engine = loaded_fake(replies=("one two three four",))
    engine.crash_next(after_tokens=2)
    request = ChatRequest((ChatMessage("user", "count"),))
    events = list(engine.chat(request))
    assert [e.text for e in events if isinstance(e, Token)] == ["one", " two"]
    assert events[-1].kind is ErrorKind.ENGINE_CRASHED and events[-1].partial_text == "one two"
    assert engine.loaded is None
    again = list(engine.chat(request))
    assert engine.restarts == 1 and isinstance(again[-1], Done)
    assert again[-1].text == "one two three four"


def test_batch_items_stream_seq_events():
    engine = loaded_fake(replies=("a b",))
    items = tuple(BatchItem(tuple(engine.tokenize(t, add_bos=True))) for t in ("x", "y"))
    events = list(engine.generate_batch(BatchRequest(items)))
    assert [e.index for e in events if isinstance(e, SeqDone)] == [0, 1]
    assert sum(isinstance(e, SeqToken) for e in events) == 4
