"""Durable document jobs: each step's result is committed as soon as it exists, so a job that
was cancelled or crashed resumes from the steps it already has.

A job's id is a hash of its kind, inputs and settings: running the same job again finds the
same row and its finished steps. Each job also keeps a *recipe* (``record``): a title and what
is needed to run it again (see ``engine.tasks.resume``), so an interrupted job can be listed
and resumed without the user re-opening the same files."""

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
from engine.store.job_lock import JobLock, held_elsewhere


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


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A job as the list of interrupted jobs shows it."""

    id: str
    kind: str
    title: str
    status: str  # "running" here means the process running it stopped (crash, closed app)
    created_at: float
    updated_at: float
    steps_done: int
    steps_total: int | None
    recipe: dict[str, Any] | None  # None for a job recorded before recipes existed


class JobStore:
    def __init__(self, path: str | Path | None = None) -> None:
        self._path = Path(path) if path is not None else paths.database_path()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._running: dict[str, JobLock] = {}  # jobs this store runs: their OS locks
        with db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn = db.connect(self._path)
            db.migrate(self._conn)

    def close(self) -> None:
        for lock in self._running.values():
            lock.release()
        self._running.clear()
        self._conn.close()

    def _lock_path(self, job_id: str) -> Path:
        return self._path.parent / "job-locks" / f"{job_id}.lock"

    def _release(self, job_id: str) -> None:
        lock = self._running.pop(job_id, None)
        if lock is not None:
            lock.release()
            lock.path.unlink(missing_ok=True)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_job(self, kind: str, inputs_hash: str, settings: dict[str, Any]) -> Job:
        """The job for these inputs and settings, created if new; marked running."""
        job_id = content_hash(kind, inputs_hash, settings)
        now = time.time()
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute(
                "INSERT INTO jobs (id, kind, inputs_hash, settings_json, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'running', ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET status = CASE WHEN status = 'done'"
                " THEN 'done' ELSE 'running' END, updated_at = excluded.updated_at",
                (job_id, kind, inputs_hash, json.dumps(settings, sort_keys=True), now, now))
        if job_id not in self._running:
            lock = JobLock(self._lock_path(job_id))
            try:
                if lock.acquire():  # not if another process runs the very same job
                    self._running[job_id] = lock
            except OSError:
                pass  # no lock file (read-only or full disk): the job runs, just unmarked
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        result = json.loads(row["result_json"]) if row["result_json"] else None
        return Job(row["id"], row["kind"], row["inputs_hash"], json.loads(row["settings_json"]),
                   row["status"], result)

    def latest(self, kind: str) -> Job | None:
        """The most recently updated job of this kind."""
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            row = self._conn.execute("SELECT id FROM jobs WHERE kind = ? ORDER BY updated_at DESC"
                                     " LIMIT 1", (kind,)).fetchone()
        return self.get(row["id"]) if row else None

    def steps(self, job_id: str) -> dict[str, Any]:
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            rows = self._conn.execute(
                "SELECT step, result_json FROM job_steps WHERE job_id = ?", (job_id,)).fetchall()
        return {row["step"]: json.loads(row["result_json"]) for row in rows}

    def save_step(self, job_id: str, step: str, result: Any) -> None:
        now = time.time()
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute(
                "INSERT OR REPLACE INTO job_steps (job_id, step, result_json, created_at)"
                " VALUES (?, ?, ?, ?)", (job_id, step, json.dumps(result, ensure_ascii=False), now))
            self._conn.execute("UPDATE jobs SET updated_at = ? WHERE id = ?", (now, job_id))

    def finish(self, job_id: str, status: str, result: Any | None = None) -> None:
        self._release(job_id)
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute(
                "UPDATE jobs SET status = ?, result_json = ?, updated_at = ? WHERE id = ?",
                (status, json.dumps(result, ensure_ascii=False) if result is not None else None,
                 time.time(), job_id))

    def record(self, job_id: str, title: str, recipe: dict[str, Any],
               steps_total: int | None = None) -> None:
        """Keep what is needed to run the job again (its title, sources and settings)."""
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute(
                "UPDATE jobs SET title = ?, recipe_json = ?,"
                " steps_total = COALESCE(?, steps_total) WHERE id = ?",
                (title, json.dumps(recipe, ensure_ascii=False, sort_keys=True), steps_total,
                 job_id))

    def set_total(self, job_id: str, steps_total: int) -> None:
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute("UPDATE jobs SET steps_total = ? WHERE id = ?",
                               (steps_total, job_id))

    def unfinished(self, kind: str | None = None) -> list[JobInfo]:
        """Jobs not done (cancelled, failed, or left running by a process that stopped),
        newest first. Jobs another process (or another store) is running now are not
        listed; a caller that is running a job itself leaves that one out."""
        where = "j.status != 'done'" + (" AND j.kind = ?" if kind is not None else "")
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            rows = self._conn.execute(
                "SELECT j.*, (SELECT COUNT(*) FROM job_steps s WHERE s.job_id = j.id)"
                f" AS steps_done FROM jobs j WHERE {where} ORDER BY j.updated_at DESC",
                (kind,) if kind is not None else ()).fetchall()
        return [JobInfo(r["id"], r["kind"], r["title"] or "", r["status"], r["created_at"],
                        r["updated_at"], r["steps_done"], r["steps_total"],
                        json.loads(r["recipe_json"]) if r["recipe_json"] else None)
                for r in rows
                if not (r["status"] == "running" and r["id"] not in self._running
                        and held_elsewhere(self._lock_path(r["id"])))]

    def delete(self, job_id: str) -> None:
        """The job and its steps."""
        self._release(job_id)
        with self._lock, db.translate_errors(self._path, db.JOB_PROGRESS):
            self._conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
