#!/bin/sh
# Install (or remove) Verso for the current user from the unpacked .tar.gz:
#   ./install.sh            copies this folder to ~/.local/opt/verso, adds `verso` to
#                           ~/.local/bin and a menu entry with its icon
#   ./install.sh --uninstall
# Nothing is written outside ~/.local; no root needed. Chats and settings live in the user
# data folder (~/.local/share/Verso, ~/.config/Verso) and are kept on uninstall.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${XDG_DATA_HOME:-$HOME/.local/share}
PREFIX=$HOME/.local/opt/verso
BIN=$HOME/.local/bin
APPS=$DATA/applications
ICONS=$DATA/icons/hicolor

if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$PREFIX"
    rm -f "$BIN/verso" "$APPS/verso.desktop" "$ICONS/scalable/apps/verso.svg" \
        "$ICONS/256x256/apps/verso.png"
    echo "Verso removed (your chats in $DATA/Verso are kept)."
    exit 0
fi

if [ "$HERE" != "$PREFIX" ]; then
    rm -rf "$PREFIX.new"
    mkdir -p "$(dirname "$PREFIX")"
    cp -a "$HERE" "$PREFIX.new"
    rm -rf "$PREFIX"
    mv "$PREFIX.new" "$PREFIX"
fi
mkdir -p "$BIN" "$APPS" "$ICONS/scalable/apps" "$ICONS/256x256/apps"
ln -sf "$PREFIX/verso" "$BIN/verso"
cp "$PREFIX/verso.svg" "$ICONS/scalable/apps/verso.svg"
cp "$PREFIX/verso.png" "$ICONS/256x256/apps/verso.png"
sed "s|^Exec=.*|Exec=\"$PREFIX/verso\"|" "$PREFIX/verso.desktop" > "$APPS/verso.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$APPS" 2>/dev/null || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q "$ICONS" 2>/dev/null || true
echo "Verso installed in $PREFIX; start it from the menu or with: $BIN/verso"
