"""``verso models --endpoint URL|NAME``: what a server offers, and what Verso can do with it
there (the features of its kind that are available and those that are not)."""

from __future__ import annotations

import argparse
import json

from engine.api import Feature
from engine.cli.common import EXIT_OK, Io
from engine.units import format_bytes


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.cli.remote_flags import open_remote

    engine = open_remote(args)
    try:
        dialect = engine.dialect
        info = dialect.info
        caps = engine.capabilities
        available = sorted(f.value for f in Feature if caps.has(f))
        missing = sorted(f.value for f in Feature if not caps.has(f))
        if args.json:
            json.dump({"endpoint": engine.endpoint.url, "kind": str(info.kind),
                       "version": info.version, "slots": info.slots,
                       "models": [{"id": m.id, "n_ctx": m.n_ctx or info.n_ctx,
                                   "n_ctx_train": m.n_ctx_train, "size_bytes": m.size_bytes,
                                   "details": m.details} for m in info.models],
                       "features": available, "unavailable": missing,
                       "sampling": sorted(caps.sampling)}, io.out, indent=2)
            print(file=io.out)
            return EXIT_OK
        out = io.out
        version = f" {info.version}" if info.version else ""
        slots = f", {info.slots} slots" if info.slots else ""
        print(f"{dialect.backend} ({info.kind}{version}{slots})", file=out)
        if not info.models:
            print("  no models listed", file=out)
        for m in info.models:
            ctx = m.n_ctx or info.n_ctx
            parts = [f"context {ctx:,}" if ctx else "", format_bytes(m.size_bytes)
                     if m.size_bytes else "", m.details]
            print(f"  {m.id}  " + "  ".join(p for p in parts if p), file=out)
        print("Available: " + ", ".join(available), file=out)
        print("Not available: " + (", ".join(missing) or "none"), file=out)
        return EXIT_OK
    finally:
        engine.close()
