"""A server Verso can drive: its address, kind, timeouts and extra request parameters.

The API key is never part of an ``Endpoint`` (nor of the file saved endpoints live in): it
is passed to the engine separately, from the environment or the system keyring
(``engine.secrets`` under ``secret_name``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from engine.errors import BadRequestError


class ServerKind(StrEnum):
    AUTO = "auto"  # detected when connecting
    LLAMA_SERVER = "llama-server"  # llama.cpp's own server
    VLLM = "vllm"
    OLLAMA = "ollama"  # its native /api
    OPENAI = "openai"  # any other OpenAI-compatible server


KIND_NAMES = {
    ServerKind.LLAMA_SERVER: "the llama.cpp server",
    ServerKind.VLLM: "the vLLM server",
    ServerKind.OLLAMA: "the Ollama server",
    ServerKind.OPENAI: "the OpenAI-compatible server",
    ServerKind.AUTO: "the server",
}

DEFAULT_CONCURRENCY = 4


def normalize_url(url: str) -> str:
    """The server's base URL: scheme and host checked, without a trailing ``/`` or ``/v1``
    (Verso adds the API paths itself)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(f"{url!r} is not a server address: give http://HOST:PORT or "
                              "https://HOST[:PORT][/PATH].")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise BadRequestError(f"{url!r} has an invalid port.") from None
    base = text.rstrip("/")
    return base.removesuffix("/v1").rstrip("/")


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    name: str = ""  # a saved endpoint's name; "" for an address given directly
    kind: ServerKind = ServerKind.AUTO
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0  # a long prompt on a busy server can take minutes
    concurrency: int = 0  # parallel requests; 0: the server's slot count, else 4
    extra: dict[str, Any] = field(default_factory=dict)  # merged into every generation request
    keep_alive: str = ""  # Ollama: how long it keeps the model loaded ("" its default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", normalize_url(self.url))
        object.__setattr__(self, "kind", ServerKind(self.kind))  # a plain string from a form
        problems = self.validate()
        if problems:
            raise BadRequestError("; ".join(problems))

    def validate(self) -> list[str]:
        problems = []
        if not 0 < self.connect_timeout_s <= 600:
            problems.append("the connect timeout must be between 0 and 600 s")
        if not 0 < self.read_timeout_s <= 86400:
            problems.append("the read timeout must be between 0 and 86,400 s")
        if not 0 <= self.concurrency <= 256:
            problems.append("the concurrency must be between 1 and 256 (0: automatic)")
        if not isinstance(self.extra, dict):
            problems.append("the extra parameters must be a JSON object")
        return problems

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def secret_name(self) -> str:
        """The keyring entry of this endpoint's API key."""
        return f"endpoint:{self.name or self.url}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "kind": str(self.kind),
                "connect_timeout_s": self.connect_timeout_s,
                "read_timeout_s": self.read_timeout_s, "concurrency": self.concurrency,
                "extra": dict(self.extra), "keep_alive": self.keep_alive}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        try:
            return cls(url=str(data["url"]), name=str(data.get("name", "")),
                       kind=ServerKind(data.get("kind", ServerKind.AUTO)),
                       connect_timeout_s=float(data.get("connect_timeout_s", 5.0)),
                       read_timeout_s=float(data.get("read_timeout_s", 300.0)),
                       concurrency=int(data.get("concurrency", 0)),
                       extra=dict(data.get("extra") or {}),
                       keep_alive=str(data.get("keep_alive", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequestError(f"a saved endpoint is not valid ({exc})") from None
