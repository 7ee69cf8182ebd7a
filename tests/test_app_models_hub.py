"""The Models panel's Hub tab with Verso's real hub client against the loopback hub
(tests/hub_server.py via HF_ENDPOINT) serving the bundled GGUF: search, files by
quantization, a download paused, listed again after a restart of the window and resumed
with a Range request, and a cancelled download that leaves no part behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.machine import machine
from app.panels.models import HUB_TAB
from engine.gpu import GpuInfo
from engine.library.installed import STAGING
from tests.hub_server import HubServer, file_sha256, make_split_set

REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
SINGLE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def hub(smol_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        verso_home: Path) -> Iterator[HubServer]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    parts = make_split_set(smol_path, tmp_path / "split", max_tensors=100)
    server = HubServer().start()
    server.add(REPO, {SINGLE: smol_path, **{f"split/{p.name}": p for p in parts}},
               downloads=9000, likes=40, tags=["gguf", "en"])
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(verso_home / "hf-home"))
    machine().set_gpu(GpuInfo(("CPU",), False))
    try:
        yield server
    finally:
        server.stop()


def _window(qtbot):
    from app.settings import AppSettings
    from app.window import MainWindow
    from engine.testing.fake_engine import FakeEngine

    win = MainWindow(settings=AppSettings(n_ctx=1024, n_threads=1),
                     engine_factory=FakeEngine, autoload=False)
    qtbot.addWidget(win)
    win.show()
    return win


def _staging() -> Path:
    return Path(os.environ["VERSO_MODELS_DIR"]) / STAGING


def test_search_download_pause_restart_resume(hub: HubServer, smol_path: Path, qtbot):
    window = _window(qtbot)
    tab = window.models.hub
    window.models.tabs.setCurrentIndex(HUB_TAB)
    tab.query.setText("SmolLM2")
    tab.search()
    qtbot.waitUntil(lambda: tab.table.rowCount() == 1, timeout=30_000)
    assert tab.table.item(0, 0).text() == REPO
    tab.table.selectRow(0)
    qtbot.waitUntil(lambda: tab.tree.topLevelItemCount() > 0, timeout=30_000)
    group = tab.tree.topLevelItem(0)
    assert group.text(0) == "Q4_1  (2 files)"
    names = [group.child(i).text(0) for i in range(group.childCount())]
    assert SINGLE in names and any("-00001-of-00003" in n for n in names)
    single = next(group.child(i) for i in range(group.childCount())
                  if group.child(i).text(0) == SINGLE)
    tab.tree.setCurrentItem(single)
    hub.always = {"delay": 0.05}
    tab.download_selected()
    (row,) = tab.rows
    part = _staging() / "HuggingFaceTB--SmolLM2-135M-Instruct-GGUF" / (SINGLE + ".part")
    qtbot.waitUntil(lambda: part.exists() and part.stat().st_size >= 2 << 20, timeout=60_000)
    row.pause_button.click()
    qtbot.waitUntil(lambda: row.state == "paused", timeout=30_000)
    kept = part.stat().st_size
    assert 2 << 20 <= kept < smol_path.stat().st_size
    window.shutdown()

    hub.always = {}
    again = _window(qtbot)
    again.models.tabs.setCurrentIndex(HUB_TAB)
    tab = again.models.hub
    qtbot.waitUntil(lambda: len(tab.rows) == 1, timeout=30_000)
    (row,) = tab.rows
    assert row.state == "paused" and row.file.name == SINGLE
    row.pause_button.click()  # Resume
    qtbot.waitUntil(lambda: row.state == "done", timeout=60_000)
    installed = Path(os.environ["VERSO_MODELS_DIR"]) / REPO / SINGLE
    assert file_sha256(installed) == file_sha256(smol_path)
    last = hub.served("cdn")[-1]
    assert (last.status, last.range) == (206, f"bytes={kept}-")
    qtbot.waitUntil(lambda: any(m.path == installed for m in again.models.local.models),
                    timeout=30_000)
    again.shutdown()


def test_cancel_leaves_no_part_behind(hub: HubServer, qtbot):
    window = _window(qtbot)
    tab = window.models.hub
    tab.show_repo(REPO)
    qtbot.waitUntil(lambda: tab.selected_file() is not None, timeout=30_000)
    hub.always = {"delay": 0.05}
    tab.download_selected()
    (row,) = tab.rows
    qtbot.waitUntil(lambda: any(_staging().rglob("*.part")), timeout=60_000)
    row.cancel_button.click()
    qtbot.waitUntil(lambda: not tab.rows, timeout=30_000)
    assert not list(_staging().rglob("*.part")) and not list(_staging().rglob("*.part.json"))
    window.shutdown()
    shutil.rmtree(Path(os.environ["VERSO_MODELS_DIR"]), ignore_errors=True)
