"""``verso`` as a script sees it: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def verso(*args: str, stdin: str | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_version_names_llama_cpp_build_and_gpu_support():
    result = verso("--version")
    assert result.returncode == 0
    assert "Verso 0.1.0" in result.stdout
    assert "llama-cpp-python 0.3.36" in result.stdout
    assert "ggml" in result.stdout and "GPU offload:" in result.stdout


def test_models_json_lists_the_bundled_model():
    result = verso("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    bundled = [r for r in rows if r["source"] == "bundled"]
    assert bundled and bundled[0]["info"]["architecture"] == "llama"
    assert bundled[0]["memory_estimate"]["total_bytes"] > bundled[0]["info"]["file_size"]


def test_models_inspect_shows_metadata():
    result = verso("models", "--inspect", "default", "--n-ctx", "2048")
    assert result.returncode == 0, result.stderr
    for word in ("architecture", "llama", "Q4_1", "head_count_kv", "memory_estimate"):
        assert word in result.stdout


def test_generate_raw_json():
    result = verso("generate", "The capital of France is", "--temperature", "0",
                   "--max-tokens", "8", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["finish_reason"] in ("stop", "length")
    assert data["stats"]["generated_tokens"] >= 1
    assert data["text"]


def test_generate_chat_streams_text_and_stats():
    result = verso("generate", "--chat", "Say hello.", "--temperature", "0",
                   "--max-tokens", "16", "--stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "TTFT" in result.stderr and "tok/s" in result.stderr


@pytest.mark.parametrize("args, code, message", [
    (("generate", "x", "--model", "no-such-model"), 3, "no such model"),
    (("generate", "x", "--temperature", "9"), 2, "temperature=9.0 is above the maximum"),
    (("generate", "x", "--n-ctx", "256", "--max-tokens", "16"), 0, ""),
])
def test_exit_codes(args, code, message):
    result = verso(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert_no_traceback(result)


def test_corrupt_model_file_exit_code(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 20)
    result = verso("generate", "x", "--model", str(bad))
    assert result.returncode == 3
    assert str(bad) in result.stderr
    assert_no_traceback(result)


def test_prompt_longer_than_context_exit_code():
    result = verso("generate", "--chat", "word " * 600, "--n-ctx", "256", "--max-tokens", "16")
    assert result.returncode == 4
    assert "tokens over" in result.stderr
    assert_no_traceback(result)


def test_interactive_chat_commands():
    script = "/system Answer in one word.\nWhat colour is the sky?\n/stats\n/reset\nHi\n/quit\n"
    result = verso("chat", "--temperature", "0", "--max-tokens", "12", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "system prompt set" in result.stderr
    assert "reused" in result.stderr  # /stats output
    assert "conversation cleared" in result.stderr
    assert len([line for line in result.stdout.splitlines() if line.strip()]) >= 2
