"""A main window that lives for a whole test module (loading the model once), with its own
data folder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.settings import AppSettings
from app.window import MainWindow


@contextlib.contextmanager
def module_window(qapp, model: Path, tmp_path_factory: pytest.TempPathFactory,
                  name: str) -> Iterator[MainWindow]:
    """The window on the Workbench with ``model`` loaded (n_ctx 1024, one thread)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp(name)
        mp.setenv("VERSO_HOME", str(home))
        mp.setenv("VERSO_MODELS_DIR", str(home / "models"))
        settings = AppSettings(n_ctx=1024, n_threads=1, model_path=str(model))
        win = MainWindow(settings=settings)
        win.show()
        win.sidebar.setCurrentRow(win.stack.indexOf(win.workbench))
        deadline = 600
        while win.bridge.loaded is None and deadline:
            qapp.processEvents()
            win.bridge.thread().msleep(100)
            deadline -= 1
        assert win.bridge.loaded is not None, "the model did not load"
        try:
            yield win
        finally:
            win.shutdown()
            win.close()


def module_window_fixture(name: str) -> Callable[..., Iterator[MainWindow]]:
    """A module-scoped ``window`` fixture: the ``module_window`` with SmolLM2, its data folder
    named ``name``. Use as ``window = module_window_fixture("...")``."""

    @pytest.fixture(scope="module")
    def window(qapp, smol_path: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainWindow]:
        with module_window(qapp, smol_path, tmp_path_factory, name) as win:
            yield win

    return window
