"""Grammars (llama.cpp GBNF) built from data: a list of choices or a JSON Schema.

The JSON Schema conversion is llama-cpp-python's ``SchemaConverter`` with one addition:
``minimum``/``maximum`` (and the exclusive forms) on integers become digit-range rules, so
a bounded integer is enforced rather than ignored. Still not enforced, as in llama.cpp:
bounds on non-integer numbers, ``multipleOf``, ``uniqueItems``, ``not``, formats other than
date/time/uuid, and remote ``$ref``s (refused).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import BadRequestError
from engine.grammar_check import grammar_problems

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MAX_DIGITS = 16  # as llama.cpp's unbounded integer rule
_JSON_TYPES = {"string", "number", "integer", "boolean", "null", "object", "array"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal that matches exactly that text."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def choice_grammar(choices: Sequence[str]) -> str:
    """A grammar whose only outputs are the given strings, verbatim."""
    unique = list(dict.fromkeys(choices))
    if not unique:
        raise BadRequestError("A choice list needs at least one choice.")
    if any(not c for c in unique):
        raise BadRequestError("Choices must not be empty strings.")
    return "root ::= " + " | ".join(gbnf_literal(c) for c in unique) + "\n"


# ------------------------------------------------------------------ integer ranges


def _digits(lo: int, hi: int) -> str:
    return f"[{lo}]" if lo == hi else f"[{lo}-{hi}]"


def _same_length(lo: str, hi: str) -> str:
    """Digit strings of one length from ``lo`` to ``hi`` (leading zeros allowed)."""
    if lo == hi:
        return f'"{lo}"'
    rest = len(lo) - 1
    if rest == 0:
        return _digits(int(lo), int(hi))
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ({_same_length(lo[1:], hi[1:])})'
    alternatives = []
    first, last = int(lo[0]), int(hi[0])
    if lo[1:] != "0" * rest:
        alternatives.append(f'"{lo[0]}" ({_same_length(lo[1:], "9" * rest)})')
        first += 1
    tail = None
    if hi[1:] != "9" * rest:
        tail = f'"{hi[0]}" ({_same_length("0" * rest, hi[1:])})'
        last -= 1
    if first <= last:
        alternatives.append(f"{_digits(first, last)} [0-9]{{{rest}}}")
    if tail:
        alternatives.append(tail)
    return " | ".join(alternatives)


def _magnitudes(lo: int, hi: int | None) -> str:
    """Non-negative integers from ``lo`` to ``hi`` (None: up to 16 digits), no leading zeros."""
    width = len(str(lo))
    alternatives = []
    last_width = len(str(hi)) if hi is not None else width
    for digits in range(width, last_width + 1):
        low = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        high = 10**digits - 1 if hi is None else min(hi, 10**digits - 1)
        if low <= high:
            alternatives.append(_same_length(str(low), str(high)))
    if hi is None and width < _MAX_DIGITS:
        alternatives.append(f"[1-9] [0-9]{{{width},{_MAX_DIGITS - 1}}}")
    return " | ".join(alternatives)


def integer_range_rule(lo: int | None, hi: int | None) -> str:
    """A GBNF expression for the integers in [lo, hi] (None: unbounded on that side)."""
    if lo is not None and hi is not None and lo > hi:
        raise BadRequestError(f"The integer range is empty (minimum {lo} > maximum {hi}).")
    alternatives = []
    if lo is None or lo < 0:
        nearest = -1 if hi is None or hi >= 0 else hi
        alternatives.append(f'"-" ({_magnitudes(-nearest, None if lo is None else -lo)})')
    if hi is None or hi >= 0:
        alternatives.append(_magnitudes(max(lo or 0, 0), hi))
    return " | ".join(f"({a})" if "|" in a else a for a in alternatives)


def _integer_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None]:
    lo = hi = None
    if "minimum" in schema:
        lo = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        lo = max(lo if lo is not None else -math.inf, math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        hi = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        hi = min(hi if hi is not None else math.inf, math.ceil(schema["exclusiveMaximum"]) - 1)
    return lo, hi


# -------------------------------------------------------------------- JSON Schema


def preload() -> None:
    """Import llama.cpp's schema converter ahead of the first conversion (loading llama.cpp
    takes ~0.2 s; a GUI calls this from a background thread)."""
    import llama_cpp.llama_grammar  # noqa: F401


def _converter() -> Any:  # a subclass of llama_cpp's SchemaConverter, defined lazily
    from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

    class Converter(SchemaConverter):
        def visit(self, schema: dict, name: str) -> str:
            if schema.get("type") == "integer" and any(k in schema for k in _BOUNDS):
                rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
                rule = integer_range_rule(*_integer_bounds(schema))
                return self._add_rule(rule_name, f"({rule}) space")
            return super().visit(schema, name)

    return Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _fail(path: str, message: str) -> BadRequestError:
    where = f" at {path}" if path else ""
    return BadRequestError(f"Invalid JSON Schema{where}: {message}")


def _check_schema(node: Any, path: str = "") -> None:
    """Structural checks with a JSON-pointer location, so a mistake is named precisely
    instead of surfacing as an assertion inside the converter."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise _fail(path, f"a schema must be an object, not {json.dumps(node)}")
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            raise _fail(path + "/type", f"{json.dumps(k)} is not a JSON type (one of "
                        + ", ".join(sorted(_JSON_TYPES)) + ")")
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise _fail(path + "/enum", "enum must be a non-empty array")
    for key in (*_BOUNDS, "minLength", "maxLength", "minItems", "maxItems"):
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _fail(f"{path}/{key}", f"{key} must be a number")
    if "required" in node and not (isinstance(node["required"], list)
                                   and all(isinstance(r, str) for r in node["required"])):
        raise _fail(path + "/required", "required must be an array of property names")
    ref = node.get("$ref")
    if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
        raise _fail(path + "/$ref", f"only references within the schema ('#/...') are "
                    f"supported, not {json.dumps(ref)}")
    for key in _SUBSCHEMA_MAPS:
        if key in node:
            if not isinstance(node[key], dict):
                raise _fail(f"{path}/{key}", f"{key} must be an object")
            for name, sub in node[key].items():
                _check_schema(sub, f"{path}/{key}/{name}")
    for key in _SUBSCHEMA_LISTS:
        if key in node:
            if not isinstance(node[key], list) or not node[key]:
                raise _fail(f"{path}/{key}", f"{key} must be a non-empty array")
            for i, sub in enumerate(node[key]):
                _check_schema(sub, f"{path}/{key}/{i}")
    items = node.get("items")
    if isinstance(items, list):
        for i, sub in enumerate(items):
            _check_schema(sub, f"{path}/items/{i}")
    elif items is not None:
        _check_schema(items, path + "/items")
    extra = node.get("additionalProperties")
    if extra is not None and not isinstance(extra, bool):
        _check_schema(extra, path + "/additionalProperties")


def schema_to_grammar(schema: Mapping[str, Any] | str) -> str:
    """A GBNF grammar whose outputs are JSON documents valid against ``schema`` (a dict or
    JSON text). Raises ``BadRequestError`` naming the problem for an invalid schema."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise BadRequestError(f"The JSON Schema is not valid JSON: {exc.msg} at line "
                                  f"{exc.lineno}, column {exc.colno}.") from exc
    if not isinstance(schema, Mapping):
        raise _fail("", "the top level must be an object")
    document = copy.deepcopy(dict(schema))
    _check_schema(document)
    converter = _converter()
    try:
        converter.visit(converter.resolve_refs(document, "input"), "")
    except BadRequestError:
        raise
    except (AssertionError, KeyError, TypeError, ValueError, IndexError,
            RecursionError) as exc:
        detail = (str(exc) or type(exc).__name__).replace("input#", "#")
        raise BadRequestError(f"The JSON Schema cannot be turned into a grammar: {detail}") \
            from exc
    grammar = converter.format_grammar() + "\n"
    problems = grammar_problems(grammar)
    if problems:
        raise BadRequestError("The JSON Schema gave an invalid grammar: " + "; ".join(problems))
    return grammar
