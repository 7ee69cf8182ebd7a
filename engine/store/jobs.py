"""Durable document jobs: each step's result is committed as soon as it exists, so a job that
was cancelled or crashed resumes from the steps it already has.

A job's id is a hash of its kind, inputs and settings: running the same job again finds the
same row and its finished steps."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import paths
from engine.store import db


def content_hash(*parts: Any) -> str:
    data = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    inputs_hash: str
    settings: dict[str, Any]
    status: str
    result: Any | None


class JobStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else paths.database_path()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with db.translate_errors(self._path):
            self._conn = db.connect(self._path)
            db.migrate(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_job(self, kind: str, inputs_hash: str, settings: dict[str, Any]) -> Job:
        """The job for these inputs and settings, created if new; marked running."""
        job_id = content_hash(kind, inputs_hash, settings)
        now = time.time()
        with self._lock, db.translate_errors(self._path):
            self._conn.execute(
                "INSERT INTO jobs (id, kind, inputs_hash, settings_json, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'running', ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = CASE WHEN status = 'done'"
                " THEN 'done' ELSE 'running' END, updated_at = excluded.updated_at",
                (job_id, kind, inputs_hash, json.dumps(settings, sort_keys=True), now, now))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock, db.translate_errors(self._path):
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        result = json.loads(row["result_json"]) if row["result_json"] else None
        return Job(row["id"], row["kind"], row["inputs_hash"], json.loads(row["settings_json"]),
                   row["status"], result)

    def latest(self, kind: str) -> Job | None:
        """The most recently updated job of this kind."""
        with self._lock, db.translate_errors(self._path):
            row = self._conn.execute("SELECT id FROM jobs WHERE kind = ? ORDER BY updated_at DESC"
                                     " LIMIT 1", (kind,)).fetchone()
        return self.get(row["id"]) if row else None

    def steps(self, job_id: str) -> dict[str, Any]:
        with self._lock, db.translate_errors(self._path):
            rows = self._conn.execute(
                "SELECT step, result_json FROM job_steps WHERE job_id = ?", (job_id,)).fetchall()
        return {row["step"]: json.loads(row["result_json"]) for row in rows}

    def save_step(self, job_id: str, step: str, result: Any) -> None:
        now = time.time()
        with self._lock, db.translate_errors(self._path):
            self._conn.execute(
                "INSERT OR REPLACE INTO job_steps (job_id, step, result_json, created_at)"
                " VALUES (?, ?, ?, ?)", (job_id, step, json.dumps(result, ensure_ascii=False), now))
            self._conn.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))

    def finish(self, job_id: str, status: str, result: Any | None = None) -> None:
        with self._lock, db.translate_errors(self._path):
            self._conn.execute(
                "UPDATE jobs SET status = ?, result_json = ?, updated_at = ? WHERE id = ?",
                (status, json.dumps(result, ensure_ascii=False) if result is not None else None,
                 time.time(), job_id))

    def delete(self, job_id: str) -> None:
        with self._lock, db.translate_errors(self._path):
            self._conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
