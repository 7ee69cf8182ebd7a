"""Soak: a scripted session of at least 30 minutes through the engine process (model
switches between the two bundled models, long chats saved to the history database as they
stream, summaries of real documents with cancels and resumes, cancelled replies), recording
the resident memory of this ("app") process and of the engine process, and the database
size, over time. Prints the slope per hour of each and writes bench/results/soak.json.

    nice .venv/bin/python bench/soak.py --minutes 30

The first ``--warmup-minutes`` (default 3) are left out of the slopes: the first loads of
each model, the snapshot cache and SQLite's page cache fill up there.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
from common import default_model, save, table

from engine.documents import document_from_text, load_document
from engine.errors import Cancelled
from engine.events import Done, Error, Token
from engine.options import GREEDY, ChatMessage, ChatRequest, ContextPolicy, LoadSettings
from engine.store import ConversationStore
from engine.store.jobs import JobStore
from engine.tasks.summarize import SummarizeSettings, summarize
from engine.worker import EngineClient

GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"
QUESTIONS = [
    "Explain how a river carves a canyon, step by step.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "List ten facts about honey bees and say why each matters.",
    "Describe how to bake bread at home, including what can go wrong.",
    "Compare trains and planes for a 600 km trip: cost, time, comfort, emissions.",
    "What is a glacier and how does it move? Give an example.",
]


def _documents(folder: Path) -> list[Path]:
    """Licence texts shipped in site-packages (real prose nobody here wrote), as .txt."""
    site = Path(psutil.__file__).resolve().parents[1]
    found = sorted(site.glob("*.dist-info/licen*/LICENSE*")) + sorted(
        site.glob("*.dist-info/LICENSE*"))
    big = [p for p in found if p.is_file() and 4_000 < p.stat().st_size < 50_000][:12]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, source in enumerate(big):
        target = folder / f"{i:02d}-{source.parent.name.split('-')[0]}.txt"
        target.write_bytes(source.read_bytes())
        out.append(target)
    return out


class Sampler(threading.Thread):
    """Every ``period_s``: RSS of this process and the engine process, database size."""

    def __init__(self, client: EngineClient, db: Path, period_s: float) -> None:
        super().__init__(daemon=True)
        self.client, self.db, self.period_s = client, db, period_s
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.model = ""

    def engine_rss(self) -> float:
        proc = getattr(self.client, "_proc", None)
        pid = getattr(proc, "pid", None)
        if pid is None:
            return 0.0
        try:
            return psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def db_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*")
                   if p.is_file())

    def sample(self) -> None:
        self.samples.append({
            "t_s": round(time.monotonic() - self.t0, 1),
            "app_rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "engine_rss_mb": round(self.engine_rss(), 1),
            "db_mb": round(self.db_bytes() / 2**20, 3),
            "model": Path(self.model).name,
        })

    def run(self) -> None:
        while not self.stop.wait(self.period_s):
            self.sample()


def slope_per_hour(samples: list[dict], key: str, after_s: float, model: str | None = None
                   ) -> float:
    """Least-squares slope of ``key`` per hour after ``after_s`` (only while ``model`` was
    loaded, when given: each model has its own resident size)."""
    points = [(s["t_s"], s[key]) for s in samples if s["t_s"] >= after_s and s[key] > 0
              and (model is None or s["model"] == model)]
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    cov = sum((t - mx) * (v - my) for t, v in points)
    return cov / var * 3600 if var else 0.0


class Session:
    def __init__(self, client: EngineClient, store: ConversationStore, jobs: JobStore,
                 rng: random.Random, sampler: Sampler) -> None:
        self.client, self.store, self.jobs, self.rng = client, store, jobs, rng
        self.sampler = sampler
        self.counts = dict.fromkeys(("loads", "replies", "cancelled_replies", "summaries",
                                     "cancelled_summaries", "errors", "conversations"), 0)
        self.kept: list[str] = []

    def load(self, path: str) -> None:
        for event in self.client.load(LoadSettings(path=path, n_ctx=2048, n_threads=2)):
            if isinstance(event, Error):
                raise SystemExit(f"load failed: {event.message}")
        self.counts["loads"] += 1
        self.sampler.model = path

    def chat(self, turns: int) -> None:
        conv = self.store.create_conversation("soak", system_prompt="You are helpful.")
        self.counts["conversations"] += 1
        history = [ChatMessage("system", "You are helpful.")]
        for turn in range(turns):
            question = self.rng.choice(QUESTIONS)
            self.store.add_message(conv.id, "user", question)
            history.append(ChatMessage("user", question))
            reply = self.store.add_message(conv.id, "assistant", "", status="streaming")
            cancel_at = self.rng.randint(5, 60) if self.rng.random() < 0.2 else None
            request = ChatRequest(tuple(history), replace(GREEDY, max_tokens=160,
                                                          temperature=0.7, top_k=40,
                                                          seed=turn),
                                  session_id=conv.id, policy=ContextPolicy.DROP_OLDEST)
            parts: list[str] = []
            last_save = time.monotonic()
            status = "complete"
            for n, event in enumerate(self.client.chat(request)):
                if isinstance(event, Token):
                    parts.append(event.text)
                    if time.monotonic() - last_save > 1.0:
                        self.store.update_message_content(reply.id, "".join(parts))
                        last_save = time.monotonic()
                    if cancel_at is not None and n >= cancel_at:
                        self.client.cancel()
                elif isinstance(event, Done):
                    parts = [event.text]
                    status = "cancelled" if event.finish_reason == "cancelled" else "complete"
                elif isinstance(event, Error):
                    self.counts["errors"] += 1
                    status = "error"
            self.store.update_message_content(reply.id, "".join(parts), status=status)
            self.counts["cancelled_replies" if status == "cancelled" else "replies"] += 1
            history.append(ChatMessage("assistant", "".join(parts)))
        self.kept.append(conv.id)
        while len(self.kept) > 5:  # the user deletes old chats; the bin is emptied
            self.store.delete_conversation(self.kept.pop(0))
            self.store.purge_deleted()
        if hasattr(self.client, "forget_session"):
            self.client.forget_session(conv.id)

    def summary(self, path: Path) -> None:
        document = (load_document(path) if self.rng.random() < 0.5
                    else document_from_text(path.read_text(errors="replace"), name=path.name))
        settings = SummarizeSettings(length=3, n_parallel=2)
        cancel_after = self.rng.randint(1, 3) if self.rng.random() < 0.4 else None
        progress = itertools.count()
        stop = False

        def cancel() -> bool:
            return stop

        try:
            for _item in summarize(self.client, [document], settings, self.jobs, cancel):
                if cancel_after is not None and next(progress) >= cancel_after:
                    stop = True
        except Cancelled:
            self.counts["cancelled_summaries"] += 1
            for _ in summarize(self.client, [document], settings, self.jobs):  # resume
                pass
        self.counts["summaries"] += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=3.0)
    parser.add_argument("--period-s", type=float, default=10.0)
    parser.add_argument("--home", default=None, help="data folder (default: a temp folder)")
    args = parser.parse_args()
    import os
    import tempfile

    home = Path(args.home or tempfile.mkdtemp(prefix="verso-soak-"))
    os.environ["VERSO_HOME"] = str(home)
    models = [default_model()] + ([str(GEMMA)] if GEMMA.exists() else [])
    documents = _documents(home / "documents")
    rng = random.Random(15)
    client = EngineClient()
    store = ConversationStore(home / "history.sqlite3")
    jobs = JobStore(home / "jobs.sqlite3")
    sampler = Sampler(client, store.path, args.period_s)
    session = Session(client, store, jobs, rng, sampler)
    deadline = time.monotonic() + args.minutes * 60
    sampler.sample()
    sampler.start()
    cycle = 0
    try:
        while time.monotonic() < deadline:
            session.load(models[cycle % len(models)])
            for _ in range(2):
                session.chat(turns=rng.randint(4, 10))
                if time.monotonic() >= deadline:
                    break
                session.summary(documents[cycle % len(documents)])
            cycle += 1
            print(f"[{(time.monotonic() - sampler.t0) / 60:5.1f} min] cycle {cycle} "
                  f"{session.counts} last {sampler.samples[-1]}", flush=True)
    finally:
        sampler.stop.set()
        sampler.sample()
        client.close()
    after = args.warmup_minutes * 60
    samples = sampler.samples
    result = {
        "minutes": round(samples[-1]["t_s"] / 60, 1),
        "counts": session.counts,
        "app_rss_slope_mb_per_h": round(slope_per_hour(samples, "app_rss_mb", after), 2),
        "engine_rss_slope_mb_per_h": round(slope_per_hour(samples, "engine_rss_mb", after), 2),
        "db_slope_mb_per_h": round(slope_per_hour(samples, "db_mb", after), 3),
        "engine_rss_slope_mb_per_h_by_model": {
            Path(m).name: round(slope_per_hour(samples, "engine_rss_mb", after, Path(m).name), 2)
            for m in models},
        "app_rss_mb_min_max": [min(s["app_rss_mb"] for s in samples),
                               max(s["app_rss_mb"] for s in samples)],
        "engine_rss_mb_min_max": [min(s["engine_rss_mb"] for s in samples if s["engine_rss_mb"]),
                                  max(s["engine_rss_mb"] for s in samples)],
        "db_mb_min_max": [min(s["db_mb"] for s in samples), max(s["db_mb"] for s in samples)],
        "samples": samples,
    }
    print(table(["what", "min", "max", "slope per hour (after warm-up)"], [
        ["app RSS MB", *result["app_rss_mb_min_max"], result["app_rss_slope_mb_per_h"]],
        ["engine RSS MB", *result["engine_rss_mb_min_max"],
         result["engine_rss_slope_mb_per_h"]],
        ["database MB", *result["db_mb_min_max"], result["db_slope_mb_per_h"]],
    ]))
    for name, slope in result["engine_rss_slope_mb_per_h_by_model"].items():
        print(f"engine RSS slope with {name} loaded: {slope} MB per hour")
    print(f"counts: {session.counts}")
    print(f"wrote {save('soak', result)}")


if __name__ == "__main__":
    main()
