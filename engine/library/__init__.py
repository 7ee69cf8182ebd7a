"""The model library: files Verso downloads into its models folder.

``download`` is Verso's own resumable, verified downloader: a file appears under its final
name only once its size and SHA-256 match what the hub promised. ``hub`` reads the Hugging
Face Hub's metadata (search, a repository's GGUF files at a pinned commit); ``pull`` fetches
a hub model through the downloader and installs it whole (``installed``: where it goes).
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
