"""Run the whole trust suite and print one row per family: cases tried, held, failed, worst
time and worst memory (peak RSS of the test process and every process it started). Writes
``bench/results/trust.json`` with every case.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/trust/run.py [-k EXPR] [--fast]

``--fast`` leaves out the cases marked ``long`` (what ``make test`` runs). Exit status 1 when
any case failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "trust.json"


class Collector:
    def __init__(self) -> None:
        self.cases: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """One case per test: the call's outcome (or a failed setup's), a failed teardown
        counted against it, and the properties recorded in teardown (peak memory)."""
        props = dict(report.user_properties)
        case = self.by_id.get(report.nodeid)
        if case is None:
            if report.when == "call" or report.outcome != "passed":
                case = {"id": report.nodeid,
                        "family": props.get("family", report.nodeid.split("::")[0]),
                        "outcome": report.outcome, "seconds": round(report.duration, 3)}
                self.by_id[report.nodeid] = case
                self.cases.append(case)
            else:
                return
        elif report.when == "teardown" and report.outcome == "failed":
            case["outcome"] = "failed"
        case.update({k: v for k, v in props.items() if k != "family"})


def summarize(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        by_family[case["family"]].append(case)
    rows = []
    for family, items in by_family.items():
        ran = [c for c in items if c["outcome"] != "skipped"]
        rows.append({
            "family": family,
            "tried": len(ran),
            "held": sum(c["outcome"] == "passed" for c in ran),
            "failed": sum(c["outcome"] == "failed" for c in ran),
            "skipped": len(items) - len(ran),
            "worst_s": max((c["seconds"] for c in ran), default=0.0),
            "worst_mb": max((c.get("peak_rss_mb") or 0.0 for c in ran), default=0.0),
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["Family", "Cases", "Held", "Failed", "Worst time", "Worst memory"]
    cells = [[r["family"], str(r["tried"]), str(r["held"]), str(r["failed"]),
              f"{r['worst_s']:.1f} s", f"{r['worst_mb']:,.0f} MB"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(cols: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(c) for c in cells)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="leave out the long cases")
    parser.add_argument("-k", default=None, help="only cases matching this pytest expression")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true",
                        help="replace only the families run now in an existing --output")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["VERSO_TRUST_STRICT"] = "1"  # the timing targets hold, not only the loose bounds
    collector = Collector()
    argv = [str(ROOT / "tests" / "trust"), "-q", "-p", "no:cacheprovider",
            "-o", "timeout=900"]
    if args.fast:
        argv += ["-m", "not long"]
    if args.k:
        argv += ["-k", args.k]
    start = time.monotonic()
    code = pytest.main(argv, plugins=[collector])
    cases = collector.cases
    if args.update and args.output.exists():
        ran = {c["family"] for c in cases}
        kept = [c for c in json.loads(args.output.read_text())["cases"]
                if c["family"] not in ran]
        cases = kept + cases
    rows = summarize(cases)
    print()
    print(table(rows))
    total = time.monotonic() - start
    print(f"{sum(r['tried'] for r in rows)} cases in {total / 60:.1f} min")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
        "python": platform.python_version(), "minutes": round(total / 60, 1),
        "families": rows, "cases": cases}, indent=1))
    print(f"wrote {args.output}")
    return 0 if code == 0 and all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
