"""The Models panel's view of the model hub: search, a repository's files, downloads.

``HubService`` is what the panel needs; ``real_hub_service`` adapts Verso's hub client
(``engine.library.hub``, ``engine.library.pull``, ``engine.library.installed``) to it, and
tests pass a scripted one. Every method may block (network, disk): the panel calls them off
the GUI thread."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.library.download import DownloadProgress


@dataclass(frozen=True, slots=True)
class PendingDownload:
    """A download that stopped before it finished (a pause, a crash, a restart)."""

    repo_id: str
    path: str  # the file's path in the repository
    revision: str
    bytes_done: int
    size: int


@dataclass
class PullHandle:
    events: Iterator[DownloadProgress]  # ends after DONE, or raises HubError/DownloadError
    cancel: Callable[[], None]  # callable from any thread; the transfer stops resumable


class HubService(Protocol):
    def search(self, query: str, limit: int = 50) -> Sequence[Any]: ...  # HubModel

    def files(self, repo_id: str, revision: str | None = None) -> Sequence[Any]: ...  # HubFile

    def start_pull(self, f: Any) -> PullHandle: ...

    def discard(self, f: Any) -> None:
        """Delete what a cancelled download left (its parts and sidecars)."""

    def pending(self) -> Sequence[PendingDownload]: ...


def hub_available() -> bool:
    return importlib.util.find_spec("engine.library.hub") is not None


class _RealHub:
    def __init__(self) -> None:
        from engine.library.hub import HubClient

        self._client_type = HubClient
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:  # reads HF_ENDPOINT and the token when first needed
            self._client = self._client_type()
        return self._client

    def search(self, query: str, limit: int = 50) -> Sequence[Any]:
        return list(self.client.search(query, limit=limit))

    def files(self, repo_id: str, revision: str | None = None) -> Sequence[Any]:
        return list(self.client.files(repo_id, revision))

    def start_pull(self, f: Any) -> PullHandle:
        from engine import paths
        from engine.library.download import Downloader
        from engine.library.pull import pull

        downloader = Downloader(paths.models_dir())
        return PullHandle(pull(f, client=self.client, downloader=downloader),
                          downloader.cancel)

    def discard(self, f: Any) -> None:
        from engine import paths
        from engine.library.download import PART_SUFFIX, SIDECAR_SUFFIX
        from engine.library.installed import layout, prune_empty

        models = paths.models_dir()
        staging = layout(f, models).staging
        for name in f.local_names:
            for suffix in (PART_SUFFIX, SIDECAR_SUFFIX):
                with contextlib.suppress(OSError):
                    (staging / f"{name}{suffix}").unlink()
        prune_empty(staging, models)

    def pending(self) -> Sequence[PendingDownload]:
        from engine.library.installed import pending_downloads

        return [PendingDownload(p.repo_id, p.path, p.revision, p.bytes_done, p.size)
                for p in pending_downloads()]


def real_hub_service() -> HubService | None:
    """Verso's hub client, or None where this build has none."""
    if not hub_available():
        return None
    return _RealHub()
