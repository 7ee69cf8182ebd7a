"""Render assets/icons/verso.svg into the icon files each installer wants, with Qt only.

    python packaging/make_icons.py [OUT_DIR]        (default: build/icons)

Writes verso-<size>.png (16-512), verso.png (256), verso.ico (Windows, for the .exe and the
Inno Setup installer) and verso.icns (macOS, for the .app bundle): Qt's own image format
plugins write .ico and .icns, so no other tool is needed on any OS.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "assets" / "icons" / "verso.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(out_dir: Path) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: cannot read {SVG}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[int, QImage] = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        images[size] = image
        path = out_dir / f"verso-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"make_icons: cannot write {path}")
        written.append(path)
    for name, size in (("verso.png", 256), ("verso.ico", 256), ("verso.icns", 512)):
        path = out_dir / name
        if images[size].save(str(path)):
            written.append(path)
        else:  # the .ico/.icns writers are Qt plugins; say so instead of failing the build
            print(f"make_icons: Qt could not write {path.name} (image format plugin missing)",
                  file=sys.stderr)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "icons"
    for item in render(out):
        print(item)
