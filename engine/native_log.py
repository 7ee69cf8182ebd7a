"""llama.cpp's own log lines ("llama_context: n_ctx_seq (512) > n_ctx_train ...", "using
full-size SWA cache") go to ``engine.log`` in the user's log folder, not to the terminal of a
CLI user or the app's stderr. With ``VERSO_NATIVE_LOG=stderr`` (``verso --verbose`` sets it,
and the engine process inherits it) they are echoed to stderr as well.

llama-cpp-python's own callback prints to stderr whenever its logger is left at the default
level (the batch decoder's contexts never set it), which is how those lines leaked."""

from __future__ import annotations

import collections
import ctypes
import logging
import logging.handlers
import os
import sys
import threading
from typing import Any, ClassVar

from engine import paths

ECHO_ENV = "VERSO_NATIVE_LOG"
LOG_FILE = "engine.log"

# ggml_log_level in the vendored ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5
# (llama-cpp-python's _logger.py still has the older order, which files errors as debug).
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING,
           4: logging.ERROR}
_CONT = 5  # continues the previous line

log = logging.getLogger("verso.llama_cpp")
_lock = threading.Lock()
_callback: Any = None  # kept referenced: llama.cpp holds a pointer to it


class _Lines:
    """llama.cpp logs in pieces; a line is logged once its newline arrives."""

    level = logging.INFO
    pending = ""
    errors: ClassVar[collections.deque[str]] = collections.deque(maxlen=8)


def clear_errors() -> None:
    _Lines.errors.clear()


def recent_errors() -> list[str]:
    """llama.cpp's error lines since ``clear_errors`` (the last 8): why a load failed, which
    llama.cpp otherwise tells only its log."""
    return list(_Lines.errors)


def _emit(level: int, text: str) -> None:
    if level != _CONT:
        _Lines.level = _LEVELS.get(level, logging.INFO)
    *complete, _Lines.pending = (_Lines.pending + text).split("\n")
    for one in complete:
        if one.strip():
            log.log(_Lines.level, one)
            if _Lines.level >= logging.ERROR:
                _Lines.errors.append(one.strip())


def callback() -> Any:
    """The ctypes callback that routes llama.cpp's log lines (installed by ``route``)."""
    global _callback
    with _lock:
        if _callback is None:
            import llama_cpp

            def on_line(level: int, text: bytes, _data: ctypes.c_void_p) -> None:
                _emit(level, text.decode("utf-8", "replace"))

            _callback = llama_cpp.llama_log_callback(on_line)
        return _callback


def route(echo: bool | None = None) -> None:
    """Send llama.cpp's log lines to the log file (and to stderr when ``echo``, default from
    ``VERSO_NATIVE_LOG``). Idempotent; call before loading a model."""
    import llama_cpp

    if echo is None:
        echo = os.environ.get(ECHO_ENV) == "stderr"
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    try:
        file_handler: logging.Handler = logging.handlers.RotatingFileHandler(
            paths.log_dir() / LOG_FILE, maxBytes=2 << 20, backupCount=2, encoding="utf-8")
    except OSError:  # an unwritable log folder must not stop the engine
        file_handler = logging.NullHandler()
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(file_handler)
    if echo:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("llama.cpp: %(message)s"))
        log.addHandler(stream)
    llama_cpp.llama_log_set(callback(), ctypes.c_void_p(0))
