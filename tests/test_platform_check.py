"""A desktop without Qt's xcb libraries gets the packages to install, not Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app import platform_check

LDD = """\
\tlinux-vdso.so.1 (0x00007ffc)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f7b)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibweird.so.3 => not found
"""
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\n'


def test_missing_libraries_come_from_ldd() -> None:
    assert platform_check.missing_libraries(LDD) == ["libweird.so.3", "libxcb-cursor.so.0",
                                                      "libxcb-icccm.so.4"]


def test_advice_names_the_packages_for_the_distribution() -> None:
    missing = ["libxcb-cursor.so.0", "libxcb-icccm.so.4"]
    ubuntu = platform_check.advice(missing, platform_check.family(UBUNTU))
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4" in ubuntu
    fedora = platform_check.advice(missing, platform_check.family(FEDORA))
    assert "sudo dnf install xcb-util-cursor xcb-util-wm" in fedora
    unknown = platform_check.advice(["libweird.so.3"], "debian")
    assert "libweird.so.3" in unknown and "apt-file" in unknown


def test_the_app_stops_with_the_advice_before_qt_aborts(tmp_path: Path) -> None:
    fake_ldd = tmp_path / "ldd"  # this machine has the libraries; pretend one is missing
    fake_ldd.write_text("#!/bin/sh\necho '\tlibxcb-cursor.so.0 => not found'\n")
    fake_ldd.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
           "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-m", "app"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 1
    assert "libxcb-cursor.so.0" in done.stderr and "Traceback" not in done.stderr
    assert "could not load the Qt platform plugin" not in done.stderr


def test_offscreen_is_not_checked(monkeypatch) -> None:
    monkeypatch.setattr(platform_check, "missing_libraries", lambda _out: ["libxcb-cursor.so.0"])
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert platform_check.check() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "libxcb-cursor0" in (platform_check.check() or "")
