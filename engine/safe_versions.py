"""The oldest versions of the libraries that parse untrusted input which Verso accepts, per
the advisories it tracks (GUIDE.md): checked at start-up, so an environment that pip
downgraded, or a distribution's older package, is refused with a message rather than run
with a known hole.

- llama-cpp-python 0.3.36 vendors llama.cpp with the malicious-GGUF fixes up to 6fed9f6f.
- jinja2 3.1.6: the sandbox escapes through ``|attr`` and ``str.format`` (CVE-2025-27516,
  CVE-2024-56326); chat templates are rendered in its sandbox.
- pypdf 7.0.0: the 2026 reference-loop and memory fixes.
- PySide6 6.11.3 (or 6.8.9 on the 6.8 LTS line): CVE-2025-3512 in QTextMarkdownImporter,
  the path model output takes, and the 2026 Qt advisories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True, slots=True)
class Minimum:
    distribution: str
    version: str
    why: str
    lts: tuple[str, ...] = ()  # older release lines with a fixed version of their own


ENGINE_MINIMUMS = (
    Minimum("llama-cpp-python", "0.3.36", "malicious GGUF files (llama.cpp fixes up to "
            "6fed9f6f)"),
    Minimum("jinja2", "3.1.6", "sandbox escapes in chat templates (CVE-2025-27516)"),
    Minimum("pypdf", "7.0.0", "PDF reference loops and memory exhaustion (2026 fixes)"),
)
APP_MINIMUMS = (
    *ENGINE_MINIMUMS,
    Minimum("PySide6-Essentials", "6.11.3", "heap overflow rendering Markdown "
            "(CVE-2025-3512) and the 2026 Qt advisories", lts=("6.8.9",)),
)


def _parts(version: str) -> tuple[int, ...]:
    numbers = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in numbers.group(0).split(".")) if numbers else ()


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def is_safe(installed: str, minimum: Minimum) -> bool:
    have = _parts(installed)
    if have >= _parts(minimum.version):
        return True
    # An LTS line is safe from its own fixed release on (6.8.9 and later 6.8.x).
    return any(have[:2] == _parts(fixed)[:2] and have >= _parts(fixed) for fixed in minimum.lts)


def problems(minimums: Iterable[Minimum] | None = None) -> list[str]:
    """One sentence per library below its safe version (default: all the app's); a library
    not installed is the packaging's problem, reported by the import that needs it."""
    out = []
    for minimum in APP_MINIMUMS if minimums is None else minimums:
        installed = _installed(minimum.distribution)
        if installed is not None and not is_safe(installed, minimum):
            lts = f" (or {', '.join(minimum.lts)} on its long-term line)" if minimum.lts else ""
            out.append(f"{minimum.distribution} {installed} is older than {minimum.version}"
                       f"{lts}, which fixes {minimum.why}")
    return out


def refusal(found: list[str]) -> str:
    return ("Verso will not start with libraries that have known security holes:\n"
            + "\n".join(f"  - {p}" for p in found)
            + "\nUpgrade them (pip install --upgrade …, or reinstall Verso).")
