"""The Workbench panel end to end, with the real default model in a real engine process
(one window for the module: starting the engine and loading the model once keeps it fast)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.panels.workbench import WorkbenchPanel
from app.widgets.attention_view import AttentionView
from app.widgets.constraint_editors import CHOICES, FREE, GRAMMAR, SCHEMA
from engine import paths
from engine.catalog import format_bytes, read_header
from engine.events import AttentionMap, Done
from tests.windows import module_window_fixture

TIMEOUT_MS = 60_000
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "min_p": 0.0,
          "repeat_penalty": 1.0, "max_tokens": 12, "seed": 1}


window = module_window_fixture("workbench-home")


@pytest.fixture
def wb(window, qtbot) -> WorkbenchPanel:
    panel = window.workbench
    qtbot.waitUntil(lambda: panel._job is None, timeout=TIMEOUT_MS)
    panel.mode.setCurrentIndex(0)
    panel.constraints.shape.setCurrentIndex(FREE)
    panel.constraints.banned.clear()
    panel.constraints.ban_any_case.setChecked(False)
    panel.constraints.bias.setRowCount(0)
    panel.sampling.set_values(GREEDY)
    panel.work.setCurrentIndex(0)
    return panel


def finish(qtbot, panel: WorkbenchPanel, start):  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(panel.run_finished, timeout=TIMEOUT_MS) as blocker:
        assert start() is not None, panel.error.text()
    return blocker.args[0]


def test_raw_completion_continues_the_text_in_place(qtbot, wb):
    wb.editor.setPlainText("Once upon a time")
    run = finish(qtbot, wb, wb.run)
    assert run.error == "" and isinstance(run.done, Done)
    assert run.text.strip() and run.text == run.done.text
    assert wb.editor.toPlainText() == "Once upon a time" + run.text
    assert "tok/s" in wb.stats.text() and "TTFT" in wb.stats.text()
    assert run.prompt_tokens and len(run.records) == run.done.stats.generated_tokens
    # Run again: the whole text, output included, is the next prompt.
    second = finish(qtbot, wb, wb.run)
    assert second.prompt_text == "Once upon a time" + run.text
    assert wb.editor.toPlainText() == second.prompt_text + second.text


def test_chat_mode_sends_the_message_and_shows_the_reply(qtbot, wb):
    wb.mode.setCurrentIndex(1)
    wb.message.setPlainText("Name one colour.")
    run = finish(qtbot, wb, wb.run)
    assert run.mode == "chat" and run.text.strip()
    assert wb.reply.toPlainText() == run.text
    # A chat reply branches too: it continues from the kept text and the chosen token.
    position = 1
    record = run.records[position]
    alt = next(a for a in record.alternatives if a.token_id != record.token_id
               and a.text.strip())
    branch = finish(qtbot, wb, lambda: wb.branch(wb.tokens.runs.index(run), position,
                                                 alt.token_id))
    assert branch.error == ""
    assert branch.text.startswith(run.records[0].text + alt.text)
    assert wb.reply.toPlainText() == branch.text


def test_stop_ends_a_run_and_keeps_its_output(qtbot, wb):
    wb.sampling.set_values({**GREEDY, "max_tokens": 600})
    wb.editor.setPlainText("Once upon a time, in a land far away,")
    with qtbot.waitSignal(wb.run_finished, timeout=TIMEOUT_MS) as blocker:
        wb.run()
        qtbot.waitUntil(lambda: len(wb.tokens.runs[-1].records) >= 3, timeout=TIMEOUT_MS)
        assert wb.stop_button.isVisible() and wb.editor.isReadOnly()
        qtbot.mouseClick(wb.stop_button, Qt.MouseButton.LeftButton)
    run = blocker.args[0]
    assert wb.stats.text() == "Stopped." or run.done.finish_reason.value == "cancelled"
    assert 3 <= len(run.records) < 600
    assert wb.editor.toPlainText() == run.prompt_text + run.text
    assert wb.run_button.isEnabled() and not wb.editor.isReadOnly()


def test_the_same_seed_gives_the_same_output(qtbot, wb):
    wb.sampling.set_values({"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
                            "seed": 1234, "max_tokens": 16})
    wb.editor.setPlainText("My favourite animal is")
    first = finish(qtbot, wb, wb.run)
    second = finish(qtbot, wb, wb.regenerate)
    assert second.prompt_text == "My favourite animal is"
    assert first.text == second.text and first.token_ids == second.token_ids
    wb.sampling.set_values({**GREEDY, "temperature": 1.0, "top_k": 0, "seed": 99,
                            "max_tokens": 16})
    other = finish(qtbot, wb, wb.regenerate)
    assert other.token_ids != first.token_ids


def test_a_grammar_constrains_the_output(qtbot, wb):
    wb.constraints.shape.setCurrentIndex(GRAMMAR)
    wb.constraints.grammar.setPlainText('root ::= ("yes" | "no") "."\n')
    qtbot.waitUntil(lambda: wb.constraints.grammar_state() == "ok", timeout=TIMEOUT_MS)
    assert "Valid" in wb.constraints.grammar_status.text()
    wb.editor.setPlainText("Is the sky blue? Answer:")
    run = finish(qtbot, wb, wb.run)
    assert run.text in ("yes.", "no.")


def test_a_json_schema_run_gives_valid_json(qtbot, wb):
    wb.constraints.shape.setCurrentIndex(SCHEMA)
    assert "root ::=" in wb.constraints.schema_preview.toPlainText()
    wb.sampling.set_values({"temperature": 0.8, "seed": 5, "max_tokens": 80})
    wb.editor.setPlainText("A person as JSON:")
    run = finish(qtbot, wb, wb.run)
    data = json.loads(run.text)
    assert isinstance(data["name"], str) and len(data["name"]) <= 20
    assert isinstance(data["age"], int) and 0 <= data["age"] <= 120
    # A broken schema is explained, the preview cleared and Run refused.
    wb.constraints.schema.setPlainText('{"type": "object", "properties": ')
    qtbot.waitUntil(lambda: not wb.run_button.isEnabled(), timeout=5000)
    assert "not valid JSON" in wb.error.text()
    assert wb.constraints.schema_preview.toPlainText() == ""
    assert wb.run() is None


def test_an_invalid_grammar_is_reported_and_blocks_run(qtbot, wb):
    wb.constraints.shape.setCurrentIndex(GRAMMAR)
    wb.constraints.grammar.setPlainText('root ::= "a" (\n')
    qtbot.waitUntil(lambda: wb.constraints.grammar_state() == "invalid", timeout=TIMEOUT_MS)
    assert not wb.run_button.isEnabled()
    assert "Grammar: expecting ')'" in wb.error.text() and wb.error.isVisible()
    assert "✗" in wb.constraints.grammar_status.text()
    assert wb.run() is None
    wb.constraints.grammar.setPlainText('answer ::= "a"\n')
    qtbot.waitUntil(lambda: wb.constraints.grammar_state() == "invalid", timeout=TIMEOUT_MS)
    assert "'root' rule" in wb.error.text()
    wb.constraints.grammar.setPlainText('root ::= "a"\n')
    qtbot.waitUntil(lambda: wb.run_button.isEnabled(), timeout=TIMEOUT_MS)


def test_choices_and_a_bad_bias_row(qtbot, wb):
    wb.constraints.shape.setCurrentIndex(CHOICES)
    wb.constraints.choices.setPlainText("red\ngreen\nblue")
    wb.editor.setPlainText("The colour of grass is")
    run = finish(qtbot, wb, wb.run)
    assert run.text in ("red", "green", "blue")
    wb.constraints.add_bias_row("red", "lots")
    assert not wb.run_button.isEnabled()
    assert "not a number" in wb.error.text()
    wb.constraints.bias.item(0, 1).setText("-100")
    assert wb.run_button.isEnabled()
    run = finish(qtbot, wb, wb.run)
    assert run.text in ("green", "blue")


def test_a_banned_phrase_never_appears(qtbot, wb):
    wb.editor.setPlainText("The capital of France is")
    free = finish(qtbot, wb, wb.run)
    assert "paris" in free.text.lower(), "the test needs a prompt the model answers Paris"
    wb.constraints.banned.setPlainText("paris")
    wb.constraints.ban_any_case.setChecked(True)
    wb.editor.setPlainText("The capital of France is")
    run = finish(qtbot, wb, wb.run)
    assert run.text.strip() and "paris" not in run.text.lower()
    assert "paris" not in wb.editor.toPlainText().lower()


def test_compare_runs_two_settings_with_one_seed(qtbot, wb):
    wb.editor.setPlainText("The ocean is")
    wb.work.setCurrentIndex(2)
    wb.compare.load_preset("A", "Precise")
    wb.compare.load_preset("B", "Creative")
    assert wb.compare.values("A")["max_tokens"] == 12
    assert wb.compare.values("A")["seed"] == wb.compare.values("B")["seed"]
    finish(qtbot, wb, wb.run_compare)
    outputs = {side: wb.compare.sides[side].output.toPlainText() for side in "AB"}
    assert all(text.strip() for text in outputs.values())
    for side in "AB":
        stats = wb.compare.sides[side].stats.text()
        assert "tokens" in stats and "tok/s" in stats and "TTFT" in stats
    wb.editor.setPlainText("The ocean is")
    greedy = finish(qtbot, wb, wb.run)
    assert outputs["A"] == greedy.text  # Precise is greedy, as the Workbench settings


def test_token_view_shows_probabilities_and_branches(qtbot, wb):
    wb.editor.setPlainText("The best thing about summer is")
    original = finish(qtbot, wb, wb.run)
    original_text = original.text
    assert all(r.logprob is not None and len(r.alternatives) == 5 for r in original.records)
    wb.work.setCurrentIndex(1)
    view = wb.tokens
    pieces = view.text.pieces()
    assert any("%" in p.tooltip and "<table" in p.tooltip for p in pieces)
    assert all(p.shade is None or 0.0 <= p.shade <= 1.0 for p in pieces)
    position = 2
    view.text.clicked.emit(view.piece_for_record(position))
    assert view.pinned == position
    record = original.records[position]
    button = next(b for b in view.alt_buttons if b.isEnabled())
    token_id = button.property("token_id")
    alt = next(a for a in record.alternatives if a.token_id == token_id)
    with qtbot.waitSignal(wb.run_finished, timeout=TIMEOUT_MS) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    branch = blocker.args[0]
    prefix = "".join(r.text for r in original.records[:position])
    assert branch.text.startswith(prefix + alt.text)
    assert branch.token_ids[:position + 1] == [*original.token_ids[:position], token_id]
    assert branch.records[position].logprob == pytest.approx(alt.logprob)
    assert view.tabs.count() == len(wb.tokens.runs) and view.current == len(wb.tokens.runs) - 1
    assert original.text == original_text  # the original is kept
    assert wb.editor.toPlainText() == original.prompt_text + branch.text
    view.set_current(wb.tokens.runs.index(original))
    assert wb.editor.toPlainText() == original.prompt_text + original.text


def test_model_view_matches_the_gguf_header(qtbot, wb, smol_path):
    wb.work.setCurrentIndex(3)
    md = read_header(smol_path).metadata
    arch = md["general.architecture"]
    layers, heads = md[f"{arch}.block_count"], md[f"{arch}.attention.head_count"]
    kv_heads, embd = md[f"{arch}.attention.head_count_kv"], md[f"{arch}.embedding_length"]
    head_dim = embd // heads
    values = wb.model_view.values
    assert values["layers"].text() == str(layers) == "30"
    assert values["heads"].text() == str(heads)
    assert values["kv_heads"].text() == str(kv_heads)
    assert values["embedding"].text() == f"{embd:,}"
    assert values["context"].text() == f"{md[f'{arch}.context_length']:,} tokens"
    assert values["vocab"].text().startswith(f"{md['tokenizer.ggml.tokens'].count:,} tokens")
    assert values["quantization"].text() == "Q4_1"
    per_token = layers * kv_heads * 2 * head_dim * 2  # K and V, f16
    assert values["kv_token"].text().startswith(f"{per_token:,} bytes")
    assert values["kv_ctx"].text().startswith(format_bytes(per_token * 1024))
    assert values["n_ctx"].text().startswith("1,024 tokens")
    explanation = wb.model_view.explanation.text()
    assert "Grouped-query attention" in explanation and f"{heads // kv_heads}×" in explanation


def test_presets_save_load_and_delete(qtbot, wb):
    names = [wb.preset.itemData(i) for i in range(wb.preset.count())]
    assert {"Precise", "Balanced", "Creative"} <= set(names)
    wb.apply_preset("Precise")
    assert wb.sampling.values()["temperature"] == 0.0
    assert not wb.delete_preset_button.isEnabled()
    wb.sampling.controls["temperature"].setValue(1.3)
    wb.sampling.controls["mirostat"].setValue(2)
    wb.save_preset("My sampler")
    path = paths.config_dir() / "sampler-presets" / "my-sampler.json"
    assert path.exists()
    assert wb.preset.currentText() == "My sampler (yours)"
    assert wb.delete_preset_button.isEnabled()
    wb.apply_preset("Balanced")
    assert wb.sampling.controls["temperature"].value() == pytest.approx(0.7)
    assert wb.sampling.controls["max_tokens"].value() == 12  # run settings survive a preset
    wb.apply_preset("My sampler")
    assert wb.sampling.values()["temperature"] == 1.3
    assert wb.sampling.values()["mirostat"] == 2
    assert wb.delete_preset("My sampler")
    assert not path.exists()
    assert wb.preset.findData("My sampler") < 0


def test_attention_of_a_generated_token(qtbot, wb):
    if not wb.attention_available:
        pytest.skip("this engine has no attention capture")
    wb.editor.setPlainText("The cat sat on the")
    run = finish(qtbot, wb, wb.run)
    wb.work.setCurrentIndex(1)
    position = 3
    wb.tokens.pin(position)
    assert wb.tokens.attention_button.isVisible()
    wb.tokens.attention_button.click()
    assert wb._attention_job is not None
    qtbot.waitUntil(lambda: wb._attention_job is None, timeout=TIMEOUT_MS)
    attention = wb.attention.map
    g = len(run.prompt_tokens) + position
    assert attention is not None and attention.query_position == g - 1
    assert attention.weights.shape == (30, 9, g)
    assert np.allclose(attention.weights.sum(axis=-1), 1.0, atol=1e-3)
    assert len(wb.attention.strip.pieces()) == g
    assert wb.work.currentIndex() == 4


def synthetic_map(n_layers: int = 3, n_heads: int = 4, n_keys: int = 6) -> AttentionMap:
    rng = np.random.default_rng(0)
    raw = rng.random((n_layers, n_heads, n_keys)).astype(np.float32)
    weights = raw / raw.sum(axis=-1, keepdims=True)
    pieces = tuple(f"t{k}" for k in range(n_keys))
    return AttentionMap(query_position=n_keys - 1, weights=weights, pieces=pieces,
                        tokens=tuple(range(n_keys)), layers=tuple(range(n_layers)),
                        n_heads=n_heads, n_kv_heads=2)


def test_attention_view_shows_a_synthetic_map(qtbot):
    view = AttentionView()
    qtbot.addWidget(view)
    attention = synthetic_map()
    view.set_map(attention, "synthetic")
    assert view.layer.count() == 1 + 3 and view.head.count() == 1 + 4
    assert view.head.itemText(0) == "Average over heads"
    view.layer.setCurrentIndex(2)  # layer 1
    view.head.setCurrentIndex(3)  # head 2
    assert np.allclose(view.row(), attention.weights[1, 2])
    pieces = view.strip.pieces()
    assert [p.text for p in pieces] == list(attention.pieces)
    best = int(np.argmax(attention.weights[1, 2]))
    assert pieces[best].shade == pytest.approx(1.0)
    weight = float(attention.weights[1, 2, 0])
    assert f"{weight:.4f}" in pieces[0].tooltip
    view.head.setCurrentIndex(0)  # average over heads
    assert np.allclose(view.row(), attention.weights[1].mean(axis=0))
    assert math.isclose(float(view.row().sum()), 1.0, rel_tol=1e-5)
    assert "sum to 1.000" in view.note.text()
    view.heatmap.layer_clicked.emit(0)
    assert view.layer.currentText() == "Layer 0"
    view.skip_first.setChecked(True)
    assert all(p.shade <= 1.0 for p in view.strip.pieces())


def test_token_view_draws_a_bounded_window_while_streaming(qtbot):
    from app.widgets.token_view import LIVE_PIECES, Run, TokenRecord, TokenView

    view = TokenView()
    qtbot.addWidget(view)
    view.show()
    run = Run("Run 1", "raw", "Once")
    view.add_run(run)
    run.records = [TokenRecord(i, f" t{i}", -0.5) for i in range(LIVE_PIECES + 200)]
    view.run_updated(0)  # streaming: only the latest tokens are drawn
    pieces = view.text.pieces()
    assert len(pieces) == LIVE_PIECES + 1 and "200 earlier tokens" in pieces[0].text
    assert pieces[-1].text == f" t{LIVE_PIECES + 199}"
    view.run_updated(0, final=True)  # the run ended: everything, with the prompt's tail
    pieces = view.text.pieces()
    assert len(pieces) == LIVE_PIECES + 201 and pieces[0].text == "Once"
    assert view.piece_for_record(0) == 1
