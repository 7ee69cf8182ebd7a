"""A repository's GGUF files as downloadable models: one ``HubFile`` per single file or split
set (``NAME-00001-of-00003.gguf`` ... in one folder), with its quantization read from the
file name. A split set with a part missing, or a file the hub gives no SHA-256 for, is kept
with a ``problem`` so it can be shown but never downloaded."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.units import format_bytes

SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Quantization labels as llama.cpp and the usual publishers write them in file names.
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(?P<q>(?:I?Q[1-8](?:_[0-9A-Z]{1,4}){0,3})|BF16|F16|FP16|F32|FP32"
    r"|TQ[12]_0|MXFP4(?:_MOE)?)(?![A-Za-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class RepoEntry:
    """One file of a repository tree at a pinned revision, as the hub describes it."""

    path: str
    size: int
    sha256: str | None  # lfs.sha256; None for a file stored without LFS
    security: str | None = None  # the hub's scan status ("safe", "unscanned", ...)


@dataclass(frozen=True)
class HubFile:
    """One downloadable model: a single GGUF file or a whole split set."""

    repo_id: str
    revision: str  # the commit sha every part is fetched at
    name: str  # file name to show (the first part's, for a split set)
    parts: tuple[str, ...]  # repository paths, in order
    sizes: tuple[int, ...]
    sha256s: tuple[str, ...]
    quant: str  # "Q4_K_M", "Q8_0", "F16", ... ("" when the name does not say)
    security: str | None  # the hub's scan status, the worst of the parts
    gated: bool = False  # the repository needs an accepted licence (and a token)
    problem: str | None = None  # why it cannot be downloaded (an incomplete split set, ...)

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def split(self) -> bool:
        return len(self.parts) > 1

    @property
    def available(self) -> bool:
        return self.problem is None

    @property
    def local_names(self) -> tuple[str, ...]:
        """The parts' file names on disk (llama.cpp finds a set's parts by these names)."""
        return tuple(posixpath.basename(p) for p in self.parts)


def quant_of(path: str) -> str:
    """The quantization a file name (or its folder, as in ``Q4_K_M/model-00001-of-00002``)
    says, upper-cased; "" when it says none."""
    for text in (posixpath.basename(path), posixpath.dirname(path)):
        found = _QUANT.findall(SPLIT_NAME.sub(r"\g<stem>.gguf", text))
        if found:
            return str(found[-1]).upper()
    return ""


def _is_model(path: str) -> bool:
    """A GGUF file that is a language model (not a vision projector or an imatrix)."""
    name = posixpath.basename(path).lower()
    return name.endswith(".gguf") and not name.startswith(("mmproj", "imatrix"))


def _worst(statuses: Iterable[str | None]) -> str | None:
    known = [s for s in statuses if s]
    for status in ("unsafe", "caution", "suspicious", "unscanned", "queued"):
        if status in known:
            return status
    return known[0] if known else None


def group_files(repo_id: str, revision: str, entries: Sequence[RepoEntry],
                gated: bool = False) -> list[HubFile]:
    """The GGUF models among ``entries``, grouped by quantization (the group with the
    smallest file first), each group by size."""
    singles: list[HubFile] = []
    sets: dict[tuple[str, str, int], dict[int, RepoEntry]] = {}
    for entry in entries:
        if not _is_model(entry.path):
            continue
        folder, base = posixpath.split(entry.path)
        m = SPLIT_NAME.match(base)
        if m and int(m["count"]) > 1:
            key = (folder, m["stem"], int(m["count"]))
            sets.setdefault(key, {})[int(m["no"])] = entry
            continue
        singles.append(_make(repo_id, revision, [entry], gated, base))
    for (folder, stem, count), found in sets.items():
        missing = [n for n in range(1, count + 1) if n not in found]
        ordered = [found[n] for n in sorted(found)]
        first = posixpath.basename(ordered[0].path)
        problem = None
        if missing:
            names = ", ".join(f"{stem}-{n:05d}-of-{count:05d}.gguf" for n in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            where = f" in {folder}/" if folder else ""
            verb = "is" if len(missing) == 1 else "are"
            problem = (f"incomplete split set: {len(missing)} of its {count} parts "
                       f"({names}{more}) {verb} missing from the repository{where} at "
                       f"revision {revision[:12]}")
            first = f"{stem}-00001-of-{count:05d}.gguf"
        singles.append(_make(repo_id, revision, ordered, gated, first, problem))
    smallest: dict[str, int] = {}
    for f in singles:
        smallest[f.quant] = min(smallest.get(f.quant, f.size), f.size)
    return sorted(singles, key=lambda f: (f.problem is not None, smallest[f.quant], f.quant,
                                          f.size, f.name))


def _make(repo_id: str, revision: str, entries: list[RepoEntry], gated: bool, name: str,
          problem: str | None = None) -> HubFile:
    unverifiable = [e.path for e in entries if not e.sha256]
    if problem is None and unverifiable:
        problem = (f"the hub gives no SHA-256 for {unverifiable[0]}, so its download could "
                   "not be verified")
    if problem is None and any(e.size <= 0 for e in entries):
        problem = f"the hub lists {entries[0].path} as empty"
    return HubFile(
        repo_id=repo_id, revision=revision, name=name,
        parts=tuple(e.path for e in entries), sizes=tuple(e.size for e in entries),
        sha256s=tuple((e.sha256 or "").lower() for e in entries),
        quant=quant_of(entries[0].path), security=_worst(e.security for e in entries),
        gated=gated, problem=problem)


def by_quant(files: Iterable[HubFile]) -> dict[str, list[HubFile]]:
    """``files`` grouped by quantization label, in the order given ("" for unknown)."""
    groups: dict[str, list[HubFile]] = {}
    for f in files:
        groups.setdefault(f.quant, []).append(f)
    return groups


def describe(f: HubFile) -> str:
    parts = f" in {len(f.parts)} parts" if f.split else ""
    return f"{f.name} ({f.quant or 'unknown quantization'}, {format_bytes(f.size)}{parts})"
