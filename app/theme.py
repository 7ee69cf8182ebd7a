"""Light and dark themes following the system (``QStyleHints.colorScheme``) unless the user
chose one. Colours live in ``assets/styles/palettes.json``, rules in ``assets/styles/app.qss``."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

ASSETS = Path(__file__).resolve().parent.parent / "assets"
STYLES = ASSETS / "styles"
ICONS = ASSETS / "icons"
_TOKEN = re.compile(r"@([a-z_]+)")


@cache
def palettes() -> dict[str, dict[str, str]]:
    return json.loads((STYLES / "palettes.json").read_text(encoding="utf-8"))


def stylesheet(scheme: str) -> str:
    colours = {**palettes()[scheme], "icons": ICONS.as_posix()}
    template = (STYLES / "app.qss").read_text(encoding="utf-8")
    return _TOKEN.sub(lambda m: colours.get(m.group(1), m.group(0)), template)


def system_scheme() -> str:
    hints = QGuiApplication.styleHints()
    return "dark" if hints.colorScheme() == Qt.ColorScheme.Dark else "light"


def qpalette(scheme: str) -> QPalette:
    c = {k: QColor(v) for k, v in palettes()[scheme].items()}
    palette = QPalette()
    role = QPalette.ColorRole
    for r, colour in ((role.Window, c["window"]), (role.Base, c["surface"]),
                      (role.AlternateBase, c["sidebar"]), (role.Text, c["text"]),
                      (role.WindowText, c["text"]), (role.Button, c["surface"]),
                      (role.ButtonText, c["text"]), (role.Highlight, c["selection"]),
                      (role.HighlightedText, c["text"]), (role.ToolTipBase, c["surface"]),
                      (role.ToolTipText, c["text"]), (role.PlaceholderText, c["muted"]),
                      (role.Link, c["link"]), (role.Mid, c["border"])):
        palette.setColor(r, colour)
    palette.setColor(QPalette.ColorGroup.Disabled, role.Text, c["muted"])
    palette.setColor(QPalette.ColorGroup.Disabled, role.WindowText, c["muted"])
    palette.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, c["muted"])
    return palette


def icon(name: str, scheme: str, size: int = 20) -> QIcon:
    """An SVG icon from assets/icons tinted with the theme's text colour."""
    renderer = QSvgRenderer(str(ICONS / f"{name}.svg"))
    pixmap = QPixmap(size * 2, size * 2)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    renderer.render(painter)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceIn)
    painter.fillRect(pixmap.rect(), QColor(palettes()[scheme]["text"]))
    painter.end()
    pixmap.setDevicePixelRatio(2)
    return QIcon(pixmap)


class ThemeManager(QObject):
    changed = Signal(str)  # the scheme now shown: "light" or "dark"

    def __init__(self, app: QApplication, mode: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self.mode = mode
        self.scheme = ""
        app.setStyle("Fusion")
        app.styleHints().colorSchemeChanged.connect(self._system_changed)
        self.apply()

    @classmethod
    def for_app(cls, app: QApplication, mode: str = "system") -> ThemeManager:
        """The application's theme manager (one per application), set to ``mode``."""
        existing = app.findChild(ThemeManager)
        if isinstance(existing, ThemeManager):
            existing.set_mode(mode)
            return existing
        return cls(app, mode)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.apply()

    def effective(self) -> str:
        return self.mode if self.mode in ("light", "dark") else system_scheme()

    def apply(self) -> None:
        scheme = self.effective()
        self._app.setPalette(qpalette(scheme))
        self._app.setStyleSheet(stylesheet(scheme))
        if scheme != self.scheme:
            self.scheme = scheme
            self.changed.emit(scheme)

    def _system_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.mode == "system":
            self.apply()
