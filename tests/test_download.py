"""engine.library.download against a small HTTP server on 127.0.0.1 started by each test: it
serves a few MB with Range support and can drop, stall, ignore ranges, change its ETag,
fail with a status or corrupt the bytes. No other network."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.errors import Cancelled
from engine.library import download as dl_module
from engine.library.download import (
    Downloader,
    DownloadError,
    DownloadErrorKind,
    DownloadProgress,
    DownloadRequest,
    DownloadState,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(DATA).hexdigest()
NAME = "model.gguf"
CHUNK = 64 * 1024
DROP = 1_000_000


@dataclass
class Served:
    range: str | None
    if_range: str | None
    auth: str | None
    status: int = 0
    sent: int = 0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-body is what these tests do


class FileServer:
    """Serves ``data`` at ``/model.gguf``. ``plan`` holds one behaviour dict per coming request
    (popped in order), ``always`` applies to every request. Behaviours: ``status`` (reply with
    it and no body), ``drop_after`` (close after that many body bytes), ``stall_after`` (send
    that many then go silent, for at most ``stall_s``), ``delay`` (seconds per 64 KiB chunk),
    ``ignore_range`` (always 200), ``ignore_if_range`` (206 even when If-Range differs),
    ``bad_range`` (206 with a Content-Range that does not match), ``corrupt`` (one flipped
    byte), ``truncate`` (serve a shorter file), ``retry_after`` (header with ``status``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.etag = '"v1"'
        self.plan: list[dict[str, Any]] = []
        self.always: dict[str, Any] = {}
        self.requests: list[Served] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.lock:
            b = {**self.always, **(self.plan.pop(0) if self.plan else {})}
            rec = Served(h.headers.get("Range"), h.headers.get("If-Range"),
                         h.headers.get("Authorization"))
            self.requests.append(rec)
            etag = self.etag
        h.close_connection = True
        if "status" in b:
            rec.status = b["status"]
            h.send_response(b["status"])
            if "retry_after" in b:
                h.send_header("Retry-After", str(b["retry_after"]))
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = self.data[:-10] if b.get("truncate") else self.data
        if b.get("corrupt"):
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if_range = h.headers.get("If-Range")
        if m and not b.get("ignore_range") and (
                if_range in (None, etag) or b.get("ignore_if_range")):
            start, status = int(m[1]), 206
        rec.status = status
        h.send_response(status)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            first = 0 if b.get("bad_range") else start
            h.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        body = data[start:]
        limit = min(b.get("drop_after", len(body)), b.get("stall_after", len(body)))
        try:
            for i in range(0, limit, CHUNK):  # bounded by the body's length
                piece = body[i:min(i + CHUNK, limit)]
                h.wfile.write(piece)
                h.wfile.flush()
                rec.sent += len(piece)
                if b.get("delay") and self.stopping.wait(b["delay"]):
                    return
            if "stall_after" in b and limit < len(body):
                self.stopping.wait(b.get("stall_s", 10.0))  # silent, then hang up
        except OSError:
            return  # the client went away


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FileServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    srv = FileServer(DATA).start()
    try:
        yield srv
    finally:
        srv.stop()


def request(srv: FileServer, **kw: Any) -> DownloadRequest:
    return DownloadRequest(url=srv.url, name=NAME, size=len(DATA), sha256=SHA,
                           revision="0123abcd", **kw)


def downloader(folder: Path, **kw: Any) -> Downloader:
    opts: dict[str, Any] = {"stall_timeout": 5.0, "connect_timeout": 5.0, "max_attempts": 3,
                            "backoff_base": 0.01, "disk_margin": 0, "progress_interval": 0.0}
    return Downloader(folder, **{**opts, **kw})


def run(d: Downloader, req: DownloadRequest) -> list[DownloadProgress]:
    return list(d.download(req))


def assert_done(folder: Path, events: list[DownloadProgress]) -> None:
    assert events[-1].state is DownloadState.DONE
    assert events[-1].path == folder / NAME
    assert (folder / NAME).read_bytes() == DATA
    assert not (folder / (NAME + ".part")).exists()
    assert not (folder / (NAME + ".part.json")).exists()


def test_fresh_download_is_verified_and_renamed(server: FileServer, tmp_path: Path) -> None:
    events = run(downloader(tmp_path), request(server))
    assert_done(tmp_path, events)
    states = [e.state for e in events]
    assert states[0] is DownloadState.CONNECTING
    assert DownloadState.DOWNLOADING in states
    assert states.index(DownloadState.VERIFYING) == len(states) - 2
    done = [e.bytes_done for e in events if e.state is DownloadState.DOWNLOADING]
    assert done == sorted(done) and done[-1] == len(DATA)
    assert all(e.total == len(DATA) for e in events)
    assert any(e.speed > 0 and e.eta is not None for e in events)
    assert [(r.range, r.status) for r in server.requests] == [(None, 200)]
    assert server.requests[0].auth is None


def test_a_file_already_in_place_is_checked_not_fetched(server: FileServer,
                                                        tmp_path: Path) -> None:
    run(downloader(tmp_path), request(server))
    events = run(downloader(tmp_path), request(server))
    assert events[-1].state is DownloadState.DONE and len(server.requests) == 1
    (tmp_path / NAME).write_bytes(b"another file")
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path), request(server))
    assert err.value.kind is DownloadErrorKind.FILE_EXISTS
    assert (tmp_path / NAME).read_bytes() == b"another file"
    assert len(server.requests) == 1


def test_resume_after_dropped_connection_continues_from_the_offset(
        server: FileServer, tmp_path: Path) -> None:
    server.plan = [{"drop_after": DROP}]
    events = run(downloader(tmp_path), request(server))
    assert_done(tmp_path, events)
    first, second = server.requests
    assert first.range is None and first.sent == DROP
    m = re.fullmatch(r"bytes=(\d+)-", second.range or "")
    assert m and 0 < int(m[1]) <= DROP
    assert second.if_range == '"v1"' and second.status == 206
    assert second.sent == len(DATA) - int(m[1]) < len(DATA)
    assert any(e.state is DownloadState.RETRYING for e in events)


def test_resume_across_a_restart_from_the_part_and_its_sidecar(server: FileServer,
                                                               tmp_path: Path) -> None:
    server.plan = [{"drop_after": DROP}]
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path, max_attempts=1), request(server))
    assert err.value.kind is DownloadErrorKind.NETWORK and err.value.retryable
    part = tmp_path / (NAME + ".part")
    assert str(part) in str(err.value) and "resumes" in str(err.value)
    assert not (tmp_path / NAME).exists()
    kept = part.stat().st_size
    assert 0 < kept <= DROP
    sidecar = json.loads((tmp_path / (NAME + ".part.json")).read_text())
    assert sidecar == {"version": 1, "url": server.url, "revision": "0123abcd",
                       "size": len(DATA), "sha256": SHA, "etag": '"v1"'}
    # a new downloader, as after restarting the app
    events = run(downloader(tmp_path), request(server))
    assert_done(tmp_path, events)
    assert events[0].state is DownloadState.CHECKING
    last = server.requests[-1]
    assert (last.range, last.if_range, last.status) == (f"bytes={kept}-", '"v1"', 206)
    assert last.sent == len(DATA) - kept


def test_resume_after_the_process_is_killed(server: FileServer, tmp_path: Path) -> None:
    """A real crash: a child process downloading slowly gets SIGKILL; this process resumes."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    server.plan = [{"delay": 0.05}]
    code = ("import sys; from engine.library.download import Downloader, DownloadRequest\n"
            "r = DownloadRequest(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4],\n"
            "                    revision='0123abcd')\n"
            "for _ in Downloader(sys.argv[5]).download(r): pass\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code, server.url, NAME, str(len(DATA)),
                              SHA, str(tmp_path)], env=env)
    part = tmp_path / (NAME + ".part")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                not part.exists() or part.stat().st_size < 5 * CHUNK):
            time.sleep(0.02)
        assert part.exists() and part.stat().st_size >= 5 * CHUNK
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    kept = part.stat().st_size
    assert kept < len(DATA) and not (tmp_path / NAME).exists()
    events = run(downloader(tmp_path), request(server))
    assert_done(tmp_path, events)
    last = server.requests[-1]
    assert last.range == f"bytes={kept}-" and last.sent == len(DATA) - kept


@pytest.mark.parametrize("second", [{"ignore_range": True}, {"bad_range": True}],
                         ids=["200-instead-of-206", "wrong-content-range"])
def test_a_reply_that_cannot_continue_the_part_restarts_from_zero(
        server: FileServer, tmp_path: Path, second: dict[str, Any]) -> None:
    server.plan = [{"drop_after": DROP}, second]
    events = run(downloader(tmp_path), request(server))
    assert_done(tmp_path, events)  # the whole file once, not the prefix plus the whole file
    assert server.requests[1].range is not None
    if "ignore_range" in second:  # the 200 body itself is the fresh download
        assert len(server.requests) == 2
        assert (server.requests[1].status, server.requests[1].sent) == (200, len(DATA))
    else:  # the bad 206 is dropped and the whole file asked for again
        assert len(server.requests) == 3
        assert server.requests[2].range is None and server.requests[2].sent == len(DATA)


@pytest.mark.parametrize("honours_if_range", [True, False])
def test_a_changed_etag_restarts_from_zero(server: FileServer, tmp_path: Path,
                                           honours_if_range: bool) -> None:
    server.plan = [{"drop_after": DROP}, {"ignore_if_range": not honours_if_range}]
    d = downloader(tmp_path)
    for event in d.download(request(server)):
        if event.state is DownloadState.RETRYING:
            server.etag = '"v2"'
    assert (tmp_path / NAME).read_bytes() == DATA
    assert server.requests[1].if_range == '"v1"'
    if honours_if_range:  # the server answers If-Range "v1" with the whole "v2" file
        assert len(server.requests) == 2 and server.requests[1].status == 200
    else:  # a 206 with the new ETag: Verso drops it and asks for the whole file
        assert len(server.requests) == 3 and server.requests[1].status == 206
        assert server.requests[2].range is None and server.requests[2].sent == len(DATA)


def test_a_stall_is_retried_from_what_is_on_disk(server: FileServer, tmp_path: Path) -> None:
    server.plan = [{"stall_after": DROP}]
    started = time.monotonic()
    events = run(downloader(tmp_path, stall_timeout=0.5), request(server))
    assert time.monotonic() - started < 5  # not the server's 10 s of silence
    assert_done(tmp_path, events)
    assert len(server.requests) == 2
    assert server.requests[1].range == f"bytes={server.requests[0].sent}-"
    retrying = [e for e in events if e.state is DownloadState.RETRYING]
    assert len(retrying) == 1 and "no data for 0.5 s" in retrying[0].message


def test_a_download_that_always_stalls_gives_up_after_bounded_attempts(
        server: FileServer, tmp_path: Path) -> None:
    server.always = {"stall_after": 0, "stall_s": 5.0}
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path, stall_timeout=0.3, max_attempts=3), request(server))
    assert err.value.kind is DownloadErrorKind.STALLED
    assert "stalled" in str(err.value).lower() and "3 attempts" in str(err.value)
    assert len(server.requests) == 3


@pytest.mark.parametrize(("status", "kind", "words"), [
    (401, DownloadErrorKind.UNAUTHORIZED, "no token"),
    (403, DownloadErrorKind.GATED, "licence not accepted (gated model)"),
    (404, DownloadErrorKind.NOT_FOUND, "not found"),
    (429, DownloadErrorKind.RATE_LIMITED, "rate limited"),
    (500, DownloadErrorKind.SERVER_ERROR, "server error"),
    (418, DownloadErrorKind.HTTP_ERROR, "HTTP 418"),
])
def test_each_http_error_has_its_own_kind(server: FileServer, tmp_path: Path, status: int,
                                          kind: DownloadErrorKind, words: str) -> None:
    server.always = {"status": status, "retry_after": 7}
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path, max_attempts=3), request(server))
    assert err.value.kind is kind and err.value.status == status
    assert words.lower() in str(err.value).lower()
    # only 5xx is retried; nothing is left behind when nothing arrived
    assert len(server.requests) == (3 if status >= 500 else 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    if status == 429:
        assert err.value.retry_after == 7


def test_a_passing_server_error_is_retried(server: FileServer, tmp_path: Path) -> None:
    server.plan = [{"status": 503}, {"status": 500}]
    assert_done(tmp_path, run(downloader(tmp_path, max_attempts=3), request(server)))
    assert len(server.requests) == 3


def test_the_token_is_sent_and_never_logged(server: FileServer, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.plan = [{"drop_after": DROP}, {"status": 401}]
    req = request(server, token="hf_SECRET123")
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path), req)
    assert err.value.kind is DownloadErrorKind.UNAUTHORIZED
    assert "token was refused" in str(err.value)
    assert [r.auth for r in server.requests] == ["Bearer hf_SECRET123"] * 2
    for text in (caplog.text, repr(req), str(err.value),
                 (tmp_path / (NAME + ".part.json")).read_text()):
        assert "SECRET" not in text


@pytest.mark.parametrize("behaviour", [{"corrupt": True}, {"truncate": True}])
def test_a_bad_body_fails_verification_and_never_becomes_the_file(
        server: FileServer, tmp_path: Path, behaviour: dict[str, Any]) -> None:
    server.always = behaviour
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path), request(server))
    assert err.value.kind is DownloadErrorKind.VERIFY_FAILED
    message = str(err.value)
    assert NAME in message and str(len(DATA)) in message
    if "corrupt" in behaviour:
        got = hashlib.sha256(server.data[:len(DATA) // 2] + bytes([DATA[len(DATA) // 2] ^ 0xFF])
                             + DATA[len(DATA) // 2 + 1:]).hexdigest()
        assert f"expected {len(DATA)} bytes with SHA-256 {SHA}" in message and got in message
    assert list(tmp_path.iterdir()) == []  # no final file, and the bad part is deleted
    assert len(server.requests) == 1


def test_not_enough_space_refuses_before_starting(server: FileServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    free = {"bytes": 1_000_000}
    real = shutil.disk_usage

    def fake(path: Any) -> Any:
        usage = real(path)
        return type(usage)(usage.total, usage.used, free["bytes"])

    monkeypatch.setattr(shutil, "disk_usage", fake)
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path, disk_margin=10_000), request(server))
    assert err.value.kind is DownloadErrorKind.NO_SPACE and err.value.path == tmp_path
    assert str(tmp_path) in str(err.value)
    assert "3.1 MB more" in str(err.value) and "1.0 MB is free" in str(err.value)
    assert server.requests == [] and list(tmp_path.iterdir()) == []
    # what is already on disk counts: with 1 MB kept, 2.2 MB free is enough
    server.plan = [{"drop_after": DROP}]
    free["bytes"] = 10**12
    with pytest.raises(DownloadError):
        run(downloader(tmp_path, max_attempts=1), request(server))
    free["bytes"] = len(DATA) - DROP + 10_000
    assert_done(tmp_path, run(downloader(tmp_path, disk_margin=10_000), request(server)))


def test_a_full_disk_while_writing_keeps_the_part(server: FileServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = dl_module._write_all
    written = {"bytes": 0}

    def filling(f: Any, data: bytes) -> None:
        if written["bytes"] + len(data) > DROP:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)
        written["bytes"] += len(data)

    monkeypatch.setattr(dl_module, "_write_all", filling)
    with pytest.raises(DownloadError) as err:
        run(downloader(tmp_path), request(server))
    part = tmp_path / (NAME + ".part")
    assert err.value.kind is DownloadErrorKind.DISK_FULL
    assert "disk is full" in str(err.value) and "kept in" in str(err.value)
    assert str(part) in str(err.value)
    assert len(server.requests) == 1  # not retried
    assert part.stat().st_size == written["bytes"] > 0
    assert (tmp_path / (NAME + ".part.json")).exists() and not (tmp_path / NAME).exists()
    monkeypatch.setattr(dl_module, "_write_all", real)  # space was freed
    assert_done(tmp_path, run(downloader(tmp_path), request(server)))
    assert server.requests[-1].range == f"bytes={written['bytes']}-"


def _cancel_soon(d: Downloader, req: DownloadRequest, after: float) -> tuple[float, int]:
    """Cancel from another thread once bytes arrived; the seconds it took to stop."""
    timer: threading.Timer | None = None
    stamp = {"cancel": 0.0}

    def cancel() -> None:
        stamp["cancel"] = time.monotonic()
        d.cancel()

    done = 0
    with pytest.raises(Cancelled):
        try:
            for event in d.download(req):
                done = max(done, event.bytes_done)
                if timer is None and event.state is DownloadState.DOWNLOADING and done:
                    timer = threading.Timer(after, cancel)
                    timer.start()
        finally:
            if timer is not None:
                timer.cancel()
    return time.monotonic() - stamp["cancel"], done


@pytest.mark.parametrize("behaviour", [{"delay": 0.05}, {"stall_after": DROP}],
                         ids=["while-receiving", "while-stalled"])
def test_cancel_stops_promptly_and_keeps_the_part(server: FileServer, tmp_path: Path,
                                                  behaviour: dict[str, Any]) -> None:
    server.plan = [behaviour]
    d = downloader(tmp_path, stall_timeout=20.0)
    took, _ = _cancel_soon(d, request(server), after=0.3)
    assert took < 1.0  # not the 20 s stall timeout, nor the rest of the file
    part = tmp_path / (NAME + ".part")
    kept = part.stat().st_size
    assert 0 < kept < len(DATA) and not (tmp_path / NAME).exists()
    assert (tmp_path / (NAME + ".part.json")).exists()
    with pytest.raises(Cancelled):  # a cancelled downloader stays cancelled
        run(d, request(server))
    assert_done(tmp_path, run(downloader(tmp_path), request(server)))
    assert server.requests[-1].range == f"bytes={kept}-"


def test_a_cancel_check_callback_stops_between_chunks(server: FileServer,
                                                      tmp_path: Path) -> None:
    server.plan = [{"delay": 0.02}]
    stop = threading.Event()
    d = downloader(tmp_path, cancel_check=stop.is_set)
    with pytest.raises(Cancelled):
        for event in d.download(request(server)):
            if event.bytes_done > 4 * CHUNK:
                stop.set()
    assert 0 < (tmp_path / (NAME + ".part")).stat().st_size < len(DATA)


def test_requests_are_validated() -> None:
    for bad in ({"name": "../x.gguf"}, {"name": "a/b.gguf"}, {"sha256": "abc"},
                {"url": "ftp://example/x"}, {"size": -1}):
        args: dict[str, Any] = {"url": "http://127.0.0.1/x", "name": NAME, "size": 1,
                                "sha256": SHA, **bad}
        with pytest.raises(ValueError):
            DownloadRequest(**args)
    assert DownloadRequest("http://127.0.0.1/x", NAME, 1, SHA.upper()).sha256 == SHA


def test_a_part_of_another_download_is_not_resumed(server: FileServer, tmp_path: Path) -> None:
    """A part whose sidecar names another file (or no sidecar at all) starts from zero."""
    part, sidecar = tmp_path / (NAME + ".part"), tmp_path / (NAME + ".part.json")
    for sidecar_text in (json.dumps({"version": 1, "url": server.url, "revision": "0123abcd",
                                     "size": len(DATA), "sha256": "0" * 64, "etag": '"v1"'}),
                         None):
        (tmp_path / NAME).unlink(missing_ok=True)
        part.write_bytes(b"x" * DROP)
        if sidecar_text is not None:
            sidecar.write_text(sidecar_text)
        assert_done(tmp_path, run(downloader(tmp_path), request(server)))
        assert server.requests[-1].range is None
