"""SHA-256 of files, and a cache of model files' hashes keyed by (path, size, mtime), so a
multi-gigabyte model is read once, not at every load."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

from engine import paths

log = logging.getLogger(__name__)
_BLOCK = 1 << 20
_LOCK = threading.Lock()
_CACHE_FILE = "model-hashes.json"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_path() -> Path:
    return paths.data_dir() / _CACHE_FILE


def _read_cache() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_sha256(path: str | Path) -> str:
    """The file's SHA-256, from the cache when the file's size and mtime are unchanged.
    A cache that cannot be written (read-only or full disk) only costs a re-hash later."""
    p = Path(path).absolute()
    stat = p.stat()
    key = str(p)
    with _LOCK:
        entry = _read_cache().get(key)
        if (isinstance(entry, dict) and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns and entry.get("sha256")):
            return str(entry["sha256"])
    sha = file_sha256(p)
    with _LOCK:
        cache = _read_cache()
        cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
        target = _cache_path()
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            log.info("model hash cache not written: %s", exc)
            tmp.unlink(missing_ok=True)
    return sha
