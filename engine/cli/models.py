"""``verso models``: the models Verso can load, or one model's GGUF header; its actions
(search, files, pull, rm, token, mirror: the hub side) are in ``engine.cli.models_hub``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import TextIO

from engine.cli import models_hub
from engine.cli.common import EXIT_OK, CliError, Io, exit_code
from engine.errors import VersoError
from engine.options import DEFAULT_CTX_CAP, KVType
from engine.units import format_bytes


def add_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser(
        "models", help="List, inspect, find, download and remove models.",
        description="Without an action: the models Verso can load (bundled, models folder). "
                    "Actions find and download GGUF models from the Hugging Face Hub.")
    models.add_argument("--inspect", metavar="MODEL", help="Show one model's metadata.")
    models.add_argument("--json", action="store_true", help="Machine-readable output.")
    models.add_argument("--n-ctx", type=int, default=0,
                        help="Context size for the memory estimate (0: model default).")
    models.add_argument("--kv-type", choices=[k.value for k in KVType], default="f16")
    from engine.cli.remote_flags import add_remote_flags

    add_remote_flags(models)
    actions = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_hub.add_parsers(actions)


def _context(args: argparse.Namespace, trained: int | None) -> int:
    return int(args.n_ctx or min(trained or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP))


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.catalog import estimate_memory, list_models, read_model_info, resolve_model

    if args.endpoint:
        from engine.cli import remote_models

        return remote_models.run(args, io)
    if getattr(args, "models_command", None):
        return models_hub.run(args, io)
    out = io.out
    kv = KVType(args.kv_type)
    if args.inspect:
        try:
            info = read_model_info(resolve_model(args.inspect))
        except VersoError as exc:
            raise CliError(exc.message, exit_code(exc.kind)) from exc
        n_ctx = _context(args, info.context_length)
        estimate = estimate_memory(info, n_ctx, kv)
        data = info.to_dict()
        data["memory_estimate"] = {"n_ctx": n_ctx, "kv_type": kv.value, **asdict(estimate)}
        if args.json:
            json.dump(data, out, indent=2, default=str)
            print(file=out)
            return EXIT_OK
        for key, value in data.items():
            if key == "chat_template":
                value = f"{len(value)} characters" if value else "none"
            if key == "memory_estimate":
                value = (f"{format_bytes(estimate.total_bytes)} at n_ctx={n_ctx} "
                         f"(weights {format_bytes(estimate.weights_bytes)}, "
                         f"KV cache {format_bytes(estimate.kv_bytes)} {kv.value})")
            print(f"{key:>20}: {value}", file=out)
        return EXIT_OK
    entries = list_models()
    if args.json:
        rows = []
        for entry in entries:
            row = {"path": str(entry.path), "source": entry.source, "error": entry.error,
                   "info": entry.info.to_dict() if entry.info else None}
            if entry.info:
                row["memory_estimate"] = asdict(estimate_memory(
                    entry.info, _context(args, entry.info.context_length), kv))
            rows.append(row)
        json.dump(rows, out, indent=2, default=str)
        print(file=out)
        return EXIT_OK
    if not entries:
        print("No models found.", file=out)
        _print_pending(out)
        return EXIT_OK
    for entry in entries:
        if entry.info is None:
            print(f"{entry.path.name:<44} UNUSABLE: {entry.error}", file=out)
            continue
        info = entry.info
        n_ctx = _context(args, info.context_length)
        total = estimate_memory(info, n_ctx, kv).total_bytes
        print(f"{entry.path.name:<44} {info.architecture:<10} {info.quantization:<8} "
              f"{format_bytes(info.file_size):>9}  ~{format_bytes(total)} at {n_ctx} ctx  "
              f"[{entry.source}]", file=out)
    _print_pending(out)
    return EXIT_OK


def _print_pending(out: TextIO) -> None:
    from engine.library.installed import pending_downloads

    for p in pending_downloads():
        print(f"unfinished download: {p.repo_id} {p.path} ({format_bytes(p.bytes_done)} of "
              f"{format_bytes(p.size)}; `verso models pull {p.repo_id} "
              f"{p.path.rsplit('/', 1)[-1]}` resumes it)", file=out)


def run_version(io: Io) -> int:
    from engine.build_info import build_info

    for line in build_info().lines():
        print(line, file=io.out)
    return EXIT_OK
