"""Before Qt starts on Linux/X11: name the system packages its xcb platform plugin lacks.

Without them Qt aborts the process with only "could not load the Qt platform plugin xcb"
(a fresh Debian or Ubuntu desktop lacks ``libxcb-cursor0``), which no user can act on. The
check reads ``ldd`` of the plugin, so it names exactly what is missing on this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# soname -> package, per distribution family (Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE).
_PACKAGES: dict[str, dict[str, str]] = {
    "libxcb-cursor.so.0": {"debian": "libxcb-cursor0", "fedora": "xcb-util-cursor",
                           "arch": "xcb-util-cursor", "suse": "libxcb-cursor0"},
    "libxcb-icccm.so.4": {"debian": "libxcb-icccm4", "fedora": "xcb-util-wm",
                          "arch": "xcb-util-wm", "suse": "libxcb-icccm4"},
    "libxcb-keysyms.so.1": {"debian": "libxcb-keysyms1", "fedora": "xcb-util-keysyms",
                            "arch": "xcb-util-keysyms", "suse": "libxcb-keysyms1"},
    "libxcb-image.so.0": {"debian": "libxcb-image0", "fedora": "xcb-util-image",
                          "arch": "xcb-util-image", "suse": "libxcb-image0"},
    "libxcb-render-util.so.0": {"debian": "libxcb-render-util0",
                                "fedora": "xcb-util-renderutil",
                                "arch": "xcb-util-renderutil", "suse": "libxcb-render-util0"},
    "libxcb-util.so.1": {"debian": "libxcb-util1", "fedora": "xcb-util", "arch": "xcb-util",
                         "suse": "libxcb-util1"},
    "libxkbcommon-x11.so.0": {"debian": "libxkbcommon-x11-0", "fedora": "libxkbcommon-x11",
                              "arch": "libxkbcommon-x11", "suse": "libxkbcommon-x11-0"},
    "libxkbcommon.so.0": {"debian": "libxkbcommon0", "fedora": "libxkbcommon",
                          "arch": "libxkbcommon", "suse": "libxkbcommon0"},
    "libX11-xcb.so.1": {"debian": "libx11-xcb1", "fedora": "libX11-xcb", "arch": "libx11",
                        "suse": "libX11-xcb1"},
    "libEGL.so.1": {"debian": "libegl1", "fedora": "libglvnd-egl", "arch": "libglvnd",
                    "suse": "libEGL1"},
    "libfontconfig.so.1": {"debian": "libfontconfig1", "fedora": "fontconfig",
                           "arch": "fontconfig", "suse": "libfontconfig1"},
}
_INSTALL = {"debian": "sudo apt install", "fedora": "sudo dnf install",
            "arch": "sudo pacman -S", "suse": "sudo zypper install"}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def family(os_release: str) -> str | None:
    """The distribution family from /etc/os-release text (ID and ID_LIKE)."""
    ids: list[str] = []
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.extend(value.strip().strip('"').lower().split())
    for fam, names in (("debian", {"debian", "ubuntu", "linuxmint", "pop"}),
                       ("fedora", {"fedora", "rhel", "centos", "rocky", "almalinux"}),
                       ("arch", {"arch", "manjaro", "endeavouros"}),
                       ("suse", {"suse", "opensuse", "opensuse-leap", "opensuse-tumbleweed"})):
        if names & set(ids):
            return fam
    return None


def missing_libraries(ldd_output: str) -> list[str]:
    return sorted(set(_NOT_FOUND.findall(ldd_output)))


def advice(missing: list[str], fam: str | None) -> str:
    """What to tell the user: the missing libraries and the command that installs them."""
    lines = ["Verso cannot open its window: Qt's X11 (xcb) platform plugin needs system "
             "libraries that are not installed:", *(f"  {lib}" for lib in missing)]
    if fam is not None:
        packages = [_PACKAGES[lib][fam] for lib in missing if lib in _PACKAGES]
        unknown = [lib for lib in missing if lib not in _PACKAGES]
        if packages:
            names = " ".join(dict.fromkeys(packages))
            lines.append(f"Install them with:\n  {_INSTALL[fam]} {names}")
        if unknown:
            lines.append("Find the package for the others with your package manager's file "
                         "search (e.g. apt-file search, dnf provides).")
    else:
        lines.append("Install the packages that provide them with your distribution's package "
                     "manager.")
    lines.append("(Or run headless commands with `verso`, which needs no window.)")
    return "\n".join(lines)


def _xcb_plugin() -> Path | None:
    import PySide6

    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def _would_use_xcb() -> bool:
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0] == "xcb"
    return bool(os.environ.get("DISPLAY")) and not os.environ.get("WAYLAND_DISPLAY")


def check() -> str | None:
    """The message to show instead of starting Qt, or None when the window can open."""
    if not sys.platform.startswith("linux") or not _would_use_xcb():
        return None
    plugin = _xcb_plugin()
    if plugin is None:
        return None
    try:
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no ldd: let Qt try
    missing = missing_libraries(out)
    if not missing:
        return None
    try:
        release = Path("/etc/os-release").read_text("utf-8", "replace")
    except OSError:
        release = ""
    return advice(missing, family(release))
