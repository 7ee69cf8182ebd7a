"""The engine process: ``EngineClient`` (caller's side) and the process it starts.

Imports are lazy so that the engine process can load llama_cpp before any other extension
(see ``engine.worker.child``)."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.worker.client import EngineClient

__all__ = ["EngineClient"]


def __getattr__(name: str) -> Any:
    if name == "EngineClient":
        from engine.worker.client import EngineClient

        return EngineClient
    raise AttributeError(name)
