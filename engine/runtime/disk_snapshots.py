"""KV snapshots of recent conversations on disk, so a long conversation continued after a
restart of Verso is restored instead of re-evaluated.

A snapshot is only ever used for the exact model, cache-shaping load settings and llama.cpp
build it was taken with (``SnapshotKey``), and only if its checksum matches; anything else
(a corrupt or truncated file, another model, another context size or KV type, an older
llama.cpp) is ignored and deleted, and the conversation is re-evaluated. The runtime reuses a
restored cache only as far as its tokens match the new prompt, so even a stale snapshot of
an edited conversation cannot produce a wrong answer.

Files are written by a background thread (the request that swapped the conversation out does
not wait), atomically (temporary file, fsync, rename), and the folder is kept under a byte
budget, least recently used first out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.runtime.snapshots import SessionHistory, Snapshot

log = logging.getLogger(__name__)

MAGIC = b"VERSOKV1"
SUFFIX = ".kvs"
DEFAULT_DISK_BUDGET = 1 << 30
_HEADER_LIMIT = 64 << 20  # token lists of a 1M-token context fit with room to spare


@dataclass(frozen=True, slots=True)
class SnapshotKey:
    """Everything that decides whether saved KV state is valid for the loaded model."""

    model_sha256: str
    n_ctx: int
    kv_type: str
    flash_attn: bool
    n_gpu_layers: int
    n_batch: int
    llama_build: str  # llama-cpp-python version and ggml commit

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


class DiskSnapshots:
    def __init__(self, folder: Path, key: SnapshotKey,
                 budget_bytes: int = DEFAULT_DISK_BUDGET) -> None:
        self.folder = folder
        self.key = key
        self.budget_bytes = budget_bytes
        self._queue: queue.Queue[tuple[str, Snapshot] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="verso-kv-writer",
                                        daemon=True)
        self._writer.start()

    def path(self, session_id: str) -> Path:
        name = hashlib.sha256(f"{session_id}\0{self.key.fingerprint()}".encode()).hexdigest()
        return self.folder / f"{name[:40]}{SUFFIX}"

    # ---------------------------------------------------------------- writing

    def save(self, session_id: str, snapshot: Snapshot) -> None:
        """Queue ``snapshot`` to be written; returns at once."""
        if snapshot.nbytes <= self.budget_bytes and snapshot.kv_tokens:
            self._queue.put((session_id, snapshot))

    def flush(self) -> None:
        """Wait until every queued snapshot is on disk."""
        self._queue.join()

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._writer.join(timeout=30)

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(*item)
                self._evict()
            except OSError as exc:  # a full disk loses warmth, never the conversation
                log.warning("could not save the KV snapshot of %s: %s", item[0], exc)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _write(self, session_id: str, snapshot: Snapshot) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        header = json.dumps({
            "key": asdict(self.key), "session_id": session_id,
            "kv_tokens": list(snapshot.kv_tokens), "kv_batched": snapshot.kv_batched,
            "history_text": snapshot.history.text,
            "history_tokens": list(snapshot.history.tokens),
            "state_bytes": len(snapshot.state),
            "state_sha256": hashlib.sha256(snapshot.state).hexdigest(),
        }).encode("utf-8")
        target = self.path(session_id)
        temporary = target.with_suffix(".tmp")
        with open(temporary, "wb") as f:
            f.write(MAGIC + len(header).to_bytes(8, "little") + header)
            f.write(snapshot.state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)

    def _evict(self) -> None:
        files = []
        for entry in self.folder.glob(f"*{SUFFIX}"):
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, stat.st_size, entry))
        total = sum(size for _, size, _ in files)
        for _, size, entry in sorted(files, key=lambda f: f[0]):
            if total <= self.budget_bytes:
                break
            entry.unlink(missing_ok=True)
            total -= size

    # ---------------------------------------------------------------- reading

    def load(self, session_id: str) -> Snapshot | None:
        """The saved snapshot of ``session_id`` for this key, or None (a bad file is
        deleted)."""
        self.flush()  # a snapshot still queued is the newest one
        path = self.path(session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not read the KV snapshot %s: %s", path, exc)
            return None
        snapshot, problem = self._parse(data, session_id)
        if snapshot is None:
            log.info("ignoring the KV snapshot of %s: %s", session_id, problem)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used
        return snapshot

    def _parse(self, data: bytes, session_id: str) -> tuple[Snapshot | None, str]:
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8:
            return None, "not a Verso KV snapshot"
        size = int.from_bytes(data[len(MAGIC):len(MAGIC) + 8], "little")
        start = len(MAGIC) + 8
        if size > _HEADER_LIMIT or start + size > len(data):
            return None, "truncated header"
        try:
            header = json.loads(data[start:start + size])
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, "damaged header"
        if not isinstance(header, dict):
            return None, "damaged header"
        if header.get("key") != asdict(self.key):
            return None, "taken with another model, settings or llama.cpp build"
        if header.get("session_id") != session_id:
            return None, "belongs to another conversation"
        state = data[start + size:]
        if len(state) != header.get("state_bytes"):
            return None, "truncated state"
        if hashlib.sha256(state).hexdigest() != header.get("state_sha256"):
            return None, "checksum mismatch"
        try:
            kv_tokens = tuple(int(t) for t in header["kv_tokens"])
            history = SessionHistory(str(header["history_text"]),
                                     tuple(int(t) for t in header["history_tokens"]))
            kv_batched = int(header["kv_batched"])
        except (KeyError, TypeError, ValueError):
            return None, "damaged header"
        return Snapshot(kv_tokens, state, history, kv_batched), ""

    def drop(self, session_id: str) -> None:
        self.flush()
        self.path(session_id).unlink(missing_ok=True)
