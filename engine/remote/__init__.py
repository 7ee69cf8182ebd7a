"""Models on a server: llama.cpp's llama-server, vLLM, Ollama or any OpenAI-compatible
server, driven through the same ``Engine`` protocol as Verso's own engine
(``RemoteEngine``). Endpoints are described by ``Endpoint`` and saved with
``engine.remote.saved``; keys live in the keyring (``engine.secrets``)."""

from engine.remote.endpoint import Endpoint, ServerKind
from engine.remote.engine import RemoteEngine
from engine.remote.http import RemoteError

__all__ = ["Endpoint", "RemoteEngine", "RemoteError", "ServerKind"]
