"""Cost of one streamed append in the chat view as the reply grows, for a reply that is one
unbroken line and for the same text in paragraphs. Target: bounded per append whatever the
shape of the text (before the live tail was split into blocks, one line cost 4.8 ms per append
at 32K characters and 22 ms at 131K, against 0.5-1.5 ms in paragraphs)."""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from common import save, table
from PySide6.QtWidgets import QApplication

from app.widgets.markdown_view import MarkdownBody

PIECE = "lorem "  # about one token


def per_append_ms(text: str, at: list[int], probe: int = 200) -> dict[int, float]:
    """Mean ms of ``probe`` appends once the reply holds ``at`` characters."""
    body = MarkdownBody()
    body.resize(700, 400)
    body.show()
    body.begin_stream()
    out: dict[int, float] = {}
    fed = 0
    for mark in at:
        while fed < mark:
            body.feed(text[fed:fed + 4096])
            fed += 4096
        start = time.perf_counter()
        for _ in range(probe):
            body.feed(text[fed:fed + len(PIECE)])
            fed += len(PIECE)
            QApplication.processEvents()
        out[mark] = (time.perf_counter() - start) * 1000 / probe
    body.finish()
    body.deleteLater()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--at", default="32768,131072", help="reply sizes, characters")
    args = parser.parse_args()
    at = [int(s) for s in args.at.split(",")]
    app = QApplication.instance() or QApplication([])
    size = max(at) + 10_000
    one_line = (PIECE * (size // len(PIECE) + 1))[:size]
    paragraphs = "".join(PIECE * 60 + ("\n\n" if i % 3 == 2 else "\n")
                         for i in range(size // 360 + 1))[:size]
    rows, results = [], []
    for kind, text in (("one line", one_line), ("paragraphs", paragraphs)):
        for mark, ms in per_append_ms(text, at).items():
            rows.append([kind, f"{mark:,}", f"{ms:.2f}"])
            results.append({"text": kind, "chars": mark, "ms_per_append": ms})
    print(table(["reply", "characters so far", "ms per append"], rows))
    save("long_line", {"results": results})
    del app


if __name__ == "__main__":
    main()
