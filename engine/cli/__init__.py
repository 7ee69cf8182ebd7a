"""``verso``: headless commands over the same engine and tasks as the desktop app. See
``engine.cli.main`` for the dispatch and ``engine.cli.common`` for the exit codes."""

from engine.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
