"""Static proof that every backend (this package's, the in-process one and the fake) implements
``engine.api.Engine``: mypy checks the list below; nothing runs at import time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.api import Engine
    from engine.remote.engine import RemoteEngine
    from engine.remote.router import EngineRouter
    from engine.runtime.in_process import InProcessEngine
    from engine.testing.fake_engine import FakeEngine
    from engine.worker.client import EngineClient

    def _engines(a: EngineClient, b: InProcessEngine, c: FakeEngine, d: RemoteEngine,
                 e: EngineRouter) -> list[Engine]:
        return [a, b, c, d, e]
