"""Conversations stay warm across restarts: KV snapshots on disk, used only when valid."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest

from engine.events import Done
from engine.options import GREEDY, ChatMessage, ChatRequest, LoadSettings
from engine.runtime.disk_snapshots import DiskSnapshots, SnapshotKey
from engine.runtime.runtime import Runtime
from engine.runtime.snapshots import SessionHistory, Snapshot

KEY = SnapshotKey("ab" * 32, 2048, "f16", False, 0, 512, "0.3.36 0.25.3 abc")
SNAP = Snapshot((1, 2, 3), b"\x01\x02" * 500, SessionHistory("hi", (1, 2)), 0)


def _saved(folder: Path, key: SnapshotKey = KEY) -> DiskSnapshots:
    disk = DiskSnapshots(folder, key)
    disk.save("conv", SNAP)
    disk.flush()
    return disk


def test_a_snapshot_round_trips(tmp_path: Path) -> None:
    _saved(tmp_path)
    assert DiskSnapshots(tmp_path, KEY).load("conv") == SNAP


@pytest.mark.parametrize("change", [
    {"model_sha256": "cd" * 32}, {"n_ctx": 4096}, {"kv_type": "q8_0"}, {"flash_attn": True},
    {"n_gpu_layers": 10}, {"llama_build": "0.3.35 0.25.2 old"},
])
def test_another_model_settings_or_build_never_uses_it(tmp_path: Path, change) -> None:
    disk = _saved(tmp_path)
    other = DiskSnapshots(tmp_path, replace(KEY, **change))
    other.path("conv").parent.mkdir(exist_ok=True)
    disk.path("conv").rename(other.path("conv"))  # even under the other key's file name
    assert other.load("conv") is None
    assert not other.path("conv").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "garbage"])
def test_a_damaged_file_is_ignored_and_deleted(tmp_path: Path, damage: str) -> None:
    disk = _saved(tmp_path)
    path = disk.path("conv")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-10] ^= 0xFF
    elif damage == "truncate":
        del data[-100:]
    elif damage == "header":
        data[20] ^= 0xFF
    else:
        data = bytearray(b"not a snapshot at all")
    path.write_bytes(bytes(data))
    assert disk.load("conv") is None
    assert not path.exists()


def test_the_folder_stays_under_its_budget_least_recently_used_out(tmp_path: Path) -> None:
    one = _saved(tmp_path / "probe").path("conv").stat().st_size
    disk = DiskSnapshots(tmp_path, KEY, budget_bytes=3 * one)
    for i in range(6):
        disk.save(f"c{i}", SNAP)
        disk.flush()
    disk.load("c3")
    disk.save("c6", SNAP)
    disk.flush()
    kept = {s for s in (f"c{i}" for i in range(7)) if disk.path(s).exists()}
    assert len(kept) <= 3 and "c6" in kept and "c3" in kept


# ------------------------------------------------------------------ with the real model

HISTORY = [ChatMessage("system", "You are a patient tutor.")]
for _i in range(6):
    HISTORY += [ChatMessage("user", f"Tell me fact number {_i} about rivers and the sea, "
                                    "with some detail about how water moves."),
                ChatMessage("assistant", "Rivers carry water from the land to the sea. " * 6)]


def _turn(rt: Runtime, messages: list[ChatMessage]) -> Done:
    events = list(rt.chat(ChatRequest(tuple(messages), replace(GREEDY, max_tokens=24),
                                      session_id="conv-1"), lambda: False))
    done = events[-1]
    assert isinstance(done, Done)
    return done


def _runtime(folder: Path | None, smol_path: Path, n_ctx: int = 2048) -> Runtime:
    rt = Runtime(snapshot_dir=folder)
    for _ in rt.load(LoadSettings(path=str(smol_path), n_ctx=n_ctx, n_threads=1)):
        pass
    return rt


def test_a_conversation_continued_after_a_restart_is_restored_not_reevaluated(
        smol_path: Path, tmp_path: Path) -> None:
    first = [*HISTORY, ChatMessage("user", "Summarise that in one line.")]
    # Without a restart: the same runtime keeps the KV cache between the two turns.
    warm = _runtime(None, smol_path)
    reply = _turn(warm, first)
    second = [*first, ChatMessage("assistant", reply.text), ChatMessage("user", "Thanks!")]
    expected = _turn(warm, second)
    warm.unload()

    before = _runtime(tmp_path, smol_path)
    assert _turn(before, first).text == reply.text
    before.unload()  # quitting Verso: the current conversation is written to disk
    assert list(tmp_path.glob("*.kvs"))

    after = _runtime(tmp_path, smol_path)
    done = _turn(after, second)
    after.unload()
    assert done.stats.restored_snapshot
    assert done.stats.evaluated_tokens < done.stats.prompt_tokens // 5
    assert done.text == expected.text  # greedy: the same reply as without the restart

    other = _runtime(tmp_path, smol_path, n_ctx=1024)  # another context size: not used
    done = _turn(other, second)
    other.unload()
    assert not done.stats.restored_snapshot
    assert done.stats.evaluated_tokens == done.stats.prompt_tokens


def test_snapshot_keys_differ_by_settings() -> None:
    assert KEY.fingerprint() != dataclasses.replace(KEY, n_ctx=1024).fingerprint()
