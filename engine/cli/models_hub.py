"""``verso models search|files|pull|rm|token|mirror``: the model library's hub side.

Exit codes (engine.cli.common): 0 done, 1 the hub refused or failed (no token, licence not
accepted, rate limited, server or network error) or a local problem (disk full, a file in
the way), 2 usage (not a repository id, an ambiguous file), 3 not found (repository,
revision, file, local model) or a download that failed verification, 130 interrupted (the
download stays resumable).
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, TextIO

from engine.cli.common import EXIT_INTERRUPTED, EXIT_MODEL, EXIT_OK, EXIT_USAGE, CliError, Io
from engine.errors import Cancelled, VersoError
from engine.events import ErrorKind
from engine.library.download import DownloadError, DownloadErrorKind, DownloadProgress
from engine.units import format_bytes

if TYPE_CHECKING:
    from engine.library.hub import HubClient, HubFile

_EXIT_FOR_HUB = {"invalid": EXIT_USAGE, "not_found": EXIT_MODEL}
_PROGRESS_EVERY_S = 0.2  # on a terminal (one line, rewritten)
_LOG_EVERY_S = 5.0  # otherwise (one line each time)


def add_parsers(actions: argparse._SubParsersAction) -> None:
    search = actions.add_parser("search", help="Search the Hugging Face Hub for GGUF models.")
    search.add_argument("query", help="Text the repository id contains.")
    search.add_argument("--limit", type=int, default=20, help="At most this many (default 20).")
    search.add_argument("--json", action="store_true", help="Machine-readable output.")

    files = actions.add_parser("files", help="A hub repository's GGUF models, by quantization.")
    files.add_argument("repo", help="owner/name")
    files.add_argument("--revision", help="Branch, tag or commit (default: the main branch).")
    files.add_argument("--json", action="store_true", help="Machine-readable output.")

    pull = actions.add_parser(
        "pull", help="Download a model into the models folder (resumable, verified).",
        description="Download FILE from the hub repository REPO into the models folder. "
                    "Progress goes to stderr and the installed path to stdout. Interrupted "
                    "downloads (Ctrl-C, a crash, a lost connection) resume where they stopped "
                    "when the same command runs again.")
    pull.add_argument("repo", help="owner/name")
    pull.add_argument("file", help="A file name from `verso models files REPO` (the first part "
                                   "for a split set), or a quantization such as Q4_K_M.")
    pull.add_argument("--revision", help="Branch, tag or commit (default: the main branch).")
    pull.add_argument("--quiet", action="store_true", help="No progress on stderr.")

    rm = actions.add_parser("rm", help="Delete a downloaded model (every part of a split set).")
    rm.add_argument("name", help="File name or stem from `verso models`.")

    token = actions.add_parser("token", help="The Hugging Face access token (system keyring).")
    token.add_argument("action", choices=["set", "clear", "status"],
                       help="set: read a token from the prompt or stdin and save it in the "
                            "system keyring; clear: delete it; status: where the token comes "
                            "from (never printed).")

    mirror = actions.add_parser("mirror", help="The hub address (HF_ENDPOINT wins over it).")
    mirror.add_argument("action", choices=["show", "set", "clear"], nargs="?", default="show")
    mirror.add_argument("url", nargs="?", help="For set: the mirror's address.")


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.library.hub_errors import HubError

    action = args.models_command
    try:
        if action == "token":
            return _token(args, io)
        if action == "mirror":
            return _mirror(args, io)
        if action == "rm":
            return _rm(args, io)
        if action == "search":
            return _search(args, io)
        if action == "files":
            return _files(args, io)
        return _pull(args, io)
    except HubError as exc:
        raise CliError(exc.message, _EXIT_FOR_HUB.get(exc.kind.value, 1)) from exc
    except DownloadError as exc:
        code = EXIT_MODEL if exc.kind is DownloadErrorKind.VERIFY_FAILED else 1
        raise CliError(exc.message, code) from exc


def _client() -> HubClient:
    from engine.library.hub import HubClient

    return HubClient()


# ------------------------------------------------------------------ search, files


def _search(args: argparse.Namespace, io: Io) -> int:
    models = _client().search(args.query, limit=args.limit)
    if args.json:
        json.dump([asdict(m) for m in models], io.out, indent=2)
        print(file=io.out)
        return EXIT_OK
    if not models:
        print(f"No GGUF models on the hub match {args.query!r}.", file=io.out)
        return EXIT_OK
    width = max(len(m.repo_id) for m in models)
    print(f"{'REPOSITORY':<{width}}  {'DOWNLOADS':>10}  {'LIKES':>6}  UPDATED", file=io.out)
    for m in models:
        gated = "  gated (licence to accept)" if m.gated else ""
        print(f"{m.repo_id:<{width}}  {m.downloads:>10,}  {m.likes:>6,}  "
              f"{m.last_modified[:10] or '-':<10}{gated}", file=io.out)
    return EXIT_OK


def _files(args: argparse.Namespace, io: Io) -> int:
    from engine.library.installed import installed_path

    client = _client()
    files = client.files(args.repo, args.revision)
    if args.json:
        rows = []
        for f in files:
            row = asdict(f)
            row["size"] = f.size
            path = installed_path(f)
            row["installed"] = str(path) if path else None
            rows.append(row)
        json.dump(rows, io.out, indent=2)
        print(file=io.out)
        return EXIT_OK
    if not files:
        print(f"{args.repo} has no GGUF models.", file=io.out)
        return EXIT_OK
    first = files[0]
    rev = f" ({args.revision})" if args.revision and args.revision != first.revision else ""
    gated = "; gated: accept its licence on the hub first" if first.gated else ""
    print(f"{first.repo_id} at {first.revision[:12]}{rev}{gated}", file=io.out)
    width = max(len(f.name) for f in files)
    for f in files:
        notes = []
        if f.split:
            notes.append(f"{len(f.parts)} parts")
        if f.security and f.security != "safe":
            notes.append(f"hub scan: {f.security}")
        if installed_path(f):
            notes.append("installed")
        if f.problem:
            notes = [f"UNAVAILABLE: {f.problem}"]
        print(f"{f.quant or '?':<8} {format_bytes(f.size):>9}  {f.name:<{width}}  "
              f"{', '.join(notes)}".rstrip(), file=io.out)
    return EXIT_OK


# ------------------------------------------------------------------ pull


def choose(files: list[HubFile], wanted: str) -> HubFile:
    """The file ``wanted`` names: a file name or path (any part of a set), or a quantization
    label when exactly one file has it."""
    key = wanted.strip().lower()
    for f in files:
        if key in (f.name.lower(), *(p.lower() for p in f.parts),
                   *(n.lower() for n in f.local_names)):
            return f
    by_quant = [f for f in files if f.quant.lower() == key]
    usable = [f for f in by_quant if f.available] or by_quant
    if len(usable) == 1:
        return usable[0]
    names = ", ".join(f.name for f in (usable or files)) or "none"
    if len(usable) > 1:
        raise CliError(f"{wanted} matches several files: {names}; give the file name",
                       EXIT_USAGE)
    raise CliError(f"no GGUF model {wanted!r} in this repository; available: {names}",
                   EXIT_MODEL)


def _pull(args: argparse.Namespace, io: Io) -> int:
    from engine.library.installed import layout
    from engine.library.pull import pull
    from engine.paths import models_dir

    client = _client()
    f = choose(client.files(args.repo, args.revision), args.file)
    place = layout(f, models_dir())
    progress = _Progress(io.err, quiet=args.quiet)
    last: DownloadProgress | None = None
    try:
        for event in pull(f, client=client):
            last = event
            progress.show(event)
    except (KeyboardInterrupt, Cancelled):
        progress.end()
        parts = [place.staging / (name + ".part") for name in f.local_names]
        kept = sum(p.stat().st_size for p in parts if p.is_file())
        kept_text = f"{format_bytes(kept)} kept in {place.staging}; " if kept else ""
        print(f"verso: download interrupted; {kept_text}run the same command again to resume.",
              file=io.err)
        return EXIT_INTERRUPTED
    except BaseException:
        progress.end()
        raise
    progress.end()
    assert last is not None and last.path is not None
    if not args.quiet:
        note = last.message or f"downloaded {format_bytes(f.size)}, SHA-256 verified"
        print(f"[{f.name}: {note}]", file=io.err)
    print(last.path, file=io.out)
    return EXIT_OK


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_line(e: DownloadProgress) -> str:
    pct = f"{100 * e.fraction:5.1f}%"
    text = f"{e.name}: {e.state.value} {format_bytes(e.bytes_done)} of {format_bytes(e.total)} " \
           f"({pct.strip()})"
    if e.state.value == "downloading" and e.speed > 0:
        text += f", {format_bytes(e.speed)}/s"
        if e.eta is not None:
            text += f", {_duration(e.eta)} left"
    if e.message:
        text += f" [{e.message}]"
    return text


class _Progress:
    """One rewritten line on a terminal; a line every few seconds (and on every change of
    state) when stderr is a file or pipe."""

    def __init__(self, err: TextIO, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        isatty = getattr(err, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.last = 0.0
        self.state: tuple[str, str] = ("", "")
        self.width = 0

    def show(self, e: DownloadProgress) -> None:
        if self.quiet or e.state.value == "done":
            return
        now = time.monotonic()
        changed = (e.state.value, e.message) != self.state
        if not changed and now - self.last < (_PROGRESS_EVERY_S if self.tty else _LOG_EVERY_S):
            return
        self.last, self.state = now, (e.state.value, e.message)
        line = progress_line(e)
        if self.tty:
            pad = max(0, self.width - len(line))
            self.err.write("\r" + line + " " * pad)
            self.width = len(line)
        else:
            self.err.write(line + "\n")
        self.err.flush()

    def end(self) -> None:
        if self.tty and self.width and not self.quiet:
            self.err.write("\n")
            self.err.flush()
            self.width = 0


# ------------------------------------------------------------------ rm, token, mirror


def _rm(args: argparse.Namespace, io: Io) -> int:
    from engine.library.installed import remove_model

    try:
        removed = remove_model(args.name)
    except VersoError as exc:
        code = EXIT_USAGE if exc.kind is ErrorKind.BAD_REQUEST else EXIT_MODEL
        raise CliError(exc.message, code) from exc
    except OSError as exc:
        raise CliError(f"cannot remove {args.name}: {exc}") from exc
    for path in removed:
        print(f"removed {path}", file=io.out)
    return EXIT_OK


def _token(args: argparse.Namespace, io: Io) -> int:
    from engine.library import hub_settings

    if args.action == "status":
        print(f"Hugging Face token: {hub_settings.token_status().describe()}", file=io.out)
        return EXIT_OK
    if args.action == "clear":
        hub_settings.clear_token()
        print("Removed the Hugging Face token from the system keyring.", file=io.out)
        if hub_settings.token_status().source == "HF_TOKEN":
            print("HF_TOKEN is still set in the environment and is used.", file=io.out)
        return EXIT_OK
    isatty = getattr(io.stdin, "isatty", None)
    if isatty and isatty():
        value = getpass.getpass("Hugging Face token (input hidden): ")
    else:
        value = io.stdin.readline()
    try:
        stored = hub_settings.store_token(value)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    if not stored.in_keyring:
        hub_settings.clear_token()
        raise CliError(f"the token was not saved: {stored.message} Set HF_TOKEN in the "
                       "environment instead.")
    print(f"Hugging Face token: {stored.message}", file=io.out)
    return EXIT_OK


def _mirror(args: argparse.Namespace, io: Io) -> int:
    from engine.library import hub_settings

    if args.action == "set":
        if not args.url:
            raise CliError("verso models mirror set needs the mirror's address", EXIT_USAGE)
        try:
            hub_settings.set_endpoint(args.url)
        except ValueError as exc:
            raise CliError(f"hub mirror: {exc}", EXIT_USAGE) from exc
    elif args.action == "clear":
        hub_settings.set_endpoint(None)
    try:
        endpoint = hub_settings.hub_endpoint()
    except ValueError as exc:
        raise CliError(f"HF_ENDPOINT: {exc}", EXIT_USAGE) from exc
    source = {"HF_ENDPOINT": " (from HF_ENDPOINT)", "settings": " (saved setting)",
              "default": ""}[hub_settings.endpoint_source()]
    print(f"Hub: {endpoint}{source}", file=io.out)
    return EXIT_OK
