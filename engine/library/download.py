"""Verso's own resumable, verified downloader.

``Downloader(folder).download(DownloadRequest(url, name, size, sha256))`` is a generator of
``DownloadProgress`` events; it returns after the ``DONE`` event, or raises a
``DownloadError`` (branch on its ``kind``) or ``engine.errors.Cancelled``.

What it guarantees:

- Bytes go to ``NAME.part``; ``NAME.part.json`` (written atomically, before any byte) records
  the url, revision, size, expected SHA-256 and the server's ETag. A later run (after a
  cancel, a crash or a restart) re-hashes the part and asks for the rest with
  ``Range: bytes=N-`` and ``If-Range: <ETag>``. Only a ``206`` whose ``Content-Range`` is
  exactly ``bytes N-(size-1)/size`` with an unchanged ETag continues the part; a ``200``
  continues as a fresh download from byte zero, and any other range or a changed ETag starts
  again from zero.
- The file appears under ``NAME`` only after its size and SHA-256 (hashed while writing)
  match and the part is fsynced; the rename is atomic. A mismatched download is deleted and
  the error says which file, what was expected and what arrived.
- Network errors, 5xx replies and stalls (no bytes for ``stall_timeout`` seconds) are retried
  with exponential backoff, resuming from what is on disk; ``max_attempts`` bounds the
  attempts in a row that bring no new bytes. 401, 403, 404 and 429 are not retried: each has
  its own ``DownloadErrorKind``.
- Free space is checked before starting; a full disk while writing stops the download and
  keeps the part for later.
- The token goes only into the ``Authorization`` header (httpx drops it on redirects to
  another host, such as the hub's CDN); it is never logged nor part of a ``repr``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from engine.api import CancelCheck
from engine.errors import Cancelled
from engine.units import format_bytes

log = logging.getLogger(__name__)

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
_SIDECAR_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HASH_BLOCK = 1 << 20
_FSYNC_EVERY = 64 << 20  # bytes between fsyncs of the part, so a crash loses little
_SPEED_WINDOW_S = 3.0
_USER_AGENT = "verso-desktop"
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DownloadState(StrEnum):
    CHECKING = "checking"  # re-hashing what is already on disk
    CONNECTING = "connecting"
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # waiting before the next attempt; the event's message says why
    VERIFYING = "verifying"
    DONE = "done"


@dataclass(frozen=True)
class DownloadProgress:
    name: str
    state: DownloadState
    bytes_done: int
    total: int
    speed: float = 0.0  # bytes per second over the last few seconds
    eta: float | None = None  # seconds left at that speed; None while unknown
    attempt: int = 1
    message: str = ""
    path: Path | None = None  # the final file, on DONE

    @property
    def fraction(self) -> float:
        return self.bytes_done / self.total if self.total else 1.0


class DownloadErrorKind(StrEnum):
    UNAUTHORIZED = "unauthorized"  # 401: no token, or one the server refuses
    GATED = "gated"  # 403: the model's licence is not accepted (gated model)
    NOT_FOUND = "not_found"  # 404
    RATE_LIMITED = "rate_limited"  # 429; DownloadError.retry_after when the server said
    SERVER_ERROR = "server_error"  # 5xx, still after the retries
    NETWORK = "network"  # connection failures, still after the retries
    STALLED = "stalled"  # no bytes for stall_timeout, still after the retries
    HTTP_ERROR = "http_error"  # any other unexpected reply
    NO_SPACE = "no_space"  # not enough free space: refused before starting
    DISK_FULL = "disk_full"  # the disk filled up while writing; the part is kept
    WRITE_FAILED = "write_failed"  # any other error writing the library folder
    VERIFY_FAILED = "verify_failed"  # size or SHA-256 mismatch; the bad part is deleted
    FILE_EXISTS = "file_exists"  # a different file already has the final name


_RETRYABLE = frozenset({DownloadErrorKind.SERVER_ERROR, DownloadErrorKind.NETWORK,
                        DownloadErrorKind.STALLED})


class DownloadError(Exception):
    """A download that cannot finish now. Callers branch on ``kind``; the message is for the
    user and names the file or folder concerned."""

    def __init__(self, kind: DownloadErrorKind, message: str, *, path: Path | None = None,
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path
        self.status = status
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        return str(self)

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


@dataclass(frozen=True)
class DownloadRequest:
    """One file to fetch: ``size`` and ``sha256`` as the hub reports them (``lfs.size`` and
    ``lfs.sha256`` from ``get_paths_info`` at a pinned ``revision``)."""

    url: str
    name: str
    size: int
    sha256: str
    revision: str | None = None
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        if (not self.name or self.name in (".", "..") or Path(self.name).name != self.name
                or "/" in self.name or "\\" in self.name):
            raise ValueError(f"not a plain file name: {self.name!r}")
        if self.size < 0:
            raise ValueError(f"negative size: {self.size}")
        sha = self.sha256.strip().lower()
        if not _SHA256.fullmatch(sha):
            raise ValueError(f"not a SHA-256 hex digest: {self.sha256!r}")
        object.__setattr__(self, "sha256", sha)


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, kind: DownloadErrorKind, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status


class _Restart(Exception):
    """The server's reply cannot continue the part: ask again for the whole file."""


def _write_all(f: io.FileIO, data: bytes) -> None:
    """Write every byte of ``data`` (an unbuffered file may take fewer in one call)."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(errno.EIO, "the file took no bytes")
        view = view[n:]


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op elsewhere)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Transfer:
    """The state of one download: the open part, the running hash and what the server said."""

    def __init__(self, request: DownloadRequest, final: Path, f: io.FileIO) -> None:
        self.request = request
        self.final = final
        self.part = final.with_name(final.name + PART_SUFFIX)
        self.sidecar = final.with_name(final.name + SIDECAR_SUFFIX)
        self.f = f
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.etag: str | None = None
        self.received = 0  # bytes received in this call, restarts included (for the speed)
        self.synced = 0

    def restart(self) -> None:
        self.f.seek(0)
        self.f.truncate(0)
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.synced = 0
        self.etag = None


class Downloader:
    """Downloads files into one library folder. ``cancel()`` may be called from any thread:
    it stops the current download promptly (even one waiting on a stalled connection) and
    every later one on this instance; the part stays, and a new ``Downloader`` resumes it."""

    def __init__(self, folder: str | Path, *, stall_timeout: float = 30.0,
                 connect_timeout: float = 30.0, max_attempts: int = 5,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 disk_margin: int = 100 * 1000 * 1000, progress_interval: float = 0.2,
                 client: httpx.Client | None = None,
                 cancel_check: CancelCheck | None = None) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.folder = Path(folder)
        self.stall_timeout = stall_timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.disk_margin = disk_margin
        self.progress_interval = progress_interval
        self._timeout = httpx.Timeout(stall_timeout, connect=connect_timeout)
        self._client = client
        self._cancel_check = cancel_check
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None

    # -- cancel ---------------------------------------------------------------------------

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            response = self._response
        if response is not None:
            _shutdown(response)

    @property
    def cancelled(self) -> bool:
        if not self._cancelled.is_set() and self._cancel_check is not None \
                and self._cancel_check():
            self._cancelled.set()
        return self._cancelled.is_set()

    def _check_cancel(self) -> None:
        if self.cancelled:
            raise Cancelled("download cancelled")

    def _set_response(self, response: httpx.Response | None) -> None:
        with self._lock:
            self._response = response
        if response is not None and self._cancelled.is_set():
            _shutdown(response)

    # -- paths ----------------------------------------------------------------------------

    def final_path(self, name: str) -> Path:
        return self.folder / name

    def part_path(self, name: str) -> Path:
        return self.folder / (name + PART_SUFFIX)

    def sidecar_path(self, name: str) -> Path:
        return self.folder / (name + SIDECAR_SUFFIX)

    # -- the download ---------------------------------------------------------------------

    def download(self, request: DownloadRequest,
                 folder: str | Path | None = None) -> Iterator[DownloadProgress]:
        """Download ``request`` into ``folder`` (default: this downloader's folder)."""
        folder = Path(folder) if folder is not None else self.folder
        final = folder / request.name
        part = folder / (request.name + PART_SUFFIX)
        sidecar_path = folder / (request.name + SIDECAR_SUFFIX)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _write_error(e, folder, f"cannot create the library folder {folder}") from e
        if final.exists():
            yield from self._existing(request, final)
            return
        self._check_cancel()
        try:
            sidecar = _read_sidecar(sidecar_path)
            if part.exists() and not _sidecar_matches(sidecar, request):
                log.info("%s: the part on disk is not this download; starting from zero",
                         part)
                part.unlink()
            if not part.exists():
                sidecar = None
            self._check_space(request, part.stat().st_size if sidecar is not None else 0,
                              folder)
            f = io.FileIO(part, "r+b" if part.exists() else "w+b")
        except OSError as e:
            raise _write_error(e, part, f"cannot open {part}") from e
        try:
            t = yield from self._fetch(request, final, f, sidecar)
        except BaseException:
            _forget_if_empty(part, sidecar_path)
            raise
        try:
            os.replace(t.part, final)
            fsync_dir(folder)
            t.sidecar.unlink(missing_ok=True)
        except OSError as e:
            raise _write_error(e, final, f"cannot move the download into {final}") from e
        log.info("downloaded %s (%s, SHA-256 verified)", final, format_bytes(request.size))
        yield DownloadProgress(request.name, DownloadState.DONE, request.size, request.size,
                               path=final)

    def _fetch(self, request: DownloadRequest, final: Path, f: io.FileIO,
               sidecar: dict[str, Any] | None) -> Generator[DownloadProgress, None, _Transfer]:
        """Resume or start the part, download the rest and verify it; the part is closed
        on return, ready to be renamed."""
        with f:
            t = _Transfer(request, final, f)
            if sidecar is not None:
                etag = sidecar.get("etag")
                t.etag = etag if isinstance(etag, str) else None
                yield from self._rehash(t)
            self._save_sidecar(t)
            client = self._client or httpx.Client()
            try:
                yield from self._transfer(t, client)
            finally:
                if self._client is None:
                    client.close()
            yield DownloadProgress(request.name, DownloadState.VERIFYING, t.offset,
                                   request.size)
            self._verify(t)
        return t

    def _existing(self, request: DownloadRequest, final: Path) -> Iterator[DownloadProgress]:
        """The final name is taken: done if it is this very file, an error otherwise."""
        size = final.stat().st_size
        digest = ""
        if size == request.size:
            hasher = hashlib.sha256()
            with final.open("rb", buffering=0) as f:
                yield from self._hash_file(f, hasher, request, size)
            digest = hasher.hexdigest()
        if digest != request.sha256:
            raise DownloadError(
                DownloadErrorKind.FILE_EXISTS,
                f"{final} already exists and is a different file ({size} bytes"
                + (f", SHA-256 {digest}" if digest else "")
                + f"; expected {request.size} bytes with SHA-256 {request.sha256}). "
                "Move or delete it, or download under another name.", path=final)
        for leftover in (final.with_name(final.name + PART_SUFFIX),
                         final.with_name(final.name + SIDECAR_SUFFIX)):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
        yield DownloadProgress(request.name, DownloadState.DONE, size, size, path=final)

    def _hash_file(self, f: io.FileIO, hasher: Any, request: DownloadRequest,
                   size: int) -> Iterator[DownloadProgress]:
        done = 0
        last = 0.0
        while True:
            self._check_cancel()
            block = f.read(_HASH_BLOCK)
            if not block:
                return
            hasher.update(block)
            done += len(block)
            now = time.monotonic()
            if now - last >= self.progress_interval:
                last = now
                yield DownloadProgress(request.name, DownloadState.CHECKING, done, size,
                                       message="checking the part already downloaded")

    def _rehash(self, t: _Transfer) -> Iterator[DownloadProgress]:
        """Continue the hash over the part on disk; a part longer than the file restarts."""
        size = os.fstat(t.f.fileno()).st_size
        if size > t.request.size:
            log.info("%s is longer than the file; starting from zero", t.part)
            t.restart()
            return
        yield from self._hash_file(t.f, t.hasher, t.request, size)
        t.offset = t.synced = size
        t.f.seek(size)
        log.info("%s: resuming at %s of %s", t.part, format_bytes(size),
                 format_bytes(t.request.size))

    def _check_space(self, request: DownloadRequest, on_disk: int, folder: Path) -> None:
        left = request.size - min(on_disk, request.size)
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return  # unknown: ENOSPC while writing still stops cleanly
        if free < left + self.disk_margin:
            raise DownloadError(
                DownloadErrorKind.NO_SPACE,
                f"Not enough free space in {folder} for {request.name}: it needs "
                f"{format_bytes(left)} more (plus {format_bytes(self.disk_margin)} to spare) "
                f"but only {format_bytes(free)} is free. Free some space or choose another "
                "library folder.", path=folder)

    def _save_sidecar(self, t: _Transfer) -> None:
        r = t.request
        data = {"version": _SIDECAR_VERSION, "url": r.url, "revision": r.revision,
                "size": r.size, "sha256": r.sha256, "etag": t.etag}
        tmp = t.sidecar.with_name(t.sidecar.name + ".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                json.dump(data, out, indent=1)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, t.sidecar)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _write_error(e, t.sidecar, f"cannot write {t.sidecar}", t) from e

    def _transfer(self, t: _Transfer, client: httpx.Client) -> Iterator[DownloadProgress]:
        """Attempts until the whole file is on disk; raises when it cannot be."""
        r = t.request
        if 0 < t.offset == r.size:  # a crash after the last byte, before the rename
            if t.hasher.copy().hexdigest() == r.sha256:
                return
            log.info("%s is complete but does not match; starting from zero", t.part)
            t.restart()
        failures = 0  # attempts in a row that brought no new bytes
        best = t.offset
        attempt = 0
        while True:
            attempt += 1
            self._check_cancel()
            try:
                yield from self._attempt(t, client, attempt)
                return
            except _Restart:
                continue  # at most once per attempt: the next request has no Range
            except _Retry as e:
                self._check_cancel()
                failure = e
            except httpx.TimeoutException as e:
                self._check_cancel()
                if isinstance(e, httpx.ReadTimeout):
                    failure = _Retry(DownloadErrorKind.STALLED,
                                     f"no data for {self.stall_timeout:g} s")
                else:
                    failure = _Retry(DownloadErrorKind.NETWORK, f"timed out ({e})")
            except httpx.TransportError as e:
                self._check_cancel()
                failure = _Retry(DownloadErrorKind.NETWORK, f"network error ({e})")
            if t.offset > best:
                best = t.offset
                failures = 1
            else:
                failures += 1
            log.info("%s: attempt %d failed: %s (%s of %s on disk)", t.request.name, attempt,
                     failure.reason, format_bytes(t.offset), format_bytes(t.request.size))
            if failures >= self.max_attempts:
                raise DownloadError(
                    failure.kind,
                    f"{_KIND_TEXT[failure.kind]}: {failure.reason} while downloading "
                    f"{t.request.name} from {_host(t.request.url)} (gave up after "
                    f"{attempt} attempts). The {format_bytes(t.offset)} downloaded so far are "
                    f"kept in {t.part}; the download resumes from there.",
                    path=t.part, status=failure.status)
            delay = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
            yield DownloadProgress(t.request.name, DownloadState.RETRYING, t.offset,
                                   t.request.size, attempt=attempt,
                                   message=f"{failure.reason}; retrying in {delay:.1f} s")
            self._sleep(delay)

    def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or until cancelled (raising ``Cancelled``)."""
        deadline = time.monotonic() + delay
        while True:
            self._check_cancel()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cancelled.wait(min(left, 0.1))

    def _headers(self, t: _Transfer) -> dict[str, str]:
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if t.request.token:
            headers["Authorization"] = f"Bearer {t.request.token}"
        if t.offset > 0:
            headers["Range"] = f"bytes={t.offset}-"
            if t.etag:
                headers["If-Range"] = t.etag
        return headers

    def _attempt(self, t: _Transfer, client: httpx.Client,
                 attempt: int) -> Iterator[DownloadProgress]:
        r = t.request
        ranged = t.offset > 0
        yield DownloadProgress(r.name, DownloadState.CONNECTING, t.offset, r.size,
                               attempt=attempt)
        with client.stream("GET", r.url, headers=self._headers(t), timeout=self._timeout,
                           follow_redirects=True) as response:
            self._set_response(response)
            try:
                self._check_status(response, t)
                etag = response.headers.get("ETag")
                if response.status_code == 206:
                    expected = f"bytes {t.offset}-{r.size - 1}/{r.size}"
                    got = response.headers.get("Content-Range", "").strip()
                    changed = t.etag is not None and etag is not None and etag != t.etag
                    if got != expected or changed:
                        if not ranged:
                            raise DownloadError(
                                DownloadErrorKind.HTTP_ERROR,
                                f"{_host(r.url)} answered a request for all of {r.name} "
                                f"with part of it ({got or 'no Content-Range'}).",
                                path=t.part, status=206)
                        log.info("%s: the server's reply cannot continue the part (%s); "
                                 "starting from zero", r.name,
                                 "ETag changed" if changed else f"Content-Range {got!r}, "
                                                               f"expected {expected!r}")
                        t.restart()
                        raise _Restart
                elif ranged:
                    log.info("%s: the server sent the whole file instead of the rest; "
                             "starting from zero", r.name)
                    t.restart()
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) != r.size - t.offset:
                    self._discard(t)
                    raise DownloadError(
                        DownloadErrorKind.VERIFY_FAILED,
                        f"{_host(r.url)} offers {int(length) + t.offset} bytes for {r.name} "
                        f"but {r.size} were expected: the file on the server is not the one "
                        "asked for (was the revision pinned?).", path=t.final,
                        status=response.status_code)
                if etag != t.etag:
                    t.etag = etag
                    self._save_sidecar(t)
                yield from self._receive(response, t, attempt)
            finally:
                self._set_response(None)

    def _check_status(self, response: httpx.Response, t: _Transfer) -> None:
        status = response.status_code
        if status in (200, 206):
            return
        r = t.request
        where = f"{r.name} from {_host(r.url)}"
        if status == 401:
            detail = ("the token was refused" if r.token else
                      "no token: this file needs a Hugging Face access token")
            raise DownloadError(DownloadErrorKind.UNAUTHORIZED,
                                f"Not authorized (401) to download {where}: {detail}.",
                                status=status)
        if status == 403:
            raise DownloadError(
                DownloadErrorKind.GATED,
                f"Access denied (403) to {where}: licence not accepted (gated model). Accept "
                "the model's licence on its Hugging Face page with the account of your token.",
                status=status)
        if status == 404:
            raise DownloadError(
                DownloadErrorKind.NOT_FOUND,
                f"{r.name} was not found (404) at {_host(r.url)}"
                + (f" at revision {r.revision}" if r.revision else "")
                + ": check the repository, the file name and the revision.", status=status)
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            wait = f" retry in {retry_after:g} s" if retry_after is not None else \
                " wait a while and try again"
            raise DownloadError(DownloadErrorKind.RATE_LIMITED,
                                f"Rate limited (429) by {_host(r.url)} downloading {r.name}:"
                                f"{wait}.", status=status, retry_after=retry_after)
        if status == 416 and t.offset > 0:
            log.info("%s: range not satisfiable; starting from zero", r.name)
            t.restart()
            raise _Restart
        if status >= 500:
            raise _Retry(DownloadErrorKind.SERVER_ERROR, f"server error (HTTP {status})",
                         status)
        raise DownloadError(DownloadErrorKind.HTTP_ERROR,
                            f"Unexpected reply HTTP {status} downloading {where}.",
                            status=status)

    def _receive(self, response: httpx.Response, t: _Transfer,
                 attempt: int) -> Iterator[DownloadProgress]:
        r = t.request
        samples: deque[tuple[float, int]] = deque([(time.monotonic(), t.received)])
        last_event = 0.0
        for chunk in response.iter_raw():
            self._check_cancel()
            if t.offset + len(chunk) > r.size:
                self._discard(t)
                raise DownloadError(
                    DownloadErrorKind.VERIFY_FAILED,
                    f"{_host(r.url)} sent more than the expected {r.size} bytes for {r.name}; "
                    "the download was deleted.", path=t.final)
            self._write(t, chunk)
            now = time.monotonic()
            samples.append((now, t.received))
            while len(samples) > 2 and now - samples[0][0] > _SPEED_WINDOW_S:
                samples.popleft()
            if now - last_event >= self.progress_interval:
                last_event = now
                t0, b0 = samples[0]
                speed = (t.received - b0) / (now - t0) if now > t0 else 0.0
                eta = (r.size - t.offset) / speed if speed > 0 else None
                yield DownloadProgress(r.name, DownloadState.DOWNLOADING, t.offset, r.size,
                                       speed=speed, eta=eta, attempt=attempt)
        if t.offset < r.size:
            raise _Retry(DownloadErrorKind.NETWORK,
                         f"the connection ended after {format_bytes(t.offset)} of "
                         f"{format_bytes(r.size)}")

    def _write(self, t: _Transfer, chunk: bytes) -> None:
        try:
            _write_all(t.f, chunk)
            if t.offset + len(chunk) - t.synced >= _FSYNC_EVERY:
                os.fsync(t.f.fileno())
                t.synced = t.offset + len(chunk)
        except OSError as e:
            raise _write_error(e, t.part, f"cannot write {t.part}", t) from e
        t.hasher.update(chunk)
        t.offset += len(chunk)
        t.received += len(chunk)

    def _verify(self, t: _Transfer) -> None:
        r = t.request
        try:
            os.fsync(t.f.fileno())
            size = os.fstat(t.f.fileno()).st_size
        except OSError as e:
            raise _write_error(e, t.part, f"cannot write {t.part}", t) from e
        digest = t.hasher.hexdigest()
        if size != r.size or digest != r.sha256:
            self._discard(t)
            raise DownloadError(
                DownloadErrorKind.VERIFY_FAILED,
                f"{t.final.name} failed verification: expected {r.size} bytes with SHA-256 "
                f"{r.sha256}, got {size} bytes with SHA-256 {digest}. The bad download was "
                f"deleted; {t.final} was not created.", path=t.final)

    def _discard(self, t: _Transfer) -> None:
        """Delete a part that can never become the file."""
        t.f.close()
        for path in (t.part, t.sidecar):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        log.warning("%s: deleted a download that does not match", t.part)


_KIND_TEXT = {
    DownloadErrorKind.SERVER_ERROR: "Server error",
    DownloadErrorKind.NETWORK: "Network error",
    DownloadErrorKind.STALLED: "Download stalled",
}


def _write_error(e: OSError, path: Path, what: str,
                 t: _Transfer | None = None) -> DownloadError:
    kept = ""
    if t is not None:
        kept = (f" The {format_bytes(t.offset)} downloaded so far are kept in {t.part}; "
                "the download resumes from there.")
    if e.errno in _DISK_FULL_ERRNOS:
        return DownloadError(DownloadErrorKind.DISK_FULL,
                             f"The disk is full: {what}.{kept} Free some space and start the "
                             "download again.", path=path)
    return DownloadError(DownloadErrorKind.WRITE_FAILED,
                         f"{what}: {e.strerror or e}.{kept}", path=path)


def _forget_if_empty(part: Path, sidecar: Path) -> None:
    """After a failure before any byte was kept, leave no empty part behind."""
    with contextlib.suppress(OSError):
        if part.stat().st_size == 0:
            part.unlink()
            sidecar.unlink(missing_ok=True)


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.info("%s is unreadable; starting from zero", path)
        return None
    return data if isinstance(data, dict) else None


def _sidecar_matches(sidecar: dict[str, Any] | None, r: DownloadRequest) -> bool:
    return sidecar is not None and all(
        sidecar.get(k) == v for k, v in (("version", _SIDECAR_VERSION), ("url", r.url),
                                         ("revision", r.revision), ("size", r.size),
                                         ("sha256", r.sha256)))


def bytes_on_disk(request: DownloadRequest, folder: str | Path) -> int:
    """How much of ``request`` is already in ``folder``: its size when the file is there, the
    length of a part this very download can resume, else 0 (for a disk-space estimate;
    nothing is verified here)."""
    folder = Path(folder)
    final = folder / request.name
    part = folder / (request.name + PART_SUFFIX)
    try:
        if final.exists():
            return request.size
        if part.exists() and _sidecar_matches(
                _read_sidecar(folder / (request.name + SIDECAR_SUFFIX)), request):
            return min(part.stat().st_size, request.size)
    except OSError:
        pass
    return 0


def _shutdown(response: httpx.Response) -> None:
    """Wake a read blocked on ``response``'s socket (called from another thread)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host or url
    except httpx.InvalidURL:
        return url
