"""A Hugging Face Hub on 127.0.0.1 for tests: the API routes huggingface_hub calls for search
and file metadata, and the file URLs Verso downloads from, serving real files from disk.

Routes (as huggingface.co answers them):

- ``GET /api/models?search=&filter=&sort=&limit=&expand=`` (Link-header pages)
- ``GET /api/models/OWNER/NAME`` and ``.../revision/REV`` (``sha``, ``gated``, ``gguf``)
- ``GET /api/models/OWNER/NAME/tree/REV[/PATH]?recursive=&expand=`` (Link-header pages)
- ``POST /api/models/OWNER/NAME/paths-info/REV`` (form ``paths``, ``expand``:
  ``securityFileStatus``)
- ``GET /OWNER/NAME/resolve/REV/PATH``: an LFS file answers 302 to a second server on another
  port (the "CDN", as the hub redirects to its storage), which serves the bytes with ETag and
  Range. A gated repository answers 401 without a token and 403 with a token whose account
  has not accepted the licence (``X-Error-Code: GatedRepo``), an unknown one 401/404
  ``RepoNotFound``; a bad token gets 401 ``Invalid credentials in Authorization header``.

Faults: ``api_faults[route]`` (route in search, model, tree, paths, resolve) is a list of
behaviour dicts popped per request (``status``, ``retry_after``); ``plan`` (popped per byte
request) and ``always`` hold transfer behaviours: ``status``, ``retry_after``, ``drop_after``
(close after that many body bytes), ``stall_after`` + ``stall_s`` (go silent), ``delay``
(seconds per chunk), ``ignore_range`` (200 with the whole file), ``corrupt`` (one flipped
byte), ``after_bytes`` = (n, callback) (called once n body bytes are out).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

CHUNK = 256 * 1024
LAST_MODIFIED = "2026-11-20T10:00:00.000Z"


@functools.cache
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, Path]  # repository path -> file served
    gated: bool = False
    private: bool = False
    accepted: set[str] = field(default_factory=set)  # tokens whose account accepted
    downloads: int = 0
    likes: int = 0
    tags: list[str] = field(default_factory=lambda: ["gguf", "text-generation"])
    security: dict[str, str] = field(default_factory=dict)  # path -> scan status
    non_lfs: set[str] = field(default_factory=set)  # paths stored without LFS
    gguf: dict[str, Any] | None = None

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.repo_id.encode()).hexdigest()

    def entry(self, path: str, expand: bool) -> dict[str, Any]:
        source = self.files[path]
        size = source.stat().st_size
        item: dict[str, Any] = {"type": "file", "oid": hashlib.sha1(path.encode()).hexdigest(),
                                "size": size, "path": path}
        if path not in self.non_lfs:
            item["lfs"] = {"oid": file_sha256(source), "size": size, "pointerSize": 134}
        if expand:
            item["lastCommit"] = {"id": self.sha, "title": "Upload", "date": LAST_MODIFIED}
            item["securityFileStatus"] = {
                "status": self.security.get(path, "safe"),
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None}
        return item

    def folders(self) -> list[str]:
        found: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            found.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        return sorted(found)

    def info(self) -> dict[str, Any]:
        owner = self.repo_id.split("/")[0]
        data: dict[str, Any] = {
            "_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id,
            "author": owner, "sha": self.sha, "lastModified": LAST_MODIFIED,
            "private": self.private, "gated": "manual" if self.gated else False,
            "disabled": False, "downloads": self.downloads, "likes": self.likes,
            "tags": self.tags, "library_name": "gguf",
            "siblings": [{"rfilename": p} for p in sorted(self.files)]}
        if self.gguf is not None:
            data["gguf"] = self.gguf
        return data


@dataclass
class Served:
    route: str
    method: str
    path: str
    range: str | None
    auth: str | None
    status: int = 0
    sent: int = 0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-body is what these tests do


class HubServer:
    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set()  # tokens the hub knows
        self.api_faults: dict[str, list[dict[str, Any]]] = {}
        self.plan: list[dict[str, Any]] = []
        self.always: dict[str, Any] = {}
        self.page_size = 1000
        self.requests: list[Served] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._dispatch(self, "GET", cdn=self.server is hub._cdn)

            def do_POST(self) -> None:
                hub._dispatch(self, "POST", cdn=self.server is hub._cdn)

        self._api = _QuietServer(("127.0.0.1", 0), Handler)
        self._cdn = _QuietServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._api.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
                         for s in (self._api, self._cdn)]

    # -- set-up ---------------------------------------------------------------------------

    def start(self) -> HubServer:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for s in (self._api, self._cdn):
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(5)

    def add(self, repo_id: str, files: dict[str, Path], **kw: Any) -> HubRepo:
        repo = HubRepo(repo_id, files, **kw)
        self.repos[repo_id] = repo
        return repo

    def served(self, route: str) -> list[Served]:
        with self.lock:
            return [r for r in self.requests if r.route == route]

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, cdn: bool) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        body = b""
        if method == "POST":
            body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        route = "cdn" if cdn else self._route(method, path)
        rec = Served(route, method, h.path, h.headers.get("Range"),
                     h.headers.get("Authorization"))
        with self.lock:
            self.requests.append(rec)
            fault = self.api_faults.get(route, [])
            behaviour = fault.pop(0) if fault else {}
        try:
            if "status" in behaviour:
                self._error(h, rec, behaviour["status"], None, "Injected",
                            retry_after=behaviour.get("retry_after"))
                return
            if cdn:
                self._cdn_file(h, rec, path, query)
                return
            token = self._token(h)
            if token is False:
                self._error(h, rec, 401, None, "Invalid credentials in Authorization header")
                return
            handler = {"search": self._search, "model": self._model, "tree": self._tree,
                       "paths": self._paths, "resolve": self._resolve}.get(route)
            if handler is None:
                self._error(h, rec, 404, None, "Not found")
                return
            handler(h, rec, path, query, token, body)
        except OSError:
            return  # the client went away

    @staticmethod
    def _route(method: str, path: str) -> str:
        if path == "/api/models":
            return "search"
        if re.fullmatch(r"/api/models/[^/]+/[^/]+(/revision/[^/]+)?", path):
            return "model"
        if re.match(r"/api/models/[^/]+/[^/]+/tree/", path):
            return "tree"
        if method == "POST" and re.match(r"/api/models/[^/]+/[^/]+/paths-info/", path):
            return "paths"
        if re.match(r"/[^/]+/[^/]+/resolve/", path):
            return "resolve"
        return "other"

    def _token(self, h: BaseHTTPRequestHandler) -> str | bool | None:
        """The request's token; None without one; False for one the hub does not know."""
        auth = h.headers.get("Authorization")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        return token if token in self.tokens else False

    # -- replies --------------------------------------------------------------------------

    def _json(self, h: BaseHTTPRequestHandler, rec: Served, data: Any,
              link: str | None = None) -> None:
        payload = json.dumps(data).encode()
        rec.status = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        if link:
            h.send_header("Link", f'<{link}>; rel="next"')
        h.end_headers()
        h.wfile.write(payload)

    def _error(self, h: BaseHTTPRequestHandler, rec: Served, status: int, code: str | None,
               message: str, retry_after: Any = None) -> None:
        payload = json.dumps({"error": message}).encode()
        rec.status = status
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        if code:
            h.send_header("X-Error-Code", code)
        h.send_header("X-Error-Message", message)
        if retry_after is not None:
            h.send_header("Retry-After", str(retry_after))
        h.end_headers()
        h.wfile.write(payload)

    def _repo(self, h: BaseHTTPRequestHandler, rec: Served, repo_id: str,
              token: str | bool | None) -> HubRepo | None:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.accepted):
            status = 404 if token else 401
            self._error(h, rec, status, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _revision(self, h: BaseHTTPRequestHandler, rec: Served, repo: HubRepo,
                  rev: str) -> bool:
        if rev in ("main", repo.sha):
            return True
        self._error(h, rec, 404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return False

    def _paged(self, h: BaseHTTPRequestHandler, rec: Served, items: list[Any],
               query: dict[str, list[str]], path: str) -> None:
        start = int(query.get("cursor", ["0"])[0])
        page = items[start:start + self.page_size]
        link = None
        if start + self.page_size < len(items):
            rest = {k: v for k, v in query.items() if k != "cursor"}
            rest["cursor"] = [str(start + self.page_size)]
            link = f"{self.endpoint}{quote(path)}?{urlencode(rest, doseq=True)}"
        self._json(h, rec, page, link)

    def _search(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
                query: dict[str, list[str]], token: Any, body: bytes) -> None:
        text = (query.get("search") or [""])[0].lower()
        wanted = set(query.get("filter", []))
        found = [r for r in self.repos.values() if not r.private
                 and text in r.repo_id.lower() and wanted <= set(r.tags)]
        found.sort(key=lambda r: -r.downloads)
        limit = int((query.get("limit") or ["1000"])[0])
        items = []
        for r in found[:limit]:
            info = r.info()
            items.append({k: info[k] for k in ("_id", "id", "author", "downloads", "likes",
                                               "lastModified", "gated", "tags", "private")})
        self._paged(h, rec, items, query, path)

    def _model(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
               query: dict[str, list[str]], token: Any, body: bytes) -> None:
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        assert m
        repo = self._repo(h, rec, m[1], token)
        if repo is None or not self._revision(h, rec, repo, m[2] or "main"):
            return
        self._json(h, rec, repo.info())

    def _tree(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
              query: dict[str, list[str]], token: Any, body: bytes) -> None:
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        assert m
        repo = self._repo(h, rec, m[1], token)
        if repo is None or not self._revision(h, rec, repo, m[2]):
            return
        base = (m[3] or "").strip("/")
        recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
        expand = (query.get("expand") or ["false"])[0].lower() == "true"
        prefix = base + "/" if base else ""

        def wanted(p: str) -> bool:
            if not p.startswith(prefix) or p == base:
                return False
            return recursive or "/" not in p[len(prefix):]

        items: list[Any] = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(),
                             "size": 0, "path": d} for d in repo.folders() if wanted(d)]
        items += [repo.entry(p, expand) for p in sorted(repo.files) if wanted(p)]
        self._paged(h, rec, items, query, path)

    def _paths(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
               query: dict[str, list[str]], token: Any, body: bytes) -> None:
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/paths-info/([^/]+)", path)
        assert m
        repo = self._repo(h, rec, m[1], token)
        if repo is None or not self._revision(h, rec, repo, m[2]):
            return
        form = parse_qs(body.decode())
        expand = (form.get("expand") or ["false"])[0].lower() == "true"
        self._json(h, rec, [repo.entry(p, expand) for p in form.get("paths", [])
                            if p in repo.files])

    def _resolve(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
                 query: dict[str, list[str]], token: Any, body: bytes) -> None:
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        assert m
        repo = self._repo(h, rec, m[1], token)
        if repo is None or not self._revision(h, rec, repo, m[2]):
            return
        if repo.gated and token is None:
            self._error(h, rec, 401, "GatedRepo",
                        f"Access to model {repo.repo_id} is restricted. You must have access "
                        "to it and be authenticated to access it. Please log in.")
            return
        if repo.gated and token not in repo.accepted:
            self._error(h, rec, 403, "GatedRepo",
                        f"Access to model {repo.repo_id} is restricted and you are not in the "
                        "authorized list. Visit its page to ask for access.")
            return
        if m[3] not in repo.files:
            self._error(h, rec, 404, "EntryNotFound", f"{m[3]} does not exist")
            return
        if m[3] in repo.non_lfs:
            self._send_file(h, rec, repo.files[m[3]])
            return
        location = f"{self.cdn_url}/cdn/{repo.repo_id}/{repo.sha}/{quote(m[3])}?sig=ok"
        rec.status = 302
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("X-Linked-Etag", f'"{file_sha256(repo.files[m[3]])}"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    def _cdn_file(self, h: BaseHTTPRequestHandler, rec: Served, path: str,
                  query: dict[str, list[str]]) -> None:
        m = re.fullmatch(r"/cdn/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)", path)
        repo = self.repos.get(m[1]) if m else None
        if not m or repo is None or m[3] not in repo.files or query.get("sig") != ["ok"]:
            self._error(h, rec, 403, None, "Bad signature")
            return
        self._send_file(h, rec, repo.files[m[3]])

    def _send_file(self, h: BaseHTTPRequestHandler, rec: Served, source: Path) -> None:
        with self.lock:
            b = {**self.always, **(self.plan.pop(0) if self.plan else {})}
        h.close_connection = True
        if "status" in b:
            self._error(h, rec, b["status"], None, "Injected", retry_after=b.get("retry_after"))
            return
        size = source.stat().st_size
        etag = f'"{file_sha256(source)}"'
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", h.headers.get("Range") or "")
        if m and not b.get("ignore_range") and h.headers.get("If-Range") in (None, etag):
            start, status = int(m[1]), 206
        rec.status = status
        h.send_response(status)
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(size - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        h.end_headers()
        limit = min(b.get("drop_after", size), b.get("stall_after", size), size - start)
        flip = size // 2 if b.get("corrupt") else -1
        hook: tuple[int, Callable[[], None]] | None = b.get("after_bytes")
        with source.open("rb") as f:
            f.seek(start)
            offset = start
            while rec.sent < limit:
                piece = bytearray(f.read(min(CHUNK, limit - rec.sent)))
                if not piece:
                    break
                if offset <= flip < offset + len(piece):
                    piece[flip - offset] ^= 0xFF
                h.wfile.write(piece)
                h.wfile.flush()
                rec.sent += len(piece)
                offset += len(piece)
                if hook is not None and rec.sent >= hook[0]:
                    hook[1]()
                    hook = None
                if b.get("delay") and self.stopping.wait(b["delay"]):
                    return
        if "stall_after" in b and rec.sent < size - start:
            deadline = time.monotonic() + b.get("stall_s", 10.0)
            while time.monotonic() < deadline and not self.stopping.wait(0.05):
                pass


def make_split_set(source: Path, folder: Path, max_tensors: int) -> list[Path]:
    """Split the GGUF ``source`` into ``folder`` the way llama.cpp's gguf-split does (every
    shard a GGUF file with ``split.no``/``split.count``/``split.tensors.count``, metadata in
    the first, names ``STEM-00001-of-0000N.gguf``), using gguf-py's writer."""
    import gguf

    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    folder.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(folder / source.name, arch, split_max_tensors=max_tensors)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        kind = f.types[0]
        sub = f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return sorted(folder.glob(f"{source.stem}-*-of-*.gguf"))
