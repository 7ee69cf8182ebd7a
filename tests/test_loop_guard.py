"""The degeneration guard's detector and penalty, the DRY/XTC options and how they reach the
CLI and the GUI (no model: pure logic; the real-model tests are in test_loop_guard_model.py)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from engine.cli.common import add_sampling_flags, sampling_from
from engine.events import FinishReason, finish_note
from engine.loop_guard import Limits, LoopDetector, LoopPenalty
from engine.options import GREEDY, SamplingParams
from engine.text_lists import escape, unescape


def feed(detector: LoopDetector, pieces: list[str]):
    """Push pieces; (index of the piece that completed the first hit, the hit)."""
    for i, piece in enumerate(pieces):
        hit = detector.push(piece.encode("utf-8"))
        if hit is not None:
            return i, hit
    return None


def words(text: str) -> list[str]:
    """Token-like pieces: each word with its leading space."""
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return out


LOOP = ("Ich habe die Schutzmittfliet, die die Ausforderbahn in Berlin, in der Bundesamt "
        "für Finanz")


def test_text_written_again_straight_after_itself_is_a_loop_from_where_the_copy_began():
    first = words(LOOP)
    pieces = first + words(", die die Ausforderbahn in Berlin, in der Bundesamt für Finanz, die")
    found = feed(LoopDetector(), pieces)
    assert found is not None
    _, hit = found
    assert hit.kind == "tandem"
    # The copy begins at the second ", die die Ausforderbahn": everything before is kept.
    kept = "".join(pieces[:hit.token_index])
    assert kept == LOOP
    assert hit.text.startswith(", die die Ausforderbahn in Berlin")


def test_a_short_repeat_or_a_phrase_used_twice_is_not_a_loop():
    text = ("The licensor grants you a licence to use the work. The licensor grants you a "
            "licence to copy it, and you may share the work with others under these terms.")
    assert feed(LoopDetector(), words(text)) is None


def test_a_repeated_sentence_of_ten_words_is_a_loop_even_after_other_text():
    sentence = "The suffix tree is sorted by the literal and the key."
    text = f"{sentence} Each node stores one edge label. {sentence.upper()}"
    found = feed(LoopDetector(), [*words(text), " Next"])
    assert found is not None
    _, hit = found
    assert hit.kind == "sentence"
    kept = "".join(words(text)[:hit.token_index])
    assert kept == f"{sentence} Each node stores one edge label."


def test_a_repeated_sentence_shorter_than_the_limit_is_not_a_loop():
    text = "It is sorted by the key. Each node has one label. It is sorted by the key. More"
    assert feed(LoopDetector(), words(text)) is None


def test_lines_wrapped_at_a_fixed_width_are_not_sentences():
    # Apache-2.0 repeats this line in two different sentences (sections 2 and 3).
    line = "Subject to the terms and conditions of this License, each Contributor hereby"
    text = (f"{line}\ngrants to You a copyright license to reproduce the Work.\n\n"
            f"{line}\ngrants to You a patent license to make and sell the Work.\n\nEnd")
    assert feed(LoopDetector(), words(text)) is None


def test_list_items_are_sentences():
    item = "- The Source form shall be a legal entity created by the Work"
    text = f"{item}\n- Other items follow here\n{item}\n- Next"
    found = feed(LoopDetector(), words(text))
    assert found is not None and found[1].kind == "sentence"


def test_in_a_code_block_sentences_are_not_compared_and_loops_must_be_longer():
    line = "    self.assertEqual(parse(text), expected_value)  # same check again\n"
    code = "```python\n" + line * 2 + "```\n"
    assert feed(LoopDetector(), words(code)) is None
    assert feed(LoopDetector(), words("```\n" + line * 12)) is not None


def test_numbering_and_symbol_runs_do_not_make_loops():
    text = "\n".join(f"{i}. Section {i} covers topic number {i} of the list" for i in range(9))
    assert feed(LoopDetector(), words(text + "\n")) is None
    assert feed(LoopDetector(), words("Title\n" + "=" * 60 + "\n" + "-" * 60 + "\nText")) is None


def test_truncate_forgets_the_rolled_back_tokens():
    detector = LoopDetector()
    pieces = words(LOOP + ", die die Ausforderbahn in Berlin, in der Bundesamt für Finanz, die")
    found = feed(detector, pieces)
    assert found is not None
    detector.truncate(found[1].token_index)
    assert len(detector) == found[1].token_index
    # Something else may follow; the same copy is found again.
    assert feed(detector, words(" und dann wiegen wir alles.")) is None
    again = LoopDetector()
    feed(again, pieces[:found[1].token_index])
    assert feed(again, pieces[found[1].token_index:]) is not None


def test_a_hit_never_starts_in_locked_tokens_and_split_characters_map_to_their_start():
    detector = LoopDetector(Limits(tandem=4))
    euro = "€".encode()
    pieces = [b"a b c d", b" ", euro[:1], euro[1:], b" x"]
    for piece in pieces:
        assert detector.push(piece) is None
    detector.locked = 2
    assert detector.push(b" a b c d") is None
    hit = None
    for piece in (b" ", euro[:1], euro[1:], b" x", b" y"):
        hit = hit or detector.push(piece)
    assert hit is not None and hit.token_index >= 2


def test_the_penalty_lowers_only_the_token_that_would_continue_the_loop():
    penalty = LoopPenalty(strength=1.5)
    loop = [10, 11, 12, 13]
    penalty.add_loop(loop)
    penalty.reset([1, 2])
    logits = np.zeros(20, dtype=np.float32)
    penalty.apply(logits)
    assert not logits.any()  # not inside the loop: nothing changes
    penalty.accept(10)
    penalty.accept(11)
    penalty.apply(logits)
    # Two tokens of the loop matched (2 x 1.5), and one of the loop without its first token.
    assert logits[12] == pytest.approx(-4.5)
    assert np.count_nonzero(logits) == 1
    logits[:] = 0
    penalty.reset([7, 11])  # the loop's words started with another first token
    penalty.apply(logits)
    assert logits[12] == pytest.approx(-1.5)


def test_dry_and_xtc_are_options_with_llama_cpp_names_and_ranges():
    assert SamplingParams().dry_sequence_breakers == ("\n", ":", "\"", "*")
    assert SamplingParams(dry_multiplier=0.8, xtc_probability=0.5).validate() == []
    problems = SamplingParams(dry_multiplier=-1, dry_base=0.5, dry_allowed_length=0,
                              dry_penalty_last_n=-2, xtc_probability=1.5,
                              xtc_threshold=2).validate()
    for name in ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n",
                 "xtc_probability", "xtc_threshold"):
        assert any(p.startswith(name + "=") for p in problems), name
    bad = SamplingParams(dry_sequence_breakers=("", "x" * 41)).validate()
    assert any("empty" in p for p in bad) and any("longer than 40" in p for p in bad)
    assert GREEDY.loop_guard and SamplingParams().loop_guard


def test_cli_flags_come_from_the_schema():
    parser = argparse.ArgumentParser()
    add_sampling_flags(parser)
    args = parser.parse_args(["--no-loop-guard", "--dry-multiplier", "0.8",
                              "--dry-sequence-breaker", "\\n", "--dry-sequence-breaker", ";",
                              "--xtc-probability", "0.5"])
    sampling = sampling_from(args, SamplingParams())
    assert sampling.loop_guard is False
    assert sampling.dry_multiplier == 0.8 and sampling.xtc_probability == 0.5
    assert sampling.dry_sequence_breakers == ("\n", ";")
    none = sampling_from(parser.parse_args(["--dry-sequence-breaker", "none"]), SamplingParams())
    assert none.dry_sequence_breakers == ()
    assert sampling_from(parser.parse_args([]), SamplingParams()).loop_guard is True


def test_escapes_round_trip():
    for text in ("\n", "a\\b", "\\n", "tab\there", ":"):
        assert unescape(escape(text)) == text
    assert escape("\n") == "\\n" and unescape("\\q") == "\\q"


def test_the_finish_note_says_why_an_output_stopped():
    assert finish_note(FinishReason.REPEATING) == "stopped: the model was repeating itself"
    assert finish_note("repeating") == finish_note(FinishReason.REPEATING)
    assert finish_note(FinishReason.STOP) is None and finish_note("nonsense") is None


def test_the_sampling_form_shows_the_new_samplers(qtbot):
    from app.widgets.sampling_form import SamplingForm

    form = SamplingForm()
    qtbot.addWidget(form)
    breakers = form.controls["dry_sequence_breakers"]
    assert breakers.toPlainText() == '\\n\n:\n"\n*'  # a line break is shown as \n
    assert form.values() == {}
    breakers.setPlainText("\\n\n;")
    form.controls["loop_guard"].setChecked(False)
    assert form.values() == {"dry_sequence_breakers": ["\n", ";"], "loop_guard": False}
    layout = form.layout()
    labels = {layout.labelForField(form.controls[n]).text() for n in ("dry_multiplier",
                                                                       "xtc_threshold")}
    assert labels == {"DRY multiplier", "XTC threshold"}


def test_a_reply_stopped_for_repeating_says_so(qtbot, tmp_path):
    from app.widgets.message_bubble import MessageBubble
    from engine.store import ConversationStore

    store = ConversationStore(tmp_path / "db.sqlite3")
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "hi")
    reply = store.add_message(conversation.id, "assistant", "hello", stats={
        "generated_tokens": 12, "finish_reason": "repeating", "loops": 3})
    bubble = MessageBubble(reply)
    qtbot.addWidget(bubble)
    assert not bubble.notice_label.isHidden()
    assert bubble.notice_label.text() == "Stopped: the model was repeating itself."
    ordinary = store.add_message(conversation.id, "assistant", "fine",
                                 stats={"finish_reason": "stop"})
    other = MessageBubble(ordinary)
    qtbot.addWidget(other)
    assert other.notice_label.isHidden()
    store.close()
