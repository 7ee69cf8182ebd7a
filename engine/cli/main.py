"""The ``verso`` parser and dispatch: one module per command (``engine.cli.<command>``),
each with ``add_parser(sub)`` and ``run(args, io)``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TextIO

import engine.cli.chat as chat
import engine.cli.classify as classify
import engine.cli.endpoints as endpoints
import engine.cli.generate as generate
import engine.cli.models as models
import engine.cli.summarize as summarize
import engine.cli.translate as translate
from engine import native_log, safe_versions
from engine.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    EngineFactory,
    Io,
    default_engine,
    exit_code,
)
from engine.errors import VersoError

COMMANDS = {"models": models, "chat": chat, "generate": generate, "classify": classify,
            "summarize": summarize, "translate": translate, "endpoints": endpoints}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="verso", description="Local language models, headless.")
    parser.add_argument("--version", action="store_true", help="Print versions and exit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log engine details.")
    sub = parser.add_subparsers(dest="command")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None, stdin: TextIO | None = None,
         out: TextIO | None = None, err: TextIO | None = None,
         engine_factory: EngineFactory = default_engine) -> int:
    """Run one command; ``engine_factory`` makes its engine (tests pass a fake one)."""
    io = Io(stdin or sys.stdin, out or sys.stdout, err or sys.stderr, engine_factory)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="verso %(levelname)s %(message)s")
    if args.verbose:  # the engine process inherits it and echoes llama.cpp's log lines
        os.environ[native_log.ECHO_ENV] = "stderr"
    if found := safe_versions.problems(safe_versions.ENGINE_MINIMUMS):
        print(safe_versions.refusal(found), file=io.err)
        return EXIT_ERROR
    try:
        if args.version:
            return models.run_version(io)
        module = COMMANDS.get(args.command or "")
        if module is None:
            parser.print_help(io.err)
            return EXIT_USAGE
        return module.run(args, io)
    except CliError as exc:
        print(f"verso: error: {exc}", file=io.err)
        return exc.code
    except VersoError as exc:
        print(f"verso: error: {exc.message}", file=io.err)
        return exit_code(exc.kind)
    except KeyboardInterrupt:
        print("\nverso: interrupted", file=io.err)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
