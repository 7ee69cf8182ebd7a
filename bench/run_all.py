"""Run every benchmark in turn; each prints its table and writes bench/results/NAME.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_multiturn.py", "bench_throughput.py", "bench_stream_overhead.py",
           "bench_switch.py", "bench_gui_stall.py", "bench_openmp.py", "bench_segment.py",
           "bench_long_line.py", "bench_quant.py", "bench_lookup.py", "bench_quality.py"]

if __name__ == "__main__":
    failed = []
    for script in SCRIPTS:
        if not (HERE / script).exists():
            continue
        print(f"\n=== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], cwd=HERE).returncode:
            failed.append(script)
    sys.exit(1 if failed else 0)
