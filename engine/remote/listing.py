"""What each saved server offers, for the model picker: its models, or why none can be
listed (unreachable, refused key). Runs off the GUI thread; short timeouts."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.errors import VersoError
from engine.model_ref import ModelRef
from engine.remote.endpoint import Endpoint
from engine.remote.engine import RemoteEngine

LISTING_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class RemoteListing:
    endpoint: Endpoint
    models: tuple[ModelRef, ...] = ()
    backend: str = ""  # "the llama.cpp server at lab" once connected
    error: str = ""  # for the user; "" when the models were listed


def list_remote_models(endpoint: Endpoint, api_key: str | None = None) -> RemoteListing:
    from engine.secrets import get_secret

    key = api_key if api_key is not None else get_secret(endpoint.secret_name)
    quick = replace(endpoint, connect_timeout_s=min(endpoint.connect_timeout_s,
                                                    LISTING_TIMEOUT_S),
                    read_timeout_s=min(endpoint.read_timeout_s, LISTING_TIMEOUT_S))
    engine = RemoteEngine(quick, key)
    try:
        engine.start()
        dialect = engine.dialect
        models = tuple(ModelRef.remote(endpoint.url, m.id) for m in dialect.info.models)
        return RemoteListing(endpoint, models, dialect.backend)
    except VersoError as exc:
        return RemoteListing(endpoint, error=exc.message)
    finally:
        engine.close()


def saved_listings() -> list[RemoteListing]:
    from engine.remote.saved import load_endpoints

    try:
        endpoints = load_endpoints()
    except VersoError as exc:
        return [RemoteListing(Endpoint("http://invalid.local"), error=exc.message)]
    return [list_remote_models(e) for e in endpoints]
