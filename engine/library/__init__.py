"""The model library: files Verso downloads into its models folder.

``download`` is Verso's own resumable, verified downloader: a file appears under its final
name only once its size and SHA-256 match what the hub promised.
"""

from engine.library.download import (
    Downloader,
    DownloadError,
    DownloadErrorKind,
    DownloadProgress,
    DownloadRequest,
    DownloadState,
)

__all__ = [
    "DownloadError",
    "DownloadErrorKind",
    "DownloadProgress",
    "DownloadRequest",
    "DownloadState",
    "Downloader",
]
