#!/usr/bin/env bash
# Turn the one-folder bundle into an AppImage:
#   packaging/linux/make_appimage.sh [DIST]        (DIST defaults to dist; run after build.py)
# Builds DIST/Verso.AppDir (AppRun, verso.desktop, icon, the bundle under usr/lib/verso) and,
# when `appimagetool` is on PATH, packs DIST/Verso-<version>-<arch>.AppImage from it.
#
# appimagetool is not in PyPI, npm or Debian's archive (checked for Debian 12), so it cannot
# be installed on the project's build machine; get it from the AppImage project's releases
# (appimagetool-<arch>.AppImage, which also embeds the type-2 runtime) on a release machine.
# Without it the script stops after the AppDir, which `DIST/Verso.AppDir/AppRun --self-test`
# can already check. Test the AppImage on an old distribution (the bundle needs the glibc of
# the build machine or newer: build releases on the oldest distribution you support).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIST=$(cd "${1:-$ROOT/dist}" && pwd)
BUNDLE=$DIST/verso
APPDIR=$DIST/Verso.AppDir
ARCH=${ARCH:-$(uname -m)}
VERSION=$(cd "$ROOT" && python3 -c 'import engine; print(engine.__version__)' 2>/dev/null || echo 0)

[ -x "$BUNDLE/verso" ] || { echo "make_appimage: build the bundle first ($BUNDLE/verso missing)" >&2; exit 2; }
rm -rf "$APPDIR"
mkdir -p "$APPDIR/usr/lib" "$APPDIR/usr/share/icons/hicolor/scalable/apps" \
    "$APPDIR/usr/share/icons/hicolor/256x256/apps" "$APPDIR/usr/share/applications"
cp -a "$BUNDLE" "$APPDIR/usr/lib/verso"
cat > "$APPDIR/AppRun" <<'RUN'
#!/bin/sh
HERE=$(dirname "$(readlink -f "$0")")
exec "$HERE/usr/lib/verso/verso" "$@"
RUN
chmod 755 "$APPDIR/AppRun"
cp "$ROOT/packaging/linux/verso.desktop" "$APPDIR/verso.desktop"
cp "$ROOT/packaging/linux/verso.desktop" "$APPDIR/usr/share/applications/verso.desktop"
cp "$BUNDLE/verso.png" "$APPDIR/verso.png"
cp "$BUNDLE/verso.png" "$APPDIR/.DirIcon"
cp "$BUNDLE/verso.png" "$APPDIR/usr/share/icons/hicolor/256x256/apps/verso.png"
cp "$ROOT/assets/icons/verso.svg" "$APPDIR/usr/share/icons/hicolor/scalable/apps/verso.svg"
echo "AppDir: $APPDIR"

if ! command -v appimagetool >/dev/null 2>&1; then
    echo "make_appimage: appimagetool is not on PATH; stopping after the AppDir (see the" \
         "comment at the top of this script)." >&2
    exit 3
fi
OUT=$DIST/Verso-$VERSION-$ARCH.AppImage
ARCH=$ARCH appimagetool --no-appstream "$APPDIR" "$OUT"
echo "AppImage: $OUT"
