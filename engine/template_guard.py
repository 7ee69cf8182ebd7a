"""Bounded rendering for chat templates, which come from model files (untrusted).

Jinja's sandbox keeps a template away from Python internals but not from the machine: a
nested ``range`` loop ran for ever, ``'x' * 300000000`` or ``'a'|center(300000000)`` made
hundreds of megabytes and a self-calling macro ended in a raw ``RecursionError``.
``GuardedEnvironment`` renders within a time limit, an output limit and a memory limit:

- every ``for`` loop's iterable is wrapped (in the parsed template) in a guard that checks the
  deadline, the total number of iterations and the process's memory growth at each step;
- every call (functions, macros, methods) checks the deadline, and integer arguments above
  ``MAX_INT_ARGUMENT`` (widths, repeat counts) are refused, in filters too;
- ``*``, ``+``, ``%`` and ``**`` refuse results longer than the output limit before making
  them, and ``str.format`` refuses field widths above ``MAX_INT_ARGUMENT``;
- the output is streamed and stopped at the output limit.

A breach raises ``TemplateLimitError`` (a ``BadRequestError``) saying which limit.
"""

from __future__ import annotations

import operator
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import BadRequestError

TIME_LIMIT_S = 2.0
MAX_ITERATIONS = 1_000_000
MAX_INT_ARGUMENT = 100_000
MEMORY_GROWTH_LIMIT = 256 << 20
_LOOP_GUARD = "__verso_loop_guard"
_WIDE_FIELD = re.compile(r"\d{6,}")


class TemplateLimitError(BadRequestError):
    """A chat template went past a rendering limit (time, size, memory, recursion)."""


def _rss_bytes() -> int:
    """This process's resident memory (0 where it cannot be read cheaply: Windows)."""
    try:
        import resource  # not on Windows
    except ImportError:
        return 0
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):  # not Linux: the peak is the best we have
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class _Budget:
    def __init__(self, max_output: int) -> None:
        self.deadline = time.monotonic() + TIME_LIMIT_S
        self.max_output = max_output
        self.iterations = 0
        self.rss_start = _rss_bytes()

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(
                f"The model's chat template did not finish within {TIME_LIMIT_S:g} s "
                "(an endless loop?).")

    def step(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            raise TemplateLimitError(
                f"The model's chat template ran more than {MAX_ITERATIONS:,} loop steps.")
        if self.iterations % 64 == 0 or self.iterations < 64:
            self.tick()
            if _rss_bytes() - self.rss_start > MEMORY_GROWTH_LIMIT:
                raise TemplateLimitError(
                    "The model's chat template used more than "
                    f"{MEMORY_GROWTH_LIMIT >> 20} MB of memory while rendering.")

    def size(self, length: int) -> None:
        if length > self.max_output:
            raise TemplateLimitError(
                f"The model's chat template produced more than {self.max_output:,} "
                "characters.")


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self, *args: Any, max_output: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = _Budget(max_output)
        self.globals[_LOOP_GUARD] = self._loop
        self.globals.pop("lipsum", None)  # no chat template needs filler text
        self.filters = {name: self._checked_filter(name, f) for name, f in self.filters.items()}

    # Loops -------------------------------------------------------------------------------

    def _loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.budget.step()
            yield item

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name(_LOOP_GUARD, "load"), [loop.iter], [], None,
                                   None, lineno=loop.lineno)
        return tree

    # Calls and operators -----------------------------------------------------------------

    @staticmethod
    def _check_arguments(args: Iterable[Any]) -> None:
        for value in args:
            if isinstance(value, int) and not isinstance(value, bool) and \
                    abs(value) > MAX_INT_ARGUMENT:
                raise TemplateLimitError(
                    f"The model's chat template asked for {value:,} (widths and counts are "
                    f"limited to {MAX_INT_ARGUMENT:,}).")

    def _checked_filter(self, name: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def checked(*args: Any, **kwargs: Any) -> Any:
            self.budget.tick()
            self._check_arguments(args[1:])
            self._check_arguments(kwargs.values())
            if name == "format" and any(isinstance(a, str) and _WIDE_FIELD.search(a)
                                        for a in args[:2]):
                raise TemplateLimitError(
                    "The model's chat template formats a field wider than "
                    f"{MAX_INT_ARGUMENT:,} characters.")
            return f(*args, **kwargs)

        for attribute in ("jinja_pass_arg",):
            if hasattr(f, attribute):
                setattr(checked, attribute, getattr(f, attribute))
        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.tick()
        if __obj is not __self._loop:
            __self._check_arguments(args)
            __self._check_arguments(kwargs.values())
        try:
            return super().call(__context, __obj, *args, **kwargs)
        except RecursionError:
            raise TemplateLimitError(
                "The model's chat template calls itself without end.") from None

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map`` reached from a template."""
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _WIDE_FIELD.search(owner) and \
                getattr(value, "__name__", "") in ("format", "format_map"):
            raise TemplateLimitError(
                "The model's chat template formats a field wider than "
                f"{MAX_INT_ARGUMENT:,} characters.")
        return super().wrap_str_format(value)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        budget = self.budget
        if operator_name == "*":
            for seq, count in ((left, right), (right, left)):
                n = _length(seq)
                if n is not None and isinstance(count, int):
                    budget.size(n * max(count, 0))
        elif operator_name == "+":
            a, b = _length(left), _length(right)
            if a is not None and b is not None:
                budget.size(a + b)
        elif operator_name == "%" and isinstance(left, str) and _WIDE_FIELD.search(left):
            raise TemplateLimitError(
                "The model's chat template formats a field wider than "
                f"{MAX_INT_ARGUMENT:,} characters.")
        elif operator_name == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right > 256:
            raise TemplateLimitError(
                f"The model's chat template computes {left} ** {right}, a number too large.")
        return {"*": operator.mul, "+": operator.add, "%": operator.mod,
                "**": operator.pow}[operator_name](left, right)

    # Output ------------------------------------------------------------------------------

    def render_bounded(self, source: str, **context: Any) -> str:
        try:
            template = self.from_string(source)
            parts: list[str] = []
            total = 0
            for piece in template.generate(**context):
                total += len(piece)
                self.budget.size(total)
                self.budget.tick()
                parts.append(piece)
            return "".join(parts)
        except RecursionError:
            raise TemplateLimitError(
                "The model's chat template calls itself without end.") from None
        except MemoryError:
            raise TemplateLimitError(
                "The model's chat template ran out of memory while rendering.") from None
