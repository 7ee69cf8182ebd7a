"""``--endpoint`` and ``--api-key-env``: running a command's model on a server.

``--endpoint`` takes an address (``http://HOST:PORT``) or the name of a saved endpoint
(``verso endpoints add``); ``--model`` then names a model on that server (``default``: its
first). The key comes from the environment variable ``--api-key-env`` names, else from the
keyring entry of a saved endpoint; it is never taken on the command line, where other users
of the machine could read it."""

from __future__ import annotations

import argparse
import os

from engine.cli.common import EXIT_USAGE, CliError, exit_code
from engine.errors import VersoError
from engine.model_ref import ModelRef
from engine.options import LoadSettings
from engine.remote import Endpoint, RemoteEngine


def add_remote_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--endpoint", metavar="URL|NAME", default=None,
                        help="Run on a server (llama.cpp's llama-server, vLLM, Ollama or any "
                             "OpenAI-compatible one): its address or a saved endpoint's name.")
    parser.add_argument("--api-key-env", metavar="NAME", default=None,
                        help="Environment variable holding the server's API key.")


def resolve_endpoint(args: argparse.Namespace) -> tuple[Endpoint, str | None]:
    """The endpoint ``--endpoint`` names and its API key (None: none)."""
    from engine.remote.saved import find_endpoint
    from engine.secrets import get_secret

    try:
        endpoint = find_endpoint(args.endpoint)
    except VersoError as exc:
        raise CliError(exc.message, EXIT_USAGE) from exc
    name = getattr(args, "api_key_env", None)
    if name:
        key = os.environ.get(name)
        if not key:
            raise CliError(f"--api-key-env {name}: the environment variable {name} is not set "
                           "or empty", EXIT_USAGE)
        return endpoint, key
    return endpoint, get_secret(endpoint.secret_name) if endpoint.name else None


def remote_load_settings(args: argparse.Namespace, endpoint: Endpoint) -> LoadSettings:
    model = "" if args.model == "default" else args.model
    settings = LoadSettings.remote(ModelRef.remote(endpoint.url, model),
                                   n_ctx=getattr(args, "n_ctx", 0))
    problems = settings.validate()
    if problems:
        raise CliError("invalid model settings: " + "; ".join(problems), EXIT_USAGE)
    return settings


def open_remote(args: argparse.Namespace) -> RemoteEngine:
    """A connected engine for ``--endpoint`` (its kind detected, so its capabilities are
    known before any flag is checked against them)."""
    if getattr(args, "reproducible", False):
        raise CliError("--reproducible is not available with --endpoint: a server's batching "
                       "and kernels are outside Verso's control", EXIT_USAGE)
    endpoint, key = resolve_endpoint(args)
    engine = RemoteEngine(endpoint, key)
    try:
        engine.start()
    except VersoError as exc:
        engine.close()
        raise CliError(exc.message, exit_code(exc.kind)) from exc
    return engine
