"""HTTP to a model server: JSON calls, server-sent-event and JSON-lines streams, and every
transport or status failure turned into a ``RemoteError`` whose message says what happened
in words a user can act on (never a traceback, never the API key).

Only idempotent calls are retried (model lists, properties, tokenization): a generation is
never sent twice, since the server may already be working on the first one."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx

from engine.errors import VersoError
from engine.events import ErrorKind

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 502, 503, 504})
_BODY_CHARS = 300


class RemoteError(VersoError):
    """A failed exchange with a server. ``status`` is the HTTP status (0: no reply);
    ``body`` the server's JSON error object when it sent one."""

    def __init__(self, message: str, kind: ErrorKind, status: int = 0,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message, kind)
        self.status = status
        self.body = body or {}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe_transport_error(exc: httpx.TransportError, where: str,
                             timeouts: httpx.Timeout) -> RemoteError:
    """What a failed connection or read means, for the server at ``where``."""
    kind = ErrorKind.SERVER_UNREACHABLE
    if isinstance(exc, httpx.ConnectTimeout):
        return RemoteError(f"Could not connect to {where} within {timeouts.connect:g} s: the "
                           "server does not answer (is the address right, or a firewall in "
                           "the way?).", kind)
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout):
        return RemoteError(f"{where} sent nothing for {timeouts.read:g} s, so the request was "
                           "given up (the server may be overloaded; a longer read timeout "
                           "helps with slow models).", kind)
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return RemoteError(f"Cannot find the server {where}: the name does not resolve "
                               f"(DNS: {cause.strerror or cause}).", kind)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return RemoteError(f"The TLS certificate of {where} is not trusted "
                               f"({cause.verify_message or cause.reason}).", kind)
        if isinstance(cause, ssl.SSLError):
            return RemoteError(f"The TLS handshake with {where} failed ({cause.reason or cause}; "
                               "is it an https server, on this port?).", kind)
        if isinstance(cause, ConnectionRefusedError):
            return RemoteError(f"{where} refused the connection: no server is listening there "
                               "(is it running, on this port?).", kind)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return RemoteError(f"The connection to {where} broke off in the middle of the reply "
                           "(the server stopped or crashed?).", kind)
    if isinstance(exc, httpx.ConnectError):
        return RemoteError(f"Cannot connect to {where} ({exc}).", kind)
    return RemoteError(f"The exchange with {where} failed ({type(exc).__name__}: {exc}).", kind)


def error_body(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The server's own error message and error object, from the shapes servers use:
    ``{"error": {"message": ...}}`` (OpenAI, llama.cpp, vLLM), ``{"error": "..."}``
    (Ollama), ``{"message": ...}`` (older vLLM), ``{"detail": ...}`` (FastAPI)."""
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip() if response.is_closed else ""
        return text[:_BODY_CHARS], {}
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return str(error.get("message", ""))[:_BODY_CHARS], error
        if isinstance(error, str):
            return error[:_BODY_CHARS], data
        for key in ("message", "detail"):
            if key in data:
                return str(data[key])[:_BODY_CHARS], data
    return str(data)[:_BODY_CHARS], {}


def redact(text: str, secret: str | None) -> str:
    """``text`` with ``secret`` replaced (a server or proxy may echo a refused key)."""
    return text.replace(secret, "***") if secret else text


def status_error(response: httpx.Response, where: str, key: str | None) -> RemoteError:
    status = response.status_code
    had_key = bool(key)
    message, body = error_body(response)
    message = redact(message, key)
    said = f": {message}" if message else ""
    path = response.request.url.path
    if status in (401, 403):
        hint = ("the API key was refused" if had_key else
                "it needs an API key (give one with --api-key-env, or save it with the endpoint)")
        return RemoteError(f"{where} refused the request (HTTP {status}{said}): {hint}.",
                           ErrorKind.AUTH_FAILED, status, body)
    if status == 404:
        return RemoteError(f"{where} has no {path} (HTTP 404{said}); check the URL and the "
                           "server kind.", ErrorKind.SERVER_ERROR, status, body)
    if status == 429:
        after = response.headers.get("retry-after")
        wait = f"; it asks to wait {after} s" if after else ""
        return RemoteError(f"{where} is rate limiting (HTTP 429{said}){wait}. Try again later "
                           "or lower the concurrency.", ErrorKind.SERVER_BUSY, status, body)
    if status >= 500:
        return RemoteError(f"{where} failed on {path} (HTTP {status}{said}).",
                           ErrorKind.SERVER_ERROR, status, body)
    return RemoteError(f"{where} rejected the request (HTTP {status}{said}).",
                       ErrorKind.BAD_REQUEST, status, body)


class Http:
    """One server's HTTP client (thread-safe: concurrent requests share its pool)."""

    def __init__(self, base_url: str, api_key: str | None = None,
                 connect_timeout_s: float = 5.0, read_timeout_s: float = 120.0,
                 retries: int = 3, backoff_s: float = 0.25, max_connections: int = 16,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.where = self.base_url
        self.timeouts = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self._key = api_key or None
        headers = {"User-Agent": "verso-desktop"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=self.timeouts,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            transport=transport)
        self._open: set[httpx.Response] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, path: str, body: Any, idempotent: bool) -> httpx.Response:
        attempts = self.retries + 1 if idempotent else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.request(method, path, json=body)
            except httpx.TransportError as exc:
                if last:
                    raise describe_transport_error(exc, self.where, self.timeouts) from None
                log.info("retrying %s %s after %s", method, path, type(exc).__name__)
            else:
                if response.status_code < 400:
                    return response
                if last or response.status_code not in _RETRY_STATUS:
                    raise status_error(response, self.where, self._key)
                log.info("retrying %s %s after HTTP %d", method, path, response.status_code)
            time.sleep(self.backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self._json(self._send("GET", path, None, idempotent=True))

    def post(self, path: str, body: Any, idempotent: bool = False) -> Any:
        """``idempotent``: the call has no effect on the server (tokenization, templates),
        so a failed attempt may be repeated."""
        return self._json(self._send("POST", path, body, idempotent))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise RemoteError(f"{self.where} answered {response.request.url.path} with "
                              f"something that is not JSON: {response.text[:120]!r}",
                              ErrorKind.SERVER_ERROR, response.status_code) from None

    @contextlib.contextmanager
    def stream(self, path: str, body: Any) -> Iterator[httpx.Response]:
        """A streaming POST (never retried). ``abort`` closes every open stream."""
        try:
            with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise status_error(response, self.where, self._key)
                with self._lock:
                    self._open.add(response)
                try:
                    yield response
                finally:
                    with self._lock:
                        self._open.discard(response)
        except httpx.TransportError as exc:
            raise describe_transport_error(exc, self.where, self.timeouts) from None

    def abort(self) -> None:
        """Close the open streams from any thread: a read blocked on them ends at once."""
        with self._lock:
            open_now = list(self._open)
        for response in open_now:
            with contextlib.suppress(Exception):
                response.close()


def sse_events(response: httpx.Response, where: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a server-sent-event stream, until ``data: [DONE]`` or its end.
    An ``error`` event, or a data object holding ``error``, raises ``RemoteError``."""
    data: list[str] = []
    event = ""
    for line in response.iter_lines():
        if line.startswith(":"):
            continue  # a comment (keep-alive ping)
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "error":  # llama.cpp's server: "error: {json}"
                event, data = "error", [value]
            continue
        if not data:
            continue
        text, data, kind, event = "\n".join(data), [], event, ""
        if text.strip() == "[DONE]":
            return
        yield _chunk(text, where, error=kind == "error")
    if data and "\n".join(data).strip() != "[DONE]":
        yield _chunk("\n".join(data), where, error=event == "error")


def json_lines(response: httpx.Response, where: str) -> Iterator[dict[str, Any]]:
    """The objects of a newline-delimited JSON stream (Ollama's native API)."""
    for line in response.iter_lines():
        if line.strip():
            yield _chunk(line, where, error=False)


def _chunk(text: str, where: str, error: bool) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise RemoteError(f"{where} sent a malformed chunk in its reply: {text[:80]!r}",
                          ErrorKind.SERVER_ERROR) from None
    if not isinstance(value, dict):
        raise RemoteError(f"{where} sent a chunk that is not a JSON object: {text[:80]!r}",
                          ErrorKind.SERVER_ERROR)
    problem = value.get("error")
    if error or (problem and not value.get("choices")):
        message = problem.get("message", problem) if isinstance(problem, dict) else problem
        raise RemoteError(f"{where} stopped the reply with an error: {message}",
                          ErrorKind.SERVER_ERROR, body=problem if isinstance(problem, dict)
                          else None)
    return value
