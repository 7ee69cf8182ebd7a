"""``verso endpoints add|list|rm``: saved servers (``endpoints.json`` in the config folder;
keys go to the system keyring, never to that file)."""

from __future__ import annotations

import argparse
import json
import os

from engine.cli.common import EXIT_OK, EXIT_USAGE, CliError, Io
from engine.errors import VersoError


def add_parser(sub: argparse._SubParsersAction) -> None:
    endpoints = sub.add_parser("endpoints", help="Saved servers: add, list, rm.")
    actions = endpoints.add_subparsers(dest="action")
    add = actions.add_parser("add", help="Save (or replace) a server under a name.")
    add.add_argument("name")
    add.add_argument("url", help="The server's address, e.g. http://gpu-box:8080.")
    add.add_argument("--kind", choices=["auto", "llama-server", "vllm", "ollama", "openai"],
                     default="auto", help="Server kind (default: detected when connecting).")
    add.add_argument("--connect-timeout", type=float, default=5.0, metavar="S")
    add.add_argument("--read-timeout", type=float, default=300.0, metavar="S",
                     help="Longest wait for the next part of a reply.")
    add.add_argument("--concurrency", type=int, default=0,
                     help="Parallel requests for documents (default: the server's slot "
                          "count where it says it, else 4).")
    add.add_argument("--extra", metavar="JSON", default=None,
                     help="Extra parameters merged into every generation request, as a JSON "
                          "object (e.g. '{\"repetition_penalty\": 1.1}').")
    add.add_argument("--keep-alive", default="", help="Ollama: how long it keeps the model "
                                                      "loaded (e.g. 30m).")
    add.add_argument("--api-key-env", metavar="NAME", default=None,
                     help="Store the API key held by this environment variable in the system "
                          "keyring (never in the endpoints file).")
    listing = actions.add_parser("list", help="List saved servers.")
    listing.add_argument("--json", action="store_true")
    rm = actions.add_parser("rm", help="Forget a saved server and its key.")
    rm.add_argument("name")


def run(args: argparse.Namespace, io: Io) -> int:
    from engine.remote import Endpoint, ServerKind
    from engine.remote.saved import load_endpoints, remove_endpoint, save_endpoint
    from engine.secrets import delete_secret, get_secret, store_secret

    try:
        if args.action == "add":
            extra = {}
            if args.extra:
                try:
                    extra = json.loads(args.extra)
                except ValueError as exc:
                    raise CliError(f"--extra is not valid JSON ({exc})", EXIT_USAGE) from None
                if not isinstance(extra, dict):
                    raise CliError("--extra must be a JSON object", EXIT_USAGE)
            endpoint = Endpoint(args.url, args.name, ServerKind(args.kind), args.connect_timeout,
                                args.read_timeout, args.concurrency, extra, args.keep_alive)
            key = None
            if args.api_key_env:
                key = os.environ.get(args.api_key_env)
                if not key:
                    raise CliError(f"the environment variable {args.api_key_env} is not set",
                                   EXIT_USAGE)
            save_endpoint(endpoint)
            print(f"Saved {endpoint.name}: {endpoint.url} ({endpoint.kind}).", file=io.out)
            if key:
                print(f"API key: {store_secret(endpoint.secret_name, key).message}",
                      file=io.out)
            return EXIT_OK
        if args.action == "list":
            endpoints = load_endpoints()
            if args.json:
                rows = [{**e.to_json(), "has_key": get_secret(e.secret_name) is not None}
                        for e in endpoints]
                json.dump(rows, io.out, indent=2)
                print(file=io.out)
            elif not endpoints:
                print("No saved endpoints (verso endpoints add NAME URL).", file=io.out)
            for e in endpoints if not args.json else ():
                key = "key saved" if get_secret(e.secret_name) else "no key"
                params = f" extra {json.dumps(e.extra)}" if e.extra else ""
                print(f"{e.name:<16} {e.url:<40} {e.kind:<12} {key}{params}", file=io.out)
            return EXIT_OK
        if args.action == "rm":
            removed = remove_endpoint(args.name)
            delete_secret(removed.secret_name)
            print(f"Removed {removed.name} ({removed.url}) and its key.", file=io.out)
            return EXIT_OK
    except VersoError as exc:
        raise CliError(exc.message, EXIT_USAGE) from exc
    raise CliError("verso endpoints needs add, list or rm", EXIT_USAGE)
