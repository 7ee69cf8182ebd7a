"""A scripted model hub for the Models panel's tests: search results, a repository's files
and downloads that stream progress, stop on cancel keeping what they fetched (as the real
downloader's ``.part`` does), resume from it, and install a real GGUF file at the end."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.hub_service import PendingDownload, PullHandle
from engine import paths
from engine.errors import Cancelled
from engine.library.download import DownloadProgress, DownloadState


@dataclass(frozen=True)
class FakeModel:
    repo_id: str
    author: str = "someone"
    downloads: int = 1000
    likes: int = 10
    last_modified: str = "2026-11-30T12:00:00"
    gated: bool = False
    tags: tuple[str, ...] = ("gguf",)


@dataclass(frozen=True)
class FakeFile:
    repo_id: str
    name: str
    sizes: tuple[int, ...]
    quant: str
    revision: str = "a" * 40
    parts: tuple[str, ...] = ()
    security: str | None = "safe"
    problem: str | None = None

    def __post_init__(self) -> None:
        if not self.parts:
            object.__setattr__(self, "parts", (self.name,))

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def local_names(self) -> tuple[str, ...]:
        return tuple(Path(p).name for p in self.parts)


class FakeHubError(Exception):
    """Shaped like ``engine.library.hub.HubError``: a kind and a message for the user."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


@dataclass
class FakeHub:
    model_file: Path  # a real GGUF installed when a download finishes
    results: list[FakeModel] = field(default_factory=list)
    repo_files: dict[str, list[FakeFile]] = field(default_factory=dict)
    search_error: Exception | None = None
    pull_error: Exception | None = None
    step_bytes: int = 1 << 20
    step_s: float = 0.01
    fetched: dict[str, int] = field(default_factory=dict)  # name -> bytes kept ("the part")
    left_over: list[PendingDownload] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)  # set: stop sending

    def search(self, query: str, limit: int = 50) -> Sequence[FakeModel]:
        self.searches.append(query)
        if self.search_error is not None:
            raise self.search_error
        return [r for r in self.results if query.lower() in r.repo_id.lower()][:limit]

    def files(self, repo_id: str, revision: str | None = None) -> Sequence[FakeFile]:
        if repo_id not in self.repo_files:
            raise FakeHubError("not_found", f"No model repository {repo_id} on the hub.")
        return self.repo_files[repo_id]

    def start_pull(self, f: FakeFile) -> PullHandle:
        stop = threading.Event()
        return PullHandle(self._pull(f, stop), stop.set)

    def _pull(self, f: FakeFile, stop: threading.Event) -> Iterator[DownloadProgress]:
        if self.pull_error is not None:
            raise self.pull_error
        done = self.fetched.get(f.name, 0)
        while done < f.size:
            if stop.is_set():
                raise Cancelled("download paused")
            if self.hold.is_set():
                time.sleep(self.step_s)
                continue
            done = min(done + self.step_bytes, f.size)
            self.fetched[f.name] = done
            speed = self.step_bytes / self.step_s
            yield DownloadProgress(f.name, DownloadState.DOWNLOADING, done, f.size,
                                   speed=speed, eta=(f.size - done) / speed)
            time.sleep(self.step_s)
        yield DownloadProgress(f.name, DownloadState.VERIFYING, f.size, f.size)
        target = paths.models_dir() / f.repo_id / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.model_file, target)
        self.fetched.pop(f.name, None)
        yield DownloadProgress(f.name, DownloadState.DONE, f.size, f.size, path=target)

    def discard(self, f: FakeFile) -> None:
        self.discarded.append(f.name)
        self.fetched.pop(f.name, None)

    def pending(self) -> Sequence[PendingDownload]:
        return list(self.left_over)
