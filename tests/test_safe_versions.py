"""Libraries below their safe versions are refused at start-up with the reason."""

from __future__ import annotations

import io

import pytest

from engine import safe_versions
from engine.cli import main
from engine.cli.common import EXIT_ERROR
from engine.safe_versions import APP_MINIMUMS, Minimum, is_safe

QT = next(m for m in APP_MINIMUMS if m.distribution == "PySide6-Essentials")


@pytest.mark.parametrize(("installed", "safe"), [
    ("6.11.3", True), ("6.12.0", True), ("6.11.2", False), ("6.8.9", True), ("6.8.10", True),
    ("6.8.8", False), ("6.9.5", False), ("6.11.3.post1", True),
])
def test_qt_minimum_with_its_lts_line(installed: str, safe: bool) -> None:
    assert is_safe(installed, QT) is safe


def test_this_environment_is_safe() -> None:
    assert safe_versions.problems() == []


def test_an_old_jinja2_stops_the_cli_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    real = safe_versions._installed
    monkeypatch.setattr(safe_versions, "_installed",
                        lambda d: "3.1.4" if d == "jinja2" else real(d))
    err = io.StringIO()
    assert main(["generate", "Hi"], out=io.StringIO(), err=err) == EXIT_ERROR
    assert "jinja2 3.1.4 is older than 3.1.6" in err.getvalue()
    assert "CVE-2025-27516" in err.getvalue()


def test_the_app_refuses_too(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main as app_main

    monkeypatch.setattr(safe_versions, "APP_MINIMUMS",
                        (Minimum("pypdf", "99.0", "a test advisory"),))
    assert app_main(["verso"]) == 1
    assert "pypdf" in capsys.readouterr().err
