"""The engine process: ``EngineClient`` (caller's side) and the process it starts."""

from engine.worker.client import EngineClient

__all__ = ["EngineClient"]
