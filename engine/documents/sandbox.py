"""Parsing a user's file in a child process with a time and memory limit.

Parsers of PDF and Office files are large and face hostile input: a crafted file can make
them loop, allocate without bound or crash in native code. The child is started with
``spawn`` (as the engine process is, on every OS), its address space is capped with
RLIMIT_AS where the OS has it, and it is killed when the time is up. Every way it can end
becomes a DocumentError."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from engine.documents.errors import DocumentError, DocumentProblem
from engine.documents.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_PAGES,
    MB,
    Limits,
)
from engine.documents.model import Block, BlockKind, Document, DocumentFormat, Location
from engine.documents.parse import check_file, parse_file
from engine.errors import VersoError

log = logging.getLogger(__name__)

_EXIT_OUT_OF_MEMORY = 86  # the child ran out of memory and could not even report it
_KILL_GRACE_S = 2.0
_CANCEL_POLL_S = 0.1


def _pack(document: Document) -> tuple[object, ...]:
    """The document as plain tuples: pickling hundreds of thousands of slotted frozen
    dataclasses takes seconds, plain tuples a fraction of that."""
    blocks = tuple(
        (b.kind.value, b.text, b.level, b.ordered, b.location.paragraph, b.location.page,
         b.location.heading_path)
        for b in document.blocks
    )
    return (document.source, document.name, document.format.value, blocks, document.title,
            document.page_count, document.encoding, document.notes)


def _unpack(packed: tuple[Any, ...]) -> Document:
    source, name, fmt, blocks, title, page_count, encoding, notes = packed
    kinds = {kind.value: kind for kind in BlockKind}
    return Document(
        source=source,
        name=name,
        format=DocumentFormat(fmt),
        blocks=tuple(
            Block(kinds[kind], text, Location(paragraph, page, path), level, ordered)
            for kind, text, level, ordered, paragraph, page, path in blocks
        ),
        title=title,
        page_count=page_count,
        encoding=encoding,
        notes=notes,
    )


def _limit_memory(max_memory_mb: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the timeout still applies
        return
    limit = max_memory_mb * MB
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):  # macOS refuses RLIMIT_AS; the timeout still applies
        pass


def _out_of_memory_reason(max_memory_mb: int) -> str:
    return (
        f"parsing needed more than {max_memory_mb:,} MB of memory (the limit); the file is "
        "too large or built to exhaust memory"
    )


def _child(conn: Connection, path: str, limits: Limits, max_memory_mb: int) -> None:
    reply: tuple[object, ...] | None = None
    try:
        _limit_memory(max_memory_mb)
        reply = ("ok", _pack(parse_file(Path(path), limits)))
    except DocumentError as exc:
        reply = ("error", exc.problem, exc.reason, "")
    except MemoryError:
        reply = None  # answered below, once the failed parse's frames are freed
    except BaseException as exc:  # a bug: report it rather than print a traceback
        reply = ("error", DocumentProblem.CORRUPT,
                 f"the parser failed ({type(exc).__name__}: {exc})", traceback.format_exc())
    try:
        conn.send(reply or ("error", DocumentProblem.OUT_OF_MEMORY,
                            _out_of_memory_reason(max_memory_mb), ""))
    except MemoryError:
        os._exit(_EXIT_OUT_OF_MEMORY)
    finally:
        conn.close()


def _stop(process: mp.process.BaseProcess) -> None:
    if process.pid is None:  # never started
        return
    if process.is_alive():
        process.kill()
    process.join(_KILL_GRACE_S)


def _crash_error(name: str, exitcode: int | None, max_memory_mb: int) -> DocumentError:
    if exitcode == _EXIT_OUT_OF_MEMORY or exitcode == -signal.SIGKILL:
        return DocumentError(
            name, DocumentProblem.OUT_OF_MEMORY, _out_of_memory_reason(max_memory_mb)
        )
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"code {exitcode}"
    return DocumentError(
        name,
        DocumentProblem.CORRUPT,
        f"the parser crashed on this file (it exited with {how}); the file is probably damaged",
    )


def _wait(
    receiver: Connection,
    process: mp.process.BaseProcess,
    name: str,
    deadline: float,
    cancel: Callable[[], bool] | None,
) -> bool:
    """Wait until the child answers or ends (True) or the time is up (False)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        step = min(remaining, _CANCEL_POLL_S) if cancel else remaining
        if wait([receiver, process.sentinel], timeout=step):
            return True
        if cancel and cancel():
            raise DocumentError(name, DocumentProblem.CANCELLED, "loading was cancelled")


def load_document(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = 60.0,
    max_memory_mb: int = 1024,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    cancel: Callable[[], bool] | None = None,
) -> Document:
    """Parse a .txt, .md, .html, .pdf or .docx file in a child process.

    ``timeout_s`` counts from the start of the child (starting Python takes a fraction of
    a second). ``max_memory_mb`` caps the child's address space, which includes the
    interpreter and the parser libraries (25 to 60 MB). ``cancel`` is polled ten times a
    second; when it returns True the child is killed. Raises DocumentError (or a
    VersoError when no process can be started), never anything else."""
    if timeout_s <= 0 or max_memory_mb <= 0:
        raise ValueError("timeout_s and max_memory_mb must be positive")
    file = Path(path).absolute()
    limits = Limits(max_bytes=max_bytes, max_pages=max_pages, max_chars=max_chars)
    check_file(file, limits)  # fast failures need no child

    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child,
        args=(sender, str(file), limits, max_memory_mb),
        name="verso-document-parser",
        daemon=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        try:
            process.start()
        except OSError as exc:
            raise VersoError(f"cannot start the document parser ({exc})") from None
        finally:
            sender.close()
        if not _wait(receiver, process, file.name, deadline, cancel):
            raise DocumentError(
                file.name,
                DocumentProblem.TIMEOUT,
                f"parsing took longer than {timeout_s:g} s and was stopped; the file is too "
                "large or too complex",
            )
        message = None
        if receiver.poll(0):
            try:
                message = receiver.recv()
            except EOFError:
                message = None
        if message is None:
            process.join(_KILL_GRACE_S)
            raise _crash_error(file.name, process.exitcode, max_memory_mb)
        if message[0] == "ok":
            return _unpack(message[1])
        _, problem, reason, child_traceback = message
        if child_traceback:
            log.warning("document parser failed on %s:\n%s", file, child_traceback)
        raise DocumentError(file.name, problem, reason)
    finally:
        _stop(process)
        receiver.close()
