"""``verso generate`` constraint flags and ``verso classify``, as a script sees them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["happy", "sad", "calm"]},
                   "level": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["mood", "level"],
    "additionalProperties": False,
}
ONE_THREAD = ("--threads", "1")  # the test machine's cores are shared


def verso(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "engine", *args], input=stdin,
                            capture_output=True, text=True, timeout=180)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_json_schema_output_is_valid_json(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    result = verso("generate", "Describe your day as JSON:", "--json-schema", str(schema),
                   "--temperature", "1", "--seed", "3", "--max-tokens", "40", *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    value = json.loads(result.stdout)
    assert value["mood"] in ("happy", "sad", "calm") and 1 <= value["level"] <= 5


def test_choice_prints_one_of_the_choices():
    result = verso("generate", "Should I go?", "--choice", "yes,no,maybe\\, later",
                   "--temperature", "1", "--seed", "1", "--max-tokens", "8", *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") in ("yes", "no", "maybe, later")


def test_ban_with_logprobs_reports_the_kept_tokens():
    result = verso("generate", "--chat", "Tell me a short story about a cat.",
                   "--ban", "the forest", "--logprobs", "3", "--temperature", "0",
                   "--max-tokens", "30", *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "the forest" not in data["text"]
    assert data["stats"]["rollbacks"] >= 1  # greedy writes "the forest" when not banned
    assert "".join(t["text"] for t in data["tokens"]) == data["text"]
    assert len(data["tokens"]) == data["stats"]["generated_tokens"]
    for token in data["tokens"]:
        assert len(token["top"]) == 3 and token["logprob"] <= 0
        assert token["top"][0]["logprob"] >= token["top"][-1]["logprob"]


def test_word_logit_bias_steers_away_from_the_word():
    result = verso("generate", "The capital of France is", "--logit-bias", "Paris=-100",
                   "--temperature", "0", "--max-tokens", "3", *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Paris" not in result.stdout


def test_bad_grammar_file_is_a_usage_error(tmp_path):
    grammar = tmp_path / "bad.gbnf"
    grammar.write_text('root ::= "a" | (\n')
    result = verso("generate", "x", "--grammar", str(grammar), "--max-tokens", "4",
                   *ONE_THREAD)
    assert result.returncode == 2
    assert "The grammar is not valid: expecting ')'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--grammar", "/no/such/file.gbnf"), "cannot read the grammar file"),
    (("--json-schema", "SCHEMA_FILE"), 'at /type: "strin" is not a JSON type'),
    (("--json-schema", "SCHEMA_FILE", "--choice", "a,b"), "not allowed with"),
    (("--logit-bias", "Paris"), "TOKEN_OR_WORD=BIAS"),
    (("--logit-bias", "Paris=lots"), "TOKEN_OR_WORD=BIAS"),
    (("--logprobs", "50"), "n_probs=50 is above the maximum"),
    (("--choice", ","), "at least one choice"),
])
def test_constraint_usage_errors_exit_2_before_loading(tmp_path, args, message):
    schema = tmp_path / "bad.json"
    schema.write_text('{"type": "strin"}')
    args = tuple(str(schema) if a == "SCHEMA_FILE" else a for a in args)
    result = verso("generate", "x", *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_classify_csv_from_stdin_and_json_from_file(tmp_path):
    texts = "I absolutely loved this movie, it was wonderful!\n\nTerrible, boring and awful.\n"
    result = verso("classify", "--labels", "positive,negative", *ONE_THREAD, stdin=texts)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["text", "label", "p_positive", "p_negative", "calibrated", "raw_label",
                       "raw_p_positive", "raw_p_negative"]
    assert [r[1] for r in rows[1:]] == ["positive", "negative"]
    # SmolLM2's content-free texts favour different labels: by default it is not calibrated.
    assert all(r[4] == "false" for r in rows[1:])
    for row in rows[1:]:
        assert float(row[2]) + float(row[3]) == pytest.approx(1.0, abs=1e-5)
    source = tmp_path / "texts.txt"
    source.write_text(texts)
    result = verso("classify", "--labels", "positive,negative", "--json", str(source),
                   *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["label"] for line in lines] == ["positive", "negative"]
    assert sum(lines[0]["probabilities"].values()) == pytest.approx(1.0)
    assert all(not line["calibrated"] and "no steady bias" in line["not_calibrated"]
               for line in lines)
    result = verso("classify", "--labels", "positive,negative", "--json", "--calibrate",
                   str(source), *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(line["calibrated"] and not line["not_calibrated"] for line in lines)
    result = verso("classify", "--labels", "positive,negative", "--json", "--no-calibrate",
                   str(source), *ONE_THREAD)
    assert result.returncode == 0, result.stderr
    raw = [json.loads(line) for line in result.stdout.splitlines()]
    assert not any(line["calibrated"] for line in raw)
    for calibrated, uncalibrated in zip(lines, raw, strict=True):
        assert uncalibrated["probabilities"] == pytest.approx(calibrated["raw_probabilities"],
                                                              abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (("--labels", "only"), "at least two labels"),
    (("--labels", "a,b", "/no/such/texts.txt"), "cannot read the input file"),
    (("--labels", "a,b", "--example", "no label"), "TEXT=LABEL"),
])
def test_classify_usage_errors_exit_2(args, message):
    result = verso("classify", *args, stdin="text\n")
    assert result.returncode == 2
    assert message in result.stderr
