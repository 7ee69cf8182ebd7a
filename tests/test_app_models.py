"""The Models panel on the fake engine and a scripted hub (tests/fake_hub.py), with real
GGUF files on disk: the local list and its fit verdicts, Load, Import, Reveal, Delete and
Undo; hub search, files by quantization with a recommendation, downloads with progress,
pause/resume, cancel, resume after a restart and errors; the task advice banners."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTreeWidgetItemIterator

from app.machine import machine
from app.panels.models import HUB_TAB
from engine import paths
from engine.gpu import GpuInfo
from tests.fake_hub import FakeFile, FakeHub, FakeHubError, FakeModel

GB = 1_000_000_000
REPO = "bartowski/Qwen2.5-1.5B-Instruct-GGUF"


@pytest.fixture(autouse=True)
def cpu_only_machine():
    machine().set_gpu(GpuInfo(("CPU",), False))


@pytest.fixture
def hub(smol_path: Path) -> FakeHub:
    files = [FakeFile(REPO, f"Qwen2.5-1.5B-Instruct-{q}.gguf", (size,), q)
             for q, size in (("Q2_K", 676_000_000), ("Q4_K_M", 986_000_000),
                             ("Q6_K", 1_270_000_000), ("Q8_0", 1_650_000_000),
                             ("F16", 3_090_000_000))]
    files.append(FakeFile(REPO, "Qwen2.5-1.5B-Instruct-Q3_K_M-00001-of-00002.gguf",
                          (400_000_000, 400_000_000), "Q3_K_M",
                          problem="incomplete split set: 1 of its 2 parts is missing"))
    return FakeHub(smol_path, results=[
        FakeModel(REPO, downloads=250_000, tags=("gguf", "en", "fr", "de", "zh")),
        FakeModel("someone/English-Only-Instruct-GGUF", downloads=900_000,
                  tags=("gguf", "en"))], repo_files={REPO: files})


@pytest.fixture
def window(fake_window, hub: FakeHub, qtbot):
    from app.settings import AppSettings
    from app.window import MainWindow
    from engine.testing.fake_engine import FakeEngine

    fake = FakeEngine()
    win = MainWindow(settings=AppSettings(n_ctx=1024, n_threads=1),
                     engine_factory=lambda: fake, autoload=False, hub_factory=lambda: hub)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: bool(win.models.local.models), timeout=10_000)
    yield win
    win.shutdown()


def _rows(table) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())]
            for r in range(table.rowCount())]


def test_the_local_list_shows_each_model_with_its_fit(window, smol_path: Path, qtbot,
                                                      monkeypatch):
    local = window.models.local
    (row,) = _rows(local.table)
    assert row[0] == "SmolLM2 135M Instruct" and row[2] == "Q4_1" and row[3] == "8,192"
    assert row[4] == "fits" and row[5] == "bundled"
    assert "needs ~" in local.detail.text() and "KV cache (1024 tokens, f16)" in \
        local.detail.text()
    assert "CPU only" in local.facts.text()
    assert not local.delete_button.isEnabled()  # the bundled model stays
    needed = local.models[0].verdict(1024, ram_free=None).ram_needed
    monkeypatch.setattr(machine(), "ram_free", lambda: int(needed * 0.95))
    local.show_models(local.models)
    assert _rows(local.table)[0][4] == "does not fit"
    monkeypatch.setattr(machine(), "ram_free", lambda: int(needed * 1.1))
    local.show_models(local.models)
    assert _rows(local.table)[0][4] == "tight"


def test_load_reveal_import_delete_and_undo(window, smol_path: Path, tmp_path: Path, qtbot,
                                            monkeypatch):
    local = window.models.local
    local.load_button.click()
    qtbot.waitUntil(lambda: window.bridge.loaded is not None, timeout=5_000)
    assert window.bridge.loaded.local_path == str(smol_path)
    qtbot.waitUntil(lambda: "(loaded)" in _rows(local.table)[0][0], timeout=5_000)

    opened: list[QUrl] = []
    monkeypatch.setattr("app.panels.models_local.QDesktopServices.openUrl",
                        lambda url: opened.append(url) or True)
    local.reveal_button.click()
    assert opened == [QUrl.fromLocalFile(str(smol_path.parent))]

    src = Path(shutil.copy(smol_path, tmp_path / "My-Model.Q4_1.gguf"))
    local.import_file(str(src))
    target = paths.models_dir() / src.name
    qtbot.waitUntil(lambda: any(m.path == target for m in local.models), timeout=20_000)
    assert local.selected().path == target and local.delete_button.isEnabled()
    picker_paths = lambda: [e.path for e in window.picker.entries]  # noqa: E731
    qtbot.waitUntil(lambda: target in picker_paths(), timeout=10_000)

    local.delete_selected(confirm=False)
    qtbot.waitUntil(lambda: not target.exists() and window.status.undo_button.isVisible(),
                    timeout=10_000)
    assert "Deleted My Model" in window.status.undo_label.text()
    qtbot.waitUntil(lambda: all(m.path != target for m in local.models), timeout=10_000)
    window.status.undo_button.click()
    qtbot.waitUntil(lambda: target.exists() and any(m.path == target for m in local.models),
                    timeout=10_000)
    qtbot.waitUntil(lambda: target in picker_paths(), timeout=10_000)


def test_a_bad_import_says_why_and_adds_nothing(window, tmp_path: Path, qtbot):
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    local = window.models.local
    local.import_file(str(junk))
    qtbot.waitUntil(lambda: not local.error.isHidden(), timeout=10_000)
    assert "broken.gguf" in local.error.text()
    assert list(paths.models_dir().iterdir()) == []


def _file_items(tree) -> dict[str, list[str]]:
    found = {}
    it = QTreeWidgetItemIterator(tree)
    while it.value():
        item = it.value()
        if item.parent() is not None:
            found[item.text(0)] = [item.text(c) for c in range(4)]
        it += 1
    return found


def test_hub_search_files_recommendation_and_a_download(window, hub: FakeHub, qtbot,
                                                        monkeypatch):
    monkeypatch.setattr(machine(), "ram_free", lambda: int(1.5 * GB))
    models = window.models
    models.tabs.setCurrentIndex(HUB_TAB)
    tab = models.hub
    tab.query.setText("instruct")
    tab.search_button.click()
    qtbot.waitUntil(lambda: tab.table.rowCount() == 2, timeout=5_000)
    assert hub.searches == ["instruct"]
    tab.table.selectRow(0)
    qtbot.waitUntil(lambda: tab.tree.topLevelItemCount() > 0, timeout=5_000)
    groups = [tab.tree.topLevelItem(i).text(0) for i in range(tab.tree.topLevelItemCount())]
    assert groups == [f"{q}  (1 file)" for q in ("Q2_K", "Q4_K_M", "Q6_K", "Q8_0", "F16",
                                                 "Q3_K_M")]
    files = _file_items(tab.tree)
    assert files["Qwen2.5-1.5B-Instruct-Q4_K_M.gguf"][1:] == ["986.0 MB", "fits",
                                                             "★ recommended for this machine"]
    assert files["Qwen2.5-1.5B-Instruct-Q6_K.gguf"][2] == "tight"
    assert files["Qwen2.5-1.5B-Instruct-Q8_0.gguf"][2] == "does not fit"
    assert files["Qwen2.5-1.5B-Instruct-F16.gguf"][2] == "does not fit"
    assert "incomplete split set" in files[
        "Qwen2.5-1.5B-Instruct-Q3_K_M-00001-of-00002.gguf"][3]
    assert tab.selected_file().quant == "Q4_K_M"
    assert "Recommended for this machine" in tab.verdict.text()

    hub.step_bytes, hub.step_s = 20_000_000, 0.05
    tab.download_button.click()
    (row,) = tab.rows
    qtbot.waitUntil(lambda: "MB/s · " in row.status.text() and "s left" in row.status.text(),
                    timeout=5_000)
    assert " of 986.0 MB · 400.0 MB/s · " in row.status.text()
    assert not tab.download_button.isEnabled()  # one download per file
    row.pause_button.click()
    qtbot.waitUntil(lambda: row.state == "paused", timeout=5_000)
    kept = hub.fetched[row.file.name]
    assert 0 < kept < row.file.size and row.pause_button.text() == "Resume"
    row.pause_button.click()
    qtbot.waitUntil(lambda: row.state == "done", timeout=20_000)
    installed = paths.models_dir() / REPO / row.file.name
    assert installed.exists()
    qtbot.waitUntil(lambda: any(m.path == installed for m in models.local.models),
                    timeout=10_000)


def test_cancel_deletes_the_partial_download(window, hub: FakeHub, qtbot):
    tab = window.models.hub
    tab.show_repo(REPO)
    qtbot.waitUntil(lambda: tab.selected_file() is not None, timeout=5_000)
    hub.hold.set()
    tab.download_selected()
    (row,) = tab.rows
    qtbot.waitUntil(lambda: row.state == "running", timeout=5_000)
    row.cancel_button.click()
    qtbot.waitUntil(lambda: not tab.rows, timeout=5_000)
    assert hub.discarded == [row.file.name]
    assert "partial file was deleted" in window.status.currentMessage()


def test_unfinished_downloads_are_listed_to_resume(window, hub: FakeHub, qtbot):
    from app.hub_service import PendingDownload

    f = hub.repo_files[REPO][1]
    hub.fetched[f.name] = 500_000_000
    hub.left_over = [PendingDownload(REPO, f.name, f.revision, 500_000_000, f.size)]
    window.models.tabs.setCurrentIndex(HUB_TAB)
    tab = window.models.hub
    qtbot.waitUntil(lambda: len(tab.rows) == 1, timeout=5_000)
    (row,) = tab.rows
    assert row.state == "paused" and "paused at 500.0 MB of 986.0 MB" in row.status.text()
    assert row.bar.value() == 507
    hub.step_bytes = 100_000_000
    row.pause_button.click()
    qtbot.waitUntil(lambda: row.state == "done", timeout=20_000)


def test_hub_errors_are_shown_as_the_hub_words_them(window, hub: FakeHub, qtbot):
    tab = window.models.hub
    hub.search_error = FakeHubError("rate_limited", "Rate limited (429) by the hub while "
                                                    "asking about the model search: retry "
                                                    "in 30 s.")
    tab.search()
    qtbot.waitUntil(lambda: not tab.error.isHidden(), timeout=5_000)
    assert tab.error.text().startswith("Rate limited (429)")
    tab.show_repo("nobody/nothing")
    qtbot.waitUntil(lambda: "No model repository nobody/nothing" in tab.error.text(),
                    timeout=5_000)
    hub.pull_error = FakeHubError("gated", "Licence not accepted: the model is gated.")
    tab.show_repo(REPO)
    qtbot.waitUntil(lambda: tab.selected_file() is not None, timeout=5_000)
    tab.download_selected()
    (row,) = tab.rows
    qtbot.waitUntil(lambda: row.state == "failed", timeout=5_000)
    assert row.status.text() == "Licence not accepted: the model is gated."
    assert row.pause_button.text() == "Retry"


def test_without_a_hub_client_the_tab_says_so(fake_window, qtbot, smol_path: Path):
    from app.panels.models_hub import HubTab

    tab = HubTab(None)
    qtbot.addWidget(tab)
    assert not tab.search_button.isEnabled() and "no model hub client" in tab.state.text()


def test_translate_and_summarize_warn_from_the_models_own_metadata(window, hub: FakeHub,
                                                                   smol_path: Path,
                                                                   gemma_path: Path, qtbot):
    window.load_model(str(smol_path))
    banner = window.translate.advice
    qtbot.waitUntil(lambda: banner.advice is not None, timeout=10_000)
    assert "only English (general.languages: en)" in banner.label.text()
    assert "French" in banner.label.text()  # the panel's default target
    window.translate.target.setCurrentText("German")
    assert "German" in banner.label.text()
    summary = window.summarize.advice
    assert summary.advice is not None and "very small (135M parameters)" in \
        summary.label.text()
    window.summarize.mode.setCurrentIndex(window.summarize.mode.findData("extractive"))
    assert summary.advice is None and summary.isHidden()

    banner.button.click()
    assert window.stack.currentWidget() is window.models
    assert window.models.tabs.currentIndex() == HUB_TAB
    qtbot.waitUntil(lambda: window.models.hub.table.rowCount() == 2, timeout=5_000)
    first = window.models.hub.table.item(0, 0).text()
    assert first == REPO  # the repository that lists German comes first
    assert hub.searches == ["Instruct"]

    window.load_model(str(gemma_path))
    qtbot.waitUntil(lambda: banner.info is not None and banner.info.architecture == "gemma3",
                    timeout=10_000)
    assert "too small to translate reliably (268M" in banner.label.text()
    assert "only English" not in banner.label.text()
