"""The trust suite: hostile input, faults and load, one module per family.

Every case records its peak memory (this process plus every process it started, sampled
every 20 ms) as the ``peak_rss_mb`` user property; ``tests/trust/run.py`` collects those with
each case's outcome and duration into the summary table. Cases marked ``long`` run only in
``make trust``; the rest also run in ``make test``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psutil
import pytest

_PERIOD_S = 0.02


class PeakMemory(threading.Thread):
    """Peak resident memory of this process and its descendants, sampled in a thread."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.peak = 0
        self.done = threading.Event()

    def total(self) -> int:
        total = self.me.memory_info().rss
        for child in self.me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                continue
        return total

    def run(self) -> None:
        while True:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.total())
            if self.done.wait(_PERIOD_S):
                return


@pytest.fixture(autouse=True)
def _peak_memory(request: pytest.FixtureRequest) -> Iterator[None]:
    sampler = PeakMemory()
    sampler.start()
    yield
    sampler.done.set()
    sampler.join()
    request.node.user_properties.append(("peak_rss_mb", round(sampler.peak / 2**20, 1)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module
        family = getattr(module, "FAMILY", None) if module is not None else None
        if family:
            item.user_properties.append(("family", family))
