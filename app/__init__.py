"""Verso's desktop GUI (PySide6). Nothing outside ``app`` imports it."""
