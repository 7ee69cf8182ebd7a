#!/usr/bin/env bash
# Build Verso.app and a .dmg on macOS (Apple silicon or Intel; build on each for each).
# Not run on the project's Linux build machine.
#
#   packaging/macos/make_dmg.sh            (from the repository root, after `make install`)
#
# Steps: llama-cpp-python with Metal (packaging/gpu/build_llama_cpp.sh metal; skipped with
# SKIP_LLAMA_BUILD=1), PyInstaller (packaging/build.py writes dist/Verso.app through the
# spec's BUNDLE), the self-test from inside the .app, then a compressed disk image with an
# Applications link: dist/Verso-<version>-macos-<arch>.dmg.
# Signing and notarization run when CODESIGN_IDENTITY ("Developer ID Application: …") and
# NOTARY_PROFILE (a `xcrun notarytool store-credentials` profile) are set; an unsigned app
# must be opened with right-click > Open the first time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
[ "$(uname -s)" = Darwin ] || { echo "make_dmg.sh runs on macOS only" >&2; exit 2; }
PY=.venv/bin/python
VERSION=$($PY -c 'import engine; print(engine.__version__)')
ARCH=$(uname -m)
APP=dist/Verso.app
DMG=dist/Verso-$VERSION-macos-$ARCH.dmg

$PY -m pip install --quiet -e '.[package]'
if [ "${SKIP_LLAMA_BUILD:-0}" != 1 ]; then
    if [ "$ARCH" = arm64 ]; then
        packaging/gpu/build_llama_cpp.sh metal
    else
        packaging/gpu/build_llama_cpp.sh portable   # Intel Macs: CPU
    fi
fi
$PY packaging/build.py
"$APP/Contents/MacOS/verso" --self-test

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict "$APP"
fi

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Verso $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
    codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$DMG"
    xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
fi
echo "disk image: $DMG"
