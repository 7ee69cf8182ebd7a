"""False positives of the degeneration guard on text people wrote: every license text and
package description (README) shipped in this environment's ``*.dist-info`` folders, and the
Python reference manual shipped with the interpreter (``pydoc_data.topics``). Each document
is cut into windows the size of one long reply and read by ``LoopDetector`` as if a model had
written it; a window with a hit would have been rolled back although nobody was looping.
Prints, for each threshold setting, the share of windows with a hit and the first few hits.
"""

from __future__ import annotations

import argparse
import site
import sys
from pathlib import Path

from common import save, table

from engine.loop_guard import Limits, LoopDetector

OFF = 10**9
STOP_AFTER = 3  # the runtime ends an output at its third loop
SETTINGS = {
    "sentence >= 6 words": Limits(sentence=6, tandem=OFF, code=OFF),
    "sentence >= 8 words": Limits(sentence=8, tandem=OFF, code=OFF),
    "sentence >= 10 words": Limits(sentence=10, tandem=OFF, code=OFF),
    "sentence >= 12 words": Limits(sentence=12, tandem=OFF, code=OFF),
    "tandem >= 6 words": Limits(sentence=OFF, tandem=6, code=OFF),
    "tandem >= 8 words": Limits(sentence=OFF, tandem=8, code=OFF),
    "tandem >= 12 words": Limits(sentence=OFF, tandem=12, code=OFF),
    "defaults": Limits(),
}


def corpus() -> dict[str, list[tuple[str, str]]]:
    """(name, text) per kind: licenses, package descriptions, the Python reference."""
    roots = [Path(p) for p in site.getsitepackages()]
    licenses: list[tuple[str, str]] = []
    readmes: list[tuple[str, str]] = []
    seen: set[str] = set()
    for root in roots:
        for info in sorted(root.glob("*.dist-info")):
            for path in sorted(info.glob("LICEN[CS]E*")) + sorted(info.glob("licenses/**/*")):
                if path.is_file():
                    text = path.read_text("utf-8", errors="replace")
                    if text not in seen:
                        seen.add(text)
                        licenses.append((f"{info.name}/{path.name}", text))
            meta = info / "METADATA"
            if meta.is_file():
                body = meta.read_text("utf-8", errors="replace").partition("\n\n")[2]
                if len(body) > 500 and body not in seen:
                    seen.add(body)
                    readmes.append((info.name, body))
    import pydoc_data.topics

    reference = sorted(pydoc_data.topics.topics.items())
    return {"license": licenses, "readme": readmes, "python reference": reference}


def windows(text: str, size: int) -> list[str]:
    """Consecutive pieces of about ``size`` characters, cut at line ends where possible."""
    out = []
    at = 0
    while at < len(text):
        end = min(len(text), at + size)
        if end < len(text):
            cut = text.rfind("\n", at + size // 2, end)
            end = cut + 1 if cut > 0 else end
        out.append(text[at:end])
        at = end
    return out


def hits(text: str, detector: LoopDetector) -> list[str]:
    """What the detector reports, reading on after each hit (text people wrote cannot be
    resampled, so this counts how often a reply like it would be rolled back)."""
    found = []
    for word in text.split(" "):
        hit = detector.push((word + " ").encode("utf-8"))
        if hit is not None:
            found.append(f"{hit.kind}: {hit.text}")
            detector.truncate(len(detector))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=2500,
                        help="characters per window (about one 512-token reply)")
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--show", nargs="*", default=["defaults"],
                        help="settings whose first hits are printed on stderr")
    args = parser.parse_args()
    docs = corpus()
    rows, results = [], []
    for setting, limits in SETTINGS.items():
        for kind, items in docs.items():
            n_windows = n_hit = n_stopped = 0
            examples: list[str] = []
            for name, text in items:
                for piece in windows(text, args.window):
                    n_windows += 1
                    found = hits(piece, LoopDetector(limits))
                    if found:
                        n_hit += 1
                        n_stopped += len(found) >= STOP_AFTER
                        if len(examples) < args.examples:
                            examples.append(f"{name}: {found[0]}")
            rows.append([setting, kind, len(items), n_windows,
                         f"{n_hit} ({100 * n_hit / max(1, n_windows):.1f} %)",
                         f"{n_stopped} ({100 * n_stopped / max(1, n_windows):.1f} %)"])
            results.append({"setting": setting, "kind": kind, "documents": len(items),
                            "windows": n_windows,
                            "windows_with_hit": n_hit, "windows_stopped": n_stopped,
                            "examples": examples})
    print(table(["loop when", "text", "documents", "windows", "rolled back",
                 f"stopped ({STOP_AFTER}+ hits)"], rows))
    for r in results:
        if r["setting"] in args.show:
            for example in r["examples"]:
                print(f"  [{r['kind']}] {example}", file=sys.stderr)
    save("loop_guard", {"window_chars": args.window, "defaults": str(Limits()),
                        "results": results})


if __name__ == "__main__":
    main()
