from __future__ import annotations

from pathlib import Path

from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import check_file_size


def read_bytes(path: Path, name: str, limit: int, what: str = "") -> bytes:
    """Read a whole file after checking its size, so a huge file fails before it is read."""
    try:
        size = path.stat().st_size
        check_file_size(name, size, limit, what)
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError(
            name, DocumentProblem.UNREADABLE, f"the file cannot be read ({exc.strerror})"
        ) from None
