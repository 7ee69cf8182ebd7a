"""llama.cpp's own log lines go to the log file, not the CLI user's terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _generate(model: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *flags, "generate", "Hello", "-m", str(model),
         "--max-tokens", "3", "--n-ctx", "512", "--temperature", "0"],
        capture_output=True, text=True, timeout=180, env=os.environ.copy())


def test_llama_cpp_lines_go_to_the_log_file_not_the_terminal(gemma_path: Path,
                                                             verso_home: Path) -> None:
    done = _generate(gemma_path)
    assert done.returncode == 0, done.stderr
    # Gemma 3's sliding-window cache makes llama.cpp log "using full-size SWA cache".
    assert "llama_" not in done.stderr and "SWA" not in done.stderr, done.stderr
    log = (verso_home / "logs" / "engine.log").read_text("utf-8")
    assert "SWA cache" in log


def test_verbose_echoes_them(gemma_path: Path) -> None:
    done = _generate(gemma_path, "--verbose")
    assert done.returncode == 0, done.stderr
    assert "llama.cpp: " in done.stderr and "SWA cache" in done.stderr
