"""Which kind of server an endpoint is, from the endpoints only that kind has: llama.cpp's
``/props`` (slots and context), Ollama's ``/api/version``, vLLM's ``/version``; anything
else answering ``/v1/models`` is a generic OpenAI-compatible server."""

from __future__ import annotations

from engine.events import ErrorKind
from engine.remote.dialect import Dialect
from engine.remote.endpoint import Endpoint, ServerKind
from engine.remote.http import Http, RemoteError
from engine.remote.llama_server import LlamaServer
from engine.remote.ollama import Ollama
from engine.remote.openai import OpenAICompatible
from engine.remote.vllm import Vllm

_DIALECTS: dict[ServerKind, type[Dialect]] = {
    ServerKind.LLAMA_SERVER: LlamaServer, ServerKind.VLLM: Vllm,
    ServerKind.OLLAMA: Ollama, ServerKind.OPENAI: OpenAICompatible}

# Failures that end detection at once: the server is not there, or refuses us.
_FATAL = frozenset({ErrorKind.SERVER_UNREACHABLE, ErrorKind.AUTH_FAILED})


def _answers(http: Http, path: str, key: str) -> bool:
    try:
        reply = http.get(path)
    except RemoteError as exc:
        if exc.kind in _FATAL:
            raise
        return False
    return isinstance(reply, dict) and key in reply


def detect_kind(http: Http) -> ServerKind:
    if _answers(http, "/props", "total_slots"):
        return ServerKind.LLAMA_SERVER
    if _answers(http, "/api/version", "version"):
        return ServerKind.OLLAMA
    if _answers(http, "/version", "version"):
        return ServerKind.VLLM
    return ServerKind.OPENAI


def connect(endpoint: Endpoint, http: Http) -> Dialect:
    """The endpoint's dialect, its kind detected if not given, and the server described
    (``Dialect.info``). Raises ``RemoteError`` when the server cannot be reached or used."""
    kind = endpoint.kind if endpoint.kind is not ServerKind.AUTO else detect_kind(http)
    dialect = _DIALECTS[kind](http, endpoint)
    dialect.probe()
    return dialect
