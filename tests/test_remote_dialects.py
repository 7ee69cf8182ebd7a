"""The remote engine's request and response code for servers that cannot run here (vLLM,
Ollama), against fakes on loopback that answer with the shapes those servers' protocol
definitions give; and the fault messages, stream parsing and saved endpoints. Fast tier: no
model. (The real-server tests are tests/test_remote_llama_server.py and
tests/test_remote_openai_server.py.)"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.api import Feature
from engine.errors import BadRequestError, UnsupportedError
from engine.events import (
    Done,
    Error,
    ErrorKind,
    FinishReason,
    SeqDone,
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
from engine.remote import Endpoint, RemoteEngine, RemoteError, ServerKind
from engine.remote.http import Http, sse_events
from engine.remote.saved import find_endpoint, load_endpoints, remove_endpoint, save_endpoint
from tests.remote_servers import FakeServer

VOCAB = {"Hello": 1, " world": 2, "!": 3, "<bos>": 9}


def _vllm_routes() -> dict[tuple[str, str], Any]:
    def tokenize(body: dict[str, Any]) -> dict[str, Any]:
        if "messages" in body:
            n = sum(len(m["content"].split()) + 3 for m in body["messages"])
            return {"count": n, "max_model_len": 64, "tokens": list(range(10, 10 + n))}
        words = body["prompt"].split()
        return {"count": len(words), "max_model_len": 64,
                "tokens": [VOCAB.get(w, 50) for w in words]}

    def completions(body: dict[str, Any]) -> Any:
        if body.get("prompt_logprobs") is not None:
            prompt = body["prompt"]
            rows: list[Any] = [None] + [
                {str(t): {"logprob": -0.5 * (i + 1), "rank": 1, "decoded_token": "x"},
                 "77": {"logprob": -9.0, "rank": 2, "decoded_token": "y"}}
                for i, t in enumerate(prompt[1:])]
            return {"choices": [{"index": 0, "text": "z", "prompt_logprobs": rows,
                                 "finish_reason": "length"}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1}}
        chunks: list[Any] = []
        for i, (text, tid) in enumerate([("Hel", 101), ("lo", 102), ("!", 103)]):
            logprobs = {"tokens": [f"token_id:{tid}"], "token_logprobs": [-0.1 * (i + 1)],
                        "top_logprobs": [{f"token_id:{tid}": -0.1 * (i + 1),
                                          "token_id:7": -3.0}]} if body.get("logprobs") \
                is not None else None
            chunks.append({"id": "cmpl-1", "object": "text_completion", "model": "m",
                           "choices": [{"index": 0, "text": text, "logprobs": logprobs,
                                        "finish_reason": None}]})
        chunks.append({"id": "cmpl-1", "choices": [{"index": 0, "text": "",
                                                    "finish_reason": "stop"}]})
        chunks.append({"id": "cmpl-1", "choices": [], "usage": {
            "prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
            "prompt_tokens_details": {"cached_tokens": 4}}})
        return ("sse", [*chunks, "data: [DONE]\n\n"])

    return {("GET", "/props"): lambda b: (404, {"detail": "Not Found"}),
            ("GET", "/api/version"): lambda b: (404, {"detail": "Not Found"}),
            ("GET", "/version"): lambda b: {"version": "0.12.0"},
            ("GET", "/v1/models"): lambda b: {"object": "list", "data": [
                {"id": "org/model-7b", "object": "model", "owned_by": "vllm",
                 "root": "org/model-7b", "max_model_len": 64}]},
            ("POST", "/tokenize"): tokenize,
            ("POST", "/detokenize"): lambda b: {"prompt": " ".join(map(str, b["tokens"]))},
            ("POST", "/v1/completions"): completions}


@pytest.fixture
def vllm() -> Iterator[FakeServer]:
    server = FakeServer(_vllm_routes()).start()
    yield server
    server.stop()


def _loaded(url: str, model: str = "", n_ctx: int = 0, **endpoint: Any) -> RemoteEngine:
    engine = RemoteEngine(Endpoint(url, **endpoint), "sk-secret")
    events = list(engine.load(LoadSettings.remote(ModelRef.remote(url, model), n_ctx)))
    assert not [e for e in events if isinstance(e, Error)], events
    return engine


def test_vllm_is_detected_and_its_extensions_used(vllm: FakeServer):
    engine = _loaded(vllm.url)
    assert engine.dialect.kind is ServerKind.VLLM
    caps = engine.capabilities
    assert caps.has(Feature.SCORE) and caps.has(Feature.EXACT_TOKENS)
    assert caps.has(Feature.GRAMMAR) and caps.has(Feature.JSON_SCHEMA)
    assert engine.loaded is not None and engine.loaded.n_ctx == 64
    assert engine.loaded.ref == ModelRef.remote(vllm.url, "org/model-7b")
    assert engine.tokenize("Hello world") == [1, 50]
    assert all(h.get("Authorization") == "Bearer sk-secret" for *_, h in vllm.requests)


def test_vllm_chat_goes_as_tokens_with_ids_and_logprobs(vllm: FakeServer):
    engine = _loaded(vllm.url)
    sampling = SamplingParams(temperature=0.0, max_tokens=8, n_probs=2, repeat_penalty=1.2,
                              min_p=0.1)
    events = list(engine.chat(ChatRequest((ChatMessage("user", "Say hello"),), sampling)))
    tokens = [e for e in events if isinstance(e, Token)]
    assert [(t.token_id, t.text) for t in tokens] == [(101, "Hel"), (102, "lo"), (103, "!")]
    assert tokens[0].logprob == pytest.approx(-0.1)
    assert [a.token_id for a in tokens[0].alternatives] == [101, 7]
    done = events[-1]
    assert isinstance(done, Done) and done.text == "Hello!"
    assert done.stats.prompt_tokens == 7 and done.stats.reused_tokens == 4
    [chat] = [b for b in vllm.bodies("/tokenize") if "messages" in b]
    assert chat["add_generation_prompt"] is True
    [body] = vllm.bodies("/v1/completions")
    assert body["prompt"] == list(range(10, 15)) and body["model"] == "org/model-7b"
    assert body["logprobs"] == 2 and body["return_tokens_as_token_ids"] is True
    assert body["repetition_penalty"] == 1.2 and body["min_p"] == 0.1
    assert body["stream_options"] == {"include_usage": True}


def test_vllm_structured_outputs_and_scoring(vllm: FakeServer):
    engine = _loaded(vllm.url)
    schema = json.dumps({"type": "object"})
    list(engine.complete(CompletionRequest("Hello", SamplingParams(grammar="root ::= x"),
                                           json_schema=schema)))
    list(engine.complete(CompletionRequest("Hello", SamplingParams(grammar='root ::= "a"'))))
    first, second = vllm.bodies("/v1/completions")
    assert first["structured_outputs"] == {"json": {"type": "object"}}
    assert second["structured_outputs"] == {"grammar": 'root ::= "a"'}
    assert "guided_json" not in first and "guided_grammar" not in second
    assert engine.score([1, 2], [[3], [4, 5]]) == pytest.approx([-1.0, -1.0 - 1.5])
    scoring = vllm.bodies("/v1/completions")[-1]
    assert scoring["prompt"] == [1, 2, 4, 5] and scoring["prompt_logprobs"] == 0


def test_vllm_prompt_over_its_context_is_refused_with_the_count(vllm: FakeServer):
    engine = _loaded(vllm.url)
    events = list(engine.chat(ChatRequest((ChatMessage("user", "word " * 80),),
                                          SamplingParams(max_tokens=8))))
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.CONTEXT_OVERFLOW
    assert "83 tokens but only 56 fit" in events[-1].message and "27 tokens over" in \
        events[-1].message
    assert not vllm.bodies("/v1/completions")


def test_vllm_unknown_model_lists_what_it_offers(vllm: FakeServer):
    engine = RemoteEngine(Endpoint(vllm.url))
    events = list(engine.load(LoadSettings.remote(ModelRef.remote(vllm.url, "nope"))))
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.MODEL_NOT_FOUND
    assert "has no model 'nope'; it offers: org/model-7b" in events[-1].message


def _ollama_routes() -> dict[tuple[str, str], Any]:
    def chat(body: dict[str, Any]) -> Any:
        if not body.get("messages"):
            return {"model": body["model"], "done": True, "done_reason": "load"}
        lines: list[Any] = []
        for text in ("Bon", "jour", "!"):
            chunk: dict[str, Any] = {"model": body["model"], "message": {
                "role": "assistant", "content": text}, "done": False}
            if body.get("logprobs"):
                chunk["logprobs"] = [{"token": text, "logprob": -0.25, "bytes": [1],
                                      "top_logprobs": [{"token": text, "logprob": -0.25},
                                                       {"token": "x", "logprob": -2.0}]}]
            lines.append(chunk)
        lines.append({"model": body["model"], "message": {"role": "assistant", "content": ""},
                      "done": True, "done_reason": "stop", "prompt_eval_count": 12,
                      "prompt_eval_duration": 120_000_000, "eval_count": 3,
                      "eval_duration": 30_000_000})
        return ("ndjson", lines)

    def generate(body: dict[str, Any]) -> Any:
        return ("ndjson", [{"response": " Paris", "done": False},
                           {"response": "", "done": True, "done_reason": "length",
                            "prompt_eval_count": 5, "eval_count": 1}])

    return {("GET", "/props"): lambda b: (404, "404 page not found"),
            ("GET", "/api/version"): lambda b: {"version": "0.13.1"},
            ("GET", "/api/tags"): lambda b: {"models": [
                {"name": "gemma3:4b", "model": "gemma3:4b", "size": 3338801804,
                 "details": {"family": "gemma3", "parameter_size": "4.3B",
                             "quantization_level": "Q4_K_M"}}]},
            ("POST", "/api/show"): lambda b: {"model_info": {
                "general.architecture": "gemma3", "gemma3.context_length": 131072}},
            ("POST", "/api/chat"): chat, ("POST", "/api/generate"): generate}


@pytest.fixture
def ollama() -> Iterator[FakeServer]:
    server = FakeServer(_ollama_routes()).start()
    yield server
    server.stop()


def test_ollama_native_chat_with_num_ctx_format_and_keep_alive(ollama: FakeServer):
    engine = _loaded(ollama.url, keep_alive="30m")
    assert engine.dialect.kind is ServerKind.OLLAMA
    assert engine.loaded is not None and engine.loaded.n_ctx == 8192  # 131072, capped
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    events = list(engine.chat(ChatRequest(
        (ChatMessage("user", "Say hello in French"),),
        SamplingParams(temperature=0.2, max_tokens=20, n_probs=2, seed=5,
                       grammar="root ::= x"), json_schema=schema)))
    tokens = [e for e in events if isinstance(e, Token)]
    assert "".join(t.text for t in tokens) == "Bonjour!" and tokens[0].logprob == -0.25
    assert [a.text for a in tokens[0].alternatives] == ["Bon", "x"]
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.STOP
    assert done.stats.prompt_tokens == 12 and done.stats.generation_tps == pytest.approx(100)
    load, body = ollama.bodies("/api/chat")
    assert load["messages"] == [] and load["keep_alive"] == "30m"
    assert body["options"]["num_ctx"] == 8192 and body["options"]["num_predict"] == 20
    assert body["options"]["seed"] == 5 and body["keep_alive"] == "30m"
    assert body["format"] == json.loads(schema) and "grammar" not in body
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_ollama_lacks_what_it_lacks_by_name(ollama: FakeServer):
    engine = _loaded(ollama.url, n_ctx=4096)
    assert engine.loaded is not None and engine.loaded.n_ctx == 4096
    caps = engine.capabilities
    assert not caps.has(Feature.SCORE) and not caps.has(Feature.GRAMMAR)
    events = list(engine.chat(ChatRequest((ChatMessage("user", "Hi"),),
                                          SamplingParams(grammar="root ::= x"))))
    assert isinstance(events[-1], Error) and events[-1].kind is ErrorKind.UNSUPPORTED
    assert "the Ollama server at" in events[-1].message and "grammar" in events[-1].message
    with pytest.raises(UnsupportedError, match=r"Scoring continuations .* is not available "
                                               r"with the Ollama server"):
        engine.score([1], [[2]])


def test_ollama_raw_completion_and_batches_of_messages(ollama: FakeServer):
    engine = _loaded(ollama.url)
    raw = list(engine.complete(CompletionRequest("The capital of France is",
                                                 replace(GREEDY, max_tokens=1))))
    assert isinstance(raw[-1], Done) and raw[-1].text == " Paris"
    assert raw[-1].finish_reason is FinishReason.LENGTH
    assert ollama.bodies("/api/generate")[0]["raw"] is True
    items = (BatchItem((), messages=(ChatMessage("user", "Translate: hi"),)),
             BatchItem((), messages=(ChatMessage("user", "Translate: bye"),)))
    events = list(engine.generate_batch(BatchRequest(items, replace(GREEDY, max_tokens=16),
                                                     logprobs=True)))
    done = sorted((e for e in events if isinstance(e, SeqDone)), key=lambda d: d.index)
    assert [d.text for d in done] == ["Bonjour!", "Bonjour!"]
    assert done[0].forced_tokens == done[1].forced_tokens == 0
    assert done[1].mean_logprob == pytest.approx(-0.25)


def test_ollama_context_check_uses_the_estimate(ollama: FakeServer):
    engine = _loaded(ollama.url, n_ctx=256)
    history = [ChatMessage("user", "question " * 300), ChatMessage("assistant", "answer " * 300),
               ChatMessage("user", "Thanks")]
    refused = list(engine.chat(ChatRequest(tuple(history), SamplingParams(max_tokens=32))))
    assert isinstance(refused[-1], Error) and refused[-1].kind is ErrorKind.CONTEXT_OVERFLOW
    trimmed = list(engine.chat(ChatRequest(tuple(history), SamplingParams(max_tokens=32),
                                           policy=ContextPolicy.DROP_OLDEST)))
    assert isinstance(trimmed[-1], Done)
    assert ollama.bodies("/api/chat")[-1]["messages"] == [{"role": "user",
                                                           "content": "Thanks"}]


# ------------------------------------------------------------------ faults and streams


def test_connection_refused_and_dns_failure_messages(monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = Http(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(RemoteError, match="refused the connection") as refused:
        http.get("/v1/models")
    assert refused.value.kind is ErrorKind.SERVER_UNREACHABLE

    def no_dns(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(RemoteError, match=r"Cannot find the server http://gpu-box\.lan:8080: "
                                          "the name does not resolve"):
        Http("http://gpu-box.lan:8080", retries=0).get("/v1/models")


def test_tls_to_a_plain_http_server_is_named(vllm: FakeServer):
    with pytest.raises(RemoteError, match=r"TLS handshake with https://127\.0\.0\.1:\d+ "
                                          "failed") as info:
        Http(vllm.url.replace("http://", "https://"), retries=0).get("/version")
    assert info.value.kind is ErrorKind.SERVER_UNREACHABLE


def test_a_key_echoed_by_a_server_is_redacted():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "key sk-secret is invalid"}})

    http = Http("http://box:1", "sk-secret", transport=httpx.MockTransport(handler))
    with pytest.raises(RemoteError) as info:
        http.get("/props")
    assert "sk-secret" not in info.value.message and "key *** is invalid" in info.value.message
    assert info.value.kind is ErrorKind.AUTH_FAILED


def test_sse_parsing_of_comments_multiline_data_and_errors():
    body = (": ping\n\ndata: {\"a\":\ndata: 1}\n\nevent: x\ndata: {\"b\": 2}\n\n"
            "data: [DONE]\n\ndata: {\"never\": 1}\n\n")
    response = httpx.Response(200, content=body.encode())
    assert list(sse_events(response, "srv")) == [{"a": 1}, {"b": 2}]
    bad = httpx.Response(200, content=b'data: {"error": {"message": "slot died"}}\n\n')
    with pytest.raises(RemoteError, match="stopped the reply with an error: slot died"):
        list(sse_events(bad, "srv"))
    broken = httpx.Response(200, content=b"data: {not json\n\n")
    with pytest.raises(RemoteError, match="malformed chunk"):
        list(sse_events(broken, "srv"))


def test_capabilities_before_connecting_promise_nothing():
    engine = RemoteEngine(Endpoint("http://127.0.0.1:9"))
    assert engine.capabilities.features == frozenset()
    assert "the server at http://127.0.0.1:9" in engine.capabilities.backend


# ------------------------------------------------------------------ endpoints


def test_endpoint_addresses_are_checked_and_normalized():
    assert Endpoint("http://box:8080/v1/").url == "http://box:8080"
    for bad in ("box:8080", "ftp://box", "http://", "http://box:port"):
        with pytest.raises(BadRequestError):
            Endpoint(bad)
    with pytest.raises(BadRequestError, match="concurrency"):
        Endpoint("http://box", concurrency=-1)


def test_saved_endpoints_round_trip_atomically_without_keys(verso_home: Path):
    save_endpoint(Endpoint("http://a:1", "a", ServerKind.VLLM, extra={"x": 1}))
    save_endpoint(Endpoint("http://b:2", "b"))
    save_endpoint(Endpoint("http://a:3", "a"))  # replaces
    assert [(e.name, e.url) for e in load_endpoints()] == [("b", "http://b:2"),
                                                           ("a", "http://a:3")]
    assert find_endpoint("b").url == "http://b:2"
    assert find_endpoint("http://b:2/v1").name == "b"
    assert find_endpoint("http://c:4").name == ""
    with pytest.raises(BadRequestError, match=r"No saved endpoint is named 'zz'\. Saved "
                                              r"endpoints: b, a"):
        find_endpoint("zz")
    remove_endpoint("b")
    files = list((verso_home / "config").iterdir())
    assert [f.name for f in files] == ["endpoints.json"]  # no temporary file left
    (verso_home / "config" / "endpoints.json").write_text("{broken")
    with pytest.raises(BadRequestError, match="cannot be read"):
        load_endpoints()


def test_cli_endpoints_commands(verso_home: Path, monkeypatch: pytest.MonkeyPatch):
    import io

    from engine.cli import main
    from engine.secrets import get_secret

    monkeypatch.setenv("MY_KEY", "sk-abc")
    out, err = io.StringIO(), io.StringIO()
    assert main(["endpoints", "add", "gpu", "http://gpu:8000", "--kind", "vllm",
                 "--extra", '{"repetition_penalty": 1.1}', "--api-key-env", "MY_KEY"],
                out=out, err=err) == 0
    assert "API key:" in out.getvalue()
    assert get_secret("endpoint:gpu") == "sk-abc"
    assert "sk-abc" not in (verso_home / "config" / "endpoints.json").read_text()
    out = io.StringIO()
    assert main(["endpoints", "list"], out=out, err=err) == 0
    assert "gpu" in out.getvalue() and "key saved" in out.getvalue()
    assert main(["endpoints", "add", "x", "http://x", "--extra", "[1]"], out=out,
                err=err) == 2
    assert main(["endpoints", "rm", "gpu"], out=out, err=err) == 0
    assert get_secret("endpoint:gpu") is None
    err = io.StringIO()
    assert main(["generate", "hi", "--endpoint", "gpu"], out=out, err=err) == 2
    assert "No saved endpoint is named 'gpu'" in err.getvalue()
    err = io.StringIO()
    assert main(["generate", "hi", "--endpoint", "http://127.0.0.1:9", "--api-key-env",
                 "UNSET_VAR_X"], out=out, err=err) == 2
    assert "UNSET_VAR_X is not set" in err.getvalue()


def test_document_sampling_sends_dry_to_llama_server_and_drops_it_elsewhere():
    from engine.api import Capabilities, without_missing_aids
    from engine.options import DOCUMENT_SAMPLING, SamplingParams
    from engine.remote.llama_server import native_sampling
    from engine.remote.openai import OpenAICompatible

    body = native_sampling(DOCUMENT_SAMPLING, 4096)
    assert body["dry_multiplier"] == 0.8 and body["dry_penalty_last_n"] == 4096
    assert body["dry_sequence_breakers"] == list(DOCUMENT_SAMPLING.dry_sequence_breakers)
    assert "xtc_probability" not in body
    generic = Capabilities("a server", sampling=OpenAICompatible.sampling(None))  # type: ignore[arg-type]
    fitted = without_missing_aids(generic, DOCUMENT_SAMPLING)
    assert fitted.dry_multiplier == SamplingParams().dry_multiplier
    assert fitted.temperature == 0
    assert not [n for n in generic.missing_sampling(fitted) if n.startswith(("dry", "xtc"))]
    assert without_missing_aids(Capabilities("local"), DOCUMENT_SAMPLING) is DOCUMENT_SAMPLING
