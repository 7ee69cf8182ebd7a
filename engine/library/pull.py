"""Download a hub model into the models folder, verified, resumable, all or nothing.

``pull(f, client=...)`` yields ``DownloadProgress`` for the whole model (bytes over every
part, speed, ETA; ``message`` says which part) and ends with one ``DONE`` event whose
``path`` is the installed file to load. Each part goes through ``Downloader`` into a staging
folder under the models folder (``.part`` + sidecar, resumed by any later run, even in a new
process); only when every part's size and SHA-256 match is the file, or the whole split
set's folder, renamed into place (see ``engine.library.installed``).

Raises ``HubError`` when the hub refuses or cannot be reached (no token, licence not
accepted, not found, rate limited, server error, network; what was downloaded stays for the
next run), ``DownloadError`` for local problems (no free space, a full disk, a file that
fails verification, another file in the way) and ``engine.errors.Cancelled``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from engine import paths
from engine.library.download import (
    Downloader,
    DownloadError,
    DownloadErrorKind,
    DownloadProgress,
    DownloadRequest,
    DownloadState,
    bytes_on_disk,
    fsync_dir,
)
from engine.library.hub import HubClient
from engine.library.hub_errors import HubError, HubErrorKind, from_download
from engine.library.hub_files import HubFile
from engine.library.installed import Layout, layout, prune_empty
from engine.units import format_bytes


def pull(f: HubFile, *, client: HubClient, models_dir: Path | None = None,
         downloader: Downloader | None = None) -> Iterator[DownloadProgress]:
    if f.problem:
        raise HubError(HubErrorKind.NOT_FOUND, f"{f.repo_id}: {f.name} cannot be downloaded: "
                                               f"{f.problem}.")
    models_dir = Path(models_dir) if models_dir is not None else paths.models_dir()
    downloader = downloader or Downloader(models_dir)
    requests = client.download_requests(f, models_dir)
    place = layout(f, models_dir)
    if place.target.exists():
        yield from _check_installed(f, place, requests, downloader)
        return
    _check_space(f, requests, place.staging, models_dir, downloader.disk_margin)
    try:
        yield from _download(f, client, requests, place.staging, downloader)
    except BaseException:
        prune_empty(place.staging, models_dir)  # a failure before any byte leaves no folder
        raise
    _install(place, models_dir)
    yield DownloadProgress(f.name, DownloadState.DONE, f.size, f.size, path=place.first)


def _download(f: HubFile, client: HubClient, requests: list[DownloadRequest], staging: Path,
              downloader: Downloader) -> Iterator[DownloadProgress]:
    done_before = 0
    for index, request in enumerate(requests):
        try:
            for event in downloader.download(request, folder=staging):
                if event.state is not DownloadState.DONE:
                    yield _overall(f, event, index, done_before)
        except DownloadError as e:
            converted = from_download(e, repo_id=f.repo_id, endpoint=client.endpoint,
                                      has_token=client.has_token, gated=f.gated)
            if converted is e:
                raise
            raise converted from e
        done_before += request.size


def _overall(f: HubFile, event: DownloadProgress, index: int,
             done_before: int) -> DownloadProgress:
    """A part's event as progress over the whole model."""
    done = done_before + event.bytes_done
    eta = (f.size - done) / event.speed if event.speed > 0 else None
    message = event.message
    if f.split:
        part = f"part {index + 1} of {len(f.parts)}"
        message = f"{part}: {message}" if message else part
    return DownloadProgress(f.name, event.state, done, f.size, speed=event.speed, eta=eta,
                            attempt=event.attempt, message=message)


def _check_installed(f: HubFile, place: Layout, requests: list[DownloadRequest],
                     downloader: Downloader) -> Iterator[DownloadProgress]:
    """The model's place is taken: done if every part is this very file (hashed, no
    network), a ``FILE_EXISTS`` error otherwise."""
    folder = place.target_folder
    missing = [r.name for r in requests if not (folder / r.name).is_file()]
    if missing:
        raise DownloadError(
            DownloadErrorKind.FILE_EXISTS,
            f"{place.target} already exists but lacks {', '.join(missing)}: remove it "
            f"(verso models rm {place.first.name}) and download again.", path=place.target)
    done_before = 0
    for index, request in enumerate(requests):
        for event in downloader.download(request, folder=folder):
            if event.state is not DownloadState.DONE:
                yield _overall(f, event, index, done_before)
        done_before += request.size
    yield DownloadProgress(f.name, DownloadState.DONE, f.size, f.size, path=place.first,
                           message="already downloaded and verified")


def _check_space(f: HubFile, requests: list[DownloadRequest], staging: Path,
                 models_dir: Path, margin: int) -> None:
    """Every part must fit before the first byte is fetched (the downloader checks one file
    at a time; a split set that cannot fit whole must not start)."""
    left = sum(r.size - bytes_on_disk(r, staging) for r in requests)
    try:
        free = shutil.disk_usage(models_dir).free
    except OSError:
        return
    if free < left + margin:
        raise DownloadError(
            DownloadErrorKind.NO_SPACE,
            f"Not enough free space in {models_dir} for {f.name}: it needs "
            f"{format_bytes(left)} more (plus {format_bytes(margin)} to spare) but only "
            f"{format_bytes(free)} is free. Free some space or choose another models folder "
            "(VERSO_MODELS_DIR).", path=models_dir)


def _install(place: Layout, models_dir: Path) -> None:
    """Move the verified download into the models folder in one rename."""
    staged = place.staging if place.target != place.first else place.staging / place.first.name
    try:
        place.target.parent.mkdir(parents=True, exist_ok=True)
        if place.target.exists():
            raise DownloadError(DownloadErrorKind.FILE_EXISTS,
                                f"{place.target} appeared while downloading; the verified "
                                f"download stays in {staged}.", path=place.target)
        os.replace(staged, place.target)
        fsync_dir(place.target.parent)
    except OSError as e:
        raise DownloadError(DownloadErrorKind.WRITE_FAILED,
                            f"cannot move the verified download {staged} to {place.target}: "
                            f"{e.strerror or e}", path=place.target) from e
    prune_empty(place.staging if place.target == place.first else place.staging.parent,
                models_dir)
