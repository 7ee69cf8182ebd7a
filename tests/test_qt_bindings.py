"""PySide6 6.12.0's abi3 wheel drops a reference to None on every void call and to True on
every signal emit under Python 3.11, which aborts the app after a few thousand streamed
tokens. pyproject pins below it; this test keeps a future upgrade from bringing it back."""

import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    fired = Signal()


def test_bindings_do_not_lose_references_to_singletons():
    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(1000):
        probe.setObjectName("probe")
        probe.fired.emit()
    assert sys.getrefcount(None) >= none_before
    assert sys.getrefcount(True) >= true_before
