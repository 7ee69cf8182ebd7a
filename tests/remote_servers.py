"""Servers on 127.0.0.1 for the remote-engine tests: llama.cpp's own ``llama-server`` (built
into the virtualenv by ``make llama-server``), llama-cpp-python's ``llama_cpp.server``, a
proxy in front of a real server that injects faults, and a fake that answers with recorded
shapes of servers that cannot run here (vLLM, Ollama). Ports are free ones picked at start;
nothing leaves loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

LLAMA_SERVER = Path(sys.prefix) / "llama.cpp" / "build" / "bin" / "llama-server"
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _wait_ready(server: Server, path: str, headers: dict[str, str] | None = None) -> Server:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited: {server.log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.url + path, headers=headers, timeout=2).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the server did not start: {server.log.read_text()[-2000:]}")


def start_llama_server(model: Path, log_dir: Path, *, slots: int = 4, ctx: int = 4096,
                       api_key: str | None = None, threads: int = 1,
                       extra: tuple[str, ...] = ()) -> Server:
    """``llama-server`` on a free port; ``ctx`` is shared by the slots. Flash attention off,
    as Verso's engine runs by default, so scores match the local engine's."""
    if not LLAMA_SERVER.exists():
        raise RuntimeError(f"{LLAMA_SERVER} is missing: run `make llama-server`")
    port = free_port()
    log = log_dir / f"llama-server-{port}.log"
    command = [str(LLAMA_SERVER), "-m", str(model), "-c", str(ctx), "-np", str(slots),
               "-t", str(threads), "-fa", "off", "--host", "127.0.0.1", "--port", str(port),
               *extra]
    if api_key:
        command += ["--api-key", api_key]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return _wait_ready(Server(f"http://127.0.0.1:{port}", process, log), "/health")


def start_llama_cpp_python_server(model: Path, log_dir: Path, ctx: int = 2048) -> Server:
    """llama-cpp-python's OpenAI-compatible server (a generic server to Verso)."""
    port = free_port()
    log = log_dir / f"llama-cpp-python-server-{port}.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
               "127.0.0.1", "--port", str(port), "--n_ctx", str(ctx), "--n_threads", "1",
               "--model_alias", "smol"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    return _wait_ready(Server(f"http://127.0.0.1:{port}", process, log), "/v1/models")


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-reply is what these tests do


@dataclass
class Fault:
    """What the proxy does to the next matching request (``path`` prefix, ``method``)."""

    path: str
    status: int = 0  # reply with this status and an error body instead of forwarding
    after_chunks: int = -1  # stream this many events, then ...
    then: str = ""  # "malformed" | "drop" | "stall"
    method: str = ""
    times: int = 1
    body: dict[str, Any] | None = None  # a JSON body to answer with (status 200 or given)


@dataclass
class FaultProxy:
    """Forwards to ``upstream``; ``faults`` are applied in order to matching requests."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FaultProxy:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

        self._server = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if path.startswith(fault.path) and (not fault.method or fault.method == method):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.seen.append((method, handler.path))
        fault = self._fault(method, handler.path)
        if fault is not None and (fault.status or fault.body is not None):
            payload = json.dumps(fault.body if fault.body is not None else
                                 {"error": {"code": fault.status, "message": "injected",
                                            "type": "server_error"}}).encode()
            handler.send_response(fault.status or 200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() in ("authorization", "content-type")}
        with httpx.Client(timeout=120) as client, client.stream(
                method, self.upstream + handler.path, content=body, headers=headers) as reply:
            handler.send_response(reply.status_code)
            streaming = reply.headers.get("content-type", "").startswith("text/event-stream")
            handler.send_header("Content-Type", reply.headers.get("content-type", ""))
            if not streaming:
                data = reply.read()
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            handler.send_header("Connection", "close")
            handler.end_headers()
            events = 0
            for line in reply.iter_lines():
                if fault is not None and events == fault.after_chunks:
                    if fault.then == "malformed":
                        handler.wfile.write(b'data: {"content": "x", "tok\n\n')
                        handler.wfile.flush()
                    elif fault.then == "stall":
                        time.sleep(30)
                    handler.close_connection = True
                    return
                handler.wfile.write((line + "\n").encode())
                handler.wfile.flush()
                if not line:
                    events += 1


Route = Callable[[dict[str, Any]], Any]
"""A request body -> a reply: a dict/list (JSON), a list of ``("sse"|"ndjson", chunks)``,
or ``(status, dict)``."""


@dataclass
class FakeServer:
    """Answers ``routes[(method, path)]``; records every request body in ``requests``."""

    routes: dict[tuple[str, str], Route]
    requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = field(
        default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer._handle(self, "GET")

            def do_POST(self) -> None:
                outer._handle(self, "POST")

        self._server = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for _, p, body, _ in self.requests if p == path]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        path = handler.path.split("?")[0]
        self.requests.append((method, path, body, dict(handler.headers.items())))
        route = self.routes.get((method, path))
        status, reply = 200, route(body) if route else (404, {"error": "not found"})
        if isinstance(reply, tuple) and isinstance(reply[0], int):
            status, reply = reply
        if isinstance(reply, tuple) and reply[0] in ("sse", "ndjson"):
            kind, chunks = reply
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream" if kind == "sse"
                                else "application/x-ndjson")
            handler.send_header("Connection", "close")
            handler.end_headers()
            for chunk in chunks:
                line = (f"data: {json.dumps(chunk)}\n\n" if kind == "sse" and
                        not isinstance(chunk, str) else
                        chunk if isinstance(chunk, str) else json.dumps(chunk) + "\n")
                handler.wfile.write(line.encode())
                handler.wfile.flush()
            handler.close_connection = True
            return
        data = json.dumps(reply).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def collect(events: Iterator[Any]) -> list[Any]:
    return list(events)


def check_a_loop_is_cut(engine: Any) -> None:
    """Greedy SmolLM2 continues "The cat sat on the mat." with the same sentence again and
    again (as in tests/test_loop_guard_model.py): with the guard off the server's text loops;
    with it on, Verso's side takes the copy back, closes the stream and ends it as repeating."""
    from engine.events import Done, FinishReason, Rollback
    from engine.options import GREEDY, CompletionRequest

    cats = "The cat sat on the mat. " * 6
    request = CompletionRequest(cats, replace(GREEDY, max_tokens=120))
    off = list(engine.complete(replace(request, sampling=replace(request.sampling,
                                                                   loop_guard=False))))[-1]
    assert isinstance(off, Done) and off.text.count("The cat sat on the mat.") > 3, off.text
    events = list(engine.complete(request))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason is FinishReason.REPEATING, done
    assert done.text.count("The cat sat on the mat.") <= 1 and done.stats.loops == 1
    assert [e for e in events if isinstance(e, Rollback) and e.repeating]
