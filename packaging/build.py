"""Build the packaged Verso for the OS this runs on (``make package`` on Linux).

    python packaging/build.py [--dist DIR] [--work DIR] [--no-archive] [--appimage]

1. Renders the icons (packaging/make_icons.py) into WORK/icons.
2. Runs PyInstaller on packaging/verso.spec: a one-folder bundle DIST/verso/ (the ``verso``
   executable, ``_internal/`` with Python, Qt, llama.cpp, the default model and assets/);
   on macOS also DIST/Verso.app.
3. Linux: adds verso.desktop, the icon and install.sh to the folder and packs
   DIST/verso-<version>-linux-<arch>.tar.gz; with --appimage (and appimagetool on PATH) also
   DIST/Verso-<version>-<arch>.AppImage (see packaging/linux/make_appimage.sh).
   Windows: compile packaging/windows/verso.iss with Inno Setup's ISCC afterwards.
   macOS: packaging/macos/make_dmg.sh turns DIST/Verso.app into a .dmg.

Defaults: DIST=dist, WORK=build/pyinstaller (both ignored by git).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(ROOT))


def version() -> str:
    from engine import __version__

    return __version__


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller(dist: Path, work: Path, icons: Path) -> None:
    env = dict(os.environ, VERSO_ICONS_DIR=str(icons))
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", str(dist), "--workpath", str(work), str(PACKAGING / "verso.spec")],
        cwd=ROOT, env=env, check=True,
    )


def linux_extras(bundle: Path, icons: Path) -> None:
    linux = PACKAGING / "linux"
    shutil.copy2(linux / "verso.desktop", bundle / "verso.desktop")
    shutil.copy2(linux / "install.sh", bundle / "install.sh")
    (bundle / "install.sh").chmod(0o755)
    shutil.copy2(ROOT / "assets" / "icons" / "verso.svg", bundle / "verso.svg")
    shutil.copy2(icons / "verso.png", bundle / "verso.png")


def make_tarball(bundle: Path, out: Path) -> Path:
    top = out.name.removesuffix(".tar.gz")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(bundle, arcname=top, filter=clean)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller")
    parser.add_argument("--no-archive", action="store_true", help="skip the .tar.gz")
    parser.add_argument("--appimage", action="store_true",
                        help="also build an AppImage (needs appimagetool on PATH)")
    args = parser.parse_args(argv)
    dist, work = args.dist.resolve(), args.work.resolve()
    started = time.monotonic()

    sys.path.insert(0, str(PACKAGING))
    from make_icons import render

    icons = work / "icons"
    render(icons)
    run_pyinstaller(dist, work, icons)
    bundle = dist / "verso"
    if not (bundle / ("verso.exe" if sys.platform == "win32" else "verso")).exists():
        raise SystemExit(f"build.py: PyInstaller produced no executable in {bundle}")
    print(f"bundle: {bundle} ({folder_size(bundle) / 1e6:.0f} MB)")

    if sys.platform.startswith("linux"):
        linux_extras(bundle, icons)
        if not args.no_archive:
            name = f"verso-{version()}-linux-{arch()}.tar.gz"
            tarball = make_tarball(bundle, dist / name)
            print(f"archive: {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
        if args.appimage:
            subprocess.run(["bash", str(PACKAGING / "linux" / "make_appimage.sh"), str(dist)],
                           check=True)
    elif sys.platform == "darwin":
        print(f"app: {dist / 'Verso.app'}; make the disk image with "
              f"packaging/macos/make_dmg.sh {dist}")
    else:
        print("installer: iscc packaging\\windows\\verso.iss")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
