"""The Hugging Face Hub, for metadata only: search GGUF models, list a repository's GGUF
files at a pinned commit with their sizes, SHA-256 and scan status. ``huggingface_hub`` does
the API calls; the bytes come through Verso's own downloader (``engine.library.pull``).

Every failure is a ``HubError`` whose kind says what happened (no token, licence not
accepted, not found, rate limited, server error, network) and whose message says it for the
user; nothing here prints or logs the token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import huggingface_hub
from huggingface_hub import HfApi, constants
from huggingface_hub import errors as hf_errors
from huggingface_hub.hf_api import ModelInfo, RepoFile
from huggingface_hub.utils._http import hf_request_event_hook

from engine.library.download import DownloadRequest
from engine.library.hub_errors import HubError, HubErrorKind, from_hf
from engine.library.hub_files import HubFile, RepoEntry, group_files
from engine.library.hub_settings import check_endpoint, hub_endpoint, hub_token

__all__ = ["HubClient", "HubError", "HubErrorKind", "HubFile", "HubModel"]

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_SEARCH_FIELDS = ["author", "downloads", "likes", "lastModified", "gated", "tags"]
_MODEL_FIELDS = [*_SEARCH_FIELDS, "sha", "gguf"]
_PATHS_PER_CALL = 50  # the hub answers at most 50 expanded paths per call
DEFAULT_TIMEOUT = 30.0
_T = TypeVar("_T")


@dataclass(frozen=True)
class HubModel:
    repo_id: str
    author: str
    downloads: int
    likes: int
    last_modified: str  # ISO 8601, "" when the hub did not say
    gated: bool
    tags: tuple[str, ...]
    sha: str | None = None  # the commit the listing describes (from ``model``)
    parameters: int | None = None  # from the hub's GGUF summary, where present
    architecture: str | None = None
    context_length: int | None = None


# No telemetry: huggingface_hub would otherwise fetch an "agent harness" list from the hub
# (at the endpoint it read when imported) and cache it in ~/.cache/huggingface.
constants.HF_HUB_DISABLE_TELEMETRY = True

_session_timeout: float | None = None


def _use_timeout(seconds: float) -> None:
    """huggingface_hub's shared HTTP client waits forever by default; give it a limit so a
    hub that stops answering ends in a network error."""
    global _session_timeout
    if _session_timeout == seconds:
        return

    def factory() -> httpx2.Client:
        return httpx2.Client(event_hooks={"request": [hf_request_event_hook]},
                             follow_redirects=True, timeout=httpx2.Timeout(seconds))

    huggingface_hub.set_client_factory(factory)
    _session_timeout = seconds


def check_repo_id(repo_id: str) -> str:
    value = repo_id.strip().strip("/")
    if not REPO_ID.match(value) or ".." in value:
        raise HubError(HubErrorKind.INVALID,
                       f"Not a repository id: {repo_id!r} (expected owner/name, e.g. "
                       "bartowski/SmolLM2-135M-Instruct-GGUF).")
    return value


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None and hasattr(value, "isoformat") else ""


def _model(info: ModelInfo) -> HubModel:
    raw = getattr(info, "gguf", None)
    gguf: dict[str, Any] = raw if isinstance(raw, dict) else {}
    total = gguf.get("total")
    ctx = gguf.get("context_length")
    arch = gguf.get("architecture")
    return HubModel(
        repo_id=info.id, author=info.author or info.id.split("/", 1)[0],
        downloads=int(info.downloads or 0), likes=int(info.likes or 0),
        last_modified=_iso(info.last_modified), gated=bool(info.gated),
        tags=tuple(info.tags or ()), sha=info.sha,
        parameters=int(total) if isinstance(total, int) else None,
        architecture=arch if isinstance(arch, str) else None,
        context_length=int(ctx) if isinstance(ctx, int) else None)


class HubClient:
    """One hub (``endpoint``, default from the hub settings) as one user (``token``, default
    from ``HF_TOKEN`` or the keyring; ``""`` for none)."""

    def __init__(self, endpoint: str | None = None, token: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        try:
            self.endpoint = check_endpoint(endpoint) if endpoint else hub_endpoint()
        except ValueError as e:
            raise HubError(HubErrorKind.INVALID, f"Hub endpoint: {e}.") from e
        self._token = (token if token is not None else hub_token()) or None
        _use_timeout(timeout)
        self._api = HfApi(endpoint=self.endpoint, token=self._token or False,
                          library_name="verso")

    def __repr__(self) -> str:
        return f"HubClient({self.endpoint!r}, token={'set' if self._token else 'none'})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def token(self) -> str | None:
        return self._token

    def _call(self, fn: Callable[[], _T], repo_id: str | None,
              revision: str | None = None) -> _T:
        try:
            return fn()
        except HubError:
            raise
        except (hf_errors.HfHubHTTPError, hf_errors.OfflineModeIsEnabled, httpx2.HTTPError,
                OSError, ValueError, KeyError, TypeError) as e:
            raise from_hf(e, repo_id=repo_id, endpoint=self.endpoint,
                          has_token=self.has_token, revision=revision) from e

    # -- metadata -------------------------------------------------------------------------

    def search(self, query: str, limit: int = 50) -> list[HubModel]:
        """GGUF repositories whose id contains ``query``, most downloaded first."""
        if not 1 <= limit <= 1000:
            raise HubError(HubErrorKind.INVALID, f"limit must be 1 to 1000, not {limit}.")

        def run() -> list[HubModel]:
            found: Iterable[ModelInfo] = self._api.list_models(
                search=query.strip() or None, filter="gguf", sort="downloads", limit=limit,
                expand=_SEARCH_FIELDS)  # type: ignore[arg-type]  # a list of literals
            return [_model(m) for m in found]

        return self._call(run, None)

    def model(self, repo_id: str, revision: str | None = None) -> HubModel:
        """One repository, with the commit sha ``revision`` (default branch) points at."""
        repo_id = check_repo_id(repo_id)
        info = self._call(lambda: self._api.model_info(
            repo_id, revision=revision, expand=_MODEL_FIELDS),  # type: ignore[arg-type]
            repo_id, revision)
        model = _model(info)
        if not model.sha or not _SHA.match(model.sha):
            raise HubError(HubErrorKind.SERVER,
                           f"{self.endpoint} did not give the commit of {repo_id}"
                           + (f" at {revision}" if revision else "") + ".")
        return model

    def files(self, repo_id: str, revision: str | None = None) -> list[HubFile]:
        """The repository's GGUF models at ``revision`` (default branch), pinned to the
        commit it points at now; split sets are one entry each."""
        model = self.model(repo_id, revision)
        if REPO_ID.match(model.repo_id):
            repo_id = model.repo_id  # as the hub spells it
        sha = model.sha
        assert sha is not None
        tree = self._call(lambda: list(self._api.list_repo_tree(
            repo_id, recursive=True, revision=sha)), repo_id, sha)
        entries = [e for e in tree if isinstance(e, RepoFile)
                   and e.path.lower().endswith(".gguf")]
        security = self._security(repo_id, sha, [e.path for e in entries])
        return group_files(repo_id, sha, [
            RepoEntry(path=e.path, size=int(e.lfs.size if e.lfs else e.size),
                      sha256=e.lfs.sha256 if e.lfs else None, security=security.get(e.path))
            for e in entries], gated=model.gated)

    def _security(self, repo_id: str, sha: str, paths: list[str]) -> dict[str, str]:
        status: dict[str, str] = {}
        for i in range(0, len(paths), _PATHS_PER_CALL):
            batch = paths[i:i + _PATHS_PER_CALL]
            infos = self._call(lambda batch=batch: self._api.get_paths_info(  # type: ignore[misc]
                repo_id, batch, expand=True, revision=sha), repo_id, sha)
            for info in infos:
                scan = getattr(info, "security", None)
                if isinstance(info, RepoFile) and scan is not None and scan.status:
                    status[info.path] = str(scan.status)
        return status

    # -- downloads ------------------------------------------------------------------------

    def file_url(self, repo_id: str, revision: str, path: str) -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{revision}/{quote(path, safe='/')}"

    def download_requests(self, f: HubFile, models_dir: Path | None = None
                          ) -> list[DownloadRequest]:
        """One request per part, at the pinned commit, carrying the token. ``models_dir`` does
        not change the requests: ``engine.library.pull`` decides where each part is
        written (a staging folder under it) and installs the set once all are verified."""
        if f.problem:
            raise HubError(HubErrorKind.NOT_FOUND, f"{f.repo_id}: {f.name}: {f.problem}.")
        return [DownloadRequest(url=self.file_url(f.repo_id, f.revision, path), name=name,
                                size=size, sha256=sha, revision=f.revision, token=self._token)
                for path, name, size, sha in zip(f.parts, f.local_names, f.sizes, f.sha256s,
                                                 strict=True)]
