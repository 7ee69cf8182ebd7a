"""Interrupted document jobs: the recipe a job keeps (title, sources, settings), the list of
unfinished jobs, discarding one, and telling a moved or changed source file apart. No model:
the tasks' own recording is covered with the real model in test_app_resume.py."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine.documents import document_from_text, load_document
from engine.model_ref import ModelRef
from engine.options import GREEDY
from engine.store import db
from engine.store.jobs import JobStore
from engine.tasks.glossary import Glossary
from engine.tasks.resume import (
    JobRecipe,
    ProblemKind,
    changed_documents,
    check_sources,
    interrupted_jobs,
    make_recipe,
    summary_title,
    translation_title,
)
from engine.tasks.summarize import Form, Mode, SummarizeSettings
from engine.tasks.translate import TranslateSettings

ROOT = Path(__file__).resolve().parents[1]

PASTED = "# Notes\n\nThe river rose in *spring*.\n\n- a compass\n"


@pytest.fixture
def note(tmp_path: Path) -> Path:
    path = tmp_path / "note.md"
    path.write_text("# Harbour\n\nShips came in at dawn.\n", encoding="utf-8")
    return path


def test_settings_round_trip_through_json() -> None:
    settings = SummarizeSettings(mode=Mode.ABSTRACTIVE, form=Form.KEYPOINTS, length=3,
                                 chunk_tokens=64, note_tokens=16, n_parallel=1,
                                 sampling=replace(GREEDY, stop=("\n\n",), logit_bias=((5, -1.0),)))
    import json

    again = SummarizeSettings.from_json(json.loads(json.dumps(settings.to_json())))
    assert again == settings and again.key() == settings.key()
    translate = TranslateSettings(target="French", source="en", n_parallel=2, max_ratio=1.5,
                                  glossary=Glossary.from_pairs([("river", "fleuve")]))
    back = TranslateSettings.from_json(json.loads(json.dumps(translate.to_json())))
    assert back == translate and back.key() == translate.key()


def test_recipe_keeps_paths_and_pasted_text_and_round_trips(note: Path) -> None:
    documents = [load_document(note), document_from_text(PASTED, name="Pasted text",
                                                         markdown=True)]
    recipe = make_recipe(summary_title(documents), documents, {"length": 2},
                         ModelRef.local("/m.gguf", "cd" * 32), pasted=[None, PASTED])
    assert recipe.title == "Summary of note.md, Pasted text"
    file, pasted = recipe.sources
    assert file.path == str(note) and file.text is None and file.size == note.stat().st_size
    assert file.sha256 and not file.pasted
    assert pasted.pasted and pasted.text == PASTED and pasted.path == ""
    assert JobRecipe.from_json(recipe.to_json()) == recipe
    assert check_sources(recipe) == []
    assert changed_documents(recipe, documents) == []


def test_titles_are_short() -> None:
    docs = [document_from_text("x", name=f"report-{i}-with-a-rather-long-name.txt")
            for i in range(5)]
    title = summary_title(docs)
    assert title.startswith("Summary of report-0") and title.endswith(" and 4 more")
    assert len(title) <= 80
    assert summary_title([*docs[:1], document_from_text("y", name="b.txt")]) == \
        "Summary of report-0-with-a-rather-long-name.txt, b.txt"
    long = document_from_text("x", name="a" * 200 + ".txt")
    assert len(translation_title(long, "French")) <= 80


def test_a_moved_or_changed_file_is_named_specifically(note: Path, tmp_path: Path) -> None:
    recipe = make_recipe("t", [load_document(note)], {}, ModelRef.local("/m.gguf"))

    os.utime(note, ns=(1, 1))  # touched, same bytes: still resumable
    assert check_sources(recipe) == []

    note.write_text("# Harbour\n\nShips left at dusk.\n", encoding="utf-8")
    [problem] = check_sources(recipe, "summarize")
    assert problem.kind is ProblemKind.CHANGED
    assert problem.message.startswith(f"note.md ({note}) has changed since this summary started")
    assert changed_documents(recipe, [load_document(note)])[0].kind is ProblemKind.CHANGED

    note.rename(tmp_path / "elsewhere.md")
    [problem] = check_sources(recipe, "translate")
    assert problem.kind is ProblemKind.MISSING
    assert problem.message == (f"note.md is no longer at {note} (moved or deleted), so this "
                               "translation cannot be resumed. Put it back, or Discard the job.")


def test_unfinished_jobs_listed_with_progress_and_discard_removes_steps(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path) as store:
        done = store.open_job("summarize", "a", {"n": 1})
        store.finish(done.id, "done")
        cancelled = store.open_job("summarize", "b", {"n": 1})
        store.record(cancelled.id, "Summary of b.txt", {"title": "Summary of b.txt"}, 5)
        store.save_step(cancelled.id, "map:1", "one")
        store.save_step(cancelled.id, "map:2", "two")
        store.finish(cancelled.id, "cancelled")
        crashed = store.open_job("summarize", "c", {"n": 1})  # left "running" by a crash
        store.open_job("translate", "d", {"n": 1})

        jobs = store.unfinished("summarize")
        assert [j.id for j in jobs] == [crashed.id, cancelled.id]
        listed = jobs[1]
        assert (listed.title, listed.status, listed.steps_done, listed.steps_total) == \
            ("Summary of b.txt", "cancelled", 2, 5)
        assert jobs[0].recipe is None and jobs[0].steps_total is None
        assert [j.id for j in interrupted_jobs(store, "summarize", exclude=[crashed.id])] == \
            [cancelled.id]
        store.set_total(cancelled.id, 7)
        assert store.unfinished("summarize")[1].steps_total == 7

        store.delete(cancelled.id)
        assert store.get(cancelled.id) is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM job_steps").fetchone()[0] == 0


def test_jobs_from_before_recipes_migrate_and_list(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = db.connect(path)
    assert db.migrate(conn, db.MIGRATIONS[:3]) == 3
    conn.execute("INSERT INTO jobs (id, kind, inputs_hash, settings_json, status, created_at,"
                 " updated_at) VALUES ('j1', 'translate', 'h', '{}', 'running', 1, 1)")
    conn.close()
    with JobStore(path) as store:
        [job] = interrupted_jobs(store, "translate")
        assert job.recipe is None and job.info.title == "" and job.info.steps_done == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] == len(
                db.MIGRATIONS)


_RUN_A_JOB = """
import sys, time
from engine.store.jobs import JobStore
store = JobStore(sys.argv[1])
job = store.open_job("summarize", "elsewhere", {"n": 1})
print(job.id, flush=True)
time.sleep(60)
"""


def test_a_job_running_in_another_verso_is_not_listed_as_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    other = subprocess.Popen([sys.executable, "-c", _RUN_A_JOB, str(path)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        job_id = other.stdout.readline().strip()
        with JobStore(path) as store:
            assert store.get(job_id).status == "running"
            assert store.unfinished("summarize") == []  # alive elsewhere: not interrupted
            other.kill()  # the other Verso crashes: the OS drops its lock
            other.wait()
            listed = store.unfinished("summarize")
            assert [(j.id, j.status) for j in listed] == [(job_id, "running")]
            again = store.open_job("summarize", "elsewhere", {"n": 1})  # resumed here
            assert again.id == job_id
            store.finish(job_id, "cancelled")
            assert [j.status for j in store.unfinished("summarize")] == ["cancelled"]
    finally:
        other.kill()
        other.stdout.close()


def test_a_job_runs_when_its_lock_file_cannot_be_made(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with JobStore(path) as store:
        (tmp_path / "job-locks").write_text("a file where the lock folder should be")
        job = store.open_job("summarize", "x", {"n": 1})
        store.save_step(job.id, "map:1", "one")
        assert store.steps(job.id) == {"map:1": "one"}
        assert [j.id for j in store.unfinished("summarize")] == [job.id]
        store.finish(job.id, "done")
